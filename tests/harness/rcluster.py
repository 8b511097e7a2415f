"""A real Redis Cluster on loopback for the cluster tier: three masters
(`redis-server --cluster-enabled yes`), joined by `redis-cli --cluster create`,
each its own process and directory under the stack dir. Slot migration with
`redis-cli --cluster reshard`."""
import os
import shutil
import signal
import socket
import subprocess
import time

from .ports import free_port
from .wait import wait_until

NODES = 3


def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _node_port():
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        p = free_port()
        if p + 10000 < 65536 and _bindable(p + 10000):
            return p
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisCluster:
    def __init__(self, root):
        self.root = root
        self.ports = []
        self.procs = []

    @property
    def url(self):
        return "redis+cluster://" + ",".join("127.0.0.1:%d" % p for p in self.ports)

    def cli(self, *args, port=None, timeout=60):
        """redis-cli -c against one node (default the first); stdout, raises on failure."""
        p = subprocess.run(["redis-cli", "-c", "-h", "127.0.0.1", "-p", str(port or self.ports[0])]
                           + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (" ".join(map(str, args)), p.stderr.strip()))
        return p.stdout.strip()

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        for i in range(NODES):
            port = _node_port()
            d = os.path.join(self.root, "node-%d" % port)
            os.makedirs(d, exist_ok=True)
            log = open(os.path.join(d, "redis.log"), "w")
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000", "--appendonly", "no", "--save", "",
                 "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            self.ports.append(port)
            self.procs.append(proc)
        for port in self.ports:
            wait_until(lambda: self._ping(port), timeout=30, what="redis node %d up" % port)
        out = subprocess.run(["redis-cli", "--cluster", "create"]
                             + ["127.0.0.1:%d" % p for p in self.ports]
                             + ["--cluster-replicas", "0", "--cluster-yes"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n" + out.stdout)
        for port in self.ports:
            wait_until(lambda: "cluster_state:ok" in self.cli("CLUSTER", "INFO", port=port),
                       timeout=60, what="cluster_state:ok on %d" % port)
        return self

    def _ping(self, port):
        try:
            return self.cli("PING", port=port) == "PONG"
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def node_ids(self):
        """{port: node id} of the masters."""
        ids = {}
        for line in self.cli("CLUSTER", "NODES").splitlines():
            f = line.split()
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            ids[port] = f[0]
        return ids

    def slot_owner(self, slot):
        """The port of the node serving slot."""
        for line in self.cli("CLUSTER", "NODES").splitlines():
            f = line.split()
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            for r in f[8:]:
                if r.startswith("["):
                    continue
                lo, _, hi = r.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return port
        return None

    def reshard(self, src_port, dst_port, slots):
        """Moves `slots` slots from src to dst with redis-cli --cluster reshard
        (keys migrate one slot at a time; clients meanwhile get ASK/MOVED)."""
        ids = self.node_ids()
        out = subprocess.run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src_port,
                              "--cluster-from", ids[src_port], "--cluster-to", ids[dst_port],
                              "--cluster-slots", str(slots), "--cluster-yes",
                              "--cluster-pipeline", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=600)
        if out.returncode != 0:
            raise RuntimeError("redis-cli --cluster reshard failed:\n" + out.stdout[-3000:])
        return out.stdout

    def flushall(self):
        for port in self.ports:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "FLUSHALL"],
                           stdout=subprocess.DEVNULL, timeout=30, check=True)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(not _bindable(p) for p in self.ports):
            time.sleep(0.05)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)
