"""Payment benchmarks for scripts/bench.sh (SPEC §5 performance targets).

1. Replay latency relative to GET of the same order: one PaymentIntent is created, then
   CLIENTS threads alternate timed phases of replaying it (same key, same body) and of
   GET /api/v1/orders/{id}; the ratio of the medians is the figure (target <= 1.5).
2. PaymentIntent creations per second against the configured Stripe (the in-process
   double by default): CLIENTS threads each pay for their own fresh holds, one key each.

Everything goes to 127.0.0.1; every loop is bounded by a count and a deadline.
Prints one machine-readable line: BENCH_PAYMENTS key=value ...
"""

import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def main():
    base, token, event_id, ticket_type_id, seconds, clients = sys.argv[1:7]
    seconds, clients = float(seconds), int(clients)
    host = urllib.parse.urlparse(base)
    event_id, ticket_type_id = json.loads(event_id), json.loads(ticket_type_id)

    def connect():
        return http.client.HTTPConnection(host.hostname, host.port, timeout=30)

    def request(conn, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if body is not None:
            body = json.dumps(body)
            headers["content-type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def hold(conn):
        status, body = request(conn, "POST", "/api/v1/reservations", {
            "event_id": event_id, "items": [{"ticket_type_id": ticket_type_id, "quantity": 1}]})
        assert status == 201, (status, body)
        return json.loads(body)["id"]

    def pay(conn, hold_id, key):
        return request(conn, "POST", f"/api/v1/reservations/{hold_id}/payment-intent", {},
                       {"idempotency-key": key})

    # --- 1. replay vs GET ------------------------------------------------------------
    setup = connect()
    replay_hold = hold(setup)
    status, body = pay(setup, replay_hold, "bench-replay")
    assert status == 201, (status, body)
    order_path = "/api/v1/orders/" + json.loads(body)["order_id"]
    replay_path = f"/api/v1/reservations/{replay_hold}/payment-intent"

    def timed_phase(kind, deadline):
        samples = []
        lock = threading.Lock()

        def worker():
            conn = connect()
            mine = []
            for _ in range(200_000):
                if time.monotonic() >= deadline:
                    break
                started = time.perf_counter()
                if kind == "get":
                    status, _ = request(conn, "GET", order_path)
                    assert status == 200, status
                else:
                    status, _ = request(conn, "POST", replay_path, {}, {"idempotency-key": "bench-replay"})
                    assert status == 201, status
                mine.append(time.perf_counter() - started)
            with lock:
                samples.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return samples

    phase = max(seconds / 4, 1.0)
    get_samples, replay_samples = [], []
    for _ in range(2):  # alternate, so drift on a noisy machine hits both alike
        get_samples += timed_phase("get", time.monotonic() + phase)
        replay_samples += timed_phase("replay", time.monotonic() + phase)

    def pct(samples, p):
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    get_p50, replay_p50 = statistics.median(get_samples) * 1000, statistics.median(replay_samples) * 1000

    # --- 2. creations per second -----------------------------------------------------
    per_client = 400
    holds = [[hold(setup) for _ in range(per_client)] for _ in range(clients)]
    created = [0] * clients
    failures = [0] * clients
    deadline = time.monotonic() + seconds

    def creator(i):
        conn = connect()
        for n, hold_id in enumerate(holds[i]):
            if time.monotonic() >= deadline:
                break
            status, _ = pay(conn, hold_id, f"bench-create-{i}-{n}")
            if status == 201:
                created[i] += 1
            else:
                failures[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=creator, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    print("BENCH_PAYMENTS "
          f"get_p50_ms={get_p50:.2f} get_p99_ms={pct(get_samples, 0.99):.2f} gets={len(get_samples)} "
          f"replay_p50_ms={replay_p50:.2f} replay_p99_ms={pct(replay_samples, 0.99):.2f} replays={len(replay_samples)} "
          f"ratio={replay_p50 / get_p50:.2f} creations_per_s={sum(created) / elapsed:.1f} "
          f"created={sum(created)} failures={sum(failures)}")


if __name__ == "__main__":
    main()
