"""A real 3-broker Apache Kafka cluster (KRaft, each broker also a controller) on
loopback for the cluster tier, from the cached jars tools/stack uses
(.cache/kafka-*/libs), and topics with production settings: replication factor
3, min.insync.replicas 2 (docs/keys.md, "Kafka topics")."""
import base64
import importlib.machinery
import importlib.util
import os
import signal
import struct
import subprocess
import uuid

from . import TOP
from .ports import free_port
from .wait import wait_until


def _stack_module():
    """tools/stack as a module: its Kafka wire-protocol helpers and jar lookup."""
    path = os.path.join(TOP, "tools", "stack")
    loader = importlib.machinery.SourceFileLoader("wy_tools_stack", path)
    spec = importlib.util.spec_from_loader("wy_tools_stack", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


_stk = _stack_module()
BROKERS = 3


class KafkaCluster:
    def __init__(self, root):
        self.root = root
        self.ids = list(range(1, BROKERS + 1))
        self.ports = {i: free_port() for i in self.ids}
        self.cports = {i: free_port() for i in self.ids}
        self.procs = {}

    @property
    def bootstrap(self):
        return ",".join("127.0.0.1:%d" % self.ports[i] for i in self.ids)

    def _props(self, i):
        d = os.path.join(self.root, "broker-%d" % i)
        os.makedirs(d, exist_ok=True)
        voters = ",".join("%d@127.0.0.1:%d" % (j, self.cports[j]) for j in self.ids)
        props = os.path.join(d, "server.properties")
        with open(props, "w") as f:
            f.write("\n".join([
                "process.roles=broker,controller",
                "node.id=%d" % i,
                "controller.quorum.voters=" + voters,
                "listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d"
                % (self.ports[i], self.cports[i]),
                "advertised.listeners=PLAINTEXT://127.0.0.1:%d" % self.ports[i],
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "log.dirs=" + os.path.join(d, "data"),
                "num.partitions=1",
                "default.replication.factor=3",
                "min.insync.replicas=2",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=3",
                "offsets.topic.num.partitions=3",
                "transaction.state.log.replication.factor=3",
                "transaction.state.log.min.isr=2",
                "transaction.state.log.num.partitions=3",
                "group.initial.rebalance.delay.ms=0",
                "unclean.leader.election.enable=false",
                "num.network.threads=2",
                "num.io.threads=2",
                "",
            ]))
        return d, props

    def _jvm(self, d):
        log4j = os.path.join(d, "log4j.properties")
        with open(log4j, "w") as f:
            f.write("log4j.rootLogger=INFO, stdout\n"
                    "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
                    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
                    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
                    "log4j.logger.kafka.request.logger=WARN\n"
                    "log4j.logger.state.change.logger=WARN\n")
        java = (os.path.join(os.environ["JAVA_HOME"], "bin", "java")
                if os.environ.get("JAVA_HOME") else "java")
        return [java, "-Xmx320m", "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", "-Dlog4j.configuration=file:" + log4j,
                "-Dkafka.logs.dir=" + d, "-cp", os.path.join(_stk.kafka_libs(), "*")]

    def start(self):
        if not _stk.kafka_libs():
            raise RuntimeError("Kafka jars missing (.cache/kafka-*/libs): run tools/deps")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cluster_id = "A" + cluster_id[1:]  # never starts with '-'
        for i in self.ids:
            d, props = self._props(i)
            subprocess.run(self._jvm(d) + ["kafka.tools.StorageTool", "format",
                                           "--cluster-id=" + cluster_id, "-c", props],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True,
                           timeout=180)
        for i in self.ids:
            self.start_broker(i)
        wait_until(lambda: self._brokers_up() == BROKERS, timeout=240, interval=1,
                   what="3 Kafka brokers registered")
        return self

    def start_broker(self, i):
        d, props = self._props(i)
        log = open(os.path.join(d, "kafka.log"), "ab")
        self.procs[i] = subprocess.Popen(self._jvm(d) + ["kafka.Kafka", props], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=d)
        log.close()

    def _brokers_up(self):
        for i in self.ids:
            if self.procs.get(i) is None or self.procs[i].poll() is not None:
                continue
            try:
                return len(_stk.kafka_metadata(self.ports[i])["brokers"])
            except OSError:
                continue
        return 0

    def metadata(self):
        for i in self.ids:
            if self.procs.get(i) is not None and self.procs[i].poll() is None:
                try:
                    return _stk.kafka_metadata(self.ports[i])
                except OSError:
                    continue
        raise RuntimeError("no Kafka broker answers")

    def create_topic(self, name, partitions, rf=3, min_isr=2, replicas=None):
        """CreateTopics v0 with replication factor rf and min.insync.replicas; replicas: the
        broker ids of a one-partition topic, preferred leader first."""
        if replicas:
            partitions = 1
            body = (struct.pack(">i", 1) + _stk._str(name) + struct.pack(">ih", -1, -1)
                    + struct.pack(">ii", 1, 0) + struct.pack(">i", len(replicas))
                    + b"".join(struct.pack(">i", r) for r in replicas))
        else:
            body = (struct.pack(">i", 1) + _stk._str(name)
                    + struct.pack(">ihi", partitions, rf, 0))
        body += struct.pack(">i", 1) + _stk._str("min.insync.replicas") + _stk._str(str(min_isr))
        body += struct.pack(">i", 30000)
        port = self.ports[self.ids[0]]
        r = _stk.kafka_request(port, 19, 0, body, timeout=35)
        r.take(">i")
        r.string()
        err = r.take(">h")
        if err not in (0, 36):  # 36: already exists
            raise RuntimeError("CreateTopics %s: error %d" % (name, err))
        wait_until(lambda: len(self.metadata()["topics"].get(name, {})) == partitions and
                   all(l >= 0 for l in self.metadata()["topics"][name].values()),
                   timeout=60, what="leaders of %s" % name)

    def leader(self, topic, partition=0):
        return self.metadata()["topics"][topic][partition]

    def kill9(self, i):
        p = self.procs[i]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
