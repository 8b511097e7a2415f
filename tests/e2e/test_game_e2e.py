"""Must-show 1 of issue 13, end to end through the `wy` CLI (libs/client): register -> login ->
lobby -> character -> `wy play` (enter_game at lobby, join at the game instance world placed
the character on) -> welcome from that instance -> leave (position saved on wy.gameplay) ->
`wy play` again resumes at the saved position once wy-actor has applied it. Real wy-auth,
wy-lobby, wy-actor, wy-world and two wy-game instances on the real stack.

Everything the player does goes through `wy` (`wy character create`, `wy play`); the test
reads world's registry and moves the stored character through gRPC (an operator's view)."""
import json
import re
import subprocess
import time
import uuid

import grpc
import pytest

from harness.wait import wait_until
from test_client_e2e import Wy, auth_env, keys, lobby_env, uniq  # noqa: F401

DEADLINE = 10


@pytest.fixture(scope="module")
def pbs(protos):
    import actor_pb2
    import actor_pb2_grpc
    import world_pb2
    import world_pb2_grpc
    return actor_pb2, actor_pb2_grpc, world_pb2, world_pb2_grpc


@pytest.fixture(scope="module")
def road(module_daemon, keys, stack):
    db = 5
    stack.redis_cli("-n", db, "FLUSHDB")
    redis_url = re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1)
    auth = module_daemon("auth", env=auth_env(keys))
    actor = module_daemon("actor")
    world = module_daemon("world", env={"WY_REDIS_URL": redis_url,
                                        "WY_WORLD_GAME_DEAD_AFTER": "3s"})
    games = [module_daemon("game", env={"WY_GAME_WORLD_GRPC": world.grpc_addr}) for _ in range(2)]
    lobby = module_daemon("lobby", env=lobby_env(auth, WY_LOBBY_ACTOR_GRPC=actor.grpc_addr,
                                                 WY_LOBBY_WORLD_GRPC=world.grpc_addr))
    return auth, actor, world, games, lobby


def world_games(world, pbs):
    st = pbs[3].WorldStub(grpc.insecure_channel(world.grpc_addr))
    return {g.game_id: g for g in st.ListGames(pbs[2].ListGamesRequest(), timeout=DEADLINE).games}


def character_position(actor, pbs, actor_id):
    st = pbs[1].ActorStub(grpc.insecure_channel(actor.grpc_addr))
    return st.GetCharacter(pbs[0].GetCharacterRequest(actor_id=actor_id), timeout=DEADLINE).position


def play(wy, *args, wait=True):
    """`wy --json play ...`: the process, or its JSON lines once it ended."""
    p = subprocess.Popen([wy.bin, "--json", "play"] + list(args), env=wy.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, "wy play -> %d\n%s\n%s" % (p.returncode, out, err)
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def move(actor, pbs, actor_id, zone, x, y):
    st = pbs[1].ActorStub(grpc.insecure_channel(actor.grpc_addr))
    st.Apply(pbs[0].ApplyRequest(actor_id=actor_id, idempotency_key=str(uuid.uuid4()),
                                 move=pbs[0].Move(position=pbs[0].Position(zone=zone, x=x, y=y))),
             timeout=DEADLINE)


def test_register_login_enter_leave_and_resume(build_dir, tmp_path, pbs, road):
    auth, actor, world, games, lobby = road
    wait_until(lambda: all(g.instance_id in world_games(world, pbs) and
                           world_games(world, pbs)[g.instance_id].live for g in games), 30,
               what="both game instances registered with world")
    wy = Wy(build_dir, tmp_path / "creds", auth, lobby)
    user = uniq("p")
    wy.register(user)
    wy.login(user)
    me = wy.ok("whoami")["account_id"]
    name = "c" + uuid.uuid4().hex[:10]
    created = wy.ok("character", "create", name, "mage")["characters"][0]
    assert created["name"] == name

    class Ch:  # the character as the test refers to it
        actor_id = created["actor_id"]
    ch = Ch

    # The character stands in the meadow (a spawn point, shifted inside its cell).
    wst = pbs[3].WorldStub(grpc.insecure_channel(world.grpc_addr))
    meadow = [z for z in wst.ListZones(pbs[2].ListZonesRequest(), timeout=DEADLINE).zones
              if z.id == "meadow"][0]
    p1 = (meadow.spawns[0].x + 0.5, meadow.spawns[0].y + 0.5)
    move(actor, pbs, ch.actor_id, "meadow", *p1)

    # Enter: welcome from the game instance world placed the zone instance on, at the saved
    # position; stay 4 s.
    proc = play(wy, name, "--for", "4", wait=False)  # by its name
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "welcome", first
    assert first["character_id"] == ch.actor_id and first["zone_id"] == "meadow"
    assert (round(first["x"], 3), round(first["y"], 3)) == (round(p1[0], 3), round(p1[1], 3))
    hosts = world_games(world, pbs)
    assert first["game_id"] in {g.instance_id for g in games}
    assert first["instance_id"] in hosts[first["game_id"]].instances, \
        "welcome from %s, but world hosts %s elsewhere" % (first["game_id"], first["instance_id"])
    # Another player sees it in the game, in the meadow.
    other = Wy(build_dir, tmp_path / "creds2", auth, lobby)
    other.register(uniq("o"))
    pres = other.ok("presence", me)["entries"][0]
    assert (pres["state"], pres["zone"]) == ("in-game", "meadow"), pres
    # While it plays, something else moves the stored character: the leave's save must win.
    move(actor, pbs, ch.actor_id, "oakvale", 200.0, 200.0)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    left = json.loads(out.splitlines()[-1])
    assert left["event"] == "left"
    assert (round(left["x"], 3), round(left["y"], 3)) == (round(p1[0], 3), round(p1[1], 3))

    # The position saved on leave reaches the actor (wy.gameplay, consumed by wy-actor) ...
    wait_until(lambda: character_position(actor, pbs, ch.actor_id).zone == "meadow", 60,
               what="wy-actor applied the position saved on leave")
    # ... and the next entry resumes there.
    evs = play(wy, ch.actor_id)
    assert evs[0]["event"] == "welcome" and evs[0]["zone_id"] == "meadow"
    assert (round(evs[0]["x"], 3), round(evs[0]["y"], 3)) == (round(p1[0], 3), round(p1[1], 3))


def test_play_map_shows_the_player_and_arrow_keys_move_it(build_dir, tmp_path, pbs, road):
    """`wy play --map` (issue 14): the ASCII map shows the player; the right arrow runs it east
    (server-authoritative: inputs through libs/client), q leaves at the new position."""
    auth, actor, world, games, lobby = road
    wy = Wy(build_dir, tmp_path / "creds", auth, lobby)
    user = uniq("m")
    wy.register(user)
    wy.login(user)
    acct = wy.ok("whoami")["account_id"]
    ch = pbs[1].ActorStub(grpc.insecure_channel(actor.grpc_addr)).CreateCharacter(
        pbs[0].CreateCharacterRequest(account_id=acct, name="m" + uuid.uuid4().hex[:10],
                                      class_name="mage"), timeout=DEADLINE)
    move(actor, pbs, ch.actor_id, "meadow", 100.5, 300.5)
    p = subprocess.Popen([wy.bin, "play", ch.actor_id, "--map"], env=wy.env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline().decode()
    assert first.startswith("welcome:"), first
    p.stdin.write(b"\x1b[C")  # right arrow: run east (6 m/s)
    p.stdin.flush()
    time.sleep(2.0)  # let it run a while; the assertion is on where it ended, not on timing
    p.stdin.write(b" q")
    p.stdin.flush()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    text = out.decode(errors="replace")
    assert "@" in text and "visible" in text, text[-2000:]
    left = [l for l in text.splitlines() if l.startswith("left: position")][-1]
    x = float(left.split("(")[1].split(",")[0])
    assert x > 100.5 + 3, left
