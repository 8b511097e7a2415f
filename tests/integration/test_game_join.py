"""wy-game's join and leave against real daemons (wy-world on Redis, Kafka): the game
registers with world and reports its load, runs the partitions world places on it, joins a
player on a valid ticket (welcome with entity, zone, tick rate, position), refuses forged,
tampered, expired, wrong-instance, malformed and replayed tickets (none accepted), and on
leave or disconnect saves the position once (one wy.gameplay event) and ends the placement
at world. Tickets are signed here with the test ticket key (the key lobby signs with)."""
import base64
import json
import os
import re
import time
import uuid

import grpc
import jwt
import pytest
import websocket
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.daemon import TICKET_KID, ticket_test_keys
from harness.kafka import offsets, series
from harness.wait import wait_until

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import game_pb2
    import world_pb2
    import world_pb2_grpc
    return game_pb2, world_pb2, world_pb2_grpc


@pytest.fixture
def clean_redis(stack):
    db = 7
    stack.redis_cli("-n", db, "FLUSHDB")
    return re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1)


@pytest.fixture
def signer(daemon_log_dir):
    d = ticket_test_keys(daemon_log_dir)
    with open(os.path.join(d, TICKET_KID + ".pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def start_world(daemon, redis_url):
    return daemon("world", env={"WY_REDIS_URL": redis_url, "WY_WORLD_GAME_DEAD_AFTER": "3s"})


def start_game(daemon, world, **env):
    e = {"WY_GAME_WORLD_GRPC": world.grpc_addr, "WY_GAME_JOIN_TIMEOUT": "2s"}
    e.update(env)
    g = daemon("game", env=e)
    g.instance_id = e.get("WY_INSTANCE_ID", g.instance_id)
    g.ws_url = "ws://127.0.0.1:%d/v1/game" % g.client_port
    return g


def world_stub(w, pb):
    return pb[2].WorldStub(grpc.insecure_channel(w.grpc_addr))


def game_entry(st, pb, game_id):
    for g in st.ListGames(pb[1].ListGamesRequest(), timeout=DEADLINE).games:
        if g.game_id == game_id:
            return g
    return None


def wait_registered(st, pb, game):
    wait_until(lambda: (game_entry(st, pb, game.instance_id) or pb[1].GameInstance()).live,
               30, what="game %s registered with world" % game.instance_id)
    return game_entry(st, pb, game.instance_id)


def ticket(priv, game_id, inc, account=None, character=None, zone="oakvale", inst="oakvale#1",
           x=100.0, y=120.0, ttl_ms=30000, iat_ms=None, kid=TICKET_KID, **over):
    now = int(time.time() * 1000) if iat_ms is None else iat_ms
    claims = {"iss": "wy-lobby", "aud": "wy-game", "sub": account or str(uuid.uuid4()),
              "chr": character or str(uuid.uuid4()), "zone": zone, "zin": inst, "gid": game_id,
              "ginc": inc, "x": x, "y": y, "jti": base64.urlsafe_b64encode(os.urandom(16))
              .rstrip(b"=").decode(), "iat_ms": now, "exp_ms": now + ttl_ms}
    claims.update(over)
    return jwt.encode(claims, priv, algorithm="EdDSA", headers={"kid": kid})


class GameClient:
    def __init__(self, pb, url):
        self.pb = pb[0]
        self.ws = websocket.create_connection(url, timeout=DEADLINE)
        self.req = 0
        self.close_code = None

    def send(self, **body):
        self.req += 1
        self.ws.send_binary(self.pb.ClientMessage(request_id=self.req, **body).SerializeToString())
        return self.req

    def recv(self):
        while True:
            try:
                op, data = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                return None
            if op == websocket.ABNF.OPCODE_CLOSE:
                if len(data) >= 2:
                    self.close_code = int.from_bytes(data[:2], "big")
                try:
                    self.ws.send_close()
                except Exception:
                    pass
                return None
            if op == websocket.ABNF.OPCODE_BINARY:
                m = self.pb.ServerMessage()
                m.ParseFromString(data)
                if m.WhichOneof("body") == "update":
                    continue  # the simulation's frames (test_game_sim.py reads them)
                return m

    def join(self, tk):
        self.send(join=self.pb.Join(ticket=tk, client_version="test/1"))
        return self.recv()

    def wait_closed(self):
        while self.recv() is not None:
            pass
        return self.close_code

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def gameplay_high(build_dir, stack):
    return sum(hi for _, hi, _ in
               offsets(build_dir, stack.env()["WY_KAFKA_BROKERS"], "wy.gameplay", "none").values())


@pytest.fixture
def world_game(daemon, pb, clean_redis):
    w = start_world(daemon, clean_redis)
    g = start_game(daemon, w, WY_GAME_CAPACITY="50")
    st = world_stub(w, pb)
    entry = wait_registered(st, pb, g)
    return w, g, st, entry


def test_game_registers_reports_and_runs_placed_partitions(pb, world_game):
    w, g, st, entry = world_game
    assert entry.incarnation and len(entry.incarnation) == 22
    assert entry.client_addr == "127.0.0.1:%d" % g.client_port
    assert entry.grpc_addr == g.grpc_addr and entry.capacity == 50 and not entry.draining
    # A placement on it: the next heartbeat answer lists the instance, its partition runs.
    p = st.Place(pb[1].PlaceRequest(account_id="a1", character_id="c1", target_zone="meadow"),
                 timeout=DEADLINE)
    assert p.game_id == g.instance_id and p.game_incarnation == entry.incarnation
    g.wait_log(lambda r: r.get("msg") == "partition started" and r.get("zone") == p.instance_id,
               timeout=20)
    wait_until(lambda: any(x.instance_id == p.instance_id
                           for x in game_entry(st, pb, g.instance_id).partitions), 20,
               what="the partition in the load report")
    assert series(g, "wy_game_partitions") >= 1


def test_join_welcome_leave_saves_position_once(build_dir, stack, pb, signer, world_game):
    w, g, st, entry = world_game
    acct, ch = str(uuid.uuid4()), str(uuid.uuid4())
    p = st.Place(pb[1].PlaceRequest(account_id=acct, character_id=ch), timeout=DEADLINE)
    before = gameplay_high(build_dir, stack)
    c = GameClient(pb, g.ws_url)
    tk = ticket(signer, g.instance_id, entry.incarnation, account=acct, character=ch,
                zone=p.zone_id, inst=p.instance_id, x=p.position.x, y=p.position.y)
    m = c.join(tk)
    assert m.WhichOneof("body") == "welcome", m
    wl = m.welcome
    assert (wl.account_id, wl.character_id, wl.zone_id, wl.instance_id, wl.game_id) == \
        (acct, ch, p.zone_id, p.instance_id, g.instance_id)
    assert wl.entity_id > 0 and wl.tick_rate == 20  # oakvale's rate
    assert (wl.position.x, wl.position.y) == (p.position.x, p.position.y)
    assert series(g, "wy_game_players") == 1
    rid = c.send(leave=pb[0].Leave())
    m = c.recv()
    assert m.request_id == rid and m.WhichOneof("body") == "left"
    assert (m.left.position.x, m.left.position.y) == (p.position.x, p.position.y)
    assert c.wait_closed() == 1000
    wait_until(lambda: series(g, "wy_game_positions_saved_total") == 1, 30,
               what="the position save acknowledged")
    assert gameplay_high(build_dir, stack) - before == 1
    assert series(g, "wy_game_players") == 0
    # The placement ended: Locate finds nothing, a new Place is a new one.
    wait_until(lambda: _locate_code(st, pb, ch) == grpc.StatusCode.NOT_FOUND, 10,
               what="placement released")


def _locate_code(st, pb, ch):
    try:
        st.Locate(pb[1].LocateRequest(character_id=ch), timeout=DEADLINE)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_disconnect_is_a_leave(pb, signer, world_game):
    w, g, st, entry = world_game
    c = GameClient(pb, g.ws_url)
    assert c.join(ticket(signer, g.instance_id, entry.incarnation)).WhichOneof("body") == "welcome"
    c.ws.sock.close()  # no close frame: the TCP connection just goes
    g.wait_log(lambda r: r.get("msg") == "player left", timeout=20)
    wait_until(lambda: series(g, "wy_game_positions_saved_total") == 1, 30, what="save")


def _refused(pb, g, tk, code):
    c = GameClient(pb, g.ws_url)
    m = c.join(tk)
    assert m is not None and m.WhichOneof("body") == "error", m
    assert m.error.code == code, m
    closed = c.wait_closed()
    c.close()
    return closed


def test_bad_tickets_are_refused_and_none_accepted(pb, signer, world_game):
    w, g, st, entry = world_game
    P = pb[0]
    gid, inc = g.instance_id, entry.incarnation
    # Forged: a key the game does not trust, under the trusted kid and under another.
    mallory = Ed25519PrivateKey.generate()
    assert _refused(pb, g, ticket(mallory, gid, inc), P.TICKET_FORGED) == 4001
    assert _refused(pb, g, ticket(mallory, gid, inc, kid="k9"), P.TICKET_FORGED) == 4001
    # Tampered: another character in the payload, the signature kept.
    good = ticket(signer, gid, inc)
    h, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["chr"] = str(uuid.uuid4())
    body2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _refused(pb, g, "%s.%s.%s" % (h, body2, sig), P.TICKET_FORGED) == 4001
    # Expired (leeway 1 s), and issued in the future.
    now = int(time.time() * 1000)
    assert _refused(pb, g, ticket(signer, gid, inc, iat_ms=now - 40000),
                    P.TICKET_EXPIRED) == 4001
    assert _refused(pb, g, ticket(signer, gid, inc, iat_ms=now + 60000),
                    P.TICKET_EXPIRED) == 4001
    # Wrong instance, and an earlier run of this one.
    assert _refused(pb, g, ticket(signer, "game-other", inc), P.TICKET_WRONG_INSTANCE) == 4001
    assert _refused(pb, g, ticket(signer, gid, "AAAAAAAAAAAAAAAAAAAAAA"),
                    P.TICKET_WRONG_INSTANCE) == 4001
    # Malformed: garbage, and a signed token that is not a ticket.
    assert _refused(pb, g, "not.a.ticket", P.TICKET_MALFORMED) == 4001
    assert _refused(pb, g, ticket(signer, gid, inc, zin=None), P.TICKET_MALFORMED) == 4001
    # Replayed: the first use joins, the second is refused (also while the first plays).
    tk = ticket(signer, gid, inc)
    c = GameClient(pb, g.ws_url)
    assert c.join(tk).WhichOneof("body") == "welcome"
    assert _refused(pb, g, tk, P.TICKET_REPLAYED) == 4001
    c.close()
    g.wait_log(lambda r: r.get("msg") == "player left", timeout=20)
    assert _refused(pb, g, tk, P.TICKET_REPLAYED) == 4001
    # Exactly one join was accepted.
    assert series(g, "wy_game_joins_total", result="ok") == 1
    refused = sum(series(g, "wy_game_joins_total", result=r) or 0 for r in
                  ("forged", "expired", "wrong_instance", "malformed", "replayed"))
    assert refused == 11


def test_first_message_must_be_join_and_join_in_time(pb, world_game):
    w, g, st, entry = world_game
    c = GameClient(pb, g.ws_url)
    c.send(leave=pb[0].Leave())
    m = c.recv()
    assert m.WhichOneof("body") == "error" and m.error.code == pb[0].INVALID
    c.close()
    c = GameClient(pb, g.ws_url)
    c.ws.send_binary(b"\xff\xff\xff")
    assert c.wait_closed() == 4000
    c = GameClient(pb, g.ws_url)
    assert c.wait_closed() == 4004  # WY_GAME_JOIN_TIMEOUT 2s


def test_restarted_game_refuses_tickets_of_its_earlier_run(daemon, pb, signer, clean_redis):
    w = start_world(daemon, clean_redis)
    st = world_stub(w, pb)
    g = start_game(daemon, w, WY_INSTANCE_ID="game-restart")
    inc1 = wait_registered(st, pb, g).incarnation
    tk = ticket(signer, "game-restart", inc1)
    g.stop()
    g2 = start_game(daemon, w, WY_INSTANCE_ID="game-restart",
                    WY_GAME_WS_PORT=str(g.client_port))
    wait_until(lambda: game_entry(st, pb, "game-restart").incarnation not in ("", inc1), 30,
               what="the new incarnation registered")
    assert _refused(pb, g2, tk, pb[0].TICKET_WRONG_INSTANCE) == 4001


def test_sigterm_saves_positions_of_players_and_drains(daemon, build_dir, stack, pb, signer,
                                                       world_game):
    w, g, st, entry = world_game
    clients = []
    for _ in range(3):
        c = GameClient(pb, g.ws_url)
        assert c.join(ticket(signer, g.instance_id, entry.incarnation)).WhichOneof("body") == \
            "welcome"
        clients.append(c)
    before = gameplay_high(build_dir, stack)
    g.stop()
    assert all(c.wait_closed() == 1001 for c in clients)
    lines = g.log_lines()
    assert sum(1 for r in lines if r.get("msg") == "player left") == 3
    assert not [r for r in lines if r.get("msg") == "position save lost at stop"]
    assert gameplay_high(build_dir, stack) - before == 3
