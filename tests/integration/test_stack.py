"""Sanity of the test stack itself: Redis, PostgreSQL and Kafka answer."""
import glob
import os
import subprocess

from harness import TOP


def test_redis_answers_ping(stack):
    assert stack.redis_cli("PING") == "PONG"


def test_postgres_answers_select(stack):
    assert stack.psql("SELECT 1") == "1"
    assert stack.psql("SHOW synchronous_commit") == "on"


def test_kafka_broker_answers_a_java_client(stack):
    # An independent client (the broker's own Java admin tool) must reach the
    # broker through the advertised address.
    libs = sorted(glob.glob(os.path.join(TOP, ".cache", "kafka-*", "libs")))
    assert libs, "Kafka jars missing: run tools/deps"
    p = subprocess.run(["java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", os.path.join(libs[-1], "*"),
                        "kafka.admin.BrokerApiVersionsCommand", "--bootstrap-server", stack.kafka_brokers],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    assert "127.0.0.1:%d (id: 1" % stack.kafka_port in p.stdout, p.stdout


def test_wyvern_topics_exist_with_three_partitions(stack):
    p = subprocess.run([os.path.join(TOP, "tools", "stack"), "topics", stack.dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    topics = dict(line.split() for line in p.stdout.splitlines())
    for t in ("wy.account", "wy.session", "wy.notify", "wy.chat", "wy.gameplay", "wy.world",
              "wy.actor", "wy.npc.intent", "wy.npc.perception"):
        assert topics.get(t) == "3", "topic %s: %s" % (t, topics.get(t))


def test_redis_restarts_on_the_same_port(stack):
    port = stack.redis_port
    stack.stop_redis()
    try:
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "PING"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
        assert "PONG" not in p.stdout
    finally:
        stack.start_redis()
    assert stack.redis_port == port
    assert stack.redis_cli("PING") == "PONG"
