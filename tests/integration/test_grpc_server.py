"""wy_grpc servers in the real daemons.

Every registered method has a latency histogram and outcome counts on /metrics.

Calls that outlive their reply: a handler of wy-auth
(waiting on PostgreSQL) and of wy-lobby (waiting on Redis) is still holding a call when
SIGTERM's short drain ends. The stop answers the call itself; the handler's reply, when
its store finally answers, finds the call over and is dropped (wy_grpc_reply returns
WY_ECANCELED and logs it at debug level). The daemon exits 0, and against an ASan build
(tests/run --build build-asan) the harness fails the test on any sanitizer line in the
daemon's log.

The "stalled" variants stop the daemon's process (SIGSTOP) across the drain deadline, as
a loaded machine does when it deschedules the loop: on waking, the drain's timer and the
gRPC grace timer are both due, in either order. The held call must still be answered by
the stop before the store the handler waits on is closed, or the handler answers it
itself and no late reply happens."""
import os
import signal
import subprocess
import time
import threading
import uuid

import grpc
import pytest
import requests

from harness.wait import wait_until

DRAIN = "300ms"
DRAIN_S = 0.3
LATE_REPLY = "grpc reply dropped: the call is over (answered, cancelled or expired)"


def gauge(d, name):
    """The value of the series `name` (with its labels, exactly as exposed), or None."""
    for line in requests.get(d.ops_url + "/metrics", timeout=5).text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return None


# Both threading modes of wy_grpc (WY_<SVC>_GRPC_MODE): the guarantees are the same.
MODES = ["thread", "drive"]


@pytest.mark.parametrize("mode", MODES)
def test_every_method_has_a_latency_histogram_and_outcomes(daemon, protos, mode):
    import auth_pb2
    import auth_pb2_grpc
    d = daemon("auth", env={"WY_AUTH_GRPC_MODE": mode})
    with grpc.insecure_channel(d.grpc_addr) as ch:
        stub = auth_pb2_grpc.AuthStub(ch)
        stub.GetKeys(auth_pb2.GetKeysRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            stub.GetAccount(auth_pb2.GetAccountRequest(account_id="not-a-uuid"), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    keys = 'method="/wyvern.auth.Auth/GetKeys"'
    account = 'method="/wyvern.auth.Auth/GetAccount"'
    assert gauge(d, "wy_auth_grpc_call_seconds_count{%s}" % keys) == 1
    assert gauge(d, 'wy_auth_grpc_call_seconds_bucket{%s,le="+Inf"}' % keys) == 1
    assert gauge(d, 'wy_auth_grpc_call_total{%s,outcome="ok"}' % keys) == 1
    assert gauge(d, 'wy_auth_grpc_call_total{%s,outcome="client_error"}' % account) == 1
    # Registered but never called: the series exist at 0, so rates work from the start.
    assert gauge(d, 'wy_auth_grpc_call_total{method="/wyvern.auth.Auth/Revoke",outcome="ok"}') == 0


class PgTableLock:
    """An ACCESS EXCLUSIVE lock on a table, held by a psql session of the test until
    release(): every query touching the table waits."""

    def __init__(self, stack, table):
        self.p = subprocess.Popen(["psql", stack.pg_url, "-XAtq", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n" % table)
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        if line != "locked":
            raise RuntimeError("psql could not lock %s: %r %s" % (table, line, self.p.stderr.read()))

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("ROLLBACK;\n")
            self.p.stdin.close()
            self.p.wait(10)


def stop_in_background(d, stall=False):
    """SIGTERM now; the exit status lands in the returned dict under "rc". With stall,
    once the daemon has begun its stop its process is held (SIGSTOP) for twice the
    drain time, so it wakes with every stop deadline already passed."""
    out = {}
    t = threading.Thread(target=lambda: out.update(rc=d.stop(timeout=30)), daemon=True)
    t.start()
    out["thread"] = t
    if stall:
        # "draining": the Kafka consumers are closed and the drain's clock runs.
        d.wait_log(lambda r: r.get("msg") == "draining", timeout=15)
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(2 * DRAIN_S)  # the fault: no process runs for this long
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
    return out


def assert_late_reply_dropped(d, fut, stopping):
    with pytest.raises(grpc.RpcError) as e:
        fut.result(timeout=30)
    # The stop answered the held call (or cancelled it): the client is never left waiting.
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e.value
    stopping["thread"].join(40)
    assert stopping.get("rc") == 0, d.log_tail()
    assert LATE_REPLY in d.log_text(), d.log_tail()
    assert d.sanitizer_report() is None, d.sanitizer_report()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stall", [False, True], ids=["prompt", "stalled"])
def test_auth_reply_after_drain_while_postgres_stalls(daemon, stack, protos, stall, mode):
    import auth_pb2
    import auth_pb2_grpc
    d = daemon("auth", env={"WY_AUTH_DRAIN_TIMEOUT": DRAIN, "WY_AUTH_GRPC_MODE": mode})
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               timeout=30, what="auth ready")
    lock = PgTableLock(stack, "auth.accounts")
    try:
        with grpc.insecure_channel(d.grpc_addr) as ch:
            stub = auth_pb2_grpc.AuthStub(ch)
            fut = stub.GetAccount.future(auth_pb2.GetAccountRequest(account_id=str(uuid.uuid4())),
                                         timeout=30)
            # The handler holds the call while its SELECT waits on the lock.
            wait_until(lambda: stack.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%FROM auth.accounts a LEFT JOIN%'").strip() == "1",
                timeout=15, what="GetAccount waiting on the table lock")
            stopping = stop_in_background(d, stall)
            # The drain answers the call without the handler...
            with pytest.raises(grpc.RpcError):
                fut.result(timeout=30)
            # ...and only then does PostgreSQL answer the handler, which replies late.
            lock.release()
            assert_late_reply_dropped(d, fut, stopping)
    finally:
        lock.release()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stall", [False, True], ids=["prompt", "stalled"])
def test_lobby_reply_after_drain_while_redis_stalls(daemon, stack, protos, stall, mode):
    import lobby_pb2
    import lobby_pb2_grpc
    d = daemon("lobby", env={"WY_LOBBY_DRAIN_TIMEOUT": DRAIN, "WY_LOBBY_GRPC_MODE": mode})
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               timeout=30, what="lobby ready")
    with grpc.insecure_channel(d.grpc_addr) as ch:
        stub = lobby_pb2_grpc.LobbyStub(ch)
        # Redis holds every client's commands for 3 s (longer than the drain); the
        # test's own redis-cli returns at once.
        stack.redis_cli("CLIENT", "PAUSE", "3000", "ALL")
        try:
            fut = stub.GetSession.future(
                lobby_pb2.GetSessionRequest(account_id="acct-" + uuid.uuid4().hex), timeout=30)
            # The handler holds the call while its Redis lookup is paused.
            wait_until(lambda: gauge(d, "wy_lobby_grpc_calls_in_flight") == 1.0, timeout=15,
                       what="GetSession in flight")
            stopping = stop_in_background(d, stall)
            assert_late_reply_dropped(d, fut, stopping)
        finally:
            # The pause must not outlive the test (the stack is shared by the session).
            stack.redis_cli("CLIENT", "UNPAUSE")
