"""Webhook benchmarks for scripts/bench.sh (SPEC §6).

1. Distinct events: N paid orders' `payment_intent.succeeded` events, signed like Stripe
   signs them, POSTed by CLIENTS threads; each is verified, stored and applied (held
   becomes sold, tickets issued). Reports events per second.
2. Redeliveries: one already-applied event POSTed again and again (verified, counted,
   nothing applied). Reports deliveries per second.

Everything goes to 127.0.0.1; every loop is bounded by a count and a deadline.
Prints one machine-readable line: BENCH_WEBHOOKS key=value ...
"""

import hashlib
import hmac
import http.client
import json
import sys
import threading
import time
import urllib.parse


def main():
    base, event_id, ticket_type_id, seconds, clients, secret = sys.argv[1:7]
    seconds, clients = float(seconds), int(clients)
    host = urllib.parse.urlparse(base)
    event_id, ticket_type_id = json.loads(event_id), json.loads(ticket_type_id)

    def connect():
        return http.client.HTTPConnection(host.hostname, host.port, timeout=30)

    def request(conn, method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()

    def signed(payload):
        t = int(time.time())
        mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
        return {"stripe-signature": f"t={t},v1={mac}", "content-type": "application/json"}

    def deliver(conn, payload):
        status, body = request(conn, "POST", "/webhooks/stripe", payload, signed(payload))
        assert status == 200, (status, body)
        return json.loads(body)["outcome"]

    # Orders with PaymentIntents (through the API and the in-process double).
    setup = connect()
    per_client = 150
    events = []
    for n in range(per_client * clients):
        status, body = request(setup, "POST", "/api/v1/reservations", json.dumps({
            "event_id": event_id, "items": [{"ticket_type_id": ticket_type_id, "quantity": 1}]}),
            {"content-type": "application/json"})
        assert status == 201, (status, body)
        hold = json.loads(body)["id"]
        status, body = request(setup, "POST", f"/api/v1/reservations/{hold}/payment-intent", b"",
                               {"idempotency-key": f"bench-webhook-{n}"})
        assert status == 201, (status, body)
        created = json.loads(body)
        events.append(json.dumps({
            "id": f"evt_bench_{created['payment_intent_id']}", "object": "event",
            "type": "payment_intent.succeeded", "created": int(time.time()),
            "data": {"object": {"id": created["payment_intent_id"], "object": "payment_intent",
                                "status": "succeeded", "metadata": {"order_id": created["order_id"]}}}}))

    def run(payloads_for, deadline):
        counts = [0] * clients
        outcomes = {}
        lock = threading.Lock()

        def worker(i):
            conn = connect()
            for payload in payloads_for(i):
                if time.monotonic() >= deadline:
                    break
                outcome = deliver(conn, payload)
                counts[i] += 1
                with lock:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1

        started = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.monotonic() - started), outcomes

    distinct_rate, distinct_outcomes = run(
        lambda i: events[i * per_client:(i + 1) * per_client], time.monotonic() + seconds)
    assert set(distinct_outcomes) <= {"applied"}, distinct_outcomes
    repeated = events[0]
    redelivery_rate, redelivery_outcomes = run(
        lambda i: (repeated for _ in range(100_000)), time.monotonic() + seconds / 2)
    assert set(redelivery_outcomes) <= {"duplicate"}, redelivery_outcomes

    print("BENCH_WEBHOOKS "
          f"distinct_per_s={distinct_rate:.1f} applied={distinct_outcomes.get('applied', 0)} "
          f"redeliveries_per_s={redelivery_rate:.1f} duplicates={redelivery_outcomes.get('duplicate', 0)}")


if __name__ == "__main__":
    main()
