"""Issue 17 must-show 2: a real 3-broker KRaft Kafka cluster on loopback
(tests/harness/kcluster.py), topics with replication factor 3 and min.insync.replicas 2,
producers with acks=all and idempotence (wy_kafka). kill -9 of the leader of wy.account's
partition while players log in: no acknowledged event is lost and, after the consumer's
idempotency (event ids, wy_seen), none is applied twice.

Two producers: auth (its outbox relay: an event is acknowledged when Kafka acked it and the
row left auth.wy_outbox) and wy-kafkatool produce on a probe topic led by the same broker
(it prints each event id Kafka acknowledged, for an exact account)."""
import os
import signal
import subprocess
import threading
import uuid

import pytest
import requests

from harness.kcluster import KafkaCluster
from harness.wait import wait_until

TOPICS = ["wy.account", "wy.session", "wy.notify", "wy.chat", "wy.gameplay", "wy.world",
          "wy.actor", "wy.npc.intent", "wy.npc.perception"]
PROBE = "wy.test.kafka3"
LOGINS = 150
PROBES = 3000


@pytest.fixture(scope="module")
def kafka3(stack):
    k = KafkaCluster(os.path.join(stack.dir, "kcluster-%d" % os.getpid()))
    try:
        k.start()
        for t in TOPICS:
            k.create_topic(t, 1)
        lead = k.leader("wy.account")
        k.create_topic(PROBE, 1, replicas=[lead] + [i for i in k.ids if i != lead])
    except BaseException:
        k.stop()
        raise
    yield k
    k.stop()


def consume_until(build_dir, brokers, topic, tmp_path, done, what):
    """Runs wy-kafkatool consume (fresh group, from the start; applies each event id once)
    until done(lines of its effects file); returns those lines."""
    effects = tmp_path / ("effects-" + topic)
    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")
    log = open(tmp_path / ("reader-%s.log" % topic), "wb")
    reader = subprocess.Popen([exe, "consume", "--brokers", brokers, "--topic", topic,
                               "--group", "k3-" + uuid.uuid4().hex, "--effects", str(effects)],
                              stdout=subprocess.DEVNULL, stderr=log)

    def lines():
        try:
            return effects.read_text().split()
        except FileNotFoundError:
            return []
    try:
        wait_until(lambda: done(lines()), timeout=180, interval=1, what=what)
    finally:
        reader.send_signal(signal.SIGTERM)
        reader.wait(timeout=60)
        log.close()
    return lines()


def test_kill9_partition_leader_during_logins_loses_nothing(daemon, stack, build_dir, tmp_path,
                                                            kafka3):
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_KAFKA_BROKERS": kafka3.bootstrap})
    base = "http://127.0.0.1:%d" % auth.client_port
    acked, failed = [], []

    def players():
        for _ in range(LOGINS):
            try:
                r = requests.post(base + "/v1/login", json={"method": "device",
                                                            "device_id": "dev-" + uuid.uuid4().hex},
                                  timeout=20)
            except requests.RequestException as e:
                failed.append(repr(e))
                continue
            (acked if r.status_code in (200, 201) and r.json().get("created") else failed).append(
                r.status_code)

    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")
    producer = subprocess.Popen([exe, "produce", "--brokers", kafka3.bootstrap, "--topic", PROBE,
                                 "--count", str(PROBES), "--timeout-ms", "180000"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    logins = threading.Thread(target=players, daemon=True)
    logins.start()
    probe_acked = []
    leader = kafka3.leader("wy.account")
    assert kafka3.leader(PROBE) == leader
    killed = False
    for line in producer.stdout:
        probe_acked.append(line.strip())
        if not killed and len(probe_acked) >= PROBES // 4 and len(acked) >= 10:
            kafka3.kill9(leader)  # the leader of both partitions, mid-stream
            killed = True
    assert producer.wait(timeout=200) == 0, "the probe producer lost events it was given"
    logins.join(timeout=300)
    assert killed, "the leader was never killed (too few acknowledgements)"
    assert not failed, "logins failed while a broker died: %s" % failed[:5]
    assert kafka3.leader("wy.account") not in (leader, -1)
    # auth's outbox relayed every acknowledged change (Kafka acks=all from 2 in-sync replicas).
    wait_until(lambda: stack.psql("SELECT count(*) FROM auth.wy_outbox") == "0", timeout=120,
               interval=1, what="auth's outbox empty")
    # A new device login: account.created + account.login, both acknowledged by Kafka.
    want = 2 * len(acked)
    got = consume_until(build_dir, kafka3.bootstrap, "wy.account", tmp_path,
                        lambda ls: len(ls) >= want, "%d wy.account events" % want)
    assert len(got) == want and len(set(got)) == want, (len(got), len(set(got)), want)
    got = consume_until(build_dir, kafka3.bootstrap, PROBE, tmp_path,
                        lambda ls: set(probe_acked) <= set(ls), "every acknowledged probe event")
    assert len(got) == len(set(got)) == len(set(probe_acked)) == PROBES
    print("kafka3: killed broker %d; %d logins, %d probe events, none lost or applied twice"
          % (leader, len(acked), len(probe_acked)))
