"""wy-actor transactions across instances: two real wy-actor instances, trades between
characters owned by different instances (one side held through its owner, HoldSide /
ReleaseSide, the coordinator's one statement fencing each side with its own owner and
epoch). Concurrent trades conserve every item and coin; kill -9 of the remote
participant's instance in the middle of a batch leaves each trade whole or absent in
PostgreSQL, and the survivor serves every character from it after the takeover."""
import time

import grpc
import pytest

from harness.wait import wait_until
from test_actor_txn import (DEADLINE, GEMS0, GOLD0, ORE0, character, committed_txns,
                            run_trades, stub, totals, trade, traded_events)
from test_actor_txn import retry_unavailable as retry


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def owned(stack, d):
    return int(stack.psql("SELECT count(*) FROM actor.owners WHERE instance = '%s'"
                          % d.instance_id))


def owner_of(stack, actor):
    return stack.psql("SELECT instance FROM actor.owners WHERE shard = %d"
                      % int(actor[:2], 16)).strip()


def two_instances(daemon, stack, pb, per_side):
    """Two instances with the shards spread, and per_side characters owned by each:
    (a, b, stubs, channels, chars on a, chars on b)."""
    a, b = daemon("actor"), daemon("actor")
    wait_until(lambda: owned(stack, a) > 0 and owned(stack, b) > 0
               and owned(stack, a) + owned(stack, b) == 256,
               timeout=30, what="shards spread on two instances")
    sa, cha = stub(a, pb)
    sb, chb = stub(b, pb)
    on_a = [retry(lambda: character(sa, pb)) for _ in range(per_side)]
    on_b = [retry(lambda: character(sb, pb)) for _ in range(per_side)]
    assert {owner_of(stack, x) for x in on_a} == {a.instance_id}
    assert {owner_of(stack, x) for x in on_b} == {b.instance_id}
    return a, b, (sa, sb), (cha, chb), on_a, on_b


def attempts(stack, txns, outcome="committed"):
    """How many attempts of these txn ids have a txn_attempts row with that outcome."""
    ids = ",".join("'%s'" % t for t in txns)
    return int(stack.psql("SELECT count(*) FROM actor.txn_attempts WHERE outcome = '%s' AND "
                          "txn_id IN (%s)" % (outcome, ids))) if txns else 0


def whole_or_absent(stack, pb, actors):
    """Every trade of these actors in PostgreSQL has both events and its txns row, or
    nothing. Returns the committed txn ids."""
    ev = traded_events(stack, pb, actors)
    committed = committed_txns(stack, actors)
    assert set(ev) == committed
    assert all(len(sides) == 2 and len(set(sides)) == 2 for sides in ev.values())
    return committed


def test_cross_instance_trade_retry_and_refusal(daemon, stack, pb):
    a, b, (sa, sb), chans, (x,), (z,) = two_instances(daemon, stack, pb, 1)
    m = pb[0]
    # Coordinated by a (x is a's), z held by b; then the same txn id through b: replayed.
    r = sa.Transact(trade(pb, "x-" + x, x, z, a_gold=7, b_items=[("ore", 2)]),
                    timeout=DEADLINE)
    assert not r.replayed and [c.gold for c in r.characters] == [GOLD0 - 7, GOLD0 + 7]
    again = sb.Transact(trade(pb, "x-" + x, x, z, a_gold=7, b_items=[("ore", 2)]),
                        timeout=DEADLINE)
    assert again.replayed
    # The remote owner applied its side: read from b (its owner) and from a (forwarded).
    for st in (sa, sb):
        c = st.GetCharacter(m.GetCharacterRequest(actor_id=z), timeout=DEADLINE)
        assert c.gold == GOLD0 + 7 and {s.item: s.count for s in c.inventory}["ore"] == 998
    # The other way round, coordinated by b with x held by a.
    r = sb.Transact(trade(pb, "y-" + x, z, x, a_gold=3), timeout=DEADLINE)
    assert [c.gold for c in r.characters] == [GOLD0 + 4, GOLD0 - 4]
    # A refusal (z lacks the gold) writes no event and stays refused when retried.
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as e:
            sa.Transact(trade(pb, "r-" + x, x, z, b_gold=10 ** 9), timeout=DEADLINE)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "r-" + x not in traded_events(stack, pb, [x, z])
    # The attempts that committed are in actor.txn_attempts, none aborted.
    mine = ["x-" + x, "y-" + x, "r-" + x]
    assert attempts(stack, mine) == 2 and attempts(stack, mine, "aborted") == 0
    assert whole_or_absent(stack, pb, [x, z]) == {"x-" + x, "y-" + x}
    # A friend request across instances: both sides agree.
    fl = sa.RequestFriend(m.FriendCommand(actor_id=x, other_actor_id=z, txn_id="f-" + x),
                          timeout=DEADLINE)
    assert [f.actor_id for f in fl.friends] == [z]
    other = sb.ListFriends(m.ListFriendsRequest(actor_id=z), timeout=DEADLINE)
    assert [f.actor_id for f in other.friends] == [x]
    assert attempts(stack, ["f-" + x]) == 1
    # An internal call with a bad attempt id is refused, the daemon keeps serving.
    with pytest.raises(grpc.RpcError) as e:
        sb.HoldSide(m.HoldSideRequest(attempt_id="nope", actor_id=z, hold_ms=1000),
                    timeout=DEADLINE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    gone = sb.ReleaseSide(m.ReleaseSideRequest(attempt_id="nope", actor_id=z),
                          timeout=DEADLINE)
    assert gone.outcome == "gone"
    for ch in chans:
        ch.close()


def test_remote_hold_without_release_settles_aborted(daemon, stack, pb):
    """A coordinator that never comes back (its hold answered, no release): the owner
    settles the attempt in PostgreSQL after hold_ms ('aborted' row) and releases the
    character unchanged, so a coordinator statement for that attempt can no longer
    commit."""
    a, b, (sa, sb), chans, _, (z,) = two_instances(daemon, stack, pb, 1)
    m = pb[0]
    attempt = "0b0b0b0b-0000-4000-8000-000000000001"
    held = sb.HoldSide(m.HoldSideRequest(txn_id="lost", attempt_id=attempt, actor_id=z,
                                         hold_ms=500), timeout=DEADLINE)
    assert held.seq > 0 and held.owner == b.instance_id and held.epoch > 0
    wait_until(lambda: stack.psql("SELECT outcome FROM actor.txn_attempts WHERE attempt_id "
                                  "= '%s'" % attempt).strip() == "aborted",
               timeout=30, what="the owner settled the attempt")
    # Released: a command on z goes through.
    r = sb.Apply(m.ApplyRequest(actor_id=z, idempotency_key="after",
                                earn_currency=m.EarnCurrency(amount=1)), timeout=DEADLINE)
    assert r.character.gold == GOLD0 + 1
    assert sb.ReleaseSide(m.ReleaseSideRequest(attempt_id=attempt, actor_id=z),
                          timeout=DEADLINE).outcome == "gone"
    for ch in chans:
        ch.close()


def test_concurrent_cross_instance_trades_conserve_items_and_gold(daemon, stack, pb):
    a, b, (sa, sb), chans, on_a, on_b = two_instances(daemon, stack, pb, 5)
    actors = on_a + on_b
    before = totals(sa, pb, actors)
    acked, sent = [], []
    # Two streams of callers, one per instance, over overlapping pairs: about half of the
    # pairs have their two characters on different instances.
    ts1, ref1 = run_trades(sa, pb, actors, 300, 12, acked, sent, seed=21)
    ts2, ref2 = run_trades(sb, pb, actors, 300, 12, acked, sent, seed=22)
    for t in ts1 + ts2:
        t.join(600)
    assert not any(t.is_alive() for t in ts1 + ts2), "trades did not finish"
    refused = ref1 + ref2
    assert all(code == grpc.StatusCode.FAILED_PRECONDITION for _, code in refused), refused
    assert len(acked) + len(refused) == 600, "a trade stayed unavailable after 20 tries"
    assert totals(sa, pb, actors) == before
    assert totals(sb, pb, actors) == before
    assert whole_or_absent(stack, pb, actors) == set(acked)
    cross = attempts(stack, acked)
    assert cross >= 100, "too few trades crossed instances: %d" % cross
    for ch in chans:
        ch.close()


def test_kill9_of_the_remote_participant_mid_batch_leaves_each_trade_whole(daemon, stack, pb):
    a, b, (sa, sb), (cha, chb), on_a, on_b = two_instances(daemon, stack, pb, 5)
    chb.close()
    actors = on_a + on_b
    before = totals(sa, pb, actors)
    # Every trade has one side on a (the coordinator: the calls go to a) and one on b.
    import random
    import threading
    rng = random.Random(5)
    plan = [trade(pb, "k%d-%s" % (i, on_a[0][:8]), rng.choice(on_a), rng.choice(on_b),
                  a_items=[("gem", 1)], a_gold=rng.randint(0, 20), b_gold=rng.randint(0, 20))
            for i in range(3000)]
    acked, sent, lock, stop = [], [], threading.Lock(), threading.Event()

    def worker():
        while not stop.is_set():
            with lock:
                if not plan:
                    return
                req = plan.pop()
                sent.append(req.txn_id)
            try:
                sa.Transact(req, timeout=DEADLINE)
            except grpc.RpcError:
                continue
            with lock:
                acked.append(req.txn_id)

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for t in ts:
        t.start()
    wait_until(lambda: len(acked) >= 150, timeout=120, what="150 acknowledged trades")
    b.kill9()
    stop.set()
    for t in ts:
        t.join(60)
    assert len(sent) > len(acked), "no trade was in flight at the kill"
    committed = whole_or_absent(stack, pb, actors)
    assert set(acked) <= committed, "an acknowledged trade is missing after kill -9"
    assert committed <= set(sent)
    # The survivor takes b's shards once b's lease ran out, then serves b's characters
    # from PostgreSQL: every coin and item is where the committed trades put it.
    wait_until(lambda: owned(stack, a) == 256, timeout=30, what="a owns every shard")
    assert retry(lambda: totals(sa, pb, actors)) == before
    assert whole_or_absent(stack, pb, actors) == committed
    # A trade committed but not acknowledged (in flight at the kill) answers its first
    # result when retried; one not committed runs now, once.
    for txn in sorted(set(sent) - set(acked))[:5]:
        r = retry(lambda: sa.Transact(trade(pb, txn, on_a[0], on_b[0], a_gold=1),
                                      timeout=DEADLINE))
        assert r.replayed == (txn in committed)
    assert totals(sa, pb, actors) == before
    cha.close()


def test_kill9_of_the_coordinator_while_the_remote_side_is_held(daemon, stack, pb):
    """The coordinator a holds z on b and is inside its write (a test session holds a lock
    on actor.txn_attempts, so the statement waits) when it is killed. b releases z within
    the documented bound, the hold time a asked for (2 x WY_ACTOR_TXN_TIMEOUT +
    WY_ACTOR_FORWARD_TIMEOUT = 4 s here) plus one settle; PostgreSQL holds the trade whole
    or not at all, and after a's restart both characters agree with it and a retry of the
    txn id answers the first result or runs once."""
    import threading
    from test_grpc_server import PgTableLock
    m = pb[0]
    fast = {"WY_ACTOR_TXN_TIMEOUT": "1s", "WY_ACTOR_FORWARD_TIMEOUT": "2s"}
    a, b = daemon("actor", env=fast), daemon("actor")
    wait_until(lambda: owned(stack, a) > 0 and owned(stack, b) > 0
               and owned(stack, a) + owned(stack, b) == 256,
               timeout=30, what="shards spread on two instances")
    sa, cha = stub(a, pb)
    sb, chb = stub(b, pb)
    x, z = retry(lambda: character(sa, pb)), retry(lambda: character(sb, pb))
    assert (owner_of(stack, x), owner_of(stack, z)) == (a.instance_id, b.instance_id)
    txn = "kc-" + x
    req = trade(pb, txn, x, z, a_gold=5, b_items=[("ore", 1)])
    lock = PgTableLock(stack, "actor.txn_attempts")
    out = {}

    def call():
        try:
            out["r"] = sa.Transact(req, timeout=DEADLINE)
        except grpc.RpcError as e:
            out["e"] = e.code()
    t = threading.Thread(target=call, daemon=True)
    try:
        t.start()
        # Both sides held, the statement sent: it waits for the lock.
        wait_until(lambda: int(stack.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
            "query LIKE '%fence_each%'")) == 1, timeout=30, what="a's statement waiting")
        a.kill9()
    finally:
        lock.release()
    t.join(30)
    assert "e" in out, "the coordinator answered although it was killed: %r" % out
    killed = time.monotonic()
    # b releases z within the bound: a command on z waits behind the hold, then runs.
    bound_s = 4 + 10  # hold_ms, plus a settle and the slack of a loaded machine
    r = sb.Apply(m.ApplyRequest(actor_id=z, idempotency_key="after-kill",
                                earn_currency=m.EarnCurrency(amount=1)), timeout=bound_s)
    assert time.monotonic() - killed < bound_s
    # One outcome row for the attempt: 'committed' (the write got in) or 'aborted' (b's
    # settle got in first, so the write could not commit).
    outcomes = stack.psql("SELECT outcome FROM actor.txn_attempts WHERE txn_id = '%s'"
                          % txn).split()
    assert len(outcomes) == 1 and outcomes[0] in ("committed", "aborted"), outcomes
    committed = whole_or_absent(stack, pb, [x, z])
    done = txn in committed
    assert done == (outcomes[0] == "committed")
    assert r.character.gold == GOLD0 + 1 + (5 if done else 0)
    assert {s.item: s.count for s in r.character.inventory}["ore"] == ORE0 - (1 if done else 0)
    # a again, under its name: it takes its shards back at once and serves x from
    # PostgreSQL, in agreement with z.
    a2 = daemon("actor", env=dict(fast, WY_INSTANCE_ID=a.instance_id))
    sa2, cha2 = stub(a2, pb)
    gx = retry(lambda: sa2.GetCharacter(m.GetCharacterRequest(actor_id=x), timeout=DEADLINE))
    assert gx.gold == GOLD0 - (5 if done else 0)
    again = retry(lambda: sa2.Transact(req, timeout=DEADLINE))
    assert again.replayed == done
    assert whole_or_absent(stack, pb, [x, z]) == {txn}
    assert totals(sa2, pb, [x, z]) == (2 * GOLD0 + 1, 2 * GEMS0, 2 * ORE0)
    for ch in (cha, chb, cha2):
        ch.close()


def test_txn_attempts_rows_past_their_retention_are_swept_newer_ones_kept(daemon, stack, pb):
    """actor.txn_attempts keeps a row for WY_ACTOR_TXN_ATTEMPTS_RETENTION; older ones are
    deleted by the owner of shard 0, at most WY_ACTOR_TXN_ATTEMPTS_SWEEP_BATCH per
    statement, newer ones stay."""
    import uuid
    from actor_helpers import metric
    old = [str(uuid.uuid4()) for _ in range(7)]
    new = str(uuid.uuid4())
    stack.psql("INSERT INTO actor.txn_attempts (attempt_id, txn_id, outcome, ts) SELECT "
               "a::uuid, 'swept', 'aborted', now() - interval '2 hours' FROM unnest(ARRAY[%s]) "
               "AS a; INSERT INTO actor.txn_attempts (attempt_id, txn_id, outcome) VALUES "
               "('%s', 'kept', 'committed')" % (",".join("'%s'" % o for o in old), new))
    d = daemon("actor", env={"WY_ACTOR_TXN_ATTEMPTS_RETENTION": "1h",
                             "WY_ACTOR_TXN_ATTEMPTS_SWEEP": "200ms",
                             "WY_ACTOR_TXN_ATTEMPTS_SWEEP_BATCH": "3"})
    wait_until(lambda: owned(stack, d) == 256, timeout=30, what="d owns every shard")
    wait_until(lambda: int(stack.psql("SELECT count(*) FROM actor.txn_attempts WHERE "
                                      "txn_id = 'swept'")) == 0, timeout=30, what="the sweep")
    assert stack.psql("SELECT txn_id FROM actor.txn_attempts WHERE attempt_id = '%s'"
                      % new).strip() == "kept"
    assert metric(d, "wy_actor_txn_attempts_swept_total") >= 7
    # Too short a retention for the longest hold stops the daemon at start.
    bad = daemon("actor", env={"WY_ACTOR_TXN_ATTEMPTS_RETENTION": "60s",
                               "WY_ACTOR_TXN_TIMEOUT": "30s"}, wait_ready=False)
    assert bad.wait(30) == 1
    assert "WY_ACTOR_TXN_ATTEMPTS_RETENTION" in bad.log_text()
