"""wy-actor rankings (Actor.TopCharacters / CharacterRank): Redis sorted sets by level and
XP fed from committed commands only, a deleted character leaving them, and the boards
rebuilt from PostgreSQL after Redis lost them (FLUSHALL)."""
import uuid

import grpc
import pytest

from harness.wait import wait_until

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def gain(st, m, actor, xp):
    while xp > 0:
        step = min(xp, 1000000)
        st.Apply(m.ApplyRequest(actor_id=actor, idempotency_key=str(uuid.uuid4()),
                                gain_xp=m.GainXp(amount=step)), timeout=DEADLINE)
        xp -= step


def rank(st, m, board, actor):
    e = st.CharacterRank(m.CharacterRankRequest(board=board, actor_id=actor), timeout=DEADLINE)
    return e.rank, e.score


def test_boards_follow_commits_and_come_back_after_flushall(daemon, stack, pb):
    d = daemon("actor", env={"WY_ACTOR_RANK_CHECK": "200ms"})
    ch = grpc.insecure_channel(d.grpc_addr)
    st = pb[1].ActorStub(ch)
    m = pb[0]
    # XP far above what other tests give, so these five are the top five.
    xps = [9000000000, 7000000000, 8000000000, 6000000000, 0]
    actors = []
    for xp in xps:
        c = st.CreateCharacter(m.CreateCharacterRequest(
            account_id=str(uuid.uuid4()), name="r" + uuid.uuid4().hex[:12], class_name="mage"),
            timeout=DEADLINE)
        actors.append(c.actor_id)
        gain(st, m, c.actor_id, xp // 1000)  # at most 9,000 commands of 1,000,000 would be slow
    expected = sorted((x // 1000, a) for x, a in zip(xps, actors) if x)[::-1]

    def board_ok():
        top = st.TopCharacters(m.TopCharactersRequest(board=m.XP, limit=4), timeout=DEADLINE)
        return [(e.score, e.actor_id) for e in top.entries] == expected and \
            [e.rank for e in top.entries] == [1, 2, 3, 4]

    wait_until(board_ok, timeout=30, what="the XP board with the four characters")
    for i, (score, a) in enumerate(expected):
        assert rank(st, m, m.XP, a) == (i + 1, score)
        level = st.GetCharacter(m.GetCharacterRequest(actor_id=a), timeout=DEADLINE).level
        assert rank(st, m, m.LEVEL, a)[1] == level
    assert rank(st, m, m.XP, actors[4]) == (0, 0)  # no XP: not ranked
    assert rank(st, m, m.XP, str(uuid.uuid4())) == (0, 0)
    with pytest.raises(grpc.RpcError) as e:
        st.TopCharacters(m.TopCharactersRequest(board=m.XP, limit=0), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        st.CharacterRank(m.CharacterRankRequest(actor_id=actors[0]), timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # A deleted character leaves the boards; the others move up.
    st.DeleteCharacter(m.DeleteCharacterRequest(actor_id=expected[0][1]), timeout=DEADLINE)
    wait_until(lambda: rank(st, m, m.XP, expected[0][1]) == (0, 0), timeout=30,
               what="the deleted character out of the board")
    assert rank(st, m, m.XP, expected[1][1]) == (1, expected[1][0])

    # Redis loses everything: the boards come back from PostgreSQL.
    stack.redis_cli("FLUSHALL")
    wait_until(lambda: rank(st, m, m.XP, expected[1][1]) == (1, expected[1][0]) and
               rank(st, m, m.XP, expected[3][1]) == (3, expected[3][0]), timeout=60,
               what="the XP board rebuilt after FLUSHALL")
    assert rank(st, m, m.XP, expected[0][1]) == (0, 0)  # still deleted
    level = st.GetCharacter(m.GetCharacterRequest(actor_id=expected[2][1]), timeout=DEADLINE).level
    assert rank(st, m, m.LEVEL, expected[2][1])[1] == level
    assert stack.redis_cli("EXISTS", "{rank}:ready").strip() == "1"
    wait_until(lambda: any(r.get("msg") == "rankings rebuilt from PostgreSQL"
                           for r in d.log_lines()), timeout=30, what="the rebuild's log line")
    ch.close()
