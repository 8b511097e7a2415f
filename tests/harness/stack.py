"""The Redis + PostgreSQL + Kafka stack the tests run against: the one
tests/run started (its env is exported), or a private one via tools/stack."""
import os
import shutil
import subprocess
import tempfile

from . import TOP

STACK_VARS = ("WY_REDIS_URL", "WY_PG_URL", "WY_KAFKA_BROKERS", "WY_STACK_DIR")
TOOL = os.path.join(TOP, "tools", "stack")


def _hostport(url):
    rest = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = rest.rsplit(":", 1)
    return host, int(port)


class Stack:
    """Addresses of the stack and the few controls tests need."""

    def __init__(self, env, owned):
        self.redis_url = env["WY_REDIS_URL"]
        self.pg_url = env["WY_PG_URL"]
        self.kafka_brokers = env["WY_KAFKA_BROKERS"]
        self.dir = env["WY_STACK_DIR"]
        self.owned = owned  # True when this session started it and must stop it

    @property
    def redis_port(self):
        return _hostport(self.redis_url)[1]

    @property
    def pg_port(self):
        return _hostport(self.pg_url)[1]

    @property
    def kafka_port(self):
        return _hostport(self.kafka_brokers.split(",")[0])[1]

    def env(self):
        """The WY_* variables every daemon of the stack needs."""
        return {"WY_REDIS_URL": self.redis_url, "WY_PG_URL": self.pg_url,
                "WY_KAFKA_BROKERS": self.kafka_brokers, "WY_STACK_DIR": self.dir}

    def _tool(self, *args):
        p = subprocess.run([TOOL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=180)
        if p.returncode != 0:
            raise RuntimeError("tools/stack %s failed:\n%s" % (" ".join(args), p.stdout))
        return p.stdout

    def stop_redis(self):
        """Stops only Redis (same port kept); returns when it is gone."""
        self._tool("stop-redis", self.dir)

    def start_redis(self):
        """Starts Redis again on its port; returns once it answers PING."""
        self._tool("start-redis", self.dir)

    def stop_kafka(self):
        """Stops only the Kafka broker (real mode; same ports and data kept);
        returns when the process is gone."""
        self._tool("stop-kafka", self.dir)

    def start_kafka(self):
        """Starts the broker again; returns once its topics have leaders and
        the group coordinator answers."""
        self._tool("start-kafka", self.dir)

    def kafka_outage(self):
        """Context manager: the broker is stopped inside the block and started
        again when it ends (also on failure)."""
        return _KafkaOutage(self)

    def redis_cli(self, *args):
        """Runs redis-cli against the stack; returns stdout (raises on failure)."""
        host, port = _hostport(self.redis_url)
        p = subprocess.run(["redis-cli", "-h", host, "-p", str(port)] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (" ".join(map(str, args)), p.stderr.strip()))
        return p.stdout.strip()

    def psql(self, sql):
        """Runs one SQL string with psql (unaligned, tuples only); returns stdout."""
        p = subprocess.run(["psql", self.pg_url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("psql %r: %s" % (sql, p.stderr.strip()))
        return p.stdout.strip()

    def close(self, keep=False):
        """Stops a stack this session started; its dir (logs) is removed
        unless keep is true or WY_KEEP_STACK=1."""
        if self.owned:
            self._tool("stop", self.dir)
            if not keep and os.environ.get("WY_KEEP_STACK") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)


class _KafkaOutage:
    def __init__(self, stack):
        self.stack = stack

    def __enter__(self):
        self.stack.stop_kafka()
        return self.stack

    def __exit__(self, *exc):
        self.stack.start_kafka()
        return False


def read_env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def open_stack():
    """The stack named by the environment (tests/run exports it), else a new
    private one in a temp dir that close() stops and that needs the real Kafka."""
    if all(os.environ.get(v) for v in STACK_VARS):
        return Stack(os.environ, owned=False)
    run_root = os.path.join(TOP, "run")
    os.makedirs(run_root, exist_ok=True)
    d = tempfile.mkdtemp(prefix="pytest-", dir=run_root)
    p = subprocess.run([TOOL, "start", d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    if p.returncode != 0:
        subprocess.run([TOOL, "stop", d], timeout=180)
        raise RuntimeError("tools/stack start %s failed:\n%s" % (d, p.stdout))
    return Stack(read_env_file(os.path.join(d, "stack.env")), owned=True)
