"""Helpers shared by the wy-actor integration tests (test_actor*.py)."""
import grpc
import requests

from harness.wait import wait_until


def served(fn, timeout=30):
    """fn() once it stops answering UNAVAILABLE (or running out of time): a request for a
    character whose owner died or is moving is refused until another instance took its
    shard over (WY_ACTOR_LEASE + a view)."""
    box = {}

    def attempt():
        try:
            box["r"] = fn()
            return True
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            return False
    wait_until(attempt, timeout=timeout, what="an answer from the character's owner")
    return box["r"]


def metric(d, name, **labels):
    """The value of one series of d's /metrics (0 when absent)."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in requests.get(d.ops_url + "/metrics", timeout=5).text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (name if not labels else "%s{%s}" % (name, want)):
            return float(value)
    return 0.0
