"""Sending events to journeyd from the delivery, policy and tracking tests."""

import time

import harness


def send_event(j, kind, body, timeout=10.0):
    """POSTs body to /v1/<kind> with the write key and returns the Response.
    A 503 (the database connection of the ingest not up yet, right after
    start) is retried as a client would, after its Retry-After (at most
    0.5 s per wait, timeout s in all); any other answer is returned as is."""
    deadline = time.monotonic() + timeout
    while True:
        r = j.post(f"/v1/{kind}", body, key=harness.WRITE_KEY)
        if r.status != 503 or time.monotonic() >= deadline:
            return r
        time.sleep(min(0.5, float(r.headers.get("Retry-After") or 0.5)))


def send_ok(j, kind, body):
    """send_event, failing unless the answer is 200."""
    r = send_event(j, kind, body)
    if r.status != 200:
        raise AssertionError(f"POST /v1/{kind} failed: {r.status} {r.body!r}")
    return r
