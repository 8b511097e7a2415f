"""Kafka subscriptions of the daemons (wy_daemon's table), against the real broker:
a daemon consumes only the topics it has handlers for, an event type nobody
handles is counted and logged once, and a broadcast consumer is positioned
before the ready line."""
import os
import subprocess
import time
import uuid

import requests

from harness.wait import wait_until


def kafkatool(build_dir, *args, timeout=90):
    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")
    out = subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, "wy-kafkatool %s failed:\n%s" % (args[0], out.stderr)
    return out.stdout


def produce(build_dir, brokers, topic, count=1, type_="test.event", key=None):
    """Produces `count` Envelopes; returns their event ids."""
    args = ["produce", "--brokers", brokers, "--topic", topic, "--count", str(count),
            "--type", type_]
    if key:
        args += ["--key", key]
    ids = kafkatool(build_dir, *args).split()
    assert len(ids) == count, ids
    return ids


def offsets(build_dir, brokers, topic, group):
    """{partition: (low, high, committed)} of topic for group (committed -1001: none)."""
    out = kafkatool(build_dir, "offsets", "--brokers", brokers, "--topic", topic,
                    "--group", group)
    res = {}
    for line in out.split("\n"):
        if line.strip():
            p, lo, hi, committed = (int(x) for x in line.split())
            res[p] = (lo, hi, committed)
    return res


def series(d, name, **labels):
    """Value of the one series of `name` with exactly these labels, or None."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    text = requests.get(d.ops_url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "{" in key:
            n, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(",")))
        else:
            n, got = key, ""
        if n == name and got == want:
            return float(value)
    return None


def wait_healthy(d):
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               what="%s healthy" % d.svc)


def test_skeleton_daemon_commits_no_offset(daemon, stack, build_dir):
    """Must-show 5: wy-actor has no handlers, so it joins no group and commits
    nothing, even with events waiting on a topic it will consume one day."""
    brokers = stack.kafka_brokers
    produce(build_dir, brokers, "wy.gameplay", count=3, key="acct-%s" % uuid.uuid4())
    d = daemon("actor")
    wait_healthy(d)
    # No consumer at all: none of the consumer metrics exist.
    assert series(d, "wy_actor_kafka_consumed_total") is None
    assert d.stop() == 0
    log = d.log_text()
    assert "kafka partitions assigned" not in log
    for p, (lo, hi, committed) in offsets(build_dir, brokers, "wy.gameplay", "wy-actor").items():
        assert committed < 0, "group wy-actor committed %d on wy.gameplay[%d]" % (committed, p)
    assert sum(hi - lo for lo, hi, _ in offsets(build_dir, brokers, "wy.gameplay",
                                                 "wy-actor").values()) >= 3


def test_unhandled_type_is_counted_and_logged_once(daemon, stack, build_dir):
    """Lobby handles session.kick on wy.session: another type there is counted
    per type and logged once; a record that is not an Envelope is skipped; a
    known type lobby ignores (account.login on wy.account) is counted apart."""
    brokers = stack.kafka_brokers
    d = daemon("lobby")
    wait_healthy(d)
    key = "acct-%s" % uuid.uuid4()
    kafkatool(build_dir, "produce-raw", "--brokers", brokers, "--topic", "wy.session",
              "--value", "definitely not protobuf \xff", "--key", key)
    ids = produce(build_dir, brokers, "wy.session", count=3, type_="test.unknown", key=key)
    produce(build_dir, brokers, "wy.account", count=2, type_="account.login", key=key)
    wait_until(lambda: series(d, "wy_lobby_events_unhandled_total", topic="wy.session",
                              type="test.unknown") == 3, what="3 unhandled events counted")
    wait_until(lambda: series(d, "wy_lobby_events_ignored_total", topic="wy.account",
                              type="account.login") == 2, what="2 ignored events counted")
    assert (series(d, "wy_lobby_kafka_bad_messages_total") or 0) >= 1
    lines = [r for r in d.log_lines() if r.get("msg", "").startswith("kafka event type not handled")]
    assert len(lines) == 1, lines
    assert lines[0]["type"] == "test.unknown" and lines[0]["event_id"] == ids[0]
    assert "kafka message is not an Envelope" in d.log_text()
    assert requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200
