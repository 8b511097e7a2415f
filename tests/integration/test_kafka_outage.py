"""Must-show 1: the Kafka broker stopped for 60 s while players log in, log out and get banned
loses no wy.account event. Every change auth acknowledged has its event row in auth.wy_outbox
(written in the change's transaction) and, once the broker is back, every one of them reaches
wy.account, in the order of its account's changes. Auth and lobby serve throughout and stay
ready, reporting Kafka as degraded (/readyz 200)."""
import os
import signal
import subprocess
import time
import uuid

import grpc
import requests

from harness.wait import wait_until
from test_lobby import Client
from test_readiness import auth_and_lobby, readyz

OUTAGE_S = 60


def api(auth, method, path, body=None, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    return requests.request(method, "http://127.0.0.1:%d%s" % (auth.client_port, path),
                            json=body, headers=h, timeout=15)


def device_login(auth, device):
    r = api(auth, "POST", "/v1/login", {"method": "device", "device_id": device})
    assert r.status_code in (200, 201), r.text
    return r.json()


def player_cycle(auth, stub, pb):
    """One player's life during the outage; returns (account, expected [(type, reason)])."""
    device = "dev-" + uuid.uuid4().hex
    first = device_login(auth, device)  # creates the account
    assert first.get("created") is True
    second = device_login(auth, device)
    assert api(auth, "POST", "/v1/logout", token=second["access_token"]).status_code == 204
    stub.Revoke(pb.RevokeRequest(account_id=first["account_id"], ban=True), timeout=5)
    expected = [("account.created", ""), ("account.login", ""), ("account.login", ""),
                ("account.session_revoked", "logout"), ("account.session_revoked", "ban")]
    return first["account_id"], expected


def outbox_rows(stack, accounts):
    """[(event_id, key, type, payload bytes)] of auth.wy_outbox for these accounts, by id."""
    keys = ",".join("'%s'" % a for a in accounts)
    out = stack.psql("SELECT event_id || ' ' || key || ' ' || type || ' ' || "
                     "encode(payload, 'hex') FROM auth.wy_outbox WHERE key IN (%s) ORDER BY id"
                     % keys)
    rows = []
    for line in out.splitlines():
        event_id, key, type_, payload = line.split(" ")
        rows.append((event_id, key, type_, bytes.fromhex(payload)))
    return rows


def reason_of(pb, type_, payload):
    if type_ != "account.session_revoked":
        return ""
    m = pb.SessionRevoked()
    m.ParseFromString(payload)
    return m.reason


def test_kafka_down_60s_loses_no_account_event(daemon, stack, protos, build_dir, tmp_path):
    import auth_pb2
    import auth_pb2_grpc
    auth, lobby, ws_url = auth_and_lobby(daemon)
    expected = {}  # account -> [(type, reason)] in the order of its changes
    ch = grpc.insecure_channel(auth.grpc_addr)
    stub = auth_pb2_grpc.AuthStub(ch)
    with stack.kafka_outage():
        t_stop = time.monotonic()
        for d in (auth, lobby):
            wait_until(lambda: readyz(d) == (200, {"status": "degraded", "degraded": ["kafka"]}),
                       timeout=OUTAGE_S, what="%s degraded while Kafka is down" % d.svc)
        player = Client(ws_url)
        w = player.hello(device_login(auth, "dev-" + uuid.uuid4().hex)["access_token"])
        assert w is not None and w.WhichOneof("body") == "welcome", w
        cycles = 0
        while time.monotonic() - t_stop < OUTAGE_S:
            account, events = player_cycle(auth, stub, auth_pb2)
            expected[account] = events
            cycles += 1
            if cycles % 10 == 0:
                # Both stay ready (degraded) and serve: lobby keeps its session.
                for d in (auth, lobby):
                    assert readyz(d) == (200, {"status": "degraded", "degraded": ["kafka"]})
                ack = player.call(heartbeat=player.pb.Heartbeat())
                assert ack is not None and ack.WhichOneof("body") == "heartbeat_ack", ack
            time.sleep(0.1)
        # Still down: every acknowledged change has its event waiting in the outbox, in
        # the order of the account's changes.
        rows = outbox_rows(stack, expected)
        by_key = {}
        for event_id, key, type_, payload in rows:
            by_key.setdefault(key, []).append((event_id, (type_, reason_of(auth_pb2, type_,
                                                                                payload))))
        for account, events in expected.items():
            assert [e for _, e in by_key.get(account, [])] == events, account
        player.close()
    ch.close()
    assert cycles >= 10, "only %d players in %d s" % (cycles, OUTAGE_S)
    # The broker is back: the relay publishes the backlog and empties the outbox.
    keys = ",".join("'%s'" % a for a in expected)
    wait_until(lambda: stack.psql("SELECT count(*) FROM auth.wy_outbox WHERE key IN (%s)"
                                  % keys) == "0",
               timeout=120, interval=1, what="the outbox relayed after Kafka returned")
    for d in (auth, lobby):
        wait_until(lambda: readyz(d) == (200, {"status": "healthy"}), timeout=60,
                   what="%s healthy after Kafka returned" % d.svc)
    # Every event is on wy.account, each account's in order (one key, one partition).
    want_ids = {eid for evs in by_key.values() for eid, _ in evs}
    effects = tmp_path / "effects"
    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")
    # Its log (a line per event) goes to a file: a pipe nobody reads would stall it.
    log = open(tmp_path / "reader.log", "wb")
    reader = subprocess.Popen([exe, "consume", "--brokers", stack.kafka_brokers, "--topic",
                               "wy.account", "--group", "outage-" + uuid.uuid4().hex,
                               "--effects", str(effects)],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        def consumed():
            try:
                return [ln for ln in effects.read_text().split() if ln in want_ids]
            except FileNotFoundError:
                return []
        wait_until(lambda: set(consumed()) == want_ids, timeout=120, interval=1,
                   what="all %d outage events on wy.account" % len(want_ids))
        seen = consumed()
    finally:
        reader.send_signal(signal.SIGTERM)
        reader.wait(timeout=60)
        log.close()
    position = {eid: i for i, eid in enumerate(seen)}
    for account, evs in by_key.items():
        order = [position[eid] for eid, _ in evs]
        assert order == sorted(order), "events of %s out of order" % account
