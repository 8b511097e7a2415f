"""Issue 11: lobby hellos without a round trip to auth. Lobby verifies the access token with
auth's keys and reads auth's revocation keys (auth:{revoked}:sid:*, auth:{revoked}:acct:*)
right before its claim (one MGET in their slot), so a logged-out session and a banned account
are refused with auth stopped; a
live token is welcomed with auth stopped (no Introspect per hello); and without auth's marker
auth:{revoked}:loaded (Redis lost the revocation state) lobby asks auth and, auth being down,
fails closed with 4007 (issue 10)."""
import os
import subprocess
import uuid

import grpc
import requests

from harness import rkeys
from harness.wait import wait_until
from test_lobby import Client, series


def device_login(http_port):
    r = requests.post("http://127.0.0.1:%d/v1/login" % http_port,
                      json={"method": "device", "device_id": "dev-" + uuid.uuid4().hex}, timeout=15)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_revoked_and_banned_tokens_refused_by_lobby_with_auth_stopped(daemon, protos, free_port,
                                                                      build_dir, tmp_path, stack):
    import auth_pb2
    import auth_pb2_grpc
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    http_port = free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(http_port)})
    logged_out, banned, live = device_login(http_port), device_login(http_port), device_login(http_port)
    r = requests.post("http://127.0.0.1:%d/v1/logout" % http_port,
                      headers={"Authorization": "Bearer " + logged_out["access_token"]}, timeout=15)
    assert r.status_code == 204, r.text
    with grpc.insecure_channel(auth.grpc_addr) as ch:
        auth_pb2_grpc.AuthStub(ch).Revoke(
            auth_pb2.RevokeRequest(account_id=banned["account_id"], reason="ban", ban=True), timeout=5)
    wait_until(lambda: stack.redis_cli("EXISTS", rkeys.REVOKED_LOADED) == "1", timeout=15,
               what="auth's revocation state complete in Redis")
    # Auth goes away before this lobby starts: lobby's Kafka cache of revocations starts empty
    # (it reads wy.account from its end) and there is nobody to ask; the keys are static.
    auth.stop()
    ws_port = free_port()
    lobby = daemon("lobby", env={"WY_LOBBY_WS_PORT": str(ws_port), "WY_LOBBY_AUTH_GRPC": auth.grpc_addr,
                                 "WY_LOBBY_TOKEN_KEYS_DIR": str(tmp_path)})
    url = "ws://127.0.0.1:%d/v1/lobby" % ws_port

    c = Client(url)
    w = c.hello(live["access_token"])
    assert w.status.code == 0, w
    assert w.welcome.account_id == live["account_id"]
    c.close()

    # (The ban's key is account-wide; a rebuild of the revocation state from PostgreSQL also
    # writes the banned account's sessions, so either key may be the one that refuses it.)
    for tok, why in ((logged_out["access_token"], ("session revoked",)),
                     (banned["access_token"], ("account revoked", "session revoked"))):
        c = Client(url)
        r = c.hello(tok)
        assert r.status.code == c.pb.UNAUTHENTICATED, r
        assert any(w in r.status.message for w in why), r.status.message
        assert c.wait_closed() == 4001
    assert series(lobby, "wy_lobby_hello_revoked_total", "") == 2
    assert series(lobby, "wy_lobby_hello_introspect_total", "") == 0

    # Fail closed: without the marker a "not revoked" from Redis is not trusted; auth would be
    # asked, and auth is down: 4007, retry.
    stack.redis_cli("DEL", rkeys.REVOKED_LOADED)
    c = Client(url)
    r = c.hello(live["access_token"])
    assert r.status.code == c.pb.UNAVAILABLE, r
    assert c.wait_closed() == 4007
    assert series(lobby, "wy_lobby_hello_introspect_total", "") == 1
    # A revoked token is still refused by its key without asking anyone.
    c = Client(url)
    r = c.hello(banned["access_token"])
    assert r.status.code == c.pb.UNAUTHENTICATED, r
    assert c.wait_closed() == 4001


def test_hello_asks_auth_when_redis_lacks_auths_revocation_state(daemon, protos, free_port,
                                                                build_dir, tmp_path, stack):
    """A lobby whose Redis does not hold auth's marker (here: another database of the same
    server, as a deployment with separate Redis instances) asks auth at every hello
    (Introspect, which reads its own Redis or PostgreSQL): a live token is welcomed, a
    logged-out one refused."""
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    http_port = free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(http_port)})
    out, live = device_login(http_port), device_login(http_port)
    r = requests.post("http://127.0.0.1:%d/v1/logout" % http_port,
                      headers={"Authorization": "Bearer " + out["access_token"]}, timeout=15)
    assert r.status_code == 204, r.text
    ws_port = free_port()
    other_db = stack.redis_url.rsplit("/", 1)[0] + "/1"
    lobby = daemon("lobby", env={"WY_LOBBY_WS_PORT": str(ws_port), "WY_LOBBY_AUTH_GRPC": auth.grpc_addr,
                                 "WY_LOBBY_TOKEN_KEYS_DIR": str(tmp_path), "WY_REDIS_URL": other_db})
    url = "ws://127.0.0.1:%d/v1/lobby" % ws_port
    c = Client(url)
    w = c.hello(live["access_token"])
    assert w.status.code == 0, w
    c.close()
    assert series(lobby, "wy_lobby_hello_introspect_total", "") == 1
    # Refused by auth's answer, or earlier by the wy.account event of the logout if this
    # instance consumed it already (the outbox relays it asynchronously): never welcomed.
    c = Client(url)
    r = c.hello(out["access_token"])
    assert r.status.code == c.pb.UNAUTHENTICATED, r
    assert c.wait_closed() == 4001
    assert series(lobby, "wy_lobby_hello_revoked_total", "") == 0
