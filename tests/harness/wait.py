"""Polling for a condition that a test cannot be told about (a Redis key, a
metric, a health status): one helper for every Python tier."""
import time


def wait_until(pred, timeout=20.0, interval=0.05, what="condition"):
    """Calls pred() every interval seconds until it returns something truthy and
    returns that value; raises AssertionError naming `what` and the last value
    after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))
