"""wy-actor rankings (Actor.TopCharacters / CharacterRank): Redis sorted sets by level and
XP fed from committed commands only, a deleted character leaving them, and the boards
rebuilt from PostgreSQL after Redis lost them (FLUSHALL)."""
import random
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
    # Distinct XP (other characters of the stack may rank anywhere around them).
    base = random.randrange(10, 40) * 1000000 + random.randrange(1, 1000) * 4
    xps = [base + 3, base + 1, base + 2, base, 0]
    actors = []
    for xp in xps:
        c = st.CreateCharacter(m.CreateCharacterRequest(
            account_id=str(uuid.uuid4()), name="r" + uuid.uuid4().hex[:12], class_name="mage"),
            timeout=DEADLINE)
        actors.append(c.actor_id)
        gain(st, m, c.actor_id, xp)
    expected = sorted((x, a) for x, a in zip(xps, actors) if x)[::-1]

    def ours_ordered():
        got = [rank(st, m, m.XP, a) for _, a in expected]
        return [score for _, score in got] == [x for x, _ in expected] and \
            got[0][0] > 0 and all(got[i][0] + 1 == got[i + 1][0] for i in range(len(got) - 1))

    wait_until(ours_ordered, timeout=30, what="the four characters ranked in XP order")
    top = st.TopCharacters(m.TopCharactersRequest(board=m.XP, limit=100), timeout=DEADLINE)
    scores = [e.score for e in top.entries]
    assert scores == sorted(scores, reverse=True) and \
        [e.rank for e in top.entries] == list(range(1, len(scores) + 1))
    listed = [e.actor_id for e in top.entries if e.actor_id in actors]
    assert listed == [a for _, a in expected][:len(listed)]
    for _, a in expected:
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
    first = rank(st, m, m.XP, expected[0][1])[0]
    st.DeleteCharacter(m.DeleteCharacterRequest(actor_id=expected[0][1]), timeout=DEADLINE)
    wait_until(lambda: rank(st, m, m.XP, expected[0][1]) == (0, 0), timeout=30,
               what="the deleted character out of the board")
    before = [rank(st, m, m.XP, a) for _, a in expected[1:]]
    assert before[0] == (first, expected[1][0])

    # Redis loses everything: the boards come back from PostgreSQL.
    stack.redis_cli("FLUSHALL")
    wait_until(lambda: [rank(st, m, m.XP, a) for _, a in expected[1:]] == before, timeout=60,
               what="the XP board rebuilt after FLUSHALL")
    assert rank(st, m, m.XP, expected[0][1]) == (0, 0)  # still deleted
    level = st.GetCharacter(m.GetCharacterRequest(actor_id=expected[2][1]), timeout=DEADLINE).level
    assert rank(st, m, m.LEVEL, expected[2][1])[1] == level
    wait_until(lambda: stack.redis_cli("EXISTS", "{rank}:ready").strip() == "1", timeout=30,
               what="the boards marked complete again")
    wait_until(lambda: any(r.get("msg") == "rankings rebuilt from PostgreSQL"
                           for r in d.log_lines()), timeout=30, what="the rebuild's log line")
    ch.close()
