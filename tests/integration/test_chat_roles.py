"""Chat moderation by the access token's role, end to end through the real wy-auth, wy-lobby
and wy-chat: an operator grants the role in PostgreSQL (auth.set_roles), auth signs it into
the token's "roles" claim, lobby reads it from the token it verified and passes it to chat;
without the role moderation is refused, a forged token carrying the claim is refused at
hello. And offline whispers at least once: they stay with wy-chat until the client
acknowledged them, so a lobby killed (kill -9) after fetching them loses nothing."""
import base64
import json
import os
import subprocess
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.wait import wait_until
from test_lobby import Client, keys, lobby_env, token  # noqa: F401  (keys: a fixture)

DEADLINE = 10


def claims_of(tok):
    part = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Auth:
    def __init__(self, daemon, build_dir, tmp_path, free_port):
        subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                       check=True, timeout=10)
        self.port = free_port()
        self.d = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path),
                                     "WY_AUTH_SIGNING_KID": "k1",
                                     "WY_AUTH_HTTP_PORT": str(self.port)})

    def login(self, device):
        r = requests.post("http://127.0.0.1:%d/v1/login" % self.port,
                          json={"method": "device", "device_id": device}, timeout=15)
        assert r.status_code in (200, 201), r.text
        return r.json()


def stack_up(daemon, build_dir, tmp_path, free_port):
    auth = Auth(daemon, build_dir, tmp_path, free_port)
    chat = daemon("chat", env={"WY_CHAT_RATE_LIMIT": "1000", "WY_CHAT_RATE_WINDOW": "1s"})
    ws_port = free_port()
    lobby = daemon("lobby", env={"WY_LOBBY_WS_PORT": str(ws_port),
                                 "WY_LOBBY_AUTH_GRPC": auth.d.grpc_addr,
                                 "WY_LOBBY_CHAT_GRPC": chat.grpc_addr})
    return auth, chat, "ws://127.0.0.1:%d/v1/lobby" % ws_port


def connect(url, tok):
    def hello_ok():
        c = Client(url)
        w = c.hello(tok)
        if w is not None and w.status.code == 0:
            return c
        c.close()
        return None
    return wait_until(hello_ok, timeout=20, interval=0.2, what="welcome (auth keys fetched)")


def test_moderator_role_from_auth_token_claims(daemon, stack, build_dir, tmp_path, free_port,
                                               protos):
    auth, chat, url = stack_up(daemon, build_dir, tmp_path, free_port)
    mod_dev, bob_dev = "mod-" + uuid.uuid4().hex, "bob-" + uuid.uuid4().hex
    mod_login, bob_login = auth.login(mod_dev), auth.login(bob_dev)
    mod_acct, bob_acct = mod_login["account_id"], bob_login["account_id"]
    assert "roles" not in claims_of(bob_login["access_token"])
    bob = connect(url, bob_login["access_token"])
    pb = bob.pb
    said = bob.call(chat_send=pb.ChatSend(channel_id="world", text="first!"))
    assert said.status.code == 0, said.status
    seq = said.chat_sent.seq
    # No role: every moderation request is refused (lobby answers from the token's claims,
    # and wy-chat would refuse too: it checks the caller's role itself).
    mute = pb.ChatMute(account_id=mod_acct, duration_ms=60000, reason="x")
    for body in ({"chat_mute": mute}, {"chat_reports": pb.ChatReports()},
                 {"chat_resolve_report": pb.ChatResolveReport(report_id=1)}):
        r = bob.call(**body)
        assert r.status.code == pb.FORBIDDEN, (body, r.status)
    r = bob.call(chat_report=pb.ChatMessageRef(channel_id="world", seq=seq, reason="mine"))
    assert r.status.code == 0, r.status
    # The operator grants the role; auth signs it into the next tokens of the account.
    out = stack.psql("SELECT auth.set_roles('%s', ARRAY['moderator'])" % mod_acct)
    assert out.strip() == "{moderator}"
    granted = wait_until(lambda: (lambda t: t if claims_of(t["access_token"]).get("roles") ==
                                  ["moderator"] else None)(auth.login(mod_dev)),
                         timeout=30, interval=0.5, what="a token with the moderator role")
    mod = connect(url, granted["access_token"])
    r = mod.call(chat_mute=pb.ChatMute(account_id=bob_acct, channel_id="world",
                                       duration_ms=60000, reason="spam"))
    assert r.status.code == 0 and r.chat_muted.until_ms > time.time() * 1000, r
    r = bob.call(chat_send=pb.ChatSend(channel_id="world", text="can I talk?"))
    assert r.status.code == pb.FORBIDDEN, r.status
    rep = mod.call(chat_reports=pb.ChatReports(limit=200))
    assert rep.status.code == 0, rep.status
    mine = [x for x in rep.chat_report_list.reports if x.reporter_id == bob_acct]
    assert len(mine) == 1 and mine[0].message.text == "first!" and mine[0].seq == seq
    r = mod.call(chat_resolve_report=pb.ChatResolveReport(report_id=mine[0].report_id,
                                                          resolution="self-report"))
    assert r.status.code == 0, r.status
    r = mod.call(chat_delete=pb.ChatMessageRef(channel_id="world", seq=seq, reason="cleanup"))
    assert r.status.code == 0, r.status
    r = mod.call(chat_mute=pb.ChatMute(account_id=bob_acct, channel_id="world", duration_ms=0))
    assert r.status.code == 0 and r.chat_muted.until_ms == 0
    assert bob.call(chat_send=pb.ChatSend(channel_id="world", text="thanks")).status.code == 0
    log = stack.psql("SELECT action FROM chat.moderation_log WHERE actor_id = '%s' ORDER BY id"
                     % mod_acct).split()
    assert log == ["mute", "resolve_report", "delete", "unmute"]
    # A forged token claiming the role (another key under auth's kid) is refused at hello.
    now = int(time.time())
    forged = jwt.encode({"iss": "wyvern-auth", "aud": "wyvern", "sub": bob_acct,
                         "sid": uuid.uuid4().hex, "jti": uuid.uuid4().hex, "iat": now,
                         "exp": now + 600, "roles": ["moderator"]},
                        Ed25519PrivateKey.generate(), algorithm="EdDSA",
                        headers={"kid": "k1"})
    c = Client(url)
    r = c.hello(forged)
    assert r.status.code == pb.UNAUTHENTICATED and c.wait_closed() == 4001
    # Taking the role away: the account's next tokens carry none, and moderation is refused.
    assert stack.psql("SELECT auth.set_roles('%s', ARRAY[]::text[])" % mod_acct).strip() == "{}"
    taken = wait_until(lambda: (lambda t: t if "roles" not in claims_of(t["access_token"])
                                else None)(auth.login(mod_dev)),
                       timeout=30, interval=0.5, what="a token without the role")
    mod.close()
    mod = connect(url, taken["access_token"])
    r = mod.call(chat_mute=pb.ChatMute(account_id=bob_acct, duration_ms=1000))
    assert r.status.code == pb.FORBIDDEN, r.status
    # An unknown role is refused by the column's check.
    try:
        stack.psql("SELECT auth.set_roles('%s', ARRAY['god'])" % mod_acct)
        raise AssertionError("an unknown role was granted")
    except RuntimeError as e:
        assert "accounts_roles_known" in str(e)


def test_roles_claim_read_from_the_verified_token_only(daemon, keys, free_port,  # noqa: F811
                                                      protos):
    """Lobby with static keys: the role comes from a verified token's "roles" claim; an
    unknown role gives nothing, a malformed claim makes the token invalid."""
    chat = daemon("chat", env={"WY_CHAT_RATE_LIMIT": "1000", "WY_CHAT_RATE_WINDOW": "1s"})
    d = daemon("lobby", env=lobby_env(keys, free_port, CHAT_GRPC=chat.grpc_addr))
    url = "ws://127.0.0.1:%s/v1/lobby" % d.env["WY_LOBBY_WS_PORT"]
    now = int(time.time())

    def tok(acct, roles):
        claims = {"iss": "wyvern-auth", "aud": "wyvern", "sub": acct, "sid": uuid.uuid4().hex,
                  "jti": uuid.uuid4().hex, "iat": now, "exp": now + 600, "roles": roles}
        return jwt.encode(claims, keys[1], algorithm="EdDSA", headers={"kid": "test-key-1"})

    target = str(uuid.uuid4())
    for roles, want in ((["moderator"], 0), (["admin", "Moderator"], 4), ([], 4)):
        c = Client(url)
        assert c.hello(tok(str(uuid.uuid4()), roles)).status.code == 0
        r = c.call(chat_mute=c.pb.ChatMute(account_id=target, duration_ms=1000))
        assert r.status.code == want, (roles, r.status)  # 4: FORBIDDEN
        c.close()
    for bad in ("moderator", [1], ["x"] * 17):
        c = Client(url)
        r = c.hello(tok(str(uuid.uuid4()), bad))
        assert r.status.code == c.pb.UNAUTHENTICATED and c.wait_closed() == 4001, bad


def test_chat_moderators_setting_applies_through_lobby(daemon, keys, free_port,  # noqa: F811
                                                      protos):
    """An account of WY_CHAT_MODERATORS is a moderator whatever its token says, through lobby
    too (lobby lets wy-chat decide): it reviews reports and mutes; an account neither listed
    nor with the role is refused FORBIDDEN with chat's reason."""
    op, bob, alice = (str(uuid.uuid4()) for _ in range(3))
    chat = daemon("chat", env={"WY_CHAT_RATE_LIMIT": "1000", "WY_CHAT_RATE_WINDOW": "1s",
                               "WY_CHAT_MODERATORS": "someone-else," + op})
    d = daemon("lobby", env=lobby_env(keys, free_port, CHAT_GRPC=chat.grpc_addr))
    url = "ws://127.0.0.1:%s/v1/lobby" % d.env["WY_LOBBY_WS_PORT"]
    sessions = {}
    for acct in (op, bob, alice):
        sessions[acct] = Client(url)
        assert sessions[acct].hello(token(keys, acct)).status.code == 0  # no roles claim
    pb = sessions[op].pb
    said = sessions[alice].call(chat_send=pb.ChatSend(channel_id="world", text="spam spam"))
    assert said.status.code == 0, said.status
    r = sessions[bob].call(chat_report=pb.ChatMessageRef(channel_id="world",
                                                         seq=said.chat_sent.seq, reason="spam"))
    assert r.status.code == 0, r.status
    for body in ({"chat_reports": pb.ChatReports()},
                 {"chat_mute": pb.ChatMute(account_id=alice, duration_ms=60000)},
                 {"chat_resolve_report": pb.ChatResolveReport(report_id=1)}):
        r = sessions[bob].call(**body)
        assert r.status.code == pb.FORBIDDEN and "moderators" in r.status.message, \
            (body, r.status)
    rep = sessions[op].call(chat_reports=pb.ChatReports(limit=200))
    assert rep.status.code == 0, rep.status
    mine = [x for x in rep.chat_report_list.reports if x.reporter_id == bob]
    assert len(mine) == 1 and mine[0].message.text == "spam spam", rep
    r = sessions[op].call(chat_resolve_report=pb.ChatResolveReport(report_id=mine[0].report_id,
                                                                  resolution="ok"))
    assert r.status.code == 0, r.status
    r = sessions[op].call(chat_mute=pb.ChatMute(account_id=alice, duration_ms=60000))
    assert r.status.code == 0 and r.chat_muted.until_ms > time.time() * 1000, r
    r = sessions[alice].call(chat_send=pb.ChatSend(channel_id="world", text="still here?"))
    assert r.status.code == pb.FORBIDDEN, r.status
    for c in sessions.values():
        c.close()


def test_offline_whisper_survives_lobby_kill9_until_acked(daemon, stack, keys,  # noqa: F811
                                                           free_port, protos):
    import chat_pb2
    import chat_pb2_grpc
    import grpc
    chat = daemon("chat", env={"WY_CHAT_RATE_LIMIT": "1000", "WY_CHAT_RATE_WINDOW": "1s"})
    env = lobby_env(keys, free_port, CHAT_GRPC=chat.grpc_addr, SESSION_TTL="2s",
                    FENCE_TIME="1s")
    lobby = daemon("lobby", env=env)
    url = "ws://127.0.0.1:%s/v1/lobby" % env["WY_LOBBY_WS_PORT"]
    st = chat_pb2_grpc.ChatStub(grpc.insecure_channel(chat.grpc_addr))
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    sent = [st.Send(chat_pb2.SendRequest(caller=chat_pb2.Caller(account_id=alice, name="alice"),
                                         to_account_id=bob, text="msg %d" % i),
                    timeout=DEADLINE) for i in range(3)]
    assert all(s.offline for s in sent)
    cid = sent[0].channel_id

    def rows():
        return int(stack.psql("SELECT count(*) FROM chat.offline_whispers WHERE account_id = "
                              "'%s'" % bob))

    def offline_pushes(c, n):
        c.ws.settimeout(DEADLINE)
        got = [m.chat_message for m in c.pushes if m.WhichOneof("body") == "chat_message"]
        while len(got) < n:
            m = c.recv()
            assert m is not None, "closed before the offline whispers"
            if m.WhichOneof("body") == "chat_message":
                got.append(m.chat_message)
        return got

    assert rows() == 3
    # bob logs in; lobby fetches the whispers and pushes them; bob does not acknowledge.
    c = Client(url)
    assert c.hello(token(keys, bob)).status.code == 0
    got = offline_pushes(c, 3)
    assert [(m.channel_id, m.seq, m.text, m.offline) for m in got] == \
        [(cid, i + 1, "msg %d" % i, True) for i in range(3)]
    ids = [m.offline_id for m in got]
    assert ids == sorted(ids) and ids[0] > 0
    # Fetched and pushed, not acknowledged: still all with wy-chat. lobby dies (kill -9).
    assert rows() == 3
    lobby.kill9()
    c.close()
    lobby = daemon("lobby", env=env)
    # Next login: the same messages again (the client drops repeats by channel + seq); an
    # ack of part of them removes exactly that part.
    c = wait_until(lambda: (lambda x: x if x.hello(token(keys, bob)).status.code == 0 else
                            x.close())(Client(url)), timeout=20, interval=0.3,
                   what="bob's next login (the killed session's fence)")
    again = offline_pushes(c, 3)
    assert [(m.seq, m.offline_id) for m in again] == [(m.seq, m.offline_id) for m in got]
    r = c.call(chat_offline_ack=c.pb.ChatOfflineAck(up_to_id=again[0].offline_id))
    assert r.status.code == 0 and r.WhichOneof("body") == "chat_done", r
    assert rows() == 2
    # An ack past what this session was pushed removes only what it was pushed.
    r = c.call(chat_offline_ack=c.pb.ChatOfflineAck(up_to_id=again[-1].offline_id + 1000))
    assert r.status.code == 0
    assert rows() == 0
    c.close()
    # Nothing left: a later login gets no offline push (the history still has them).
    more = st.Send(chat_pb2.SendRequest(caller=chat_pb2.Caller(account_id=alice), to_account_id=bob,
                                        text="last"), timeout=DEADLINE)
    assert more.offline and rows() == 1
    c = wait_until(lambda: (lambda x: x if x.hello(token(keys, bob)).status.code == 0 else
                            x.close())(Client(url)), timeout=20, interval=0.3,
                   what="bob's third login")
    last = offline_pushes(c, 1)
    assert [(m.seq, m.text) for m in last] == [(4, "last")]
    c.close()
