"""Chat sent from the game, end to end through the `wy` CLI (libs/client wyc_game): two
players register, create characters and `wy play` them; one says a line in its zone and
whispers the other with `wy play --say`, over its game WebSocket (wy-game -> Chat.Send with
the join ticket's account); the other, playing meanwhile, prints both messages, pushed to it
by its own game instance (and lobby) from wy.chat. Real wy-auth, wy-lobby, wy-actor,
wy-world, wy-game and wy-chat on the real stack."""
import json
import re
import subprocess
import threading
import uuid

import grpc
import pytest

from harness.wait import wait_until
from test_client_e2e import Wy, auth_env, keys, lobby_env, uniq  # noqa: F401

DEADLINE = 10


@pytest.fixture
def town(daemon, keys, stack):  # noqa: F811
    db = 6
    stack.redis_cli("-n", db, "FLUSHDB")
    redis_url = re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1)
    auth = daemon("auth", env=auth_env(keys))
    actor = daemon("actor")
    world = daemon("world", env={"WY_REDIS_URL": redis_url})
    chat = daemon("chat", env={"WY_REDIS_URL": redis_url})
    game = daemon("game", env={"WY_GAME_WORLD_GRPC": world.grpc_addr,
                               "WY_GAME_CHAT_GRPC": chat.grpc_addr})
    lobby = daemon("lobby", env=lobby_env(auth, WY_LOBBY_ACTOR_GRPC=actor.grpc_addr,
                                          WY_LOBBY_WORLD_GRPC=world.grpc_addr,
                                          WY_LOBBY_CHAT_GRPC=chat.grpc_addr,
                                          WY_REDIS_URL=redis_url))
    return auth, world, game, lobby


def test_wy_play_says_a_line_over_the_game_connection(build_dir, tmp_path, protos, town):
    import world_pb2
    import world_pb2_grpc
    auth, world, game, lobby = town
    wst = world_pb2_grpc.WorldStub(grpc.insecure_channel(world.grpc_addr))
    wait_until(lambda: any(g.game_id == game.instance_id and g.live for g in
                           wst.ListGames(world_pb2.ListGamesRequest(), timeout=DEADLINE).games),
               30, what="the game instance registered with world")
    players = []
    for i in range(2):
        wy = Wy(build_dir, tmp_path / ("creds%d" % i), auth, lobby)
        wy.register(uniq("g"))
        me = wy.ok("whoami")["account_id"]
        name = "c" + uuid.uuid4().hex[:10]
        wy.ok("character", "create", name, "mage")
        players.append((wy, me, name))
    (listener, bob, bob_char), (speaker, alice, alice_char) = players
    # bob plays and prints the chat its connections receive.
    proc = subprocess.Popen([listener.bin, "--json", "play", bob_char, "--for", "25"],
                            env=listener.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "welcome", first
    # alice says a line in her zone and whispers bob, from the game connection.
    sp = subprocess.run([speaker.bin, "--json", "play", alice_char, "--say", "zone",
                         "hello from the game", "--say", "@" + bob, "psst, bob"],
                        env=speaker.env(), capture_output=True, text=True, timeout=60)
    out, err = [json.loads(x) for x in sp.stdout.splitlines() if x.startswith("{")], sp.stderr
    assert sp.returncode == 0, (out, err)
    sent = [e for e in out if e.get("event") == "chat_sent"]
    assert len(sent) == 2, (out, err)
    zone_msg, whisper = sent
    assert zone_msg["channel_id"].startswith("zone:") and zone_msg["text"] == "hello from the game"
    assert whisper["channel_id"] == "whisper:%s|%s" % tuple(sorted([alice, bob]))
    welcome = [e for e in out if e.get("event") == "welcome"][0]
    assert zone_msg["channel_id"] == "zone:" + welcome["instance_id"]
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def got():
        evs = [json.loads(x) for x in list(lines) if x.startswith("{")]
        return {(e["channel_id"], e["seq"], e["text"], e["sender_id"], e["sender_name"])
                for e in evs if e.get("event") == "chat"}
    # Each shows who spoke: alice's character name (from her join ticket).
    want = {(whisper["channel_id"], whisper["seq"], "psst, bob", alice, alice_char)}
    if first["instance_id"] == welcome["instance_id"]:  # the same zone instance: bob hears it
        want.add((zone_msg["channel_id"], zone_msg["seq"], "hello from the game", alice,
                  alice_char))
    wait_until(lambda: want <= got(), 30, what="bob's wy play printing alice's messages")
    proc.terminate()  # SIGTERM: wy play leaves
    proc.wait(timeout=60)
    reader.join(timeout=10)
    assert proc.returncode == 0, proc.stderr.read()
    assert json.loads(lines[-1])["event"] == "left"
