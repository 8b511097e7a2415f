"""wy-actor with real PostgreSQL (and Redis/Kafka from the stack): characters over the
wyvern.actor.Actor gRPC API, idempotent commands, kill -9 during a load of commands,
and loading an actor with 10,000 events from its snapshot."""
import threading
import uuid

import grpc
import pytest

from actor_helpers import served
from harness.wait import wait_until

DEADLINE = 10  # seconds per call: generous for a loaded 2-core machine


def uniq_name():
    return "c" + uuid.uuid4().hex[:12]


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    return actor_pb2, actor_pb2_grpc


def start(daemon, **env):
    env.setdefault("WY_LOG_LEVEL", "debug")  # the "actor loaded" lines
    return daemon("actor", env=env)


def stub(d, pb):
    ch = grpc.insecure_channel(d.grpc_addr)
    return pb[1].ActorStub(ch), ch


def create(st, pb, account=None, name=None, key=""):
    return st.CreateCharacter(pb[0].CreateCharacterRequest(
        account_id=account or str(uuid.uuid4()), name=name or uniq_name(), class_name="mage",
        idempotency_key=key), timeout=DEADLINE)


def earn(st, pb, actor_id, key, amount=1, timeout=DEADLINE):
    return st.Apply(pb[0].ApplyRequest(actor_id=actor_id, idempotency_key=key,
                                       earn_currency=pb[0].EarnCurrency(amount=amount)),
                    timeout=timeout)


def events(stack, actor_id, type_=None):
    where = " AND type = '%s'" % type_ if type_ else ""
    return int(stack.psql("SELECT count(*) FROM actor.events WHERE actor_id = '%s'%s"
                          % (actor_id, where)))


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def loads(d, actor_id):
    """The "actor loaded" log lines of actor_id, oldest first."""
    return [r for r in d.log_lines() if r.get("msg") == "actor loaded" and r.get("actor") == actor_id]


def test_create_list_get_delete_restore(daemon, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    account = str(uuid.uuid4())
    name = uniq_name()
    c = create(st, pb, account, name, key="create-1")
    assert c.account_id == account and c.name == name and c.level == 1 and c.seq == 1
    # A retried create (same key) answers the same character; a look-alike name is taken.
    again = create(st, pb, account, name, key="create-1")
    assert again.actor_id == c.actor_id
    assert code_of(lambda: create(st, pb, str(uuid.uuid4()), name.upper())) == \
        grpc.StatusCode.ALREADY_EXISTS
    fullwidth = "".join(chr(ord(ch_) + 0xFEE0) if ch_.isalnum() else ch_ for ch_ in name)
    assert code_of(lambda: create(st, pb, str(uuid.uuid4()), fullwidth)) == \
        grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: create(st, pb, account, "x")) == grpc.StatusCode.INVALID_ARGUMENT
    second = create(st, pb, account)

    listed = st.ListCharacters(pb[0].ListCharactersRequest(account_id=account), timeout=DEADLINE)
    assert [x.actor_id for x in listed.characters] == [c.actor_id, second.actor_id]
    got = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
    assert got == c

    deleted = st.DeleteCharacter(pb[0].DeleteCharacterRequest(actor_id=c.actor_id),
                                 timeout=DEADLINE)
    assert deleted.deleted and deleted.deleted_at_ms > 0
    listed = st.ListCharacters(pb[0].ListCharactersRequest(account_id=account), timeout=DEADLINE)
    assert [x.actor_id for x in listed.characters] == [second.actor_id]
    listed = st.ListCharacters(pb[0].ListCharactersRequest(account_id=account,
                                                           include_deleted=True), timeout=DEADLINE)
    assert [x.actor_id for x in listed.characters] == [c.actor_id, second.actor_id]
    # A deleted character refuses commands until it is restored.
    assert code_of(lambda: earn(st, pb, c.actor_id, "k-del")) == \
        grpc.StatusCode.FAILED_PRECONDITION
    restored = st.RestoreCharacter(pb[0].RestoreCharacterRequest(actor_id=c.actor_id),
                                   timeout=DEADLINE)
    assert not restored.deleted
    assert code_of(lambda: st.GetCharacter(pb[0].GetCharacterRequest(
        actor_id=str(uuid.uuid4())), timeout=DEADLINE)) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: st.GetCharacter(pb[0].GetCharacterRequest(actor_id="nope"),
                                           timeout=DEADLINE)) == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()


def test_retried_idempotency_key_adds_one_event(daemon, stack, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    c = create(st, pb)
    first = earn(st, pb, c.actor_id, "pay-1", amount=5)
    assert not first.replayed and first.character.gold == 5
    again = earn(st, pb, c.actor_id, "pay-1", amount=5)
    assert again.replayed and again.seq == first.seq and again.character == first.character
    assert events(stack, c.actor_id, "currency_earned") == 1

    # The same key sent 20 times at once (one group commit or several): one event.
    futures = [st.Apply.future(pb[0].ApplyRequest(
        actor_id=c.actor_id, idempotency_key="pay-2",
        earn_currency=pb[0].EarnCurrency(amount=7)), timeout=DEADLINE) for _ in range(20)]
    results = [f.result() for f in futures]
    assert len({r.seq for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) <= 1
    assert events(stack, c.actor_id, "currency_earned") == 2
    got = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
    assert got.gold == 12

    # A refusal is a first result too: after the balance would allow it, the retry of the
    # refused key is still refused and writes nothing.
    spend = pb[0].ApplyRequest(actor_id=c.actor_id, idempotency_key="spend-1",
                               spend_currency=pb[0].SpendCurrency(amount=100))
    assert code_of(lambda: st.Apply(spend, timeout=DEADLINE)) == \
        grpc.StatusCode.FAILED_PRECONDITION
    earn(st, pb, c.actor_id, "pay-3", amount=1000)
    assert code_of(lambda: st.Apply(spend, timeout=DEADLINE)) == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert events(stack, c.actor_id, "currency_spent") == 0
    ch.close()


def test_kill9_during_a_load_keeps_every_acknowledged_command_once(daemon, stack, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    actors = [create(st, pb).actor_id for _ in range(4)]
    acked = []  # (actor_id, key) acknowledged to this client
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n):
        i = 0
        while not stop.is_set():
            actor = actors[n % len(actors)]
            key = "w%d-%d" % (n, i)
            i += 1
            try:
                earn(st, pb, actor, key, timeout=5)
            except grpc.RpcError:
                if not d.running():
                    return
                continue
            with lock:
                acked.append((actor, key))

    def batch_worker(n):
        """ApplyBatch calls of 8 commands over the characters: a command is acknowledged
        when its own result is OK (the others of its call may have failed)."""
        i = 0
        while not stop.is_set():
            keys = [(actors[(n + j) % len(actors)], "b%d-%d-%d" % (n, i, j)) for j in range(8)]
            i += 1
            try:
                out = apply_batch(st, pb, [earn_cmd(pb, a, k) for a, k in keys], timeout=5)
            except grpc.RpcError:
                if not d.running():
                    return
                continue
            with lock:
                acked.extend(key for key, r in zip(keys, out.results) if r.code == 0)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(12)]
    threads += [threading.Thread(target=batch_worker, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 400 and any(k.startswith("b") for _, k in acked),
               timeout=60, what="400 acknowledged commands, some of them in batches")
    d.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    ch.close()
    with lock:
        acked_now = list(acked)

    d2 = start(daemon)
    st2, ch2 = stub(d2, pb)
    keys = ",".join("'%s'" % k for _, k in acked_now)
    assert int(stack.psql("SELECT count(*) FROM actor.commands WHERE status = 0 AND key IN (%s) "
                          "AND actor_id IN (%s)" % (keys, ",".join("'%s'" % a for a in actors)))) \
        == len(acked_now), "an acknowledged command is missing after kill -9"
    for actor in actors:
        committed = int(stack.psql("SELECT count(*) FROM actor.commands WHERE actor_id = '%s' "
                                   "AND status = 0" % actor))
        # One event per committed key: nothing twice, nothing without its key.
        assert events(stack, actor, "currency_earned") == committed
        # The killed instance's lease runs out first: then the new one takes its shards.
        got = served(lambda: st2.GetCharacter(pb[0].GetCharacterRequest(actor_id=actor),
                                              timeout=DEADLINE))
        assert got.gold == committed
    # Retrying what was acknowledged answers the first results and adds nothing, one by
    # one and as one batch.
    before = {a: events(stack, a) for a in actors}
    for actor, key in acked_now[:50]:
        assert earn(st2, pb, actor, key).replayed
    batched = [(a, k) for a, k in acked_now if k.startswith("b")][:64]
    out = apply_batch(st2, pb, [earn_cmd(pb, a, k) for a, k in batched])
    assert [(r.code, r.response.replayed) for r in out.results] == [(0, True)] * len(batched)
    assert {a: events(stack, a) for a in actors} == before
    ch2.close()


def earn_cmd(pb, actor_id, key, amount=1):
    return pb[0].ApplyRequest(actor_id=actor_id, idempotency_key=key,
                              earn_currency=pb[0].EarnCurrency(amount=amount))


def apply_batch(st, pb, commands, timeout=DEADLINE, omit_character=False):
    return st.ApplyBatch(pb[0].ApplyBatchRequest(commands=commands,
                                                 omit_character=omit_character), timeout=timeout)


def test_apply_batch_answers_each_command_and_a_retry_replays_them(daemon, stack, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    a, b, c = (create(st, pb).actor_id for _ in range(3))
    ok = grpc.StatusCode.OK.value[0]
    commands = [
        earn_cmd(pb, a, "a-1", 5),
        earn_cmd(pb, b, "b-1", 7),
        pb[0].ApplyRequest(actor_id=c, idempotency_key="c-spend",  # refused: no gold
                           spend_currency=pb[0].SpendCurrency(amount=1000)),
        earn_cmd(pb, "not-a-uuid", "x-1"),                          # malformed
        pb[0].ApplyRequest(actor_id=a, idempotency_key="a-none"),   # no command
        earn_cmd(pb, str(uuid.uuid4()), "ghost-1"),                 # no such character
        earn_cmd(pb, a, "a-2", 10),                                 # after a-1, same call
        earn_cmd(pb, a, "a-2", 10),                                 # the same key again
        earn_cmd(pb, c, "c-1", 3),                                  # c after its refusal
    ]
    out = apply_batch(st, pb, commands)
    codes = [r.code for r in out.results]
    assert codes == [ok, ok, grpc.StatusCode.FAILED_PRECONDITION.value[0],
                     grpc.StatusCode.INVALID_ARGUMENT.value[0],
                     grpc.StatusCode.INVALID_ARGUMENT.value[0],
                     grpc.StatusCode.NOT_FOUND.value[0], ok, ok, ok], out
    assert "actor_id" in out.results[3].message
    assert out.results[0].response.character.gold == 5
    assert out.results[6].response.character.gold == 15
    assert out.results[6].response.seq == out.results[0].response.seq + 1
    assert out.results[7].response.seq == out.results[6].response.seq  # one event for a-2
    assert not out.results[6].response.replayed and out.results[7].response.replayed
    assert out.results[8].response.character.gold == 3
    assert (events(stack, a, "currency_earned"), events(stack, b, "currency_earned"),
            events(stack, c, "currency_earned"), events(stack, c, "currency_spent")) == (2, 1, 1, 0)

    # The same call again: every command answers its first result, nothing is written.
    again = apply_batch(st, pb, commands)
    assert [r.code for r in again.results] == codes
    for i in (0, 1, 6, 7, 8):
        assert again.results[i].response.replayed
        assert again.results[i].response.seq == out.results[i].response.seq
        assert again.results[i].response.character == out.results[i].response.character
    assert again.results[2].message == out.results[2].message
    assert (events(stack, a), events(stack, b), events(stack, c)) == (3, 2, 2)

    # Without the characters: seq and replayed only.
    brief = apply_batch(st, pb, [earn_cmd(pb, b, "b-2", 1), earn_cmd(pb, b, "b-1", 7)],
                        omit_character=True)
    assert [r.code for r in brief.results] == [ok, ok]
    assert not brief.results[0].response.HasField("character")
    assert brief.results[0].response.seq == 3 and not brief.results[0].response.replayed
    assert brief.results[1].response.replayed and brief.results[1].response.seq == 2
    ch.close()


def test_apply_batch_over_the_bound_or_empty_is_refused_whole(daemon, stack, pb):
    d = start(daemon, WY_ACTOR_APPLY_BATCH_MAX="8")
    st, ch = stub(d, pb)
    a = create(st, pb).actor_id
    with pytest.raises(grpc.RpcError) as e:
        apply_batch(st, pb, [earn_cmd(pb, a, "k-%d" % i) for i in range(9)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "9 commands, at most 8 per call" in e.value.details()
    assert events(stack, a, "currency_earned") == 0
    with pytest.raises(grpc.RpcError) as e:
        apply_batch(st, pb, [])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    out = apply_batch(st, pb, [earn_cmd(pb, a, "k-%d" % i) for i in range(8)])
    assert [r.code for r in out.results] == [0] * 8
    assert events(stack, a, "currency_earned") == 8
    ch.close()


def test_actor_with_10000_events_loads_from_its_snapshot(daemon, stack, pb):
    d = start(daemon)
    st, ch = stub(d, pb)
    c = create(st, pb)
    n, in_flight = 10000, 48
    pending = []
    for i in range(n):
        if i % 3 == 0:
            req = pb[0].ApplyRequest(actor_id=c.actor_id, idempotency_key="x%d" % i,
                                     gain_xp=pb[0].GainXp(amount=3))
        elif i % 3 == 1:
            req = pb[0].ApplyRequest(actor_id=c.actor_id, idempotency_key="x%d" % i,
                                     add_item=pb[0].AddItem(item="gem%d" % (i % 5), count=2))
        else:
            req = pb[0].ApplyRequest(actor_id=c.actor_id, idempotency_key="x%d" % i,
                                     earn_currency=pb[0].EarnCurrency(amount=1))
        pending.append(st.Apply.future(req, timeout=60))
        if len(pending) >= in_flight:
            pending.pop(0).result()
    for f in pending:
        f.result()
    live = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
    assert live.seq >= n + 1 and live.gold == n // 3
    assert int(stack.psql("SELECT count(*) FROM actor.snapshots WHERE actor_id = '%s'"
                          % c.actor_id)) == 2  # WY_ACTOR_SNAPSHOT_KEEP
    ch.close()
    d.stop()

    # A fresh instance loads it from the latest snapshot and fewer than
    # WY_ACTOR_SNAPSHOT_EVERY (300) events after it.
    d2 = start(daemon)
    st2, ch2 = stub(d2, pb)
    from_snapshot = st2.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id),
                                     timeout=DEADLINE)
    [line] = loads(d2, c.actor_id)
    assert int(line["snapshot_seq"]) > 0
    assert int(line["events_read"]) < 300
    assert from_snapshot == live
    ch2.close()
    d2.stop()

    # Without snapshots the whole log is replayed, to the same state.
    stack.psql("DELETE FROM actor.snapshots WHERE actor_id = '%s'" % c.actor_id)
    d3 = start(daemon)
    st3, ch3 = stub(d3, pb)
    replayed = st3.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
    [line] = loads(d3, c.actor_id)
    assert int(line["snapshot_seq"]) == 0 and int(line["events_read"]) == live.seq
    assert replayed == live
    ch3.close()


def metric(d, name):
    import requests
    for line in requests.get(d.ops_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_resident_bound_evicts_idle_actors_that_reload(daemon, pb):
    d = start(daemon, WY_ACTOR_MAX_RESIDENT="2")
    st, ch = stub(d, pb)
    ids = [create(st, pb).actor_id for _ in range(3)]
    for n, actor in enumerate(ids):
        earn(st, pb, actor, "e1", amount=n + 1)
        assert metric(d, "wy_actor_resident") <= 2
    # The first one was evicted to make room: it is read again from PostgreSQL.
    for n, actor in enumerate(ids):
        got = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=actor), timeout=DEADLINE)
        assert got.gold == n + 1 and got.seq == 2
    assert len(loads(d, ids[0])) >= 1
    assert metric(d, "wy_actor_resident") <= 2
    ch.close()


def test_a_writer_whose_shard_was_taken_over_cannot_commit(daemon, stack, pb):
    # No periodic view during the test: the write must meet the fence before the instance
    # learns of the takeover (the fence pokes a view; so does a failed forward).
    d = start(daemon, WY_ACTOR_HEARTBEAT="30s", WY_ACTOR_LEASE="60s")
    st, ch = stub(d, pb)
    c = create(st, pb)
    earn(st, pb, c.actor_id, "before", amount=1)
    shard = int(c.actor_id[:2], 16)
    # Another live instance takes the shard over (what its takeover does); it is unreachable.
    other = "someone-else-%s" % uuid.uuid4().hex[:8]
    stack.psql("INSERT INTO actor.instances (instance, addr, lease_until) VALUES "
               "('%s', '127.0.0.1:1', now() + interval '60 seconds')" % other)
    try:
        stack.psql("UPDATE actor.owners SET instance = '%s', epoch = epoch + 1 "
                   "WHERE shard = %d" % (other, shard))
        epoch = int(stack.psql("SELECT epoch FROM actor.owners WHERE shard = %d" % shard))
        assert code_of(lambda: earn(st, pb, c.actor_id, "after", amount=1)) == \
            grpc.StatusCode.UNAVAILABLE
        assert events(stack, c.actor_id) == 2  # created + the first earn, nothing after
        assert int(stack.psql("SELECT count(*) FROM actor.events WHERE actor_id = '%s' AND "
                              "epoch >= %d" % (c.actor_id, epoch))) == 0
        assert int(stack.psql("SELECT count(*) FROM actor.commands WHERE actor_id = '%s' AND "
                              "key = 'after'" % c.actor_id)) == 0
        assert "actor shard fenced" in d.log_text()
        # It knows it lost the shard: later requests go to the owner (unreachable here).
        assert code_of(lambda: earn(st, pb, c.actor_id, "later", amount=1)) == \
            grpc.StatusCode.UNAVAILABLE
        assert events(stack, c.actor_id) == 2
    finally:
        # The other instance dies: its lease is over, so the shard is taken back.
        stack.psql("UPDATE actor.instances SET lease_until = now() - interval '1 second' "
                   "WHERE instance = '%s'" % other)
    got = served(lambda: st.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id),
                                         timeout=DEADLINE))
    assert got.gold == 1 and got.seq == 2
    assert earn(st, pb, c.actor_id, "back", amount=1).character.gold == 2
    assert int(stack.psql("SELECT epoch FROM actor.owners WHERE shard = %d" % shard)) > epoch
    ch.close()


def test_committed_events_are_published_on_wy_actor_even_after_a_kafka_outage(daemon, stack, pb,
                                                                               build_dir):
    """After commit: every event (the created one included) is published on wy.actor from
    actor.events (the stored Event plus actor_id and seq, the row's event_id), also those
    committed while Kafka was down; one audit line per event."""
    import json
    import os
    import subprocess
    import tempfile
    d = start(daemon)
    st, ch = stub(d, pb)
    with stack.kafka_outage():
        c = create(st, pb)
        for n in range(3):
            earn(st, pb, c.actor_id, "pub-%d" % n, amount=n + 1)
        c = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
        audit = [r for r in d.log_lines() if r.get("msg") == "actor event" and
                 r.get("actor") == c.actor_id]
        assert [(r["seq"], r["type"]) for r in audit] == \
            [("1", "created")] + [(str(n + 2), "currency_earned") for n in range(3)]
    ids = stack.psql("SELECT event_id FROM actor.events WHERE actor_id = '%s' ORDER BY seq"
                     % c.actor_id).split()
    assert len(ids) == 4
    with tempfile.TemporaryDirectory() as tmp:
        effects, log = os.path.join(tmp, "effects"), os.path.join(tmp, "log")
        with open(log, "w") as logf:
            p = subprocess.Popen([os.path.join(build_dir, "tests", "tools", "wy-kafkatool"),
                                  "consume", "--brokers", stack.kafka_brokers, "--topic",
                                  "wy.actor", "--group", "test-%s" % uuid.uuid4().hex,
                                  "--effects", effects, "--timeout-ms", "90000"],
                                 stdout=subprocess.DEVNULL, stderr=logf)
            try:
                def seen():
                    return os.path.exists(effects) and \
                        set(ids) <= set(open(effects).read().split())
                wait_until(seen, timeout=90, what="the events read back from wy.actor")
            finally:
                p.terminate()
                p.wait(30)
        got = {}
        for line in open(log):
            r = json.loads(line)
            if r.get("msg") == "kafka message received" and r.get("event_id") in ids:
                got[r["event_id"]] = r
    for seq, event_id in enumerate(ids, start=1):
        r = got[event_id]
        ev = pb[0].Event.FromString(bytes.fromhex(r["payload"]))
        assert r["key"] == c.actor_id and ev.actor_id == c.actor_id and ev.seq == seq
        if seq == 1:
            assert r["type"] == "actor.created" and ev.created.name == c.name
        else:
            assert r["type"] == "actor.currency_earned" and ev.currency_earned.amount == seq - 1
    ch.close()


def test_retention_keeps_k_snapshots_and_prunes_the_events_below_them(daemon, stack, pb):
    """WY_ACTOR_SNAPSHOT_KEEP snapshots are kept; with WY_ACTOR_PRUNE_EVENTS the events at or
    below the oldest kept one are deleted, and the character still loads to the same state."""
    d = start(daemon, WY_ACTOR_SNAPSHOT_EVERY="10", WY_ACTOR_SNAPSHOT_KEEP="2",
              WY_ACTOR_PRUNE_EVENTS="true")
    st, ch = stub(d, pb)
    c = create(st, pb)
    for n in range(45):
        earn(st, pb, c.actor_id, "r%d" % n, amount=1)
    live = st.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
    assert live.seq == 46 and live.gold == 45
    snaps = [int(x) for x in stack.psql("SELECT seq FROM actor.snapshots WHERE actor_id = '%s' "
                                        "ORDER BY seq" % c.actor_id).split()]
    # One command per group commit: snapshots at seq 10, 20, 30, 40; the one at 40 kept 30
    # and deleted the events up to 30.
    assert snaps == [30, 40]
    assert int(stack.psql("SELECT min(seq) FROM actor.events WHERE actor_id = '%s'"
                          % c.actor_id)) == 31
    ch.close()
    d.stop()
    d2 = start(daemon)
    st2, ch2 = stub(d2, pb)
    again = st2.GetCharacter(pb[0].GetCharacterRequest(actor_id=c.actor_id), timeout=DEADLINE)
    assert again == live
    [line] = loads(d2, c.actor_id)
    assert int(line["snapshot_seq"]) == snaps[-1]
    ch2.close()
