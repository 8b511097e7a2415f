"""Issue 11: a returning login's account.login event is produced straight to Kafka, no outbox
row (services/auth/README.md, "Logins: no session written"), and still reaches wy.account in
the order of its account's changes: a login right after events that are still in the outbox
(its registration's, a logout's) goes through the outbox behind them."""
import os
import signal
import subprocess
import time
import uuid

import requests

from harness.kafka import series
from harness.ports import free_port
from harness.wait import wait_until
from test_login_storm import wy_account_messages

PLAYERS = 12


def login(base, s, device):
    r = s.post(base + "/v1/login", json={"method": "device", "device_id": device}, timeout=15)
    assert r.status_code in (200, 201), r.text
    return r.json()


def direct_events(d):
    return series(d, "wy_auth_login_events_total", route="direct") or 0.0


def test_returning_login_events_go_direct_in_account_order(daemon, build_dir, stack, tmp_path):
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    port = free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(port)})
    base = "http://127.0.0.1:%d" % port
    wait_until(lambda: requests.get(auth.ops_url + "/readyz", timeout=5).json().get("status")
               == "healthy", timeout=60, what="auth healthy (Kafka reachable)")
    s = requests.Session()
    players = {}  # account -> device
    expected = {}  # account -> [type] in the order of its changes
    for _ in range(PLAYERS):
        device = "ev-" + uuid.uuid4().hex
        first = login(base, s, device)
        assert first.get("created") is True
        # At once: its registration's events may still be in the outbox.
        login(base, s, device)
        players[first["account_id"]] = device
        expected[first["account_id"]] = ["account.created", "account.login", "account.login"]
    keys = ",".join("'%s'" % a for a in players)
    wait_until(lambda: stack.psql("SELECT count(*) FROM auth.wy_outbox WHERE key IN (%s)" % keys)
               == "0", timeout=60, interval=0.2, what="the registrations' events relayed")
    # An account whose rows were committed while a relay pass was in flight stays marked until
    # a later pass read rows, or AUTH_EVENTS_QUIET_MS (3 s) after the commit at the latest.
    time.sleep(3.5)
    before = direct_events(auth)
    for account, device in players.items():
        login(base, s, device)
        last = login(base, s, device)
        r = s.post(base + "/v1/logout", headers={"Authorization": "Bearer " + last["access_token"]},
                   timeout=15)
        assert r.status_code == 204, r.text
        # At once after the logout, whose event is in the outbox.
        login(base, s, device)
        expected[account] += ["account.login", "account.login", "account.session_revoked",
                              "account.login"]
    # The two logins of each player after its events were relayed went to Kafka directly.
    assert direct_events(auth) - before >= 2 * PLAYERS
    assert series(auth, "wy_auth_login_events_total", route="lost") == 0

    def have_all(msgs):
        n = {}
        for m in msgs:
            n[m["key"]] = n.get(m["key"], 0) + 1
        return all(n.get(a, 0) >= len(evs) for a, evs in expected.items())
    got = {}
    for m in wy_account_messages(build_dir, stack, tmp_path, have_all):
        if m["key"] in expected:
            got.setdefault(m["key"], set()).add((int(m["partition"]), int(m["offset"]), m["type"]))
    for account, evs in expected.items():
        msgs = sorted(got[account])  # one key, one partition: offsets give the order
        assert len({p for p, _, _ in msgs}) == 1, msgs
        assert [t for _, _, t in msgs] == evs, account


def test_login_event_kafka_does_not_acknowledge_goes_to_the_outbox(daemon, build_dir, stack,
                                                                   tmp_path, protos):
    """The broker freezes (SIGSTOP: its connections stay up, so the producer still counts it
    reachable) right before a returning login: its event is produced, not acknowledged within
    message.timeout.ms (30 s), then written to the outbox, and published once the broker is
    back, behind the account's earlier events."""
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    port = free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(port)})
    base = "http://127.0.0.1:%d" % port
    wait_until(lambda: requests.get(auth.ops_url + "/readyz", timeout=5).json().get("status")
               == "healthy", timeout=60, what="auth healthy (Kafka reachable)")
    s = requests.Session()
    device = "fb-" + uuid.uuid4().hex
    account = login(base, s, device)["account_id"]
    wait_until(lambda: stack.psql("SELECT count(*) FROM auth.wy_outbox WHERE key = '%s'" % account)
               == "0", timeout=60, interval=0.2, what="the registration's events relayed")
    time.sleep(3.5)  # the account's mark clears (AUTH_EVENTS_QUIET_MS at the latest)
    with open(os.path.join(stack.dir, "kafka", "kafka.pid")) as f:
        broker = int(f.read().split()[0])
    direct = direct_events(auth)
    os.kill(broker, signal.SIGSTOP)
    try:
        session = login(base, s, device)["session_id"]
        assert direct_events(auth) == direct + 1
        wait_until(lambda: series(auth, "wy_auth_login_events_total", route="fallback") == 1,
                   timeout=120, interval=1, what="the unacknowledged event written to the outbox")
        assert stack.psql("SELECT type FROM auth.wy_outbox WHERE key = '%s'" % account) \
            == "account.login"
    finally:
        os.kill(broker, signal.SIGCONT)
    assert series(auth, "wy_auth_login_events_total", route="lost") == 0

    def have(msgs):
        return [m["type"] for m in msgs if m["key"] == account][:3] == \
            ["account.created", "account.login", "account.login"]
    msgs = [m for m in wy_account_messages(build_dir, stack, tmp_path, have, timeout=180)
            if m["key"] == account]
    import auth_pb2
    ev = auth_pb2.LoginSucceeded()
    ev.ParseFromString(bytes.fromhex(msgs[2]["payload"]))
    assert ev.session_id == session
    # At least once: the frozen broker may also have taken the first attempt (same event_id).
    assert {m["event_id"] for m in msgs[2:]} == {msgs[2]["event_id"]}, msgs
