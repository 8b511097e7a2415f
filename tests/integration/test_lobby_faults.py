"""wy-lobby under faults: one live session per account when Redis loses all its data
(FLUSHALL) and when Kafka is down. The fence epochs come from PostgreSQL, so they only
grow; a live session whose record vanished re-asserts itself at its next heartbeat; a
session taken over elsewhere is fenced at its next heartbeat, without the Kafka kick."""
import threading
import time
import uuid

import grpc
import requests

from harness import rkeys
from harness.wait import wait_until
from test_lobby import Client, keys, start_lobby, token  # noqa: F401 (keys is a fixture)

HEARTBEAT_S = 1.0  # start_lobby's WY_LOBBY_HEARTBEAT_INTERVAL
# A session taken over must be closed at its next heartbeat: one interval, plus the
# round trips of a loaded 2-core machine.
FENCE_BOUND_S = 2 * HEARTBEAT_S + 1.0


class Player:
    """A client that heartbeats every HEARTBEAT_S on its own thread, as a real one does,
    and records when and how its session ended."""

    def __init__(self, url, tok):
        self.c = Client(url)
        self.welcome = self.c.hello(tok)
        self.acks = 0
        self.closed_at = None
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        if self.ok:
            self.t.start()

    @property
    def ok(self):
        return self.welcome is not None and self.welcome.WhichOneof("body") == "welcome"

    @property
    def live(self):
        return self.ok and self.closed_at is None

    @property
    def code(self):
        return self.c.close_code

    def _run(self):
        while not self.stop.is_set():
            m = self.c.call(heartbeat=self.c.pb.Heartbeat())
            if m is None:
                self.closed_at = time.monotonic()
                return
            if m.WhichOneof("body") == "heartbeat_ack":
                self.acks += 1
            self.stop.wait(HEARTBEAT_S)

    def close(self):
        self.stop.set()
        self.c.close()
        self.t.join(timeout=5) if self.t.is_alive() else None


def metric(d, name):
    for line in requests.get(d.ops_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_redis_flushall_keeps_one_session_per_account(daemon, protos, keys, free_port, stack):
    a = start_lobby(daemon, keys, free_port)
    b = start_lobby(daemon, keys, free_port)
    accounts = ["flush-%s-%02d" % (uuid.uuid4().hex[:6], i) for i in range(50)]
    old = {acct: Player(a.ws_url, token(keys, acct)) for acct in accounts}
    new = {}
    try:
        assert all(p.ok for p in old.values())
        wait_until(lambda: all(p.acks >= 1 for p in old.values()), timeout=30,
                   what="every session heartbeating")
        stack.redis_cli("FLUSHALL")
        again = accounts[:25]
        relogin_at = {}
        for acct in again:
            new[acct] = Player(b.ws_url, token(keys, acct))
            relogin_at[acct] = time.monotonic()
            assert new[acct].ok, (acct, new[acct].welcome, new[acct].code)
            assert new[acct].welcome.welcome.epoch > old[acct].welcome.welcome.epoch
        # Every session taken over is closed 4002 within one heartbeat (plus slack)...
        wait_until(lambda: all(not old[acct].live for acct in again),
                   timeout=FENCE_BOUND_S + 30, what="taken-over sessions closed")
        for acct in again:
            assert old[acct].code == 4002, (acct, old[acct].code, old[acct].c.close_reason)
            assert old[acct].closed_at - relogin_at[acct] <= FENCE_BOUND_S, acct
        # ...and from then on, for several heartbeats, every account has exactly one live
        # session: the new one for those who logged in again, the untouched old one for
        # those who did nothing (re-asserted, never kicked).
        until = time.monotonic() + 4 * HEARTBEAT_S
        while time.monotonic() < until:
            for acct in accounts:
                live = [p for p in (old[acct], new.get(acct)) if p is not None and p.live]
                assert len(live) == 1, (acct, old[acct].code, new.get(acct) and new[acct].code)
            time.sleep(0.1)
        for acct in accounts[25:]:
            assert old[acct].live and old[acct].code is None
        acks = {acct: old[acct].acks for acct in accounts[25:]}
        wait_until(lambda: all(old[x].acks > acks[x] for x in acks), timeout=30,
                   what="untouched sessions still heartbeating")
        assert metric(a, "wy_lobby_sessions_reasserted_total") >= 25
        # Redis names the one live session of each account again.
        for acct in accounts:
            live = new[acct] if acct in new else old[acct]
            sid = live.welcome.welcome.session_id
            wait_until(lambda: stack.redis_cli("GET", rkeys.sess_acct(acct)) == sid, timeout=30,
                       what="%s rewritten" % rkeys.sess_acct(acct))
    finally:
        for p in list(old.values()) + list(new.values()):
            p.close()


def test_takeover_during_kafka_outage_fences_at_next_heartbeat(daemon, protos, keys, free_port,
                                                               stack):
    a = start_lobby(daemon, keys, free_port)
    b = start_lobby(daemon, keys, free_port)
    acct = "kafkadown-" + uuid.uuid4().hex[:8]
    with stack.kafka_outage():
        first = Player(a.ws_url, token(keys, acct))
        try:
            assert first.ok
            wait_until(lambda: first.acks >= 1, timeout=30, what="first session heartbeating")
            second = Player(b.ws_url, token(keys, acct))
            t0 = time.monotonic()
            try:
                assert second.ok
                wait_until(lambda: not first.live, timeout=FENCE_BOUND_S + 30,
                           what="old session fenced without Kafka")
                assert first.code == 4002
                assert first.closed_at - t0 <= FENCE_BOUND_S
                assert second.live
            finally:
                second.close()
        finally:
            first.close()


def test_notice_outlives_a_kafka_outage_longer_than_the_message_timeout(daemon, protos, keys,
                                                                        free_port, stack):
    """A notice accepted while Kafka is down is produced again (same event_id) when the
    producer gives up on it after its 30 s message timeout, and is delivered, once, when
    the broker is back."""
    import lobby_pb2
    import lobby_pb2_grpc
    # The notice must still matter after the outage (the default 60 s is near what this
    # outage takes on a loaded machine).
    a = start_lobby(daemon, keys, free_port, NOTICE_TTL="300s", KAFKA_RELAY_MAX="20")
    b = start_lobby(daemon, keys, free_port, NOTICE_TTL="300s")
    acct = "notice-" + uuid.uuid4().hex[:8]
    p = Player(b.ws_url, token(keys, acct))
    notices = lambda text: [m for m in list(p.c.pushes)  # noqa: E731
                            if m.WhichOneof("body") == "notice" and m.notice.text == text]
    try:
        assert p.ok
        with grpc.insecure_channel(a.grpc_addr) as ch:
            stub = lobby_pb2_grpc.LobbyStub(ch)

            def probe():
                stub.Notify(lobby_pb2.NotifyNotice(account_id=acct, kind="info", text="probe"),
                            timeout=5)
                return wait_for(lambda: notices("probe"), 1.0)
            wait_until(probe, timeout=60, interval=0.1, what="b consuming wy.notify")
            wait_until(lambda: metric(a, "wy_lobby_relay_queue") == 0, timeout=30,
                       what="the probes acknowledged")
            stack.stop_kafka()
            try:
                r = stub.Notify(lobby_pb2.NotifyNotice(account_id=acct, kind="info",
                                                       text="during the outage"), timeout=5)
                assert r.event_id
                # The relay is bounded (20 here): 19 more fill it, the rest are refused,
                # counted and logged; nothing blocks.
                refused = 0
                for i in range(25):
                    try:
                        stub.Notify(lobby_pb2.NotifyNotice(account_id="nobody-" + acct,
                                                           kind="info", text="fill %d" % i),
                                    timeout=5)
                    except grpc.RpcError as e:
                        assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                        refused += 1
                assert refused == 6
                assert relay_dropped(a, "full") == 6
                a.wait_log(lambda rec: rec.get("msg") == "kafka event dropped"
                           and rec.get("reason") == "full", timeout=10)
                wait_until(lambda: (metric(a, "wy_lobby_relay_retries_total") or 0) >= 1,
                           timeout=120, interval=0.5, what="the notice produced again")
                assert p.live and not notices("during the outage")
            finally:
                stack.start_kafka()
        wait_until(lambda: notices("during the outage"), timeout=120, interval=0.2,
                   what="the notice delivered after Kafka returned")
        got = notices("during the outage")
        assert len(got) == 1 and got[0].notice.id == r.event_id
        assert relay_dropped(a) == 6  # the refused ones only: none expired or lost
    finally:
        p.close()


def wait_for(pred, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def relay_dropped(d, reason=None):
    total = 0.0
    prefix = "wy_lobby_relay_dropped_total{" + ('reason="%s"' % reason if reason else "")
    for line in requests.get(d.ops_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            total += float(line.split()[-1])
    return total


def test_token_with_embedded_nul_refused_by_lobby_and_auth(daemon, protos, free_port):
    """"<valid token>\\0junk" is refused by both: every string is read with its length
    (wy_pb_strings_ok), never up to its first NUL."""
    import auth_pb2
    import auth_pb2_grpc
    auth = daemon("auth")
    r = requests.post("http://127.0.0.1:%d/v1/login" % auth.client_port,
                      json={"method": "device", "device_id": "dev-" + uuid.uuid4().hex},
                      timeout=15)
    assert r.status_code in (200, 201), r.text
    tok = r.json()["access_token"]
    lobby = daemon("lobby", env={"WY_LOBBY_AUTH_GRPC": auth.grpc_addr})
    url = "ws://127.0.0.1:%d/v1/lobby" % lobby.client_port
    with grpc.insecure_channel(auth.grpc_addr) as ch:
        stub = auth_pb2_grpc.AuthStub(ch)
        assert stub.Introspect(auth_pb2.IntrospectRequest(access_token=tok), timeout=5).active
        try:
            stub.Introspect(auth_pb2.IntrospectRequest(access_token=tok + "\0junk"), timeout=5)
            raise AssertionError("Introspect accepted a token with an embedded NUL")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    bad = Client(url)
    m = bad.hello(tok + "\0junk")
    assert m is None or m.WhichOneof("body") != "welcome", m
    assert bad.wait_closed() == 4000
    good = Client(url)
    w = good.hello(tok)
    assert w.WhichOneof("body") == "welcome", w
    good.close()


def test_flushall_then_relogin_on_same_instance_kicks_old_session_at_once(daemon, protos, keys,
                                                                          free_port, stack):
    """After FLUSHALL the claim cannot name the old session (its index is gone); an older
    session of the account on the same instance is kicked at once, not left to its next
    heartbeat (none is sent here, and the idle timeout is far)."""
    a = start_lobby(daemon, keys, free_port, HEARTBEAT_INTERVAL="10s", IDLE_TIMEOUT="60s")
    acct = "same-" + uuid.uuid4().hex[:8]
    old = Client(a.ws_url)
    assert old.hello(token(keys, acct)).WhichOneof("body") == "welcome"
    stack.redis_cli("FLUSHALL")
    new = Client(a.ws_url)
    w = new.hello(token(keys, acct))
    assert w.WhichOneof("body") == "welcome"
    assert old.wait_closed(timeout=20) == 4002
    assert any(m.WhichOneof("body") == "kicked" for m in old.pushes)
    assert new.call(heartbeat=new.pb.Heartbeat()).status.code == 0
    assert stack.redis_cli("GET", rkeys.sess_acct(acct)) == w.welcome.session_id
    new.close()
