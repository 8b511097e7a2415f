"""Chat end to end: players on WebSocket clients of two wy-lobby instances, wy-chat, wy-world
(with a fake game heartbeating) and the real Redis, PostgreSQL and Kafka. A whisper between
players on two lobby instances; zone chat reaching only the players of one zone instance and
following a player moved by World.Transfer; party chat after invite and kick; an offline
whisper delivered at the next login; and ordering: 10 senders x 1,000 messages into one
channel with members on both lobby instances and one wy-game instance, every member receiving
all of them in sequence order with no gap and no duplicate, also while one lobby instance is
restarted (its clients resume from the last sequence they saw)."""
import base64
import os
import re
import threading
import time
import uuid

import grpc
import jwt
import pytest
import websocket
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.daemon import TICKET_KID, ticket_test_keys
from harness.ports import free_port
from harness.wait import wait_until

ISS, AUD, KID = "wyvern-auth", "wyvern", "chat-e2e"
DEADLINE = 15
_db = iter(range(11, 16))  # Redis databases of their own (world's registry is cluster-wide)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("chatkeys")
    priv = Ed25519PrivateKey.generate()
    pub = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    (d / (KID + ".pem")).write_bytes(pub)
    return str(d), priv


def token(keys, account):
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": account, "sid": uuid.uuid4().hex,
              "jti": uuid.uuid4().hex, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, keys[1], algorithm="EdDSA", headers={"kid": KID})


class Player:
    """One lobby client: a reader thread files responses by request_id and keeps pushes;
    `view(channel)` applies a channel's pushes the way a client must: in seq order, dropping
    what it already has and filling a gap from chat_history (forward from its last seq)."""

    def __init__(self, keys, account, url):
        import lobby_pb2
        self.pb, self.keys, self.account = lobby_pb2, keys, account
        self.lock = threading.Condition()
        self.last = {}       # channel -> last seq applied
        self.seen = {}       # channel -> [messages applied, in order]
        self.history_fills = 0  # gaps filled from history
        self.connect(url)

    def connect(self, url):
        self.url = url
        self.ws = websocket.create_connection(url, timeout=DEADLINE)
        self.ws.settimeout(None)  # the reader blocks; call() bounds each wait itself
        self.responses, self.pushes, self.req, self.closed = {}, [], 0, False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        r = self.call(hello=self.pb.Hello(access_token=token(self.keys, self.account)))
        assert r.status.code == 0, r
        return r

    def _read(self):
        ws = self.ws
        try:
            while True:
                op, data = ws.recv_data(control_frame=True)
                if op == websocket.ABNF.OPCODE_CLOSE:
                    break
                if op != websocket.ABNF.OPCODE_BINARY:
                    continue
                m = self.pb.ServerMessage()
                m.ParseFromString(data)
                with self.lock:
                    if m.request_id:
                        self.responses[m.request_id] = m
                    else:
                        self.pushes.append(m)
                    self.lock.notify_all()
        except Exception:
            pass
        with self.lock:
            if ws is self.ws:
                self.closed = True
            self.lock.notify_all()

    def call(self, **body):
        with self.lock:
            self.req += 1
            rid = self.req
        self.ws.send_binary(self.pb.ClientMessage(request_id=rid, **body).SerializeToString())
        with self.lock:
            ok = self.lock.wait_for(lambda: rid in self.responses or self.closed, DEADLINE)
            assert ok and rid in self.responses, "no answer to %s (%s, closed %s, pushes %d, " \
                "reader alive %s)" % (body, self.url, self.closed, len(self.pushes),
                                      self.reader.is_alive())
            return self.responses.pop(rid)

    def ok(self, **body):
        r = self.call(**body)
        assert r.status.code == 0, (body, r.status)
        return r

    def send(self, channel="", text="hi", to=""):
        return self.ok(chat_send=self.pb.ChatSend(channel_id=channel, to_account_id=to,
                                                  text=text)).chat_sent

    def chat_pushes(self, channel=None):
        with self.lock:
            return [p.chat_message for p in self.pushes if p.HasField("chat_message") and
                    (channel is None or p.chat_message.channel_id == channel)]

    def follow(self, channel, last_seq):
        """Starts applying channel's messages after last_seq."""
        self.last[channel], self.seen[channel] = last_seq, []

    def history_after(self, channel, after):
        out = []
        while True:
            page = self.ok(chat_history=self.pb.ChatHistory(
                channel_id=channel, after_seq=after, forward=True, limit=200)).chat_history_page
            out += list(page.messages)
            if not page.more or not page.messages:
                return out
            after = page.messages[-1].seq

    def view(self, channel, upto=None):
        """Applies the pushes of channel received so far; fills gaps from history (and, with
        upto, everything up to that seq). Returns the applied messages."""
        with self.lock:
            pushes, self.pushes = self.pushes, [p for p in self.pushes
                                                if not (p.HasField("chat_message") and
                                                        p.chat_message.channel_id == channel)]
        for p in pushes:
            if not p.HasField("chat_message") or p.chat_message.channel_id != channel:
                continue
            self._apply(channel, p.chat_message)
        if upto is not None and self.last[channel] < upto:
            for m in self.history_after(channel, self.last[channel]):
                self._apply(channel, m)
        return self.seen[channel]

    def _apply(self, channel, m):
        if m.seq <= self.last[channel]:
            return  # a duplicate (redelivered, or already fetched from history)
        if m.seq > self.last[channel] + 1:
            self.history_fills += 1
            for h in self.history_after(channel, self.last[channel]):
                if h.seq < m.seq and h.seq > self.last[channel]:
                    self.seen[channel].append(h)
                    self.last[channel] = h.seq
        assert m.seq == self.last[channel] + 1, (channel, m.seq, self.last[channel])
        self.seen[channel].append(m)
        self.last[channel] = m.seq

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


@pytest.fixture
def world_pb(protos):
    import world_pb2
    import world_pb2_grpc
    return world_pb2, world_pb2_grpc


@pytest.fixture
def cluster(daemon, stack, keys, protos):
    """wy-world, wy-chat and two wy-lobby instances on a Redis database of their own."""
    db = next(_db)
    stack.redis_cli("-n", str(db), "FLUSHDB")
    redis_url = re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1)
    world = daemon("world", env={"WY_REDIS_URL": redis_url})
    chat = daemon("chat", env={"WY_REDIS_URL": redis_url, "WY_CHAT_RATE_LIMIT": "100000",
                               "WY_CHAT_RATE_WINDOW": "1s", "WY_PG_POOL_SIZE": "8"})

    def lobby_env(port):
        return {"WY_REDIS_URL": redis_url, "WY_LOBBY_WS_PORT": str(port),
                "WY_LOBBY_TOKEN_KEYS_DIR": keys[0], "WY_LOBBY_CHAT_GRPC": chat.grpc_addr,
                "WY_LOBBY_MAX_MSGS_PER_SEC": "100000", "WY_LOBBY_IDLE_TIMEOUT": "120s",
                "WY_LOBBY_HEARTBEAT_INTERVAL": "60s", "WY_LOBBY_SESSION_TTL": "120s"}

    lobbies = []
    for _ in range(2):
        port = free_port()
        d = daemon("lobby", env=lobby_env(port))
        d.ws_url = "ws://127.0.0.1:%d/v1/lobby" % port
        d.port = port
        lobbies.append(d)
    players = []

    class Cluster:
        pass

    c = Cluster()
    c.world, c.chat, c.lobbies, c.db, c.redis_url = world, chat, lobbies, db, redis_url
    c.lobby_env, c.daemon = lobby_env, daemon

    def player(i, account=None):
        p = Player(keys, account or str(uuid.uuid4()), lobbies[i].ws_url)
        players.append(p)
        return p

    c.player = player
    yield c
    for p in players:
        p.close()


def test_whisper_between_two_lobby_instances_and_offline_at_next_login(cluster):
    a, b = cluster.player(0), cluster.player(1)
    sent = a.send(to=b.account, text="psst, over here")
    assert not sent.offline and sent.seq == 1
    wait_until(lambda: b.chat_pushes(sent.channel_id), what="whisper on the other instance")
    m = b.chat_pushes(sent.channel_id)[0]
    assert (m.seq, m.text, m.sender_id, m.type) == (1, "psst, over here", a.account, "text")
    wait_until(lambda: a.chat_pushes(sent.channel_id), what="sender's own copy")
    # Offline: kept, then pushed right after the next welcome.
    c_account = str(uuid.uuid4())
    off = a.send(to=c_account, text="see you later")
    assert off.offline
    c = cluster.player(1, c_account)
    # Pushed from chat.offline_whispers right after the welcome (a live push of the same
    # message may come too if the event reached lobby after the login: same seq, the client
    # keeps one).
    wait_until(lambda: [m for m in c.chat_pushes(off.channel_id) if m.offline],
               what="offline whisper at login")
    m = [m for m in c.chat_pushes(off.channel_id) if m.offline][0]
    assert (m.text, m.seq, m.sender_id) == ("see you later", off.seq, a.account)
    assert m.offline_id > 0
    first_id = m.offline_id
    c.close()
    # Not acknowledged: kept, and pushed again at the next login (on the other instance).
    c = cluster.player(0, c_account)
    wait_until(lambda: [m for m in c.chat_pushes(off.channel_id) if m.offline],
               what="the unacknowledged whisper again")
    m = [m for m in c.chat_pushes(off.channel_id) if m.offline][0]
    assert (m.seq, m.offline_id) == (off.seq, first_id)
    done = c.ok(chat_offline_ack=c.pb.ChatOfflineAck(up_to_id=m.offline_id))
    assert done.WhichOneof("body") == "chat_done"
    c.close()
    c = cluster.player(0, c_account)  # acknowledged: not pushed again
    # A whisper sent now arrives live, and is the only push of that channel (a second
    # offline copy would come before it: the Offline call precedes it).
    live = a.send(to=c_account, text="now you are here")
    assert not live.offline
    wait_until(lambda: c.chat_pushes(off.channel_id), what="live whisper")
    assert [(m.text, m.offline) for m in c.chat_pushes(off.channel_id)] == \
        [("now you are here", False)]


class FakeGame:
    def __init__(self, st, pb):
        self.st, self.pb, self.stop_ev = st, pb, threading.Event()
        self.req = pb[0].HeartbeatRequest(game_id="g-chat", client_addr="127.0.0.1:7001",
                                          grpc_addr="127.0.0.1:8001", capacity=100)
        st.Heartbeat(self.req, timeout=DEADLINE)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.wait(0.3):
            try:
                self.st.Heartbeat(self.req, timeout=DEADLINE)
            except grpc.RpcError:
                pass

    def stop(self):
        self.stop_ev.set()
        self.t.join()


def test_zone_chat_stays_in_its_instance_and_follows_transfer(cluster, world_pb):
    st = world_pb[1].WorldStub(grpc.insecure_channel(cluster.world.grpc_addr))
    game = FakeGame(st, world_pb)
    try:
        a, b, c = cluster.player(0), cluster.player(1), cluster.player(1)
        chars = {}
        for p in (a, b, c):
            chars[p] = str(uuid.uuid4())
        # a and b in oakvale, c in the meadow.
        for p in (a, b):
            pl = st.Place(world_pb[0].PlaceRequest(account_id=p.account, character_id=chars[p]),
                          timeout=DEADLINE)
            assert pl.zone_id == "oakvale"
        pl = st.Place(world_pb[0].PlaceRequest(account_id=c.account, character_id=chars[c],
                                               target_zone="meadow"), timeout=DEADLINE)
        oak, meadow = "zone:oakvale#1", "zone:" + pl.instance_id
        r = a.send("zone", "hello oakvale")
        assert r.channel_id == oak
        wait_until(lambda: b.chat_pushes(oak), what="zone message in the zone")
        assert [m.text for m in b.chat_pushes(oak)] == ["hello oakvale"]
        r = c.send("zone", "hello meadow")
        assert r.channel_id == meadow
        wait_until(lambda: c.chat_pushes(meadow), what="meadow message")
        # b walks through the east gate into the meadow (World.Transfer).
        t = st.Transfer(world_pb[0].TransferRequest(character_id=chars[b], portal_id="east_gate"),
                        timeout=DEADLINE)
        assert "zone:" + t.instance_id == meadow
        a.send("zone", "anyone left?")
        c.send("zone", "welcome b")
        wait_until(lambda: len(b.chat_pushes(meadow)) >= 1, what="b gets the meadow now")
        wait_until(lambda: len(a.chat_pushes(oak)) >= 2, what="a's own oakvale messages")
        # c's connection reads on its own thread: the same broadcast may reach it a moment later.
        wait_until(lambda: len(c.chat_pushes(meadow)) >= 2, what="c gets its own welcome")
        # Only the players of each instance got its messages.
        assert [m.text for m in b.chat_pushes(meadow)] == ["welcome b"]
        assert [m.text for m in b.chat_pushes(oak)] == ["hello oakvale"]  # not "anyone left?"
        assert not a.chat_pushes(meadow)
        assert not c.chat_pushes(oak)
        assert [m.text for m in c.chat_pushes(meadow)] == ["hello meadow", "welcome b"]
    finally:
        game.stop()


def test_party_chat_after_invite_and_kick(cluster):
    owner, x, y = cluster.player(0), cluster.player(1), cluster.player(0)
    ch = owner.ok(chat_create=owner.pb.ChatCreate(kind="party", name="Raid")).chat_channel
    cid = ch.channel_id
    assert ch.role == "owner"
    for p in (x, y):
        owner.ok(chat_invite=owner.pb.ChatMember(channel_id=cid, account_id=p.account))
        wait_until(lambda: any(m.type == "invite" for m in p.chat_pushes(cid)),
                   what="invite pushed to the invitee")
        p.ok(chat_join=p.pb.ChatChannelRef(channel_id=cid))
    r = x.send(cid, "hi all")
    for p in (owner, x, y):
        wait_until(lambda: any(m.seq == r.seq for m in p.chat_pushes(cid)), what="party message")
    kicked = owner.ok(chat_kick=owner.pb.ChatMember(channel_id=cid, account_id=x.account))
    wait_until(lambda: any(m.type == "kick" for m in x.chat_pushes(cid)), what="kick pushed")
    refused = x.call(chat_send=x.pb.ChatSend(channel_id=cid, text="let me in"))
    assert refused.status.code == x.pb.FORBIDDEN
    r2 = y.send(cid, "bye x")
    wait_until(lambda: any(m.seq == r2.seq for m in owner.chat_pushes(cid)), what="after kick")
    time.sleep(0.5)  # a late push to x would show up within this
    assert max(m.seq for m in x.chat_pushes(cid)) == kicked.chat_done.seq
    # Every member's view of the channel is the same gapless sequence.
    owner.follow(cid, 0)
    assert [m.seq for m in owner.view(cid, upto=r2.seq)] == list(range(1, r2.seq + 1))


def _flood(sender, cid, n, errors):
    try:
        for i in range(n):
            sender.send(cid, "%s #%d" % (sender.account[:8], i))
    except Exception as e:  # reported by the test
        errors.append(repr(e))


@pytest.mark.parametrize("restart", [False, True], ids=["steady", "lobby-restart"])
def test_ten_senders_thousand_messages_in_order(cluster, world_pb, restart):
    """Steady: the senders alternate between the two instances. Restart: the senders are on
    instance 1 and instance 2 is stopped (SIGTERM) and started again while they send; its
    listeners reconnect and resume from the last seq they applied. In both, a member joined
    on a wy-game instance receives them all live, in order."""
    senders_n, per = 10, 1000
    owner = cluster.player(0)
    cid = owner.ok(chat_create=owner.pb.ChatCreate(kind="guild", name="Order")).chat_channel \
        .channel_id
    senders = [cluster.player(0 if restart else i % 2) for i in range(senders_n)]
    listeners = [cluster.player(1), cluster.player(1), cluster.player(0)]
    for p in senders + listeners:
        owner.ok(chat_invite=owner.pb.ChatMember(channel_id=cid, account_id=p.account))
        p.ok(chat_join=p.pb.ChatChannelRef(channel_id=cid))
    base = owner.ok(chat_history=owner.pb.ChatHistory(channel_id=cid, limit=1)) \
        .chat_history_page.last_seq
    everyone = [owner] + senders + listeners
    for p in everyone:
        p.follow(cid, base)
    # The game member: the third listener's account, also joined on a wy-game instance.
    gm = start_game_member(cluster, world_pb, listeners[2].account, cid)
    errors = []
    threads = [threading.Thread(target=_flood, args=(s, cid, per, errors)) for s in senders]
    for t in threads:
        t.start()
    total = per * senders_n
    last = base + total
    if restart:
        on_b = [p for p in everyone if p.url == cluster.lobbies[1].ws_url]
        wait_until(lambda: owner.view(cid) and owner.last[cid] >= base + total // 3,
                   timeout=300, what="a third of the messages")
        for p in on_b:
            p.view(cid)  # what it applied before the restart: its resume point
        cluster.lobbies[1].stop()
        for p in on_b:
            p.close()
        lobby_b = _restart_lobby(cluster)
        for p in on_b:
            p.connect(lobby_b.ws_url)
        assert owner.last[cid] < last, "the restart happened after the last message"
    for t in threads:
        t.join(timeout=900)
    assert not errors, errors[:3]
    for p in everyone:
        # A client fills a gap from history when the next push shows one; the restarted
        # instance's clients also ask for what was sent while they were away.
        wait_until(lambda: p.view(cid, upto=last if p in listeners or restart else None)
                   is not None and p.last[cid] >= last, timeout=300,
                   what="%s has all %d messages" % (p.account[:8], total))
    wait_until(lambda: gm.closed or (gm.seqs() or [0])[-1] >= last, timeout=300,
               what="the game member has all %d messages" % total)
    want = None
    for p in everyone:
        assert [m.seq for m in p.seen[cid]] == list(range(base + 1, last + 1)), \
            "gap or duplicate"
        texts = [m.text for m in p.seen[cid]]
        want = want or texts
        assert texts == want
    # The game member: live delivery only (no history on that connection), same order.
    assert not gm.closed, "the game connection closed"
    assert gm.seqs() == list(range(base + 1, last + 1)), "game member: gap or duplicate"
    assert [m.text for m in gm.seen] == want
    gm.close()
    # Each sender's messages in the order it sent them.
    for s in senders:
        mine = [int(t.split("#")[1]) for t in want if t.startswith(s.account[:8] + " #")]
        assert mine == list(range(per))
    if not restart:  # live delivery alone had no gap: nothing came from history
        assert all(p.history_fills == 0 for p in everyone), \
            [p.history_fills for p in everyone]


class GameMember:
    """A player joined on a wy-game instance (placed by world, a join ticket signed with the
    test ticket key): a reader thread keeps the chat pushes of one channel, in arrival order
    (the game connection has no history: what it shows is live delivery alone)."""

    def __init__(self, game, world_st, world_pb, signer, account, channel):
        import game_pb2
        self.pb, self.channel, self.seen, self.closed = game_pb2, channel, [], False
        ch = str(uuid.uuid4())
        p = world_st.Place(world_pb[0].PlaceRequest(account_id=account, character_id=ch),
                           timeout=DEADLINE)
        assert p.game_id == game.instance_id, p
        now = int(time.time() * 1000)
        claims = {"iss": "wy-lobby", "aud": "wy-game", "sub": account, "chr": ch,
                  "zone": p.zone_id, "zin": p.instance_id, "gid": p.game_id,
                  "ginc": p.game_incarnation, "x": p.position.x, "y": p.position.y,
                  "jti": base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(),
                  "iat_ms": now, "exp_ms": now + 30000}
        tk = jwt.encode(claims, signer, algorithm="EdDSA", headers={"kid": TICKET_KID})
        self.ws = websocket.create_connection("ws://127.0.0.1:%d/v1/game" % game.client_port,
                                              timeout=DEADLINE)
        self.ws.send_binary(self.pb.ClientMessage(request_id=1, join=self.pb.Join(ticket=tk))
                            .SerializeToString())
        m = self._next()
        assert m is not None and m.WhichOneof("body") == "welcome", m
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _next(self):
        """The next message other than a simulation update; None once closed."""
        while True:
            try:
                op, data = self.ws.recv_data()
            except Exception:
                return None
            if op == websocket.ABNF.OPCODE_CLOSE:
                return None
            m = self.pb.ServerMessage.FromString(data)
            if m.WhichOneof("body") != "update":
                return m

    def _read(self):
        self.ws.settimeout(None)
        while True:
            m = self._next()
            if m is None:
                self.closed = True
                return
            if m.WhichOneof("body") == "chat_message" and m.chat_message.channel_id == \
                    self.channel:
                with self.lock:
                    self.seen.append(m.chat_message)

    def seqs(self):
        with self.lock:
            return [m.seq for m in self.seen]

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def start_game_member(cluster, world_pb, account, channel):
    """wy-game registered with the cluster's world, and account joined on it."""
    game = cluster.daemon("game", env={"WY_GAME_WORLD_GRPC": cluster.world.grpc_addr})
    st = world_pb[1].WorldStub(grpc.insecure_channel(cluster.world.grpc_addr))

    def live():
        return any(g.game_id == game.instance_id and g.live for g in
                   st.ListGames(world_pb[0].ListGamesRequest(), timeout=DEADLINE).games)
    wait_until(live, 30, what="wy-game registered with world")
    with open(os.path.join(ticket_test_keys(os.path.dirname(game.log_path)),
                           TICKET_KID + ".pem"), "rb") as f:
        signer = serialization.load_pem_private_key(f.read(), password=None)
    return GameMember(game, st, world_pb, signer, account, channel)


def _restart_lobby(cluster):
    """Starts lobby instance 2 again on its port (its clients reconnect to it)."""
    old = cluster.lobbies[1]
    d = cluster.daemon("lobby", env=cluster.lobby_env(old.port))
    d.ws_url, d.port = old.ws_url, old.port
    cluster.lobbies[1] = d
    return d



class WyCli:
    """`wy --json` as several people (a credentials folder each) against auth, lobby and chat."""

    def __init__(self, build_dir, tmp_path, base):
        self.bin = os.path.join(build_dir, "tools", "wy")
        self.tmp, self.base = tmp_path, base
        self.names = {}

    def env(self, who):
        env = {k: v for k, v in os.environ.items()
               if k not in ("WY_SERVER", "WY_CREDENTIALS", "WY_PASSWORD", "WY_SERVER_KEY")}
        env.update(self.base, WY_CREDENTIALS_DIR=str(self.tmp / who))
        return env

    def run(self, who, *args, password=None, timeout=30, json_out=True):
        import json
        import subprocess
        p = subprocess.run([self.bin] + (["--json"] if json_out else []) + list(args),
                           input=password and password + "\n", env=self.env(who),
                           capture_output=True, text=True, timeout=timeout)
        out = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
        return p.returncode, out, p.stderr

    def ok(self, who, *args, **kw):
        rc, out, err = self.run(who, *args, **kw)
        assert rc == 0 and out and out[-1].get("ok") is True, (args, rc, out, err)
        return out[-1]

    def register(self, who):
        name = "%s%s" % (who, uuid.uuid4().hex[:8])
        self.ok(who, "register", name, "--password-stdin", password="correct horse battery")
        self.names[who] = name
        return self.ok(who, "whoami")["account_id"]

    def login(self, who):
        return self.ok(who, "login", self.names[who], "--password-stdin",
                       password="correct horse battery")


@pytest.fixture
def cli(daemon, build_dir, tmp_path):
    """auth (its own key), wy-chat and a lobby wired to both; a WyCli for them."""
    import subprocess
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(keys / "e2e.pem")],
                   check=True, timeout=10, stdout=subprocess.DEVNULL)
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(keys), "WY_AUTH_SIGNING_KID": "e2e",
                               "WY_AUTH_HTTP_PORT": str(free_port()),
                               "WY_AUTH_LOGIN_LIMIT_IP": "100000",
                               "WY_AUTH_ARGON2_MEMORY": "65536", "WY_AUTH_ARGON2_ITERATIONS": "1"})
    chat = daemon("chat")
    lobby = daemon("lobby", env={"WY_LOBBY_WS_PORT": str(free_port()),
                                 "WY_LOBBY_AUTH_GRPC": auth.grpc_addr,
                                 "WY_LOBBY_CHAT_GRPC": chat.grpc_addr})
    base = {"WY_AUTH_URL": "http://127.0.0.1:%s" % auth.env["WY_AUTH_HTTP_PORT"],
            "WY_LOBBY_URL": "ws://127.0.0.1:%s/v1/lobby" % lobby.env["WY_LOBBY_WS_PORT"]}
    return WyCli(build_dir, tmp_path, base)


def test_wy_cli_chat_through_libs_client(cli, build_dir, tmp_path):
    """`wy chat ...` (tools/wy.c on libs/client's wyc_chat.c) against auth, lobby and chat:
    create a party, invite, join, list one's channels, send, history; a whisper to an offline player shows up in
    their `wy lobby` right after the welcome."""
    import json
    import subprocess
    wy, ok, base = cli.run, cli.ok, cli.base
    ids = {who: cli.register(who) for who in ("alice", "bob")}
    cid = ok("alice", "chat", "create", "party", "Raid")["channel_id"]
    assert cid.startswith("party:")
    ok("alice", "chat", "invite", cid, ids["bob"])
    assert ok("bob", "chat", "join", cid)["seq"] == 3
    # Each one's channels, with their role.
    for who, role in (("alice", "owner"), ("bob", "member")):
        chs = ok(who, "chat", "channels")["channels"]
        assert [(c["channel_id"], c["kind"], c["name"], c["role"]) for c in chs] == \
            [(cid, "party", "Raid", role)], (who, chs)
    sent = ok("bob", "chat", "send", cid, "hello party")
    assert sent["seq"] == 4 and sent["text"] == "hello party"
    h = ok("alice", "chat", "history", cid)
    assert [(m["seq"], m["type"]) for m in h["messages"]] == \
        [(1, "join"), (2, "invite"), (3, "join"), (4, "text")]
    assert h["messages"][-1]["text"] == "hello party" and h["last_seq"] == 4
    h = ok("alice", "chat", "history", cid, "--after", "2", "--limit", "1")
    assert [m["seq"] for m in h["messages"]] == [3] and h["more"]
    rc, _, _ = wy("alice", "chat", "send", "party:nope", "x")
    assert rc == 8  # forbidden: not a member
    rc, _, _ = wy("alice", "chat", "bogus", "x")
    assert rc == 2
    # libs/client's ordered delivery: bob follows the party from seq 0 while alice sends;
    # the first push shows a gap (1..4 came before), so wyc fills it from history first.
    proc = subprocess.Popen([os.path.join(build_dir, "tools", "wy"), "--json", "lobby", "--for",
                             "6", "--follow", cid + "@0"], env=dict(
                                {k: v for k, v in os.environ.items() if k != "WY_SERVER"},
                                **base, WY_CREDENTIALS_DIR=str(tmp_path / "bob")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the welcome: bob's session is up and the follow set
    assert json.loads(first).get("event") == "welcome", first
    for i in range(3):
        ok("alice", "chat", "send", cid, "live %d" % i)
    out, err = proc.communicate(timeout=60)
    evs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    party_msgs = [e for e in evs if e.get("event") == "chat" and e["channel_id"] == cid]
    assert [e["seq"] for e in party_msgs] == [1, 2, 3, 4, 5, 6, 7], (evs, err)
    assert [e["text"] for e in party_msgs][-3:] == ["live 0", "live 1", "live 2"]
    # bob is offline: the whisper waits for bob's next login, then `wy lobby` prints it.
    w = ok("alice", "chat", "send", "--to", ids["bob"], "ping")
    assert w["offline"]
    rc, out, err = wy("bob", "lobby", "--for", "3")
    # `wy lobby` prints pushes as they come (the same seq may come twice: from the offline
    # store and live, when the event reached lobby after the login).
    chats = [e for e in out if e.get("event") == "chat" and e["channel_id"] == w["channel_id"]]
    assert chats and {(e["seq"], e["text"], e["sender_id"]) for e in chats} == \
        {(1, "ping", ids["alice"])}, (out, err)
    assert any(e["offline"] for e in chats)
    # libs/client acknowledged it (chat_offline_ack): the next login gets no offline copy.
    rc, out, err = wy("bob", "lobby", "--for", "2")
    assert rc == 0 and out and out[0].get("event") == "welcome", (out, err)
    assert not [e for e in out if e.get("event") == "chat" and e.get("offline")], (out, err)


def test_wy_cli_chat_moderation(cli, stack):
    """`wy chat report|reports|resolve|mute|unmute|delete`: a player reports a message; a
    player without the moderator role is refused every moderation command with a message that
    says why (exit 8); once an operator grants the role (auth.set_roles) the moderator lists
    the report with the message, resolves it, mutes and unmutes the sender and deletes the
    message."""
    ids = {who: cli.register(who) for who in ("mod", "alice", "bob")}
    said = cli.ok("alice", "chat", "send", "world", "cheap gold, visit spam.example")
    seq = said["seq"]
    cli.ok("bob", "chat", "report", "world", str(seq), "spam")
    # No role: refused by chat, with the reason in the error (and a hint in text mode).
    for args in (("reports",), ("resolve", "1", "x"), ("mute", ids["alice"], "10m"),
                 ("unmute", ids["alice"])):
        rc, out, err = cli.run("bob", "chat", *args)
        assert rc == 8, (args, rc, out, err)
        assert out[-1]["ok"] is False and "only moderators" in out[-1]["error"]["message"], out
    rc, out, err = cli.run("bob", "chat", "reports", json_out=False)
    assert rc == 8 and "only moderators review reports" in err, err
    assert "log in again" in err, err
    rc, out, err = cli.run("bob", "chat", "mute", ids["alice"], "ten minutes")
    assert rc == 2 and "DURATION" in out[-1]["error"]["message"], out
    # The operator grants the role; the moderator logs in again for a token that carries it.
    assert stack.psql("SELECT auth.set_roles('%s', ARRAY['moderator'])" % ids["mod"]) == \
        "{moderator}"

    def as_moderator():
        cli.login("mod")
        rc, out, _ = cli.run("mod", "chat", "reports")
        return out[-1] if rc == 0 else None
    listed = wait_until(as_moderator, 30, interval=0.5, what="reports as a moderator")
    mine = [r for r in listed["reports"] if r["reporter_id"] == ids["bob"]]
    assert len(mine) == 1, listed
    rep = mine[0]
    assert (rep["channel_id"], rep["seq"], rep["reason"], rep["resolved_at_ms"]) == \
        ("world", seq, "spam", 0)
    assert (rep["message"]["sender_id"], rep["message"]["text"]) == \
        (ids["alice"], "cheap gold, visit spam.example")
    done = cli.ok("mod", "chat", "resolve", str(rep["report_id"]), "muted 10 min")
    assert done["report_id"] == rep["report_id"]
    assert not [r for r in cli.ok("mod", "chat", "reports")["reports"]
                if r["report_id"] == rep["report_id"]]
    closed = [r for r in cli.ok("mod", "chat", "reports", "--all")["reports"]
              if r["report_id"] == rep["report_id"]]
    assert len(closed) == 1 and closed[0]["resolution"] == "muted 10 min"
    assert closed[0]["resolved_by"] == ids["mod"] and closed[0]["resolved_at_ms"] > 0
    rc, out, _ = cli.run("mod", "chat", "resolve", str(rep["report_id"]), "again")
    assert rc == 5, out  # closed already
    # Mute the sender in world for 10 minutes, then lift it.
    m = cli.ok("mod", "chat", "mute", ids["alice"], "10m", "--channel", "world", "--reason",
               "spam")
    assert m["until_ms"] > time.time() * 1000 + 9 * 60 * 1000, m
    rc, out, _ = cli.run("alice", "chat", "send", "world", "am I muted?")
    assert rc == 8, out
    assert cli.ok("mod", "chat", "unmute", ids["alice"], "--channel", "world")["until_ms"] == 0
    cli.ok("alice", "chat", "send", "world", "sorry")
    # Delete the reported message: a tombstone, and history shows it deleted.
    d = cli.ok("mod", "chat", "delete", "world", str(seq), "spam")
    assert d["channel_id"] == "world" and d["seq"] > seq
    h = cli.ok("bob", "chat", "history", "world", "--limit", "200")  # the latest page
    assert [(x["text"], x["deleted"]) for x in h["messages"] if x["seq"] == seq] == \
        [("", True)], h
