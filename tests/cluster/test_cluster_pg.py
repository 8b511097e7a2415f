"""Issue 17 must-show 3: a PostgreSQL primary with a synchronous streaming replica on
loopback (tests/harness/pgpair.py). Lobby reads the nickname at hello from the replica
(WY_PG_REPLICA_URL); auth and lobby get both hosts in WY_PG_URL with
target_session_attrs=read-write. The primary is stopped (immediate, like a crash), the
replica promoted with pg_ctl promote: the daemons reconnect to it and keep serving, and every
login acknowledged before the stop is on the new primary (synchronous_commit = on with
synchronous_standby_names = '*')."""
import os
import subprocess
import uuid

import pytest
import requests

from harness.pgpair import PgPair
from harness.wait import wait_until
from test_lobby import login  # tests/integration is on sys.path (conftest.py)


@pytest.fixture(scope="module")
def pg():
    p = PgPair()
    try:
        p.start()
    except BaseException:
        p.stop()
        raise
    yield p
    p.stop()
    p.remove()


def device_login(base):
    r = requests.post(base + "/v1/login",
                      json={"method": "device", "device_id": "dev-" + uuid.uuid4().hex},
                      timeout=15)
    return r


def try_login(base):
    try:
        r = device_login(base)
    except requests.RequestException:
        return None
    return r.json() if r.status_code in (200, 201) else None


def hello(url, tok):
    """(client, welcome) once lobby welcomes the token, else None (the client closed)."""
    c, w = login(url, tok)
    ok = w is not None and w.status.code == 0
    return (c, w) if ok or c.close() else None


def test_replica_reads_then_failover_keeps_every_acknowledged_login(
        daemon, protos, free_port, build_dir, tmp_path, pg):
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    http_port, ws_port = free_port(), free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(http_port),
                               "WY_PG_URL": pg.primary_url})
    lobby = daemon("lobby", env={"WY_LOBBY_WS_PORT": str(ws_port),
                                 "WY_LOBBY_AUTH_GRPC": auth.grpc_addr,
                                 "WY_LOBBY_NICK_COOLDOWN": "0s",
                                 "WY_PG_URL": pg.primary_url,
                                 "WY_PG_REPLICA_URL": pg.replica_url})
    base = "http://127.0.0.1:%d" % http_port
    url = "ws://127.0.0.1:%d/v1/lobby" % ws_port

    # Replica reads: the nickname set (primary) is read back at the next hello (replica).
    out = wait_until(lambda: try_login(base), timeout=30, what="a first login")
    c, w = wait_until(lambda: hello(url, out["access_token"]), timeout=30, interval=0.2,
                      what="welcome (auth keys fetched)")
    nick = "Rep" + uuid.uuid4().hex[:6]
    r = c.call(set_nickname=c.pb.SetNickname(nickname=nick))
    assert r.status.code == 0, r
    c.call(logout=c.pb.Logout())
    c.wait_closed()
    with open(pg.log("replica")) as f:
        before = f.read().count("lobby_nick_replica")
    c, w = hello(url, out["access_token"])
    assert w.welcome.nickname == nick
    c.close()
    with open(pg.log("replica")) as f:
        assert f.read().count("lobby_nick_replica") > before, "the hello's nickname read missed the replica"

    # Acknowledged logins, then the primary dies and the replica is promoted.
    acked = []
    for _ in range(20):
        r = device_login(base)
        assert r.status_code in (200, 201), r.text
        acked.append(r.json())
    pg.stop_primary()
    assert try_login(base) is None  # no primary: nothing is acknowledged meanwhile
    pg.promote_replica()
    after = wait_until(lambda: try_login(base), timeout=60, interval=0.5,
                       what="auth serving logins on the promoted replica")
    for _ in range(5):
        assert try_login(base) is not None
    # Lobby too: its claim takes the fence epoch from the new primary.
    c, w = wait_until(lambda: hello(url, after["access_token"]), timeout=60, interval=0.5,
                      what="lobby serving hellos on the promoted replica")
    assert w.welcome.account_id == after["account_id"]
    c.close()
    # Every login acknowledged before the stop is on the new primary: the accounts those first
    # logins created, and each answered refresh token works there (a login stores no session:
    # its token carries the family, whose key is on the new primary too).
    ids = ",".join("'%s'" % a["account_id"] for a in acked)
    got = pg.psql(pg.replica_port, "SELECT count(*) FROM auth.accounts WHERE id IN (%s)" % ids)
    assert got == str(len(acked)), got
    for a in acked:
        r = requests.post(base + "/v1/refresh", json={"refresh_token": a["refresh_token"]},
                          timeout=10)
        assert r.status_code == 200, r.text
    assert requests.get(auth.ops_url + "/readyz", timeout=5).status_code == 200
    assert requests.get(lobby.ops_url + "/readyz", timeout=5).status_code == 200
