"""Kafka subscriptions of the daemons (wy_daemon's table), against the real broker:
a daemon consumes only the topics it has handlers for, an event type nobody
handles is counted and logged once, and a broadcast consumer is positioned
before the ready line."""
import datetime
import json
import os
import subprocess
import time
import uuid

import requests

from harness.kafka import kafkatool, offsets, produce, series
from harness.wait import wait_until


def wait_healthy(d):
    wait_until(lambda: requests.get(d.ops_url + "/readyz", timeout=5).status_code == 200,
               what="%s healthy" % d.svc)


def test_skeleton_daemon_commits_no_offset(daemon, stack, build_dir):
    """Must-show 5: wy-game has no handler for wy.npc.intent yet (a topic it will consume
    one day, docs/ARCHITECTURE.md), so it is assigned none of its partitions and commits
    nothing there, even with events waiting. Its only subscription is the broadcast of
    wy.chat (chat delivery)."""
    brokers = stack.kafka_brokers
    produce(build_dir, brokers, "wy.npc.intent", count=3, key="npc-%s" % uuid.uuid4())
    d = daemon("game")
    wait_healthy(d)
    assert d.stop() == 0
    assigned = [r.get("partitions", "") for r in d.log_lines()
                if r.get("msg") == "kafka partitions assigned"]
    assert not any("wy.npc.intent" in p for p in assigned), assigned
    for p, (lo, hi, committed) in offsets(build_dir, brokers, "wy.npc.intent", "wy-game").items():
        assert committed < 0, "group wy-game committed %d on wy.npc.intent[%d]" % (committed, p)
    assert sum(hi - lo for lo, hi, _ in offsets(build_dir, brokers, "wy.npc.intent",
                                                 "wy-game").values()) >= 3


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


def _ts_ms(rec):
    """Wall-clock milliseconds of a log record's "ts" (2026-12-05T19:30:24.383Z)."""
    t = datetime.datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000.0


def _first_ready(d, timeout=60.0):
    """The ready record, read as soon as it is written (the log is polled every ms)."""
    deadline = time.monotonic() + timeout
    with open(d.log_path) as f:
        buf = ""
        while time.monotonic() < deadline:
            buf += f.read()
            *lines, buf = buf.split("\n")
            for line in lines:
                if '"msg":"ready"' in line:
                    return json.loads(line)
            assert d.running(), d.log_tail()
            time.sleep(0.001)
    raise AssertionError("no ready line within %.0f s:\n%s" % (timeout, d.log_tail()))


def test_fresh_lobby_delivers_a_kick_produced_10ms_after_ready(daemon, stack, build_dir):
    """Must-show 4c: the broadcast consumer is positioned before the ready line,
    so a kick produced 10 ms after it reaches the new instance."""
    tool = subprocess.Popen(
        [os.path.join(build_dir, "tests", "tools", "wy-kafkatool"), "produce", "--brokers",
         stack.kafka_brokers, "--topic", "wy.session", "--count", "1", "--type",
         "session.kick", "--key", "acct-%s" % uuid.uuid4(), "--wait-stdin", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tool.stdout.readline().strip() == "armed", tool.stderr.read()
        d = daemon("lobby", env={"WY_LOG_LEVEL": "debug"}, wait_ready=False)
        ready = _first_ready(d)
        delay = (_ts_ms(ready) + 10.0) / 1000.0 - time.time()
        if delay > 0:
            time.sleep(delay)
        tool.stdin.write("go\n")
        tool.stdin.flush()
        sent_after_ms = time.time() * 1000.0 - _ts_ms(ready)
        event_id = tool.stdout.readline().strip()
        assert tool.wait(60) == 0 and event_id, tool.stderr.read()
    finally:
        if tool.poll() is None:
            tool.kill()
            tool.wait()
    rec = d.wait_log(lambda r: r.get("msg") == "kafka event" and r.get("event_id") == event_id,
                     timeout=30)
    assert rec["topic"] == "wy.session" and rec["type"] == "session.kick"
    print("kick produced %.1f ms after the ready line, delivered %.1f ms after it"
          % (sent_after_ms, _ts_ms(rec) - _ts_ms(ready)))
