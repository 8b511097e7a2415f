"""Chat sent from the game: a joined player's chat_send over its real wy-game WebSocket
becomes wy-chat's Send with the join ticket's account (zone, party, whisper, world), with
chat's checks (membership, mutes, the per-account rate limit) answering chat_error, and the
message delivered by wy.chat to the players it is for."""
import time
import uuid

import grpc
import pytest
import websocket

from harness.wait import wait_until  # noqa: F401
from test_game_chat import chat_stub, pb  # noqa: F401  (pb: a fixture)
from test_game_join import (DEADLINE, GameClient, clean_redis, signer, start_game,  # noqa: F401
                            start_world, ticket, wait_registered, world_stub)

RATE = 6


class Player(GameClient):
    """A game connection that answers chat_send calls and keeps the chat pushes."""

    def __init__(self, pb, url):
        super().__init__(pb, url)
        self.pushes = []

    def _next(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            op, data = self.ws.recv_data(control_frame=True)
            assert op != websocket.ABNF.OPCODE_CLOSE, "connection closed"
            if op != websocket.ABNF.OPCODE_BINARY:
                continue
            m = self.pb.ServerMessage.FromString(data)
            if m.WhichOneof("body") == "update":
                continue
            if m.WhichOneof("body") == "chat_message":
                self.pushes.append(m.chat_message)
            return m
        pytest.fail("nothing within %d s" % timeout)

    def chat(self, channel="", text="hi", to=""):
        rid = self.send(chat_send=self.pbl.ChatSend(channel_id=channel, to_account_id=to,
                                                    text=text))
        while True:
            m = self._next(DEADLINE)
            if m.request_id == rid:
                return m

    def wait_push(self, pred, what, timeout=30):
        for c in self.pushes:
            if pred(c):
                return c
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._next(end - time.monotonic())
            if self.pushes and pred(self.pushes[-1]):
                return self.pushes[-1]
        pytest.fail("no %s" % what)


@pytest.fixture
def game_chat(daemon, pb, clean_redis):  # noqa: F811
    chat = daemon("chat", env={"WY_REDIS_URL": clean_redis, "WY_CHAT_RATE_LIMIT": str(RATE),
                               "WY_CHAT_RATE_WINDOW": "1h"})
    w = start_world(daemon, clean_redis)
    g = start_game(daemon, w, WY_GAME_CAPACITY="50", WY_GAME_CHAT_GRPC=chat.grpc_addr)
    wst = world_stub(w, pb)
    entry = wait_registered(wst, pb, g)
    return g, wst, entry, chat_stub(chat, pb)


def join(pb, signer, g, wst, entry, zone):  # noqa: F811
    import lobby_pb2
    acct, ch = str(uuid.uuid4()), str(uuid.uuid4())
    p = wst.Place(pb[1].PlaceRequest(account_id=acct, character_id=ch, target_zone=zone),
                  timeout=DEADLINE)
    c = Player(pb, g.ws_url)
    c.pbl = lobby_pb2
    m = c.join(ticket(signer, g.instance_id, entry.incarnation, account=acct, character=ch,
                      zone=p.zone_id, inst=p.instance_id, x=p.position.x, y=p.position.y))
    assert m.WhichOneof("body") == "welcome", m
    c.account, c.instance = acct, p.instance_id
    return c


def refused(m):
    assert m.WhichOneof("body") == "chat_error", m
    return m.chat_error.code


def test_chat_send_from_the_game_connection(pb, signer, game_chat):  # noqa: F811
    import lobby_pb2 as L
    g, wst, entry, st = game_chat
    a = join(pb, signer, g, wst, entry, "oakvale")
    b = join(pb, signer, g, wst, entry, "oakvale")
    c = join(pb, signer, g, wst, entry, "meadow")
    assert a.instance == b.instance != c.instance
    # Zone: "zone" is the sender's zone instance (world's locator); its players get it.
    r = a.chat("zone", "hello oakvale")
    assert r.WhichOneof("body") == "chat_sent", r
    assert r.chat_sent.channel_id == "zone:" + a.instance and r.chat_sent.seq >= 1
    got = b.wait_push(lambda m: m.channel_id == r.chat_sent.channel_id, "a's zone message")
    # The sender is the ticket's account, whatever the client could claim.
    assert (got.text, got.sender_id, got.seq) == ("hello oakvale", a.account, r.chat_sent.seq)
    # Whisper to a player of another zone instance.
    w = a.chat(to=c.account, text="psst")
    assert w.WhichOneof("body") == "chat_sent" and w.chat_sent.channel_id.startswith("whisper:")
    got = c.wait_push(lambda m: m.channel_id == w.chat_sent.channel_id, "the whisper")
    assert (got.text, got.sender_id) == ("psst", a.account)
    # Party: members send and receive; a non-member is refused by chat.
    caller = pb[3].Caller(account_id=b.account, name="b")
    party = st.Create(pb[3].CreateRequest(caller=caller, kind=pb[3].KIND_PARTY, name="p"),
                      timeout=DEADLINE).channel_id
    st.Invite(pb[3].MemberRequest(caller=caller, channel_id=party, account_id=c.account),
              timeout=DEADLINE)
    st.Join(pb[3].MemberRequest(caller=pb[3].Caller(account_id=c.account), channel_id=party),
            timeout=DEADLINE)
    p = c.chat(party, "party time")
    assert p.WhichOneof("body") == "chat_sent" and p.chat_sent.channel_id == party, p
    b.wait_push(lambda m: m.channel_id == party and m.text == "party time", "the party message")
    assert refused(a.chat(party, "let me in")) == L.FORBIDDEN
    # World reaches every joined player; then c, in another instance, never saw a's zone
    # message (its pushes up to the world message are all it got).
    wm = b.chat("world", "marker")
    assert wm.WhichOneof("body") == "chat_sent"
    c.wait_push(lambda m: m.channel_id == "world" and m.seq == wm.chat_sent.seq, "the marker")
    assert not [m for m in c.pushes if m.channel_id.startswith("zone:")]
    # Bad input and a mute: chat's own answers, through the game.
    assert refused(a.chat("world", "")) == L.INVALID
    assert refused(a.chat("nope:1", "x")) == L.INVALID
    st.Mute(pb[3].MuteRequest(caller=pb[3].Caller(account_id=str(uuid.uuid4()), moderator=True),
                              account_id=b.account, duration_ms=60000), timeout=DEADLINE)
    assert refused(b.chat("world", "muted?")) == L.FORBIDDEN
    # Only moderators write to the system channel; a game caller never is one.
    assert refused(a.chat("system", "I am the admin")) == L.FORBIDDEN
    for p in (a, b, c):
        p.close()


def test_chat_rate_limit_through_the_game(pb, signer, game_chat):  # noqa: F811
    import lobby_pb2 as L
    g, wst, entry, st = game_chat
    a = join(pb, signer, g, wst, entry, "oakvale")
    answers = [a.chat("world", "spam %d" % i) for i in range(RATE + 5)]
    kinds = [m.WhichOneof("body") for m in answers]
    assert kinds == ["chat_sent"] * RATE + ["chat_error"] * 5, kinds
    assert {m.chat_error.code for m in answers[RATE:]} == {L.RATE_LIMITED}
    # The limit is the account's, whatever the connection: counted by chat in Redis.
    caller = pb[3].Caller(account_id=a.account)
    with pytest.raises(grpc.RpcError) as e:
        st.Send(pb[3].SendRequest(caller=caller, channel_id="world", text="via gRPC"),
                timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    a.close()


def test_chat_send_before_join_is_refused(pb, game_chat):  # noqa: F811
    import lobby_pb2
    g = game_chat[0]
    c = GameClient(pb, g.ws_url)
    c.send(chat_send=lobby_pb2.ChatSend(channel_id="world", text="hi"))
    m = c.recv()
    assert m.WhichOneof("body") == "error" and m.error.code == pb[0].INVALID
    c.close()


@pytest.fixture
def road_with_chat(daemon, stack, pb, clean_redis):  # noqa: F811
    """The real road: actor, world, wy-chat, a game wired to chat, a lobby wired to all."""
    actor = daemon("actor")
    chat = daemon("chat", env={"WY_REDIS_URL": clean_redis})
    w = start_world(daemon, clean_redis)
    g = start_game(daemon, w, WY_GAME_CHAT_GRPC=chat.grpc_addr)
    lobby = daemon("lobby", env={"WY_LOBBY_ACTOR_GRPC": actor.grpc_addr,
                                 "WY_LOBBY_WORLD_GRPC": w.grpc_addr,
                                 "WY_LOBBY_CHAT_GRPC": chat.grpc_addr,
                                 "WY_REDIS_URL": clean_redis})
    lobby.ws_url = "ws://127.0.0.1:%d/v1/lobby" % lobby.client_port
    wait_registered(world_stub(w, pb), pb, g)
    return actor, lobby


def lobby_push(c, pred, what, timeout=30):
    """The first chat_message push to lobby client c for which pred holds."""
    for m in c.pushes:
        if m.WhichOneof("body") == "chat_message" and pred(m.chat_message):
            return m.chat_message
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = c.recv()
        assert m is not None, "lobby closed the session waiting for " + what
        c.pushes.append(m)
        if m.WhichOneof("body") == "chat_message" and pred(m.chat_message):
            return m.chat_message
    pytest.fail("no %s on the lobby session" % what)


def test_game_chat_carries_the_speakers_character_name(daemon_log_dir, pb, road_with_chat):
    """A message sent from the game shows the speaker's character name (signed into the join
    ticket by lobby, from actor) to a lobby member and to a game member, as lobby sends
    show the sender's nickname."""
    import lobby_pb2 as L
    from test_enter_game import access_token, new_character
    from test_lobby import Client
    actor, lobby = road_with_chat
    apb = {"actor": __import__("actor_pb2"), "actor_grpc": __import__("actor_pb2_grpc")}

    def player(acct):
        ch = new_character(actor, apb, acct)
        lc = Client(lobby.ws_url)
        assert lc.hello(access_token(daemon_log_dir, acct)).status.code == L.OK
        r = lc.call(enter_game=L.EnterGame(character_id=ch.actor_id))
        assert r.status.code == L.OK, r
        gc = Player(pb, "ws://%s/v1/game" % r.entered_game.game_addr)
        gc.pbl = L
        m = gc.join(r.entered_game.ticket)
        assert m.WhichOneof("body") == "welcome", m
        gc.account, gc.instance = acct, r.entered_game.instance_id
        return ch, lc, gc

    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    a_char, a_lobby, a_game = player(alice)
    b_char, b_lobby, b_game = player(bob)
    assert a_game.instance == b_game.instance  # both in oakvale (the default zone)
    # A whisper from alice's game connection reaches bob's lobby session with her name.
    w = a_game.chat(to=bob, text="psst")
    assert w.WhichOneof("body") == "chat_sent", w
    got = lobby_push(b_lobby, lambda m: m.channel_id == w.chat_sent.channel_id, "the whisper")
    assert (got.text, got.sender_id, got.sender_name) == ("psst", alice, a_char.name)
    # A zone message reaches bob's game connection with her name too.
    z = a_game.chat("zone", "hello oakvale")
    assert z.WhichOneof("body") == "chat_sent", z
    got = b_game.wait_push(lambda m: m.channel_id == z.chat_sent.channel_id, "the zone message")
    assert (got.text, got.sender_id, got.sender_name) == ("hello oakvale", alice, a_char.name)
    # And the stored message (history) keeps it.
    h = b_lobby.call(chat_history=L.ChatHistory(channel_id=w.chat_sent.channel_id, limit=10))
    assert [(m.seq, m.sender_name) for m in h.chat_history_page.messages] == \
        [(w.chat_sent.seq, a_char.name)], h
    for c in (a_lobby, b_lobby, a_game, b_game):
        c.close()
