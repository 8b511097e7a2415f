"""wy-world against a real Redis: the zone catalog (bad files stop it with exit 2 naming
the file and the field; ListZones and the HTTP view), the registry of game instances
(fake games sending World.Heartbeat), placement (idempotent, concurrent, full and
instanced zones), the locator, transfers through portals, a dead game's zones placed
on a live one, and two world replicas sharing one Redis."""
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid

import grpc
import pytest
import requests

from harness import TOP
from harness.wait import wait_until

DEADLINE = 10  # seconds per call: generous for a loaded 2-core machine
ZONES = os.path.join(TOP, "data", "zones")
DEAD_AFTER_S = 2
# Redis databases 8..15 in turn, emptied by each test that needs a clean registry (the
# previous user's daemons and fake games are gone by then: tests run one at a time).
_db = itertools.cycle(range(8, 16))


@pytest.fixture
def pb(protos):
    import world_pb2
    import world_pb2_grpc
    return world_pb2, world_pb2_grpc


@pytest.fixture
def clean_redis(stack):
    """A Redis URL of a database of its own, emptied (the registry is cluster-wide)."""
    db = next(_db)
    stack.redis_cli("-n", db, "FLUSHDB")
    return re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1), db


def start(daemon, redis_url, **env):
    env.setdefault("WY_WORLD_GAME_DEAD_AFTER", "%ds" % DEAD_AFTER_S)
    return daemon("world", env=dict(env, WY_REDIS_URL=redis_url))


def stub(d, pb):
    return pb[1].WorldStub(grpc.insecure_channel(d.grpc_addr))


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


class FakeGame:
    """A game instance that heartbeats every 0.3 s from a thread until stopped."""

    def __init__(self, st, pb, game_id, players=0, capacity=100, zones=()):
        self.st, self.pb, self.stopped = st, pb, threading.Event()
        self.req = pb[0].HeartbeatRequest(game_id=game_id, client_addr="127.0.0.1:7%03d" % len(game_id),
                                          grpc_addr="127.0.0.1:8001", capacity=capacity,
                                          players=players, zones=list(zones))
        self.game_id = game_id
        self.resp = st.Heartbeat(self.req, timeout=DEADLINE)  # registered before the test goes on
        self.last = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.3):
            try:
                self.resp = self.st.Heartbeat(self.req, timeout=DEADLINE)
                self.last = time.monotonic()
            except grpc.RpcError:
                pass

    def stop(self):
        self.stopped.set()
        self.thread.join()


@pytest.fixture
def games():
    made = []
    yield made
    for g in made:
        g.stop()


def place(st, pb, character, account, **kw):
    return st.Place(pb[0].PlaceRequest(account_id=account, character_id=character, **kw),
                    timeout=DEADLINE)


def ids():
    return str(uuid.uuid4()), str(uuid.uuid4())


# ---- the catalog ----

def zones_copy(tmp_path, edits):
    """data/zones copied into tmp_path/zones with edits {file: fn(dict) -> dict or text}."""
    d = tmp_path / "zones"
    shutil.copytree(ZONES, d)
    for name, fn in edits.items():
        path = d / name
        out = fn(json.loads(path.read_text()))
        path.write_text(out if isinstance(out, str) else json.dumps(out))
    return str(d)


def _drop(key):
    def fn(z):
        del z[key]
        return z
    return fn


def _portal(i, **kv):
    def fn(z):
        z["portals"][i].update(kv)
        return z
    return fn


def _add_portal(**kv):
    def fn(z):
        z["portals"].append(dict(z["portals"][0], **kv))
        return z
    return fn


BAD = [
    ("meadow.json", _drop("capacity"), "meadow.json: capacity: missing field"),
    ("oakvale.json", _add_portal(id="west_gate", x=244, y=130),
     "oakvale.json: portals[2]: portal \"west_gate\" overlaps portals[0] (\"east_gate\")"),
    ("oakvale.json", _portal(0, target="atlantis"),
     "oakvale.json: portals[0].target: unknown zone \"atlantis\""),
    ("crypt.json", _portal(0, arrival={"x": 200, "y": 176}),
     "crypt.json: portals[0].arrival: (200, 176) is in a blocked cell of zone \"meadow\""),
    ("whisper_woods.json", lambda z: dict(z, spawns=[{"x": 600, "y": 10}]),
     "whisper_woods.json: spawns[0].x: must be a number >= 0 and <= 512 (got 600)"),
    ("crypt.json", lambda z: dict(z, kind=7), "crypt.json: kind: must be one of town, field, dungeon"),
    ("meadow.json", lambda z: "{\"id\": \"meadow\",", "meadow.json: not valid JSON: line 1"),
]


@pytest.mark.parametrize("name,fn,want", BAD, ids=[w.split(": ", 1)[1][:40] for _, _, w in BAD])
def test_bad_zone_files_exit_2_naming_file_and_field(build_dir, tmp_path, name, fn, want):
    zones = zones_copy(tmp_path, {name: fn})
    if "blocked cell of zone \"meadow\"" in want:  # make the arrival cell a wall of meadow
        m = json.loads(open(os.path.join(zones, "meadow.json")).read())
        row = list(m["grid"]["rows"][11])
        row[12] = "#"
        m["grid"]["rows"][11] = "".join(row)
        open(os.path.join(zones, "meadow.json"), "w").write(json.dumps(m))
    out = subprocess.run([os.path.join(build_dir, "wy-world")], cwd=TOP, capture_output=True,
                         text=True, timeout=30,
                         env=dict(os.environ, WY_WORLD_ZONES_DIR=zones, WY_WORLD_OPS_PORT="0",
                                  WY_WORLD_GRPC_PORT="0"))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("wy-world: bad configuration: %s/" % zones), out.stderr
    assert want in out.stderr


def test_zones_dir_and_start_zone_must_exist(build_dir, tmp_path):
    exe = os.path.join(build_dir, "wy-world")
    for env, want in [({"WY_WORLD_ZONES_DIR": str(tmp_path / "none")}, "cannot open the zones folder"),
                      ({"WY_WORLD_ZONES_DIR": str(tmp_path)}, "no zone files (*.json)"),
                      ({"WY_WORLD_START_ZONE": "atlantis"}, "WY_WORLD_START_ZONE: no zone \"atlantis\"")]:
        out = subprocess.run([exe], cwd=TOP, capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, **env))
        assert out.returncode == 2 and want in out.stderr, out.stderr


def test_catalog_over_grpc_and_http(daemon, pb, clean_redis):
    d = start(daemon, clean_redis[0])
    zones = stub(d, pb).ListZones(pb[0].ListZonesRequest(), timeout=DEADLINE).zones
    assert [z.id for z in zones] == ["crypt", "meadow", "oakvale", "whisper_woods"]
    by = {z.id: z for z in zones}
    assert (by["oakvale"].kind, by["crypt"].kind, by["meadow"].kind) == ("town", "dungeon", "field")
    assert by["crypt"].instancing == "party" and by["crypt"].capacity == 5
    assert {(p.id, p.target_zone) for p in by["oakvale"].portals} == \
        {("east_gate", "meadow"), ("north_gate", "whisper_woods")}
    assert not by["oakvale"].rows  # the grid only on request
    full = stub(d, pb).ListZones(pb[0].ListZonesRequest(with_grid=True), timeout=DEADLINE).zones
    assert len(full[0].rows) == 16 and set("".join(full[0].rows)) == {".", "#"}
    # Every portal leads to a zone of the catalog: the sample world is connected.
    assert all(p.target_zone in by for z in zones for p in z.portals)

    r = requests.get(d.ops_url + "/v1/zones", timeout=5)
    assert r.status_code == 200
    assert [z["id"] for z in r.json()["zones"]] == ["crypt", "meadow", "oakvale", "whisper_woods"]
    one = requests.get(d.ops_url + "/v1/zones/oakvale", timeout=5).json()
    assert one == json.loads(open(os.path.join(ZONES, "oakvale.json")).read())  # the file's format
    nf = requests.get(d.ops_url + "/v1/zones/atlantis", timeout=5)
    assert nf.status_code == 404 and nf.json()["error"]["code"] == "ENOTFOUND"


# ---- the registry ----

def test_heartbeat_registers_and_is_validated(daemon, pb, clean_redis, games):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    bad = pb[0].HeartbeatRequest(game_id="g 1", client_addr="a:1", grpc_addr="a:2", capacity=5)
    assert code_of(lambda: st.Heartbeat(bad, timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    bad = pb[0].HeartbeatRequest(game_id="g1", client_addr="a:1", grpc_addr="a:2", capacity=0)
    assert code_of(lambda: st.Heartbeat(bad, timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    bad = pb[0].HeartbeatRequest(game_id="g1", client_addr="a:1", grpc_addr="a:2", capacity=5,
                                 zones=["atlantis"])
    assert code_of(lambda: st.Heartbeat(bad, timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    r = st.Heartbeat(pb[0].HeartbeatRequest(game_id="g1", client_addr="a:1", grpc_addr="a:2",
                                            capacity=5, players=2, zones=["meadow"],
                                            partitions=[pb[0].PartitionLoad(instance_id="meadow#1",
                                                                            players=2, tick_p99_ms=3.5)]),
                     timeout=DEADLINE)
    assert r.report_every_ms == 1000 and r.dead_after_ms == DEAD_AFTER_S * 1000
    g = st.ListGames(pb[0].ListGamesRequest(), timeout=DEADLINE).games
    assert [x.game_id for x in g] == ["g1"] and g[0].live and list(g[0].zones) == ["meadow"]
    assert g[0].partitions[0].tick_p99_ms == 3.5
    # Silent for WY_WORLD_GAME_DEAD_AFTER: dead (still listed until forgotten).
    wait_until(lambda: not st.ListGames(pb[0].ListGamesRequest(), timeout=DEADLINE).games[0].live,
               timeout=DEAD_AFTER_S + 15, what="g1 dead")
    d.wait_log(lambda r: r.get("msg") == "game instance dead" and r.get("game") == "g1")


# ---- placement and the locator ----

def test_place_is_idempotent_and_located(daemon, pb, clean_redis, games):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    ch, acct = ids()
    assert code_of(lambda: place(st, pb, ch, acct)) == grpc.StatusCode.UNAVAILABLE  # no game yet
    games.append(FakeGame(st, pb, "busy", players=60))
    games.append(FakeGame(st, pb, "idle", players=5))
    p = place(st, pb, ch, acct)
    assert (p.zone_id, p.game_id, p.account_id) == ("oakvale", "idle", acct)  # start zone, least loaded
    assert p.instance_id == "oakvale#1" and p.game_client_addr == games[1].req.client_addr
    spawns = {(s.x, s.y) for s in stub(d, pb).ListZones(pb[0].ListZonesRequest(),
                                                          timeout=DEADLINE).zones[2].spawns}
    assert (p.position.x, p.position.y) in spawns
    # Asked again (any target) while it lives: the same placement.
    again = place(st, pb, ch, acct, target_zone="meadow")
    assert (again.zone_id, again.instance_id, again.game_id, again.placed_at_ms) == \
        (p.zone_id, p.instance_id, p.game_id, p.placed_at_ms)
    for loc in (st.Locate(pb[0].LocateRequest(character_id=ch), timeout=DEADLINE),
                st.Locate(pb[0].LocateRequest(account_id=acct), timeout=DEADLINE)):
        assert (loc.character_id, loc.zone_id, loc.instance_id, loc.game_id) == \
            (ch, "oakvale", "oakvale#1", "idle")
    assert code_of(lambda: place(st, pb, ch, str(uuid.uuid4()))) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: st.Locate(pb[0].LocateRequest(character_id=str(uuid.uuid4())),
                                     timeout=DEADLINE)) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: place(st, pb, *ids(), target_zone="atlantis")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: place(st, pb, "", acct)) == grpc.StatusCode.INVALID_ARGUMENT
    # A character resumes at its saved zone and position; a saved spot in a wall does not count.
    r = place(st, pb, *ids(), saved_zone="meadow", saved_position=pb[0].Point(x=100.5, y=60))
    assert (r.zone_id, r.position.x, r.position.y) == ("meadow", 100.5, 60)
    r = place(st, pb, *ids(), saved_zone="meadow", saved_position=pb[0].Point(x=200, y=140))
    assert r.zone_id == "meadow" and (r.position.x, r.position.y) == (40, 256)  # pond -> spawn
    m = requests.get(d.ops_url + "/metrics", timeout=5).text
    assert 'wy_world_placements_total{result="existing"} 1' in m


def test_concurrent_places_make_one_placement(daemon, pb, clean_redis, games, stack):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    games.append(FakeGame(st, pb, "g1"))
    ch, acct = ids()
    targets = ["oakvale", "meadow", "whisper_woods", ""] * 5
    barrier = threading.Barrier(len(targets))
    out = [None] * len(targets)

    def one(i):
        barrier.wait()
        out[i] = place(st, pb, ch, acct, target_zone=targets[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = {(p.zone_id, p.instance_id, p.game_id, p.placed_at_ms) for p in out}
    assert len(got) == 1, got
    zone = out[0].zone_id
    db = clean_redis[1]
    # One seat, in that zone only: the losers left the seats they took.
    for z in ("oakvale", "meadow", "whisper_woods"):
        seats = int(stack.redis_cli("-n", db, "ZCARD", "world:{zone:%s}:seats" % z))
        assert seats == (1 if z == zone else 0), z


def test_full_and_instanced_zones(daemon, pb, clean_redis, games, tmp_path):
    def small_town(z):
        z["capacity"] = 2
        return z
    d = start(daemon, clean_redis[0], WY_WORLD_ZONES_DIR=zones_copy(tmp_path, {"oakvale.json": small_town}))
    st = stub(d, pb)
    games.append(FakeGame(st, pb, "g1"))
    insts = [place(st, pb, *ids()).instance_id for _ in range(5)]
    assert insts == ["oakvale#1", "oakvale#1", "oakvale#2", "oakvale#2", "oakvale#3"]
    # The crypt: one instance per party (capacity 5); alone, a party of one.
    party = [place(st, pb, *ids(), target_zone="crypt", party_id="p1") for _ in range(5)]
    assert len({p.instance_id for p in party}) == 1
    assert code_of(lambda: place(st, pb, *ids(), target_zone="crypt", party_id="p1")) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    other = place(st, pb, *ids(), target_zone="crypt", party_id="p2")
    alone = place(st, pb, *ids(), target_zone="crypt")
    assert len({party[0].instance_id, other.instance_id, alone.instance_id}) == 3


def test_transfer_through_a_portal(daemon, pb, clean_redis, games, stack):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    games.append(FakeGame(st, pb, "g1"))
    ch, acct = ids()
    transfer = lambda portal: st.Transfer(pb[0].TransferRequest(character_id=ch, portal_id=portal),
                                          timeout=DEADLINE)
    assert code_of(lambda: transfer("east_gate")) == grpc.StatusCode.NOT_FOUND  # not placed
    p = place(st, pb, ch, acct)
    assert p.zone_id == "oakvale"
    assert code_of(lambda: transfer("crypt_door")) == grpc.StatusCode.NOT_FOUND  # not in oakvale
    t = transfer("east_gate")
    assert (t.zone_id, t.instance_id, t.account_id, t.position.x, t.position.y) == \
        ("meadow", "meadow#1", acct, 24, 256)
    loc = st.Locate(pb[0].LocateRequest(account_id=acct), timeout=DEADLINE)
    assert (loc.zone_id, loc.position.x) == ("meadow", 24)
    db = clean_redis[1]
    assert stack.redis_cli("-n", db, "ZCARD", "world:{zone:oakvale}:seats") == "0"
    assert stack.redis_cli("-n", db, "ZCARD", "world:{zone:meadow}:seats") == "1"
    # Into the dungeon (its own instance) and out again.
    t = transfer("crypt_door")
    assert t.zone_id == "crypt" and t.instance_id.startswith("crypt#")
    t = transfer("exit")
    assert (t.zone_id, t.position.x, t.position.y) == ("meadow", 384, 384)
    # The crypt instance ended with its last player.
    assert stack.redis_cli("-n", db, "HLEN", "world:{zone:crypt}") == "0"


def test_dead_game_zones_are_placed_on_a_live_one(daemon, pb, clean_redis, games):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    a = FakeGame(st, pb, "game-a")
    games.append(a)
    chars = []
    for zone in ("oakvale", "meadow", "whisper_woods"):
        ch, acct = ids()
        assert place(st, pb, ch, acct, target_zone=zone).game_id == "game-a"
        chars.append((ch, acct, zone))
    hosted = ["meadow#1", "oakvale#1", "whisper_woods#1"]
    # Each heartbeat answers the instances the game hosts.
    wait_until(lambda: list(a.resp.instances) == hosted, timeout=20, what="game-a told its instances")
    b = FakeGame(st, pb, "game-b", players=50)  # more loaded, but live
    games.append(b)
    assert list(b.resp.instances) == []
    a.stop()
    silent_since = a.last
    # Bound (README): WY_WORLD_GAME_DEAD_AFTER + one registry pass (0.5 s) + a script per zone.
    for ch, _, zone in chars:
        wait_until(lambda: st.Locate(pb[0].LocateRequest(character_id=ch),
                                     timeout=DEADLINE).game_id == "game-b",
                   timeout=DEAD_AFTER_S + 20, what="%s on game-b" % zone)
    moved = time.monotonic() - silent_since
    assert moved >= DEAD_AFTER_S - 0.5  # not before the game was dead
    lines = [r for r in d.log_lines() if r.get("msg") == "zone instance placed again"]
    assert {(r["from"], r["to"]) for r in lines} == {("game-a", "game-b")}
    assert {r["instance"] for r in lines} == {"oakvale#1", "meadow#1", "whisper_woods#1"}
    wait_until(lambda: list(b.resp.instances) == hosted, timeout=20, what="game-b told its instances")
    listed = {g.game_id: list(g.instances) for g in st.ListGames(pb[0].ListGamesRequest(),
                                                                 timeout=DEADLINE).games}
    assert listed == {"game-a": [], "game-b": hosted}
    # A player entering one of those zones now gets the survivor.
    assert place(st, pb, *ids(), target_zone="meadow").game_id == "game-b"
    m = requests.get(d.ops_url + "/metrics", timeout=5).text
    assert "wy_world_instances_replaced_total 3" in m


def test_a_draining_game_gets_no_placement_and_its_zones_move(daemon, pb, clean_redis, games):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    a = FakeGame(st, pb, "game-a")
    games.append(a)
    ch, acct = ids()
    assert place(st, pb, ch, acct).game_id == "game-a"
    games.append(FakeGame(st, pb, "game-b", players=90))  # nearly full, but the only other one
    a.req.draining = True  # SIGTERM: live, takes no new players, its zones go elsewhere
    wait_until(lambda: st.Locate(pb[0].LocateRequest(character_id=ch), timeout=DEADLINE).game_id
               == "game-b", timeout=20, what="oakvale#1 on game-b")
    assert place(st, pb, *ids(), target_zone="meadow").game_id == "game-b"
    assert all(g.live for g in st.ListGames(pb[0].ListGamesRequest(), timeout=DEADLINE).games)


def test_two_replicas_and_a_restart_share_the_world(daemon, pb, clean_redis, games):
    w1 = start(daemon, clean_redis[0])
    w2 = start(daemon, clean_redis[0])
    s1, s2 = stub(w1, pb), stub(w2, pb)
    games.append(FakeGame(s1, pb, "g1"))  # heartbeats reach replica 1 only
    ch, acct = ids()
    # Replica 2 learns the game from Redis within one registry pass.
    p2 = wait_until(lambda: _try_place(s2, pb, ch, acct), timeout=20, what="replica 2 places")
    p1 = place(s1, pb, ch, acct)
    assert (p1.instance_id, p1.game_id, p1.placed_at_ms) == (p2.instance_id, "g1", p2.placed_at_ms)
    # The game heartbeats to replica 1, which learns the instance through Redis too.
    wait_until(lambda: list(games[0].resp.instances) == [p1.instance_id], timeout=20,
               what="replica 1 tells g1 its instance")
    # Concurrent places of one character on both replicas: one placement.
    ch2, acct2 = ids()
    out = []
    barrier = threading.Barrier(6)

    def one(s, target):
        barrier.wait()
        out.append(place(s, pb, ch2, acct2, target_zone=target))
    ts = [threading.Thread(target=one, args=(s, t)) for s in (s1, s2) for t in ("meadow", "oakvale", "")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len({(p.zone_id, p.instance_id, p.placed_at_ms) for p in out}) == 1
    # A restarted world knows everything (Redis holds it).
    w1.stop()
    w2.stop()
    w3 = start(daemon, clean_redis[0])
    s3 = stub(w3, pb)
    loc = s3.Locate(pb[0].LocateRequest(character_id=ch), timeout=DEADLINE)
    assert (loc.instance_id, loc.game_id) == (p1.instance_id, "g1")
    wait_until(lambda: [g.game_id for g in s3.ListGames(pb[0].ListGamesRequest(),
                                                        timeout=DEADLINE).games] == ["g1"],
               timeout=20, what="the registry read back")


def _try_place(st, pb, ch, acct):
    try:
        return place(st, pb, ch, acct)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def test_redis_outage_makes_world_unready_and_place_unavailable(daemon, pb, clean_redis, games, stack):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    games.append(FakeGame(st, pb, "g1"))
    ch, acct = ids()
    p = place(st, pb, ch, acct)
    stack.stop_redis()
    try:
        wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 503,
                   timeout=30, what="world 503 with Redis stopped")
        assert requests.get(d.ops_url + "/readyz", timeout=5).json()["down"] == ["redis"]
        assert code_of(lambda: place(st, pb, *ids())) == grpc.StatusCode.UNAVAILABLE
        assert code_of(lambda: st.Locate(pb[0].LocateRequest(character_id=ch), timeout=DEADLINE)) \
            == grpc.StatusCode.UNAVAILABLE
        # The catalog needs no Redis.
        assert len(st.ListZones(pb[0].ListZonesRequest(), timeout=DEADLINE).zones) == 4
    finally:
        stack.start_redis()
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               timeout=30, what="world ready again")
    # The test stack's Redis keeps no data across a restart: the registry is rebuilt from
    # the next heartbeats, and placing works again.
    again = wait_until(lambda: _try_place(st, pb, ch, acct), timeout=30, what="Place after the outage")
    assert (again.zone_id, again.game_id) == (p.zone_id, "g1")


def test_a_placement_lapses_after_its_ttl(daemon, pb, clean_redis, games, stack):
    d = start(daemon, clean_redis[0], WY_WORLD_PLACEMENT_TTL="1s")
    st = stub(d, pb)
    games.append(FakeGame(st, pb, "g1"))
    ch, acct = ids()
    first = place(st, pb, ch, acct)
    assert first.expires_at_ms - first.placed_at_ms in range(900, 1500)
    wait_until(lambda: _try_locate_code(st, pb, ch) == grpc.StatusCode.NOT_FOUND, timeout=20,
               what="the placement lapsed")
    # A lapsed placement is a new one, and its old seat is dropped (one seat, count 1).
    again = place(st, pb, ch, acct, target_zone="oakvale")
    assert again.placed_at_ms > first.placed_at_ms
    db = clean_redis[1]
    assert stack.redis_cli("-n", db, "ZCARD", "world:{zone:oakvale}:seats") == "1"
    assert stack.redis_cli("-n", db, "HGET", "world:{zone:oakvale}:count", "oakvale#1") == "1"


def _try_locate_code(st, pb, ch):
    try:
        st.Locate(pb[0].LocateRequest(character_id=ch), timeout=DEADLINE)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_sigterm_with_placements_in_flight_exits_0(daemon, pb, clean_redis, games):
    d = start(daemon, clean_redis[0])
    st = stub(d, pb)
    games.append(FakeGame(st, pb, "g1"))
    stop, answered = threading.Event(), []

    def load():
        while not stop.is_set():
            try:
                answered.append(place(st, pb, *ids()).zone_id)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e
                if not d.running():
                    return
    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    wait_until(lambda: len(answered) >= 20, timeout=30, what="placements under load")
    games[0].stop()
    rc = d.stop()
    stop.set()
    for t in ts:
        t.join()
    assert rc == 0
    assert set(answered) == {"oakvale"}
