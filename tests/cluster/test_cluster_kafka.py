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
LOGINS = 300
PROBE_BATCH = 200


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
    acked, failed, probe_acked = [], [], []
    stop = threading.Event()

    def players():
        for _ in range(LOGINS):
            try:
                r = requests.post(base + "/v1/login", json={"method": "device",
                                                            "device_id": "dev-" + uuid.uuid4().hex},
                                  timeout=30)
            except requests.RequestException as e:
                failed.append(repr(e))
                continue
            (acked if r.status_code in (200, 201) and r.json().get("created") else failed).append(
                r.status_code)
            stop.wait(0.03)

    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")

    def probes():
        # Batches until told to stop: each prints the ids Kafka acknowledged, exit 0 = all.
        while not stop.is_set():
            p = subprocess.run([exe, "produce", "--brokers", kafka3.bootstrap, "--topic", PROBE,
                                "--count", str(PROBE_BATCH), "--timeout-ms", "120000"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=150)
            ids = p.stdout.split()
            probe_acked.extend(ids)
            if p.returncode != 0 or len(ids) != PROBE_BATCH:
                failed.append(("probe batch", p.returncode, len(ids)))

    leader = kafka3.leader("wy.account")
    assert kafka3.leader(PROBE) == leader
    threads = [threading.Thread(target=players, daemon=True),
               threading.Thread(target=probes, daemon=True)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 20 and len(probe_acked) >= 2 * PROBE_BATCH or failed,
                   timeout=120, interval=0.1, what="logins and probe events before the kill")
        kafka3.kill9(leader)  # the leader of both partitions, mid-stream
        before = (len(acked), len(probe_acked))
        wait_until(lambda: kafka3.leader("wy.account") not in (leader, -1), timeout=90,
                   interval=0.5, what="a new leader of wy.account")
        # Served and acknowledged after the leader change too.
        wait_until(lambda: len(acked) > before[0] and len(probe_acked) > before[1] + PROBE_BATCH,
                   timeout=120, interval=0.5, what="logins and probes after the new leader")
        threads[0].join(timeout=300)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=200)
    assert not failed, "failures while a broker died: %s" % failed[:5]
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
    assert len(got) == len(set(got)) == len(set(probe_acked)) == len(probe_acked)
    print("kafka3: killed broker %d; %d logins, %d probe events, none lost or applied twice"
          % (leader, len(acked), len(probe_acked)))
