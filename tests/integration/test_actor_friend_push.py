"""Friend pushes follow the committed wy.actor events (issue 12: "friend requests and
accepts pushed to the other player wherever they are connected"), whatever path made the
change: here another service calls wy-actor's gRPC API directly, and the players sit on
two different lobby instances. A retried command (same txn_id: no new event) pushes
nothing; a decline pushes nothing."""
import uuid

import grpc
import pytest

from test_lobby import Client, keys, start_lobby, token  # noqa: F401 (keys: a fixture)

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    import lobby_pb2
    return actor_pb2, actor_pb2_grpc, lobby_pb2


def next_friend_push(c, timeout=60):
    """The next friend_push c receives (other pushes are kept in c.pushes)."""
    c.ws.settimeout(timeout)
    while True:
        m = c.recv()
        assert m is not None, "the lobby closed the connection (%s)" % c.close_code
        if m.WhichOneof("body") == "friend_push":
            return m.friend_push
        c.pushes.append(m)


def test_friend_changes_made_directly_on_actor_are_pushed(daemon, protos, keys, free_port, pb):
    m, mg, lpb = pb
    actor = daemon("actor")
    over = dict(ACTOR_GRPC=actor.grpc_addr, IDLE_TIMEOUT="120s", SESSION_TTL="120s")
    l1 = start_lobby(daemon, keys, free_port, **over)
    l2 = start_lobby(daemon, keys, free_port, **over)
    st = mg.ActorStub(grpc.insecure_channel(actor.grpc_addr))
    acct_a, acct_b = str(uuid.uuid4()), str(uuid.uuid4())

    def character(acct):
        return st.CreateCharacter(m.CreateCharacterRequest(
            account_id=acct, name="c" + uuid.uuid4().hex[:12], class_name="mage"),
            timeout=DEADLINE)
    a, b = character(acct_a), character(acct_b)
    ca, cb = Client(l1.ws_url), Client(l2.ws_url)
    assert ca.hello(token(keys, acct_a)).status.code == lpb.OK
    assert cb.hello(token(keys, acct_b)).status.code == lpb.OK

    # a asks b over gRPC (no lobby involved): b, on the other lobby instance, hears it.
    ask = m.FriendCommand(actor_id=a.actor_id, other_actor_id=b.actor_id,
                          txn_id="ask-" + uuid.uuid4().hex)
    st.RequestFriend(ask, timeout=DEADLINE)
    p = next_friend_push(cb)
    assert (p.kind, p.from_actor_id, p.from_name, p.to_actor_id, p.to_name) == \
        ("request", a.actor_id, a.name, b.actor_id, b.name)

    # The same command again: replayed, no new event, so no second push. b declines (no
    # push) and a asks again: the next push b hears is that new request, not a repeat.
    assert st.RequestFriend(ask, timeout=DEADLINE).replayed
    st.DeclineFriend(m.FriendCommand(actor_id=b.actor_id, other_actor_id=a.actor_id,
                                     txn_id="no-" + uuid.uuid4().hex), timeout=DEADLINE)
    st.RequestFriend(m.FriendCommand(actor_id=a.actor_id, other_actor_id=b.actor_id,
                                     txn_id="ask2-" + uuid.uuid4().hex), timeout=DEADLINE)
    p = next_friend_push(cb)
    assert (p.kind, p.from_actor_id) == ("request", a.actor_id)

    # b accepts over gRPC: a, on the first instance, hears "accepted" from b; b hears
    # nothing about its own accept (the next push b gets is the one below).
    st.AcceptFriend(m.FriendCommand(actor_id=b.actor_id, other_actor_id=a.actor_id,
                                    txn_id="yes-" + uuid.uuid4().hex), timeout=DEADLINE)
    p = next_friend_push(ca)
    assert (p.kind, p.from_actor_id, p.from_name, p.to_actor_id, p.to_name) == \
        ("accepted", b.actor_id, b.name, a.actor_id, a.name)
    c = character(str(uuid.uuid4()))
    st.RequestFriend(m.FriendCommand(actor_id=c.actor_id, other_actor_id=b.actor_id,
                                     txn_id="c-" + uuid.uuid4().hex), timeout=DEADLINE)
    p = next_friend_push(cb)
    assert (p.kind, p.from_actor_id, p.to_actor_id) == ("request", c.actor_id, b.actor_id)

    # A request through a lobby that is refused (already friends) writes no event and
    # pushes nothing: the next push a hears is a new character's request.
    r = cb.call(friend_request=lpb.FriendAction(actor_id=b.actor_id, other_actor_id=a.actor_id))
    assert r.status.code == lpb.ALREADY_EXISTS, r
    d = character(str(uuid.uuid4()))
    st.RequestFriend(m.FriendCommand(actor_id=d.actor_id, other_actor_id=a.actor_id,
                                     txn_id="d-" + uuid.uuid4().hex), timeout=DEADLINE)
    p = next_friend_push(ca)
    assert (p.kind, p.from_actor_id) == ("request", d.actor_id)
    ca.close()
    cb.close()
