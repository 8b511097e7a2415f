"""wy-lobby with the real wy-auth: tokens from auth's HTTP API, keys from Auth.GetKeys,
revocation from Auth.Introspect at hello, and a ban (Auth.Revoke -> wy.account
account.session_revoked) disconnecting the lobby session within 1 s."""
import os
import subprocess
import time
import uuid

import grpc
import websocket
import requests

from harness.wait import wait_until
from test_lobby import Client


def test_real_auth_token_and_ban_disconnects_within_1s(daemon, protos, free_port, build_dir,
                                                       tmp_path):
    import auth_pb2
    import auth_pb2_grpc
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    http_port = free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(http_port)})
    r = requests.post("http://127.0.0.1:%d/v1/login" % http_port,
                      json={"method": "device", "device_id": "dev-" + uuid.uuid4().hex},
                      timeout=15)
    assert r.status_code in (200, 201), r.text
    tok = r.json()["access_token"]
    ws_port = free_port()
    lobby = daemon("lobby", env={"WY_LOBBY_WS_PORT": str(ws_port),
                                 "WY_LOBBY_AUTH_GRPC": auth.grpc_addr})
    lobby.wait_log(lambda rec: rec.get("msg") == "kafka partitions assigned", timeout=30)
    url = "ws://127.0.0.1:%d/v1/lobby" % ws_port

    def hello_ok():
        c = Client(url)
        w = c.hello(tok)
        if w is not None and w.status.code == 0:
            return c, w
        c.close()
        return None
    c, w = wait_until(hello_ok, timeout=15, interval=0.2, what="welcome (keys fetched)")
    account = w.welcome.account_id
    assert account
    # A new instance consumes Kafka from the latest offsets once they are looked
    # up (about a second after start): prove its event pipeline is live with a
    # notice before timing how fast a ban arrives through it.
    import lobby_pb2
    import lobby_pb2_grpc

    def notice_arrived():
        with grpc.insecure_channel(lobby.grpc_addr) as lch:
            lobby_pb2_grpc.LobbyStub(lch).Notify(
                lobby_pb2.NotifyNotice(account_id=account, kind="info", text="probe"), timeout=5)
        c.ws.settimeout(0.5)
        try:
            m = c.recv()
        except websocket.WebSocketTimeoutException:
            return False
        return m is not None and m.WhichOneof("body") == "notice"
    wait_until(notice_arrived, timeout=30, interval=0.1, what="lobby consuming Kafka events")
    c.ws.settimeout(10)
    with grpc.insecure_channel(auth.grpc_addr) as ch:
        auth_pb2_grpc.AuthStub(ch).Revoke(
            auth_pb2.RevokeRequest(account_id=account, reason="ban", ban=True), timeout=5)
    banned = time.monotonic()
    assert c.wait_closed(timeout=5) == 4001
    assert time.monotonic() - banned <= 1.0
    assert any(m.WhichOneof("body") == "kicked" for m in c.pushes)
    # The revoked token is refused at the next hello (Introspect and the event cache).
    c2 = Client(url)
    r2 = c2.hello(tok)
    assert r2.status.code == c2.pb.UNAUTHENTICATED
    assert c2.wait_closed() == 4001
