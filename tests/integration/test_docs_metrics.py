"""Must-show 5: the metric names the READMEs document are the ones each daemon exports.
Every daemon runs against the real stack, gets a little traffic, and its /metrics is compared
with README.md's common metrics table and its own services/<svc>/README.md, both ways: no
documented name is missing from /metrics, no exported name is undocumented."""
import os
import re
import uuid

import grpc
import pytest
import requests

from harness import TOP
from harness.wait import wait_until

SERVICES = ["auth", "lobby", "game", "world", "actor", "chat"]
DEPS_KAFKA = set(SERVICES)  # every daemon has WY_DEP_KAFKA (README.md, "Daemons")
WS_DAEMONS = {"lobby", "game"}  # client WebSocket (harness CLIENT_PORT_KINDS)


def read(*parts):
    with open(os.path.join(TOP, *parts)) as f:
        return f.read()


def table_after(marker):
    """[(names with <svc>, last cell)] of the first table after marker in README.md."""
    section = read("README.md").split(marker, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        line = line.strip()
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`(wy_<svc>_[a-z0-9_]+)", line)
        if names:
            rows.append((names, cells[-1]))
    assert rows, "README.md has no table after %r" % marker
    return rows


def consumes(svc):
    """True when the service README's Kafka row says it consumes a topic today."""
    row = [ln for ln in read("services", svc, "README.md").splitlines()
           if ln.startswith("| Kafka |")]
    return bool(row) and re.search(r"\bconsumes `", row[0]) is not None


def documented(svc):
    """Every wy_<svc>_* name README.md (common table) and the service README name."""
    out = set()
    for names, who in table_after("Common metrics"):
        if who.startswith("every daemon") or \
                (who.startswith("daemons that produce") and svc in DEPS_KAFKA) or \
                (who.startswith("daemons that consume") and consumes(svc)):
            out.update(n.replace("<svc>", svc) for n in names)
    # Latency families: HTTP (the ops port at least) and gRPC on every daemon; WebSocket
    # message types on daemons with a client WebSocket.
    for names, _ in table_after("**Latency.**"):
        if svc in WS_DAEMONS or not any("_ws_" in n for n in names):
            out.update(n.replace("<svc>", svc) for n in names)
    if svc in WS_DAEMONS:
        budget = read("README.md").split("**WebSocket send budget.**", 1)[1].split("\n- **", 1)[0]
        out.update(n.replace("<svc>", svc) for n in re.findall(r"`(wy_<svc>_[a-z0-9_]+)", budget))
    own = read("services", svc, "README.md")
    out.update(re.findall(r"\b(wy_%s_[a-z0-9_]*[a-z0-9])\b" % svc, own))
    return out


def per_partition(svc):
    """Names of the service README's paragraph "Per partition (...)": series that exist once a
    game partition runs (none in this test), so they may be missing here."""
    own = read("services", svc, "README.md")
    if "\nPer partition (" not in own:
        return set()
    para = own.split("\nPer partition (", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"\b(wy_%s_[a-z0-9_]*[a-z0-9])\b" % svc, para))


def exported(d):
    """Metric family names (from # TYPE lines) of the daemon's /metrics."""
    text = requests.get(d.ops_url + "/metrics", timeout=5).text
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))


def lobby_traffic(d, build_dir, stack):
    """A hello with a bad token (a WebSocket message), an event lobby ignores and one it does
    not know (its consumer's per-type counters)."""
    import websocket
    import lobby_pb2
    from harness.kafka import produce
    ws = websocket.create_connection("ws://127.0.0.1:%s/v1/lobby" % d.env["WY_LOBBY_WS_PORT"],
                                     timeout=10)
    m = lobby_pb2.ClientMessage(request_id=1, hello=lobby_pb2.Hello(access_token="not-a-token"))
    ws.send_binary(m.SerializeToString())
    try:
        while ws.recv_data(control_frame=True)[0] != websocket.ABNF.OPCODE_CLOSE:
            pass
    except (websocket.WebSocketException, OSError):
        pass
    ws.close()
    produce(build_dir, stack.kafka_brokers, "wy.account", type_="account.login")
    produce(build_dir, stack.kafka_brokers, "wy.session", type_="session.from-the-future")


def game_traffic(d):
    """A frame that is not a join (a WebSocket message the game refuses)."""
    import websocket
    ws = websocket.create_connection("ws://127.0.0.1:%s/v1/game" % d.env["WY_GAME_WS_PORT"],
                                     timeout=10)
    ws.send_binary(b"\xff\xff")
    try:
        while ws.recv_data(control_frame=True)[0] != websocket.ABNF.OPCODE_CLOSE:
            pass
    except (websocket.WebSocketException, OSError):
        pass
    ws.close()


def traffic(d, protos):
    """A little of everything the daemon serves: ops, gRPC health, and for auth its API."""
    for path in ("/healthz", "/readyz", "/metrics", "/nope"):
        requests.get(d.ops_url + path, timeout=5)
    import health_pb2
    import health_pb2_grpc
    with grpc.insecure_channel(d.grpc_addr) as ch:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    if d.svc != "auth":
        return
    base = "http://127.0.0.1:%s" % d.env["WY_AUTH_HTTP_PORT"]
    name = "m" + uuid.uuid4().hex[:10]
    body = {"username": name, "password": "correct horse battery"}
    reg = requests.post(base + "/v1/register", json=body, timeout=15).json()
    requests.post(base + "/v1/login", json=dict(body, method="password", password="wrong one!"),
                  timeout=15)
    requests.post(base + "/v1/refresh", json={"refresh_token": reg["refresh_token"]}, timeout=15)
    requests.post(base + "/v1/logout", timeout=15,
                  headers={"Authorization": "Bearer " + reg["access_token"]})
    import auth_pb2
    import auth_pb2_grpc
    with grpc.insecure_channel(d.grpc_addr) as ch:
        auth_pb2_grpc.AuthStub(ch).Introspect(
            auth_pb2.IntrospectRequest(access_token=reg["access_token"]), timeout=5)


@pytest.mark.parametrize("svc", SERVICES)
def test_documented_metric_names_match_metrics(daemon, protos, build_dir, stack, svc):
    d = daemon(svc)
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               timeout=30, what="%s ready" % svc)
    traffic(d, protos)
    if svc == "lobby":
        lobby_traffic(d, build_dir, stack)
    if svc == "game":
        game_traffic(d)
    docs = documented(svc)
    # Series born with the first event of a type the daemon ignores / does not know exist
    # only after such traffic, which lobby_traffic makes for lobby alone.
    lazy = set() if svc == "lobby" else {"wy_%s_events_ignored_total" % svc,
                                           "wy_%s_events_unhandled_total" % svc}
    required = docs - lazy - per_partition(svc)
    # The outbox relay's first pass and the revocation watch run within a second of start.
    wait_until(lambda: required <= exported(d), timeout=10,
               what="%s: documented metrics in /metrics (missing: %s)"
               % (svc, sorted(required - exported(d))))
    undocumented = sorted(exported(d) - docs)
    assert not undocumented, "%s exports metrics no README documents: %s" % (svc, undocumented)
