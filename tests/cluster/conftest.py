"""The cluster tier: the daemons against a real 3-node Redis Cluster on loopback
(tests/harness/rcluster.py), PostgreSQL and Kafka from the usual stack.

  stack    (session) the usual stack with redis_url = "redis+cluster://..." (every daemon
           gets it as WY_REDIS_URL); redis_cli follows redirects, SCAN and FLUSHALL go to
           every node, "-n <db>" is dropped (a cluster has database 0 only)
  cluster  (session) the RedisCluster itself (ports, reshard, cli per node)
"""
import os
import sys

import pytest

# The integration tests and helpers this tier reuses unchanged (test_lobby, test_auth, ...).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))

from harness.rcluster import RedisCluster  # noqa: E402
from harness.stack import Stack  # noqa: E402


class ClusterStack(Stack):
    def __init__(self, base, cluster):  # noqa: super().__init__ reads an env dict
        self.__dict__.update(base.__dict__)
        self.owned = False
        self.base = base
        self.cluster = cluster
        self.redis_url = cluster.url

    @property
    def redis_port(self):
        return self.cluster.ports[0]

    def redis_cli(self, *args):
        args = [str(a) for a in args]
        if len(args) >= 2 and args[0] == "-n":  # a database: the cluster has only 0
            args = args[2:]
        cmd = args[0].upper() if args else ""
        if cmd == "FLUSHALL":
            self.cluster.flushall()
            return "OK"
        if cmd == "SCAN":
            # Every node's keys in one answer: cursor 0, then the keys.
            rest = [str(a) for a in args[2:]]
            keys = []
            for port in self.cluster.ports:
                cursor = "0"
                for _ in range(10000):
                    out = self.cluster.cli("SCAN", cursor, *rest, port=port).split("\n")
                    cursor = out[0].strip()
                    keys += [k.strip() for k in out[1:] if k.strip()]
                    if cursor == "0":
                        break
            return "\n".join(["0"] + keys)
        return self.cluster.cli(*args)

    def close(self, keep=False):
        pass


@pytest.fixture(scope="session")
def stack(stack):
    """Overrides the usual stack (the argument): same PostgreSQL and Kafka, Redis Cluster."""
    c = RedisCluster(os.path.join(stack.dir, "rcluster-%d" % os.getpid()))
    try:
        c.start()
    except BaseException:
        c.stop()
        raise
    yield ClusterStack(stack, c)
    c.stop()


@pytest.fixture(scope="session")
def cluster(stack):
    return stack.cluster
