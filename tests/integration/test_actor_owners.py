"""wy-actor with two instances, real PostgreSQL/Redis/Kafka: one owner per shard, requests
forwarded to the owner, takeover when an instance dies (kill -9) and fencing of an owner
paused past its lease (SIGSTOP/SIGCONT). Issue 12, must-show 1 and 2."""
import os
import random
import signal
import threading
import time
import uuid

import grpc
import pytest
from actor_helpers import metric, served
from harness.wait import wait_until

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def start(daemon, **env):
    env.setdefault("WY_LOG_LEVEL", "info")
    return daemon("actor", env=env)


def stub(d, pb):
    ch = grpc.insecure_channel(d.grpc_addr)
    return pb[1].ActorStub(ch), ch


def shards_of(stack, instance):
    return int(stack.psql("SELECT count(*) FROM actor.owners WHERE instance = '%s'" % instance))


def owner_of(stack, actor_id):
    return stack.psql("SELECT instance FROM actor.owners WHERE shard = %d"
                      % int(actor_id[:2], 16)).strip()


def both_own_shards(stack, a, b):
    na, nb = shards_of(stack, a.instance_id), shards_of(stack, b.instance_id)
    return na > 0 and nb > 0 and na + nb == 256


def create(st, pb):
    return st.CreateCharacter(pb[0].CreateCharacterRequest(
        account_id=str(uuid.uuid4()), name="c" + uuid.uuid4().hex[:12], class_name="mage"),
        timeout=DEADLINE)


def earn(st, pb, actor_id, key, timeout=DEADLINE):
    return st.Apply(pb[0].ApplyRequest(actor_id=actor_id, idempotency_key=key,
                                       earn_currency=pb[0].EarnCurrency(amount=1)),
                    timeout=timeout)


def committed_keys(stack, actor_id):
    return int(stack.psql("SELECT count(*) FROM actor.commands WHERE actor_id = '%s' AND "
                          "status = 0" % actor_id))


def earned_events(stack, actor_id):
    return int(stack.psql("SELECT count(*) FROM actor.events WHERE actor_id = '%s' AND "
                          "type = 'currency_earned'" % actor_id))


def check_log(stack, actors, acked):
    """Every acknowledged command is in the log, and nothing is there twice."""
    keys = ",".join("'%s'" % k for _, k in acked)
    ids = ",".join("'%s'" % a for a in actors)
    assert int(stack.psql("SELECT count(*) FROM actor.commands WHERE status = 0 AND key IN (%s) "
                          "AND actor_id IN (%s)" % (keys, ids))) == len(acked), \
        "an acknowledged command is missing"
    for a in actors:
        assert earned_events(stack, a) == committed_keys(stack, a)
        # Event seqs are 1..n without a hole or a second writer.
        assert int(stack.psql("SELECT count(*) FROM actor.events WHERE actor_id = '%s'" % a)) == \
            int(stack.psql("SELECT max(seq) FROM actor.events WHERE actor_id = '%s'" % a))


def test_requests_reach_the_owner_from_either_instance(daemon, stack, pb):
    a, b = start(daemon), start(daemon)
    wait_until(lambda: both_own_shards(stack, a, b), timeout=30, what="shards spread on two")
    sa, cha = stub(a, pb)
    sb, chb = stub(b, pb)
    chars = [served(lambda: create(st, pb)) for st in (sa, sb) for _ in range(4)]
    owners = {owner_of(stack, c.actor_id) for c in chars}
    assert owners == {a.instance_id, b.instance_id}  # each creates in a shard it owns
    for n, c in enumerate(chars):
        # Both instances answer for every character: one applies, the other forwards.
        r1 = served(lambda: earn(sa, pb, c.actor_id, "via-a-%d" % n))
        r2 = served(lambda: earn(sb, pb, c.actor_id, "via-b-%d" % n))
        assert r2.character.gold == r1.character.gold + 1
        # A retry through the other instance answers the first result.
        again = served(lambda: earn(sa, pb, c.actor_id, "via-b-%d" % n))
        assert again.replayed and again.seq == r2.seq
        got_a = sa.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
        got_b = sb.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
        assert got_a == got_b and got_a.gold == 2
    assert metric(a, "wy_actor_forwarded_total") > 0 and metric(b, "wy_actor_forwarded_total") > 0
    # Each character's events were written by one instance only (its shard's epoch).
    for c in chars:
        assert int(stack.psql("SELECT count(DISTINCT epoch) FROM actor.events WHERE actor_id = "
                              "'%s'" % c.actor_id)) == 1
    cha.close()
    chb.close()


def test_kill9_of_an_owner_under_load_loses_nothing_and_the_other_takes_over(daemon, stack, pb,
                                                                            record_property):
    """Must-show 1: two instances, a load of commands through both, kill -9 of one: every
    acknowledged command is in the log once, and its characters are served by the other
    within WY_ACTOR_LEASE + WY_ACTOR_HEARTBEAT (+ the takeover itself)."""
    a, b = start(daemon), start(daemon)
    wait_until(lambda: both_own_shards(stack, a, b), timeout=30, what="shards spread on two")
    sa, cha = stub(a, pb)
    sb, chb = stub(b, pb)
    actors = [served(lambda: create(st, pb)).actor_id for st in (sa, sb)
              for _ in range(6)]
    on_a = [x for x in actors if owner_of(stack, x) == a.instance_id]
    assert on_a, "no character on the instance to kill"
    acked, lock, stop = [], threading.Lock(), threading.Event()
    killed_at = []
    first_ok_after_kill = {}

    def worker(n):
        rnd = random.Random(n)
        i = 0
        while not stop.is_set():
            actor = rnd.choice(actors)
            st = sa if (n % 2 == 0 and not killed_at) else sb
            key = "w%d-%d" % (n, i)
            i += 1
            try:
                earn(st, pb, actor, key, timeout=5)
            except grpc.RpcError:
                continue
            with lock:
                acked.append((actor, key))
                if killed_at and actor not in first_ok_after_kill:
                    first_ok_after_kill[actor] = time.monotonic() - killed_at[0]

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(12)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 300, timeout=60, what="300 acknowledged commands")
    a.kill9()
    killed_at.append(time.monotonic())
    # Every character, those of the dead instance included, is served again by b.
    wait_until(lambda: all(x in first_ok_after_kill for x in actors), timeout=60,
               what="every character served after the kill")
    stop.set()
    for t in threads:
        t.join(30)
    cha.close()
    # The measured takeover (README "Takeover bound"), in the JUnit report: no timing target.
    record_property("takeover_seconds", "%.2f" % max(first_ok_after_kill[x] for x in on_a))
    with lock:
        acked_now = list(acked)
    check_log(stack, actors, acked_now)
    for x in actors:
        got = served(lambda: sb.GetCharacter(pb[0].GetCharacterRequest(actor_id=x),
                                                        timeout=DEADLINE))
        assert got.gold == committed_keys(stack, x)
    # The killed instance comes back: shards spread again, nothing applied twice.
    a2 = start(daemon)
    wait_until(lambda: both_own_shards(stack, a2, b), timeout=30, what="shards spread again")
    sa2, cha2 = stub(a2, pb)
    before = {x: earned_events(stack, x) for x in actors}
    for actor, key in acked_now[:40]:
        assert served(lambda: earn(sa2, pb, actor, key)).replayed
    assert {x: earned_events(stack, x) for x in actors} == before
    cha2.close()
    chb.close()


def test_an_owner_paused_past_its_lease_cannot_commit(daemon, stack, pb):
    """Must-show 2: SIGSTOP the owner under load, the other takes over and commits, SIGCONT
    the old owner with commands in hand: its write is rejected by the fence, and no event
    was written under a stale epoch."""
    env = dict(WY_ACTOR_LEASE="2s", WY_ACTOR_HEARTBEAT="500ms")
    a, b = start(daemon, **env), start(daemon, **env)
    wait_until(lambda: both_own_shards(stack, a, b), timeout=30, what="shards spread on two")
    sa, cha = stub(a, pb)
    sb, chb = stub(b, pb)
    c = None
    for _ in range(20):  # a character in a shard of a (creates land in the creator's shards)
        c = served(lambda: create(sa, pb))
        if owner_of(stack, c.actor_id) == a.instance_id:
            break
    assert owner_of(stack, c.actor_id) == a.instance_id
    shard = int(c.actor_id[:2], 16)
    old_epoch = int(stack.psql("SELECT epoch FROM actor.owners WHERE shard = %d" % shard))
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def worker(n):
        i = 0
        while not stop.is_set():
            key = "p%d-%d" % (n, i)
            i += 1
            try:
                earn(sa, pb, c.actor_id, key, timeout=30)
            except grpc.RpcError:
                continue
            with lock:
                acked.append((c.actor_id, key))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(16)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 100, timeout=60, what="100 acknowledged commands")
    os.kill(a.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: owner_of(stack, c.actor_id) == b.instance_id, timeout=30,
                   what="b took the paused owner's shard")
        new_epoch = int(stack.psql("SELECT epoch FROM actor.owners WHERE shard = %d" % shard))
        assert new_epoch > old_epoch
        r = served(lambda: earn(sb, pb, c.actor_id, "by-the-new-owner"))
        assert not r.replayed
    finally:
        os.kill(a.pid, signal.SIGCONT)
    # The old owner wakes up with commands in hand (queued, and calls in its socket): the
    # first write it sends is refused inside the transaction by the fence.
    wait_until(lambda: metric(a, "wy_actor_fenced_total") >= 1, timeout=30,
               what="the old owner's write rejected by the fence")
    assert "actor shard fenced" in a.log_text()
    stop.set()
    for t in threads:
        t.join(40)
    rows = stack.psql("SELECT seq, epoch FROM actor.events WHERE actor_id = '%s' ORDER BY seq"
                      % c.actor_id).split()
    epochs = [int(x.split("|")[1]) for x in rows]
    first_new = next(i for i, e in enumerate(epochs) if e >= new_epoch)
    # Nothing under an epoch older than the takeover's after the takeover's first event.
    assert all(e >= new_epoch for e in epochs[first_new:]), epochs[first_new - 3:first_new + 3]
    assert epochs == sorted(epochs)
    with lock:
        acked_now = list(acked)
    check_log(stack, [c.actor_id], acked_now)
    assert a.running()  # it lost its shard, not its life
    cha.close()
    chb.close()
