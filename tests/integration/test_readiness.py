"""Readiness means "can serve its clients": a Kafka outage degrades auth and
lobby (/readyz 200 degraded) instead of taking them out of their Service, and
lobby is ready only once it can verify tokens (auth's keys fetched)."""
import uuid

import grpc
import requests

from harness.wait import wait_until
from test_lobby import Client


def readyz(d):
    """(status, body) of /readyz; None while the ops port does not listen yet."""
    try:
        r = requests.get(d.ops_url + "/readyz", timeout=5)
    except requests.ConnectionError:
        return None
    return r.status_code, r.json()


def metrics(d):
    """{series: value} of the daemon's /metrics."""
    out = {}
    for line in requests.get(d.ops_url + "/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def health(protos, d):
    import health_pb2
    import health_pb2_grpc
    with grpc.insecure_channel(d.grpc_addr) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""),
                                                    timeout=5).status


def login(auth):
    r = requests.post("http://127.0.0.1:%d/v1/login" % auth.client_port,
                      json={"method": "device", "device_id": "dev-" + uuid.uuid4().hex},
                      timeout=15)
    assert r.status_code in (200, 201), r.text
    return r.json()["access_token"]


def auth_and_lobby(daemon):
    """An auth and a lobby (verifying with the key auth signs with in tests), both healthy;
    returns (auth, lobby, lobby's WebSocket URL)."""
    auth = daemon("auth")
    lobby = daemon("lobby")
    for d in (auth, lobby):
        wait_until(lambda: readyz(d) == (200, {"status": "healthy"}), timeout=30,
                   what="%s healthy" % d.svc)
    return auth, lobby, "ws://127.0.0.1:%d/v1/lobby" % lobby.client_port


def test_kafka_outage_leaves_auth_and_lobby_ready_degraded(daemon, stack, protos):
    import health_pb2
    auth, lobby, url = auth_and_lobby(daemon)
    for d in (auth, lobby):
        m = metrics(d)
        assert m['wy_%s_dependency_required{dependency="kafka"}' % d.svc] == 0
        assert m['wy_%s_dependency_required{dependency="redis"}' % d.svc] == 1
        assert m['wy_%s_dependency_required{dependency="postgres"}' % d.svc] == 1
    with stack.kafka_outage():
        for d in (auth, lobby):
            wait_until(lambda: readyz(d) == (200, {"status": "degraded", "degraded": ["kafka"]}),
                       timeout=60, what="%s degraded while Kafka is down" % d.svc)
            wait_until(lambda: metrics(d)["wy_%s_degraded" % d.svc] == 1, timeout=10,
                       what="%s degraded gauge" % d.svc)
            m = metrics(d)
            assert m["wy_%s_ready" % d.svc] == 1
            assert m['wy_%s_dependency_up{dependency="kafka"}' % d.svc] == 0
            assert health(protos, d) == health_pb2.HealthCheckResponse.SERVING
        # A lobby started during the outage comes up too (ready, degraded), without its
        # broadcast consumer's partitions.
        late = daemon("lobby", ready_timeout=60)
        assert readyz(late) == (200, {"status": "degraded", "degraded": ["kafka"]})
        # All serve their clients: a login at auth, a session at each lobby.
        c2 = Client("ws://127.0.0.1:%d/v1/lobby" % late.client_port)
        w2 = c2.hello(login(auth))
        assert w2 is not None and w2.WhichOneof("body") == "welcome", w2
        c2.close()
        c = Client(url)
        w = c.hello(login(auth))
        assert w is not None and w.WhichOneof("body") == "welcome", w
        ack = c.call(heartbeat=c.pb.Heartbeat())
        assert ack.WhichOneof("body") == "heartbeat_ack"
        c.close()
    for d in (auth, lobby):
        wait_until(lambda: readyz(d) == (200, {"status": "healthy"}), timeout=60,
                   what="%s healthy after Kafka returned" % d.svc)
        assert metrics(d)["wy_%s_degraded" % d.svc] == 0


def test_redis_outage_still_makes_lobby_unready(daemon, stack):
    lobby = daemon("lobby")
    wait_until(lambda: readyz(lobby) == (200, {"status": "healthy"}), timeout=30,
               what="lobby healthy")
    stack.stop_redis()
    try:
        code, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(lobby)),
                                timeout=30, what="lobby 503 with Redis stopped")
        assert body == {"status": "unhealthy", "down": ["redis"]}
        assert metrics(lobby)["wy_lobby_ready"] == 0
    finally:
        stack.start_redis()
    wait_until(lambda: readyz(lobby) == (200, {"status": "healthy"}), timeout=30,
               what="lobby healthy again")


def test_lobby_is_ready_only_with_auth_keys_and_hello_right_after_ready_succeeds(
        daemon, free_port):
    auth_grpc = free_port()
    # Lobby first: auth is not there yet, so it cannot have auth's keys.
    lobby = daemon("lobby", env={"WY_LOBBY_AUTH_GRPC": "127.0.0.1:%d" % auth_grpc},
                   wait_ready=False)
    wait_until(lambda: readyz(lobby) == (503, {"status": "starting", "waiting": ["auth_keys"]}),
               timeout=60, what="lobby waiting for auth's keys")
    assert not any(r.get("msg") == "ready" for r in lobby.log_lines())
    # A client that comes anyway is told to retry (4007), not to log in again (4001).
    early = Client("ws://127.0.0.1:%d/v1/lobby" % lobby.client_port)
    r = early.hello("any.token.at-all")
    assert r.status.code == early.pb.UNAVAILABLE, r
    assert early.wait_closed() == 4007
    auth = daemon("auth", env={"WY_AUTH_GRPC_PORT": str(auth_grpc)})
    tok = login(auth)
    lobby.wait_ready(timeout=30)
    # No retry: the first hello after the ready line is welcomed.
    c = Client("ws://127.0.0.1:%d/v1/lobby" % lobby.client_port)
    w = c.hello(tok)
    assert w is not None and w.WhichOneof("body") == "welcome", (w, c.close_code, c.close_reason)
    c.close()
    assert readyz(lobby) == (200, {"status": "healthy"})
