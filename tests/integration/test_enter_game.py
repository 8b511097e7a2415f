"""Lobby's enter_game against the real daemons (auth's test key for access tokens, wy-actor on
PostgreSQL, wy-world on Redis, wy-game): the character must be the account's, world places
it, the ticket lobby signs is accepted by the game instance world chose (and only once),
presence shows in-game with the zone and online again after the player leaves the game, and enter_game requests of one character at once
yield one placement. Tickets made through lobby are also refused by another game
instance."""
import os
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from harness.wait import wait_until
from test_game_join import GameClient, game_entry, start_game, start_world, wait_registered
from test_lobby import Client

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    import game_pb2
    import lobby_pb2
    import world_pb2
    import world_pb2_grpc
    return dict(actor=actor_pb2, actor_grpc=actor_pb2_grpc, game=game_pb2, lobby=lobby_pb2,
                world=world_pb2, world_grpc=world_pb2_grpc)


def access_token(daemon_log_dir, account):
    with open(os.path.join(daemon_log_dir, "auth-keys", "test.pem"), "rb") as f:
        priv = serialization.load_pem_private_key(f.read(), password=None)
    now = int(time.time())
    claims = {"iss": "wyvern-auth", "aud": "wyvern", "sub": account, "sid": uuid.uuid4().hex,
              "jti": uuid.uuid4().hex, "iat": now, "exp": now + 600}
    return jwt.encode(claims, priv, algorithm="EdDSA", headers={"kid": "test"})


@pytest.fixture
def road(daemon, stack, free_port):
    """actor, world, one game (registered), lobby wired to actor and world."""
    import re
    db = 6
    stack.redis_cli("-n", db, "FLUSHDB")
    redis_url = re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1)
    actor = daemon("actor")
    world = start_world(daemon, redis_url)
    game = start_game(daemon, world)
    lobby = daemon("lobby", env={"WY_LOBBY_ACTOR_GRPC": actor.grpc_addr,
                                 "WY_LOBBY_WORLD_GRPC": world.grpc_addr,
                                 "WY_LOBBY_MAX_MSGS_PER_SEC": "100"})
    lobby.ws_url = "ws://127.0.0.1:%d/v1/lobby" % lobby.client_port
    return actor, world, game, lobby


def new_character(actor, pb, account):
    st = pb["actor_grpc"].ActorStub(grpc.insecure_channel(actor.grpc_addr))
    return st.CreateCharacter(pb["actor"].CreateCharacterRequest(
        account_id=account, name="c" + uuid.uuid4().hex[:12], class_name="mage"),
        timeout=DEADLINE)


def ready_player(daemon_log_dir, pb, road):
    """Once the game is registered: a new account with a character, and its lobby session."""
    actor, world, game, lobby = road
    wst = pb["world_grpc"].WorldStub(grpc.insecure_channel(world.grpc_addr))
    wait_registered(wst, (None, pb["world"]), game)
    acct = str(uuid.uuid4())
    ch = new_character(actor, pb, acct)
    c = Client(lobby.ws_url)
    assert c.hello(access_token(daemon_log_dir, acct)).status.code == pb["lobby"].OK
    return acct, ch, c


def enter(c, pb, character_id):
    return c.call(enter_game=pb["lobby"].EnterGame(character_id=character_id))


def test_enter_game_gives_a_ticket_the_placed_game_accepts(daemon_log_dir, pb, road):
    actor, world, game, lobby = road
    wst = pb["world_grpc"].WorldStub(grpc.insecure_channel(world.grpc_addr))
    entry = wait_registered(wst, (None, pb["world"]), game)
    acct = str(uuid.uuid4())
    ch = new_character(actor, pb, acct)
    c = Client(lobby.ws_url)
    assert c.hello(access_token(daemon_log_dir, acct)).status.code == pb["lobby"].OK
    r = enter(c, pb, ch.actor_id)
    assert r.status.code == pb["lobby"].OK, r
    eg = r.entered_game
    assert eg.game_id == game.instance_id and eg.game_addr == entry.client_addr
    assert eg.zone_id == "oakvale" and eg.instance_id.startswith("oakvale#")
    assert eg.character_id == ch.actor_id and eg.ticket_expires_at_ms > time.time() * 1000
    # Presence: in-game with the zone.
    other = Client(lobby.ws_url)
    assert other.hello(access_token(daemon_log_dir, str(uuid.uuid4()))).status.code == \
        pb["lobby"].OK
    wait_until(lambda: other.call(get_presence=pb["lobby"].GetPresence(account_ids=[acct]))
               .presence.entries[0].state == pb["lobby"].IN_GAME, 10, what="presence in-game")
    p = other.call(get_presence=pb["lobby"].GetPresence(account_ids=[acct])).presence.entries[0]
    assert p.zone == "oakvale"
    # The ticket joins the game world chose, once.
    g = GameClient((pb["game"],), "ws://%s/v1/game" % eg.game_addr)
    m = g.join(eg.ticket)
    assert m.WhichOneof("body") == "welcome", m
    assert (m.welcome.game_id, m.welcome.instance_id, m.welcome.character_id) == \
        (game.instance_id, eg.instance_id, ch.actor_id)
    assert (m.welcome.position.x, m.welcome.position.y) == (eg.x, eg.y)
    g2 = GameClient((pb["game"],), "ws://%s/v1/game" % eg.game_addr)
    m = g2.join(eg.ticket)
    assert m.WhichOneof("body") == "error" and m.error.code == pb["game"].TICKET_REPLAYED
    g.close()


def test_presence_goes_back_to_online_when_the_player_leaves_the_game(daemon_log_dir, pb, road):
    """In game after enter_game and join; after leave, online again while the lobby
    session lives (world's locator has no placement any more)."""
    acct, ch, c = ready_player(daemon_log_dir, pb, road)
    lobby = road[3]
    r = enter(c, pb, ch.actor_id)
    assert r.status.code == pb["lobby"].OK, r
    g = GameClient((pb["game"],), "ws://%s/v1/game" % r.entered_game.game_addr)
    assert g.join(r.entered_game.ticket).WhichOneof("body") == "welcome"
    other = Client(lobby.ws_url)
    assert other.hello(access_token(daemon_log_dir, str(uuid.uuid4()))).status.code == \
        pb["lobby"].OK

    def presence():
        return other.call(get_presence=pb["lobby"].GetPresence(account_ids=[acct])) \
            .presence.entries[0]
    p = presence()
    assert (p.state, p.zone) == (pb["lobby"].IN_GAME, "oakvale")
    g.send(leave=pb["game"].Leave())
    g.wait_closed()
    wait_until(lambda: presence().state == pb["lobby"].ONLINE, 20, what="presence online")
    p = presence()
    assert (p.state, p.zone, p.account_id) == (pb["lobby"].ONLINE, "", acct)
    # Entering again shows it in game again.
    r = enter(c, pb, ch.actor_id)
    assert r.status.code == pb["lobby"].OK, r
    p = presence()
    assert (p.state, p.zone) == (pb["lobby"].IN_GAME, "oakvale")


def test_enter_game_refuses_another_accounts_character(daemon_log_dir, pb, road):
    actor, world, game, lobby = road
    ch = new_character(actor, pb, str(uuid.uuid4()))
    c = Client(lobby.ws_url)
    assert c.hello(access_token(daemon_log_dir, str(uuid.uuid4()))).status.code == pb["lobby"].OK
    assert enter(c, pb, ch.actor_id).status.code == pb["lobby"].NOT_FOUND
    assert enter(c, pb, str(uuid.uuid4())).status.code == pb["lobby"].NOT_FOUND
    assert enter(c, pb, "").status.code == pb["lobby"].INVALID
    assert enter(c, pb, "x" * 65).status.code == pb["lobby"].INVALID


def test_concurrent_enter_game_of_one_character_is_one_placement(daemon_log_dir, pb, road):
    acct, ch, c = ready_player(daemon_log_dir, pb, road)
    wst = pb["world_grpc"].WorldStub(grpc.insecure_channel(road[1].grpc_addr))
    rids = [c.send(enter_game=pb["lobby"].EnterGame(character_id=ch.actor_id)) for _ in range(8)]
    answers = {}
    while len(answers) < len(rids):
        m = c.recv()
        assert m is not None
        if m.request_id in rids:
            answers[m.request_id] = m
    ok = [m for m in answers.values() if m.status.code == pb["lobby"].OK]
    busy = [m for m in answers.values() if m.status.code == pb["lobby"].CONFLICT]
    assert ok and len(ok) + len(busy) == len(rids)
    # Then more, one after the other: always the same placement.
    for _ in range(3):
        ok.append(enter(c, pb, ch.actor_id))
    assert len({(m.entered_game.game_id, m.entered_game.instance_id, m.entered_game.x,
                 m.entered_game.y) for m in ok}) == 1
    loc = wst.Locate(pb["world"].LocateRequest(character_id=ch.actor_id), timeout=DEADLINE)
    assert loc.instance_id == ok[0].entered_game.instance_id
    # Each answer carries its own ticket: one join works, every ticket is single use.
    assert len({m.entered_game.ticket for m in ok}) == len(ok)


def test_ticket_from_lobby_is_refused_by_another_game_instance(daemon_log_dir, daemon, pb, road):
    actor, world, game, lobby = road
    wst = pb["world_grpc"].WorldStub(grpc.insecure_channel(world.grpc_addr))
    wait_registered(wst, (None, pb["world"]), game)
    other = start_game(daemon, world, WY_GAME_ZONES="meadow")  # never placed in oakvale
    wait_registered(wst, (None, pb["world"]), other)
    acct = str(uuid.uuid4())
    ch = new_character(actor, pb, acct)
    c = Client(lobby.ws_url)
    assert c.hello(access_token(daemon_log_dir, acct)).status.code == pb["lobby"].OK
    eg = enter(c, pb, ch.actor_id).entered_game
    assert eg.game_id == game.instance_id
    g = GameClient((pb["game"],), other.ws_url)
    m = g.join(eg.ticket)
    assert m.WhichOneof("body") == "error" and m.error.code == pb["game"].TICKET_WRONG_INSTANCE
    assert g.wait_closed() == 4001
    assert game_entry(wst, (None, pb["world"]), other.instance_id).players == 0


def test_kill9_game_its_zones_go_to_the_survivor_and_players_enter_there(daemon_log_dir, daemon,
                                                                          pb, road):
    """Must-show 3: two game instances; kill -9 of the one hosting the zone instance; world
    places it on the other (services/world/README.md bound: WY_WORLD_GAME_DEAD_AFTER, here
    3 s, + one 500 ms registry pass + a script per zone), and players entering get the
    survivor: a new one and the one placed before the kill."""
    actor, world, game1, lobby = road
    game2 = start_game(daemon, world)
    W = (None, pb["world"])
    wst = pb["world_grpc"].WorldStub(grpc.insecure_channel(world.grpc_addr))
    wait_registered(wst, W, game1)
    wait_registered(wst, W, game2)
    acct_a = str(uuid.uuid4())
    ch_a = new_character(actor, pb, acct_a)
    a = Client(lobby.ws_url)
    assert a.hello(access_token(daemon_log_dir, acct_a)).status.code == pb["lobby"].OK
    eg = enter(a, pb, ch_a.actor_id).entered_game
    victim = {game1.instance_id: game1, game2.instance_id: game2}[eg.game_id]
    survivor = game2 if victim is game1 else game1
    g = GameClient((pb["game"],), "ws://%s/v1/game" % eg.game_addr)
    assert g.join(eg.ticket).WhichOneof("body") == "welcome"

    victim.kill9()
    t0 = time.monotonic()
    wait_until(lambda: eg.instance_id in game_entry(wst, W, survivor.instance_id).instances, 30,
               what="%s placed on the survivor" % eg.instance_id)
    moved_after = time.monotonic() - t0
    assert not game_entry(wst, W, victim.instance_id).live
    world.wait_log(lambda r: r.get("msg") == "zone instance placed again" and
                   r.get("instance") == eg.instance_id and r.get("to") == survivor.instance_id)
    print("zone instance %s on the survivor %.1f s after the kill (bound: 3 s + 0.5 s + a "
          "script)" % (eg.instance_id, moved_after))

    # A new player entering that zone gets the survivor, and joins there.
    acct_b = str(uuid.uuid4())
    ch_b = new_character(actor, pb, acct_b)
    b = Client(lobby.ws_url)
    assert b.hello(access_token(daemon_log_dir, acct_b)).status.code == pb["lobby"].OK
    eb = enter(b, pb, ch_b.actor_id).entered_game
    assert (eb.game_id, eb.instance_id) == (survivor.instance_id, eg.instance_id)
    gb = GameClient((pb["game"],), "ws://%s/v1/game" % eb.game_addr)
    m = gb.join(eb.ticket)
    assert m.WhichOneof("body") == "welcome" and m.welcome.game_id == survivor.instance_id
    # The player who was on the dead instance enters again: same placement, the survivor.
    ea = enter(a, pb, ch_a.actor_id).entered_game
    assert (ea.game_id, ea.instance_id) == (survivor.instance_id, eg.instance_id)
    ga = GameClient((pb["game"],), "ws://%s/v1/game" % ea.game_addr)
    assert ga.join(ea.ticket).WhichOneof("body") == "welcome"


def test_friends_list_shows_a_friend_in_game_with_the_zone(daemon_log_dir, pb, road):
    """A friend who entered the game is IN_GAME with the zone in the friends list (the
    session record says "in-game:<zone>", checked with world's locator as get_presence
    does), and ONLINE again once they left the game."""
    actor, world, game, lobby = road
    acct, ch, c = ready_player(daemon_log_dir, pb, road)
    st = pb["actor_grpc"].ActorStub(grpc.insecure_channel(actor.grpc_addr))
    facct = str(uuid.uuid4())
    fch = new_character(actor, pb, facct)
    st.RequestFriend(pb["actor"].FriendCommand(actor_id=fch.actor_id, other_actor_id=ch.actor_id,
                                               txn_id="t-" + uuid.uuid4().hex), timeout=DEADLINE)
    st.AcceptFriend(pb["actor"].FriendCommand(actor_id=ch.actor_id, other_actor_id=fch.actor_id,
                                              txn_id="t-" + uuid.uuid4().hex), timeout=DEADLINE)
    f = Client(lobby.ws_url)
    assert f.hello(access_token(daemon_log_dir, facct)).status.code == pb["lobby"].OK

    def friend():
        r = f.call(list_friends=pb["lobby"].ListFriends(actor_id=fch.actor_id))
        assert r.status.code == pb["lobby"].OK, r
        [e] = r.friends.friends
        assert (e.actor_id, e.status) == (ch.actor_id, pb["lobby"].FRIEND_ACCEPTED)
        return e
    e = friend()
    assert (e.presence, e.zone) == (pb["lobby"].ONLINE, "")
    r = enter(c, pb, ch.actor_id)
    assert r.status.code == pb["lobby"].OK, r
    # The session record turns in-game with its next write (as get_presence sees it).
    e = wait_until(lambda: (lambda x: x if x.presence == pb["lobby"].IN_GAME else None)(friend()),
                   10, what="the friend in game")
    assert e.zone == "oakvale"
    # Joined, then left: world's locator has no placement, the friend is online again.
    g = GameClient((pb["game"],), "ws://%s/v1/game" % r.entered_game.game_addr)
    assert g.join(r.entered_game.ticket).WhichOneof("body") == "welcome"
    assert friend().presence == pb["lobby"].IN_GAME
    g.send(leave=pb["game"].Leave())
    g.wait_closed()
    wait_until(lambda: friend().presence == pb["lobby"].ONLINE, 20, what="friend online")
    assert friend().zone == ""


def test_session_record_says_in_game_before_entered_game(daemon_log_dir, daemon, stack, pb):
    """Whoever reads the session once the player has entered_game (a friend's presence,
    another lobby instance) sees it in game: lobby answers only after the record's write is
    acknowledged. Lobby's link to Redis delays what it sends by 0.4 s, so an answer sent
    before the write landed would be seen with the record still "online"."""
    import re
    from harness.delayproxy import DelayProxy
    from harness.stack import _hostport
    db = 6
    stack.redis_cli("-n", db, "FLUSHDB")
    redis_url = re.sub(r"(/\d+)?$", "/%d" % db, stack.redis_url, count=1)
    host, port = _hostport(stack.redis_url)
    proxy = DelayProxy(host, port, 0.4)
    try:
        actor = daemon("actor")
        world = start_world(daemon, redis_url)
        game = start_game(daemon, world)
        slow = redis_url.replace("%s:%d" % (host, port), "127.0.0.1:%d" % proxy.port, 1)
        lobby = daemon("lobby", env={"WY_LOBBY_ACTOR_GRPC": actor.grpc_addr,
                                     "WY_LOBBY_WORLD_GRPC": world.grpc_addr,
                                     "WY_REDIS_URL": slow})
        lobby.ws_url = "ws://127.0.0.1:%d/v1/lobby" % lobby.client_port
        acct, ch, c = ready_player(daemon_log_dir, pb, (actor, world, game, lobby))
        sid = stack.redis_cli("-n", db, "GET", "sess:{%s}:acct" % acct).strip()
        rec = "sess:{%s}:s:%s" % (acct, sid)
        assert stack.redis_cli("-n", db, "HGET", rec, "state").strip() == "online"
        r = enter(c, pb, ch.actor_id)
        assert r.status.code == pb["lobby"].OK, r
        # Read at once, as another instance would: no waiting for the record to catch up.
        assert stack.redis_cli("-n", db, "HGET", rec, "state").strip() == "in-game:oakvale"
        c.close()
    finally:
        proxy.close()
