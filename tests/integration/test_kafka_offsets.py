"""Kafka offsets across processes with the real broker (wy-kafkatool).

A consumer that dies after receiving messages but before their effect must not
lose them: the next consumer of the group applies them. A record that is not an
Envelope is logged and skipped without blocking the valid ones.

Env: WY_KAFKA_BROKERS (required), WY_BUILD_DIR (default "build").
"""
import os
import signal
import subprocess
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    d = os.environ.get("WY_BUILD_DIR", "build")
    return d if os.path.isabs(d) else os.path.join(ROOT, d)


@pytest.fixture(scope="module")
def brokers():
    b = os.environ.get("WY_KAFKA_BROKERS")
    if not b:
        pytest.fail("WY_KAFKA_BROKERS is not set: these tests need a real Kafka broker")
    return b


@pytest.fixture(scope="module")
def tool():
    path = os.path.join(build_dir(), "tests", "tools", "wy-kafkatool")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not built (make tests)")
    return path


def unique(prefix):
    return f"{prefix}-{uuid.uuid4()}"


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def produce(tool, brokers, topic, count, key):
    r = subprocess.run(
        [tool, "produce", "--brokers", brokers, "--topic", topic, "--count", str(count),
         "--key", key],
        capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"produce failed ({r.returncode}):\n{r.stderr}"
    ids = r.stdout.split()
    assert len(ids) == count and len(set(ids)) == count, r.stdout
    return ids


class Consumer:
    """One wy-kafkatool consume process; its JSON log goes to a file."""

    def __init__(self, tool, brokers, topic, group, effects, tmp_path, name, *extra):
        self.log = str(tmp_path / f"{name}.log")
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [tool, "consume", "--brokers", brokers, "--topic", topic, "--group", group,
             "--effects", effects, *extra],
            stdout=self.logf, stderr=subprocess.STDOUT)

    def count(self, msg):
        return read(self.log).count(f'"msg":"{msg}"')

    def wait_for(self, msg, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(msg) >= n:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"consumer never logged {n}x {msg!r} (exit {self.proc.poll()}):\n"
                    f"{read(self.log)}")

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"consumer did not exit in {timeout}s:\n{read(self.log)}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


@pytest.fixture
def consumers():
    started = []
    yield started
    for c in started:
        c.close()


def effects_of(path):
    return read(path).split()


def test_killed_consumer_loses_nothing(tool, brokers, tmp_path, consumers):
    topic, group = unique("wy-it-kill"), unique("wy-it-group")
    effects = str(tmp_path / "effects.txt")
    ids = produce(tool, brokers, topic, 5, "acct-1")

    # First consumer receives all five but its effects are 30 s away: kill -9.
    first = Consumer(tool, brokers, topic, group, effects, tmp_path, "first",
                     "--delay-ms", "30000")
    consumers.append(first)
    first.wait_for("kafka message received", 5, 60)
    assert effects_of(effects) == [], read(first.log)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()

    # Second consumer of the same group (another process) applies all five.
    second = Consumer(tool, brokers, topic, group, effects, tmp_path, "second",
                      "--expect", "5", "--timeout-ms", "90000")
    consumers.append(second)
    rc = second.wait_exit(120)
    assert rc == 0, read(second.log)
    applied = effects_of(effects)
    assert sorted(applied) == sorted(ids), f"effects {applied}\n{read(second.log)}"


def test_bad_record_logged_and_skipped(tool, brokers, tmp_path, consumers):
    topic, group = unique("wy-it-bad"), unique("wy-it-group")
    effects = str(tmp_path / "effects.txt")
    # Same key: the bad record sits in front of the valid ones in one partition.
    r = subprocess.run(
        [tool, "produce-raw", "--brokers", brokers, "--topic", topic, "--value",
         "definitely not an envelope", "--key", "acct-2"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ids = produce(tool, brokers, topic, 3, "acct-2")

    c = Consumer(tool, brokers, topic, group, effects, tmp_path, "bad",
                 "--expect", "3", "--timeout-ms", "60000")
    consumers.append(c)
    rc = c.wait_exit(90)
    log = read(c.log)
    assert rc == 0, log
    assert c.count("kafka message is not an Envelope") == 1, log
    assert '"offset":"0"' in log.split('"msg":"kafka message is not an Envelope"')[1].split("\n")[0]
    assert effects_of(effects) == ids, log


def test_sigterm_commits_done_offsets(tool, brokers, tmp_path, consumers):
    topic, group = unique("wy-it-term"), unique("wy-it-group")
    effects = str(tmp_path / "effects.txt")
    ids = produce(tool, brokers, topic, 4, "acct-3")

    c = Consumer(tool, brokers, topic, group, effects, tmp_path, "term")
    consumers.append(c)
    c.wait_for("effect applied", 4, 60)
    c.proc.send_signal(signal.SIGTERM)
    assert c.wait_exit(30) == 0, read(c.log)
    assert effects_of(effects) == ids

    # Done offsets were committed at close: the group has nothing left to apply.
    again = Consumer(tool, brokers, topic, group, effects, tmp_path, "again",
                     "--expect", "1", "--timeout-ms", "8000")
    consumers.append(again)
    rc = again.wait_exit(60)
    assert rc == 3, f"expected a timeout with nothing to consume:\n{read(again.log)}"
    assert again.count("kafka partitions assigned") >= 1, read(again.log)
    assert again.count("kafka message received") == 0, read(again.log)
    assert effects_of(effects) == ids
