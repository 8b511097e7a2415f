"""wy-actor consuming wy.gameplay (proto/gameplay.proto) from the real Kafka broker: each
event applied once to its character, also when the same events (same event ids) arrive
again, to the same instance or to a fresh one that has never seen them (issue 12,
must-show 5)."""
import os
import subprocess
import uuid

import grpc
import pytest
from actor_helpers import metric
from harness.wait import wait_until

DEADLINE = 10


@pytest.fixture
def pb(protos):
    import actor_pb2
    import actor_pb2_grpc
    import gameplay_pb2
    return actor_pb2, actor_pb2_grpc, gameplay_pb2


def publish(build_dir, stack, events):
    """events: [(event_id, key, payload bytes)] as Envelopes of type gameplay.event with
    those event ids (what a redelivery or a producer's retry looks like)."""
    lines = "".join("%s %s gameplay.event %s\n" % (eid, key, payload.hex() or "00")
                    for eid, key, payload in events)
    p = subprocess.run([os.path.join(build_dir, "tests", "tools", "wy-kafkatool"), "produce-lines",
                        "--brokers", stack.kafka_brokers, "--topic", "wy.gameplay"],
                       input=lines, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr


def start_with_character(daemon, pb):
    """A wy-actor instance, a stub and a new character of a new account."""
    actor_pb2, actor_grpc, _ = pb
    d = daemon("actor", env={"WY_LOG_LEVEL": "info"})
    ch = grpc.insecure_channel(d.grpc_addr)
    st = actor_grpc.ActorStub(ch)
    account = str(uuid.uuid4())
    c = st.CreateCharacter(actor_pb2.CreateCharacterRequest(
        account_id=account, name="g" + uuid.uuid4().hex[:10], class_name="mage"), timeout=DEADLINE)
    return d, ch, st, account, c


def character(st, pb, actor_id):
    return st.GetCharacter(pb[0].GetCharacterRequest(actor_id=actor_id), timeout=DEADLINE)


def test_redelivered_gameplay_events_apply_once(daemon, stack, build_dir, pb):
    actor_pb2, actor_grpc, gp = pb
    d, ch, st, account, c = start_with_character(daemon, pb)

    def ev(**kind):
        eid = "test:%s" % uuid.uuid4()
        m = gp.GameplayEvent(event_id=eid, account_id=account, character_id=c.actor_id,
                             ts_ms=1, **kind)
        return eid, c.actor_id, m.SerializeToString()
    events = [ev(xp_gained=gp.XpGained(amount=40, source="kill:wolf")) for _ in range(5)]
    events.append(ev(item_looted=gp.ItemLooted(item="wolf_pelt", count=2, source="loot:wolf")))
    events.append(ev(currency_gained=gp.CurrencyGained(amount=7, source="loot:wolf")))
    events.append(ev(position_saved=gp.PositionSaved(zone="meadow", zone_instance="meadow#1",
                                                     x=12.5, y=40.25)))
    # An event about this character from another account: refused, nothing applied.
    eid = "test:%s" % uuid.uuid4()
    foreign = (eid, c.actor_id, gp.GameplayEvent(
        event_id=eid, account_id=str(uuid.uuid4()), character_id=c.actor_id,
        xp_gained=gp.XpGained(amount=1000)).SerializeToString())
    publish(build_dir, stack, events + [foreign])

    def applied():
        got = character(st, pb, c.actor_id)
        return got.xp == 200 and got.gold == 7 and got.position.zone == "meadow"
    wait_until(applied, timeout=60, what="the gameplay events applied")
    got = character(st, pb, c.actor_id)
    assert got.level == 2  # level L needs 100 * L * (L - 1) / 2 XP: 100 for 2, 300 for 3
    assert [(i.item, i.count) for i in got.inventory] == [("wolf_pelt", 2)]
    assert (got.position.x, got.position.y) == (12.5, 40.25)
    wait_until(lambda: metric(d, "wy_actor_gameplay_total", result="refused") == 1, timeout=30,
               what="the other account's event refused")

    # The same events again (same ids), to the same instance: no second effect.
    publish(build_dir, stack, events)
    wait_until(lambda: metric(d, "wy_actor_kafka_duplicates_total") +
               metric(d, "wy_actor_gameplay_total", result="duplicate") >= len(events),
               timeout=60, what="the redelivered events recognised")
    assert d.stop() == 0
    ch.close()

    # And to a fresh instance, which has never seen them in memory: the durable record
    # (idempotency key + actor.wy_consumed, written with the effect) stops them.
    d2 = daemon("actor", env={"WY_LOG_LEVEL": "info"})
    publish(build_dir, stack, events)
    wait_until(lambda: metric(d2, "wy_actor_gameplay_total", result="duplicate") >= len(events),
               timeout=60, what="the redelivered events recognised by a fresh instance")
    ch2 = grpc.insecure_channel(d2.grpc_addr)
    again = character(actor_grpc.ActorStub(ch2), pb, c.actor_id)
    assert again.xp == 200 and again.gold == 7 and again.seq == got.seq
    assert metric(d2, "wy_actor_gameplay_total", result="applied") == 0
    n = int(stack.psql("SELECT count(*) FROM actor.events WHERE actor_id = '%s' AND type = "
                       "'xp_gained'" % c.actor_id))
    assert n == 5
    ids = ",".join("'%s'" % e[0] for e in events)
    assert int(stack.psql("SELECT count(*) FROM actor.wy_consumed WHERE consumer = 'actor' AND "
                          "event_id IN (%s)" % ids)) == len(events)
    # The consumed id is a gameplay event's only record: no idempotency key row.
    assert int(stack.psql("SELECT count(*) FROM actor.commands WHERE actor_id = '%s'"
                          % c.actor_id)) == 0
    ch2.close()


def test_a_bad_gameplay_event_is_skipped_and_the_partition_goes_on(daemon, stack, build_dir, pb):
    _, _, gp = pb
    d, ch, st, account, c = start_with_character(daemon, pb)
    key = c.actor_id
    bad = [("test:%s" % uuid.uuid4(), key, b"\xff\xff\xff"),  # not a GameplayEvent
           ("test:%s" % uuid.uuid4(), key, gp.GameplayEvent(
               account_id=account, character_id=c.actor_id,
               xp_gained=gp.XpGained(amount=0)).SerializeToString())]  # amount out of bounds
    eid = "test:%s" % uuid.uuid4()
    good = (eid, key, gp.GameplayEvent(event_id=eid, account_id=account, character_id=c.actor_id,
                                       currency_gained=gp.CurrencyGained(amount=3))
            .SerializeToString())
    publish(build_dir, stack, bad + [good])
    wait_until(lambda: character(st, pb, c.actor_id).gold == 3, timeout=60,
               what="the good event after the bad ones applied")
    assert metric(d, "wy_actor_gameplay_total", result="invalid") == 2
    assert "gameplay event invalid" in d.log_text()
    ch.close()
