#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/ (re-runnable;
the committed seeds are its output). Sources: the captured Sentry SDK requests in
SENTRY_SAMPLES (default /work/shared/sentry-sample-envelopes.txt, skipped when absent),
Stripe-shaped webhook events signed the way Stripe signs them, and request bodies from the
README and SPEC. Layouts are documented at the top of each fuzz_targets/<target>.rs."""

import gzip
import hashlib
import hmac
import json
import os
import pathlib
import re
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "corpus"
SAMPLES = pathlib.Path(os.environ.get("SENTRY_SAMPLES", "/work/shared/sentry-sample-envelopes.txt"))


def put(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


T = 1795777229
ORDER = "ord_3f2a9c4e8b1d4e6fa0b2c4d6e8f01234"


def event(evt_id, typ, obj):
    return json.dumps(
        {
            "id": evt_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": T,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": "req_8nQ2fV1a", "idempotency_key": "bo-pay-3f2a9c4e"},
            "type": typ,
        },
        separators=(",", ":"),
    ).encode()


pi = {
    "id": "pi_3QxYz2LkdIwHu7ix0a1b2c3d",
    "object": "payment_intent",
    "amount": 5000,
    "amount_received": 5000,
    "currency": "eur",
    "client_secret": "pi_3QxYz2LkdIwHu7ix0a1b2c3d_secret_Abc123",
    "latest_charge": "ch_3QxYz2LkdIwHu7ix0e1f2g3h",
    "metadata": {"order_id": ORDER, "reservation_id": "hold_5a1e"},
    "payment_method": "pm_card_visa",
    "status": "succeeded",
    "created": T - 30,
    "livemode": False,
}
failed = dict(pi, status="requires_payment_method", amount_received=0,
              last_payment_error={"code": "card_declined", "decline_code": "generic_decline",
                                  "message": "Your card was declined.", "type": "card_error"})
charge = {
    "id": "ch_3QxYz2LkdIwHu7ix0e1f2g3h",
    "object": "charge",
    "amount": 5000,
    "amount_refunded": 5000,
    "currency": "eur",
    "payment_intent": "pi_3QxYz2LkdIwHu7ix0a1b2c3d",
    "refunded": True,
    "status": "succeeded",
    "metadata": {"order_id": ORDER},
}
events = {
    "succeeded": event("evt_3QxYz2LkdIwHu7ix1aBcDeFg", "payment_intent.succeeded", pi),
    "failed": event("evt_3QxYz2LkdIwHu7ix1bCdEfGh", "payment_intent.payment_failed", failed),
    "refunded": event("evt_3QxYz2LkdIwHu7ix1cDeFgHi", "charge.refunded", charge),
    "refunded_expanded": event("evt_3QxYz2LkdIwHu7ix1dEfGhIj", "charge.refunded",
                               dict(charge, payment_intent=pi)),
    "other": event("evt_3QxYz2LkdIwHu7ix1eFgHiJk", "customer.created", {"id": "cus_Q1", "object": "customer"}),
}
for name, body in events.items():
    put("stripe_event", name, body)
put("stripe_event", "list", b'{"object":"list","data":[' + events["succeeded"] + b"," + events["refunded"]
    + b'],"has_more":false,"url":"/v1/events"}')

SECRET = b"whsec_fuzz_secret"


def sign(body, t, secret=SECRET):
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


body = events["succeeded"]
put("stripe_signature", "signed", f"t={T},v1={sign(body, T)}\n".encode() + body)
put("stripe_signature", "rotation", f"t={T},v1={sign(body, T, b'whsec_old')},v1={sign(body, T)}\n".encode() + body)
# Stripe's documented header shape, v0 included.
put("stripe_signature", "stripe_docs",
    b"t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,"
    b"v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39\n" + events["refunded"])
put("stripe_signature", "spaces", f" t = {T} , v1 = {sign(body, T).upper()} ,\n".encode() + body)
put("stripe_signature", "empty", b"\n")

for name, key in {
    "uuid": "8e4b5c6a-1d2f-4a3b-9c8d-7e6f5a4b3c2d",
    "quoted": '"order-42_retry.1"',
    "escaped": r'"a\"b\\c"',
    "long": "k" * 255,
    "bad_space": "has space",
}.items():
    put("idempotency_key", name, key)

bodies = {
    "0_reservation": ('0', {"event_id": "ev_0123456789abcdef0123456789abcdef",
                            "items": [{"ticket_type_id": "tt_0123456789abcdef0123456789abcdef", "quantity": 2}],
                            "customer_email": "ana@example.org"}),
    "0_reservation_bad": ('0', {"event_id": "ev_x", "items": [{"ticket_type_id": "tt_x", "quantity": -1}] * 3}),
    "1_event": ('1', {"organization_id": "org_0123456789abcdef0123456789abcdef", "name": "Night Owl Live",
                      "starts_at": "2027-03-01T20:00:00Z", "currency": "EUR", "hold_seconds": 600}),
    "2_ticket_type": ('2', {"name": "Standing", "price_cents": 2500, "capacity": 500, "max_per_order": 8}),
    "3_update": ('3', {"price_cents": 3000, "capacity": 450, "on_sale": False}),
    "4_org": ('4', {"name": "Night Owl Concerts"}),
    "5_error": ('5', {"severity": "error", "message": "payment declined for ana@example.org card 4111111111111111",
                      "stack_trace": "at charge (pay.js:10:5)\nat main (app.js:3:1)", "component": "checkout",
                      "context": {"password": "hunter2", "nested": {"token": "abc", "ip": "10.0.0.1"}},
                      "fingerprint": ["{{ default }}", "checkout"]}),
    "6_payment": ('6', {}),
}
for name, (sel, value) in bodies.items():
    put("api_json", name, sel + json.dumps(value))
put("api_json", "7_email", "7Ana.Maria+tickets@mail.example.co.uk")
put("api_json", "8_quantities", b"8" + (2).to_bytes(8, "little", signed=True) + (-1).to_bytes(8, "little", signed=True))

if SAMPLES.exists():
    blocks = re.findall(r"--- raw body bytes: \d+, decoded bytes: \d+\n(.*?)\n=== end", SAMPLES.read_text(), re.S)
    for i, env in enumerate(blocks):
        raw = env.encode() + b"\n"
        put("sentry_envelope", f"sample{i}_identity", b"0" + raw)
        put("sentry_envelope", f"sample{i}_ourgzip", b"5" + raw)
    first = blocks[0].encode() + b"\n"
    put("sentry_envelope", "sample0_gzip", b"1" + gzip.compress(first))
    put("sentry_envelope", "sample0_zlib", b"2" + zlib.compress(first))
    raw_deflate = zlib.compressobj(wbits=-15)
    put("sentry_envelope", "sample0_rawdeflate", b"2" + raw_deflate.compress(first) + raw_deflate.flush())
    put("sentry_envelope", "sample0_ourbr", b"7" + first)
    put("sentry_envelope", "sample0_ourdeflate", b"6" + first)
# A small gzip bomb: 1 MiB of zeros, twice (concatenated members).
bomb = gzip.compress(b"\0" * (1 << 20), 9)
put("sentry_envelope", "gzip_bomb", b"1" + bomb + bomb)
