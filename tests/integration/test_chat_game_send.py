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
