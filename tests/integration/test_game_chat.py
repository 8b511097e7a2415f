"""wy-game's chat delivery against real daemons (wy-chat on PostgreSQL, Redis and Kafka,
wy-world's locator, wy-game): every game instance consumes wy.chat and pushes each message to
its joined players by the channel's rules: a zone channel to the players of that zone
instance (never to those of another), whispers to the two accounts, world to everyone, each
channel in seq order with no gap and no duplicate."""
import concurrent.futures as cf
import time
import uuid

import grpc
import pytest
import websocket

from harness.kafka import series
from harness.wait import wait_until
from test_game_join import (DEADLINE, GameClient, clean_redis, signer, start_game,  # noqa: F401
                            start_world, ticket, wait_registered, world_stub)


@pytest.fixture
def pb(protos):
    import chat_pb2
    import chat_pb2_grpc
    import game_pb2
    import world_pb2
    import world_pb2_grpc
    return game_pb2, world_pb2, world_pb2_grpc, chat_pb2, chat_pb2_grpc


class ChatClient(GameClient):
    """A joined player that collects the chat pushes it receives (the simulation's updates,
    one per tick, are skipped)."""

    def __init__(self, pb, url):
        super().__init__(pb, url)
        self.got = []  # (channel_id, seq, text) in arrival order
        self.msgs = []  # the ChatMessages themselves

    def read_until(self, pred, what, timeout=30):
        """The first push, already received or read now, for which pred(channel, seq, text)
        holds; fails on a close, on a message other than chat or an update, or after
        timeout seconds (updates keep the socket busy, so its own timeout never fires)."""
        for m in self.msgs:
            if pred(m.channel_id, m.seq, m.text):
                return m
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            op, data = self.ws.recv_data(control_frame=True)  # socket timeout: DEADLINE
            assert op != websocket.ABNF.OPCODE_CLOSE, "connection closed waiting for " + what
            if op != websocket.ABNF.OPCODE_BINARY:
                continue
            m = self.pb.ServerMessage.FromString(data)
            if m.WhichOneof("body") == "update":
                continue
            assert m.WhichOneof("body") == "chat_message", m
            c = m.chat_message
            self.got.append((c.channel_id, c.seq, c.text))
            self.msgs.append(c)
            if pred(c.channel_id, c.seq, c.text):
                return c
        pytest.fail("no %s within %d s (got %r)" % (what, timeout, self.got[-5:]))

    def seqs(self, channel):
        return [s for ch, s, _ in self.got if ch == channel]


def chat_stub(d, pb):
    return pb[4].ChatStub(grpc.insecure_channel(d.grpc_addr))


def send(st, pb, account, channel="", text="hi", to=""):
    caller = pb[3].Caller(account_id=account, name=account[:8])
    return st.Send(pb[3].SendRequest(caller=caller, channel_id=channel, to_account_id=to,
                                     text=text), timeout=DEADLINE)


@pytest.fixture
def world_game_chat(daemon, pb, clean_redis):  # noqa: F811
    w = start_world(daemon, clean_redis)
    g = start_game(daemon, w, WY_GAME_CAPACITY="50")
    wst = world_stub(w, pb)
    entry = wait_registered(wst, pb, g)
    chat = daemon("chat", env={"WY_REDIS_URL": clean_redis, "WY_CHAT_RATE_LIMIT": "100000",
                               "WY_CHAT_RATE_WINDOW": "1s"})
    return g, wst, entry, chat_stub(chat, pb)


def join(pb, signer, g, wst, entry, zone):  # noqa: F811
    """A player placed by world in a zone (the locator chat reads) and joined on g."""
    acct, ch = str(uuid.uuid4()), str(uuid.uuid4())
    p = wst.Place(pb[1].PlaceRequest(account_id=acct, character_id=ch, target_zone=zone),
                  timeout=DEADLINE)
    assert p.game_id == g.instance_id
    c = ChatClient(pb, g.ws_url)
    m = c.join(ticket(signer, g.instance_id, entry.incarnation, account=acct, character=ch,
                      zone=p.zone_id, inst=p.instance_id, x=p.position.x, y=p.position.y))
    assert m.WhichOneof("body") == "welcome", m
    c.account, c.instance = acct, p.instance_id
    return c


def test_zone_and_whisper_reach_only_their_players(pb, signer, world_game_chat):  # noqa: F811
    g, wst, entry, st = world_game_chat
    a = join(pb, signer, g, wst, entry, "oakvale")
    b = join(pb, signer, g, wst, entry, "meadow")
    assert a.instance != b.instance
    before = series(g, "wy_game_chat_events_total") or 0
    ra = send(st, pb, a.account, "zone", "oak only")
    assert ra.channel_id == "zone:" + a.instance
    rb = send(st, pb, b.account, "zone", "meadow only")
    assert rb.channel_id == "zone:" + b.instance
    outsider = str(uuid.uuid4())
    rw = send(st, pb, outsider, text="psst", to=b.account)
    assert rw.channel_id.startswith("whisper:")
    got = a.read_until(lambda ch, s, t: ch == ra.channel_id, "a's zone message")
    assert (got.seq, got.text, got.sender_id, got.type) == (ra.seq, "oak only", a.account, "text")
    b.read_until(lambda ch, s, t: ch == rb.channel_id, "b's zone message")
    b.read_until(lambda ch, s, t: ch == rw.channel_id, "the whisper to b")
    # Every event handled here (their frames queued in order), then one world message: what
    # reached a before it is all a will ever get of the three.
    wait_until(lambda: series(g, "wy_game_chat_events_total") - before >= 3, 30,
               what="the three events handled by game")
    marker = send(st, pb, outsider, "world", "marker")
    a.read_until(lambda ch, s, t: ch == "world" and s == marker.seq, "the world marker")
    assert [ch for ch, _, _ in a.got if ch != "world"] == [ra.channel_id]
    b.read_until(lambda ch, s, t: ch == "world" and s == marker.seq, "the world marker")
    assert sorted(ch for ch, _, _ in b.got if ch != "world") == sorted([rb.channel_id,
                                                                       rw.channel_id])
    # a: its zone message and the marker; b: its zone message, the whisper and the marker
    assert series(g, "wy_game_chat_deliveries_total") == 5
    a.close()
    b.close()


def test_world_messages_in_seq_order_without_gap_or_duplicate(pb, signer, world_game_chat):  # noqa: F811,E501
    g, wst, entry, st = world_game_chat
    players = [join(pb, signer, g, wst, entry, z) for z in ("oakvale", "meadow", "oakvale")]
    senders = [str(uuid.uuid4()) for _ in range(4)]
    per_sender = 50

    def burst(s):
        return [send(st, pb, s, "world", "%s-%d" % (s[:8], i)).seq for i in range(per_sender)]

    with cf.ThreadPoolExecutor(len(senders)) as ex:
        sent = sorted(q for qs in ex.map(burst, senders) for q in qs)
    assert len(set(sent)) == len(sent) == len(senders) * per_sender
    last = sent[-1]
    for p in players:
        p.read_until(lambda ch, s, t: ch == "world" and s == last, "the last world message")
        seqs = p.seqs("world")
        # One contiguous run of the channel's sequence (other tests may have used the channel
        # before), holding every message sent here.
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "gap, duplicate or reorder"
        assert set(sent) <= set(seqs)
        p.close()
    # Each message encoded once per instance and queued to the three players.
    assert series(g, "wy_game_chat_deliveries_total") >= 3 * len(sent)
