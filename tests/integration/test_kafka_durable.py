"""Crashes at the worst moment, with real Kafka and PostgreSQL (must-show 4):
durable consumer idempotency (wy_consumed) and the transactional outbox
(wy_outbox), through wy-kafkatest, a real wy_daemon that kills itself with
SIGKILL at an exact point (WY_KAFKATEST_CRASH)."""
import signal
import uuid

import pytest
import requests

from harness.wait import wait_until
from harness.kafka import kafkatool, offsets, produce, series

GROUP = "wy-kafkatest"
# A member killed with SIGKILL stays in the group until its session times out
# (10 s): the next member's first assignment waits for that.
REJOIN_TIMEOUT = 90


def count_effects(stack, event_id):
    return int(stack.psql("SELECT count(*) FROM kafkatest.effects WHERE event_id = '%s'"
                          % event_id))


def test_consumer_killed_after_effect_commit_has_no_second_effect(daemon, stack, build_dir):
    brokers = stack.kafka_brokers
    topic = "wy-it-consumed-%s" % uuid.uuid4()
    consumer = "kafkatest"  # the daemon's wy_consumed records under the service's name
    env = {"WY_KAFKATEST_TOPIC": topic}
    [event_id] = produce(build_dir, brokers, topic, count=1, key="k1")

    # The effect commits, then the daemon dies before the offset is stored. The
    # event is already in the topic, so the crash may come before the ready line.
    first = daemon("kafkatest", env=dict(env, WY_KAFKATEST_CRASH="after_effect_commit"),
                   wait_ready=False)
    assert first.wait(REJOIN_TIMEOUT) == -signal.SIGKILL, first.log_tail()
    assert "crashing on purpose" in first.log_text()
    assert count_effects(stack, event_id) == 1
    assert int(stack.psql("SELECT count(*) FROM kafkatest.wy_consumed WHERE consumer = '%s' "
                          "AND event_id = '%s'" % (consumer, event_id))) == 1
    assert all(c < 0 for _, _, c in offsets(build_dir, brokers, topic, GROUP).values()), \
        "an offset was committed before the crash"

    # The restarted daemon gets the event again and applies nothing.
    second = daemon("kafkatest", env=env)
    wait_until(lambda: series(second, "wy_kafkatest_consumed_duplicates_total",
                              consumer=consumer) == 1,
               timeout=REJOIN_TIMEOUT, what="redelivered event counted as already applied")
    assert any(r.get("msg") == "event already applied" and r.get("event_id") == event_id
               for r in second.log_lines())
    assert count_effects(stack, event_id) == 1
    # The row's on_partitions heard of the assignment (the actor will own partitions by it).
    assert any(r.get("msg") == "row partitions" and r.get("kind") == "assigned"
               and r.get("topic") == topic for r in second.log_lines()), second.log_tail()
    assert second.stop() == 0
    assert any(r.get("msg") == "row partitions" and r.get("kind") == "revoked"
               and r.get("topic") == topic for r in second.log_lines()), second.log_tail()
    # Now done: its offset is committed, so a third start would not see it again.
    offs = offsets(build_dir, brokers, topic, GROUP)
    assert any(c == hi and hi > lo for lo, hi, c in offs.values()), offs


def test_outbox_killed_between_commit_and_produce_publishes_once(daemon, stack, build_dir, tmp_path):
    brokers = stack.kafka_brokers
    topic = "wy-it-outbox-%s" % uuid.uuid4()
    # No periodic relay pass in the crashing run: only the commit could wake it.
    first = daemon("kafkatest", env={"WY_KAFKATEST_CRASH": "after_outbox_commit",
                                     "WY_KAFKATEST_OUTBOX_POLL": "1h"})
    with pytest.raises(requests.ConnectionError):
        requests.post(first.ops_url + "/emit", json={"topic": topic, "key": "k1"}, timeout=30)
    assert first.wait(30) == -signal.SIGKILL, first.log_tail()
    event_id = stack.psql("SELECT event_id FROM kafkatest.wy_outbox WHERE topic = '%s'" % topic)
    assert event_id and "\n" not in event_id, "want exactly one outbox row, got %r" % event_id
    assert count_effects(stack, event_id) == 1
    assert offsets(build_dir, brokers, topic, "none") == {}, "published before the crash"

    # The next start's relay publishes the row and deletes it once acknowledged.
    second = daemon("kafkatest")
    wait_until(lambda: stack.psql("SELECT count(*) FROM kafkatest.wy_outbox WHERE topic = '%s'"
                                  % topic) == "0", timeout=60, what="outbox row relayed")
    assert (series(second, "wy_kafkatest_outbox_relayed_total") or 0) >= 1
    assert second.stop() == 0
    offs = offsets(build_dir, brokers, topic, "none")
    assert sum(hi - lo for lo, hi, _ in offs.values()) == 1, offs

    # The one record carries the row's event_id.
    effects = tmp_path / "seen.txt"
    kafkatool(build_dir, "consume", "--brokers", brokers, "--topic", topic, "--group",
              "wy-it-%s" % uuid.uuid4(), "--effects", str(effects), "--expect", "1",
              "--timeout-ms", "60000")
    assert effects.read_text().split() == [event_id]
