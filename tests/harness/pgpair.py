"""A PostgreSQL primary with a synchronous streaming replica on loopback, for the
cluster tier: initdb + a primary (synchronous_standby_names = '*', so a commit
returns only once the replica has it), pg_basebackup -R for the replica, and
the controls a failover test needs (stop the primary, pg_ctl promote).

Run as root (the test machines), every PostgreSQL program runs as the
postgres user and the data lives in a directory that user owns."""
import os
import pwd
import shutil
import subprocess
import tempfile

from .ports import free_port
from .wait import wait_until

PG_BIN = os.environ.get("WY_PG_BIN", "/usr/lib/postgresql/15/bin")
IS_ROOT = os.geteuid() == 0


def _run(cmd, check=True, timeout=120):
    if IS_ROOT:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s" % (" ".join(cmd), p.returncode, p.stdout[-3000:]))
    return p


class PgPair:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="wy-pgpair-")
        if IS_ROOT:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.primary_dir = os.path.join(self.root, "primary")
        self.replica_dir = os.path.join(self.root, "replica")

    # URLs -----------------------------------------------------------------
    def url(self, port):
        return "postgresql://postgres@127.0.0.1:%d/postgres" % port

    @property
    def primary_url(self):
        """What the daemons use as WY_PG_URL: both hosts, the writable one wins (libpq
        target_session_attrs), so after a promotion a reconnect finds the new primary."""
        return ("postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres"
                "?target_session_attrs=read-write&connect_timeout=2"
                % (self.primary_port, self.replica_port))

    @property
    def replica_url(self):
        return self.url(self.replica_port)

    def log(self, which):
        return os.path.join(self.root, "%s.log" % which)

    def psql(self, port, sql):
        p = subprocess.run(["psql", self.url(port), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("psql %r on %d: %s" % (sql, port, p.stderr.strip()))
        return p.stdout.strip()

    def _ctl(self, data, *args, check=True):
        return _run([os.path.join(PG_BIN, "pg_ctl"), "-D", data, "-w", "-t", "60"] + list(args),
                    check=check, timeout=120)

    def _answers(self, port):
        try:
            return self.psql(port, "SELECT 1") == "1"
        except RuntimeError:
            return False

    # life -----------------------------------------------------------------
    def start(self):
        _run([os.path.join(PG_BIN, "initdb"), "-D", self.primary_dir, "-U", "postgres", "-A",
              "trust", "-E", "UTF8", "--no-locale"])
        conf = ("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "fsync = on\nwal_level = replica\nmax_wal_senders = 5\n"
                "max_connections = 200\nlogging_collector = off\n"
                # Every commit waits for the replica to flush it: a promoted replica has
                # every acknowledged write (docs: "PostgreSQL primary and replica").
                "synchronous_standby_names = '*'\nsynchronous_commit = on\n"
                "log_statement = 'all'\nhot_standby = on\n")
        with open(os.path.join(self.primary_dir, "postgresql.conf"), "a") as f:
            f.write(conf)
        self._ctl(self.primary_dir, "-l", self.log("primary"), "-o", "-p %d" % self.primary_port,
                  "start")
        wait_until(lambda: self._answers(self.primary_port), timeout=30, what="primary up")
        _run([os.path.join(PG_BIN, "pg_basebackup"), "-h", "127.0.0.1", "-p",
              str(self.primary_port), "-U", "postgres", "-D", self.replica_dir, "-R", "-X",
              "stream", "-c", "fast"], timeout=300)
        self._ctl(self.replica_dir, "-l", self.log("replica"), "-o", "-p %d" % self.replica_port,
                  "start")
        wait_until(lambda: self._answers(self.replica_port), timeout=30, what="replica up")
        wait_until(lambda: self.psql(self.primary_port,
                                     "SELECT sync_state FROM pg_stat_replication") == "sync",
                   timeout=60, what="replica streaming synchronously")
        return self

    def stop_primary(self):
        """An immediate stop (no shutdown checkpoint, like a crash)."""
        self._ctl(self.primary_dir, "-m", "immediate", "stop")

    def promote_replica(self):
        """pg_ctl promote; then, as a failover manager does, the new primary (which has no
        standby of its own here) stops waiting for one: synchronous_standby_names = ''."""
        self._ctl(self.replica_dir, "promote")
        wait_until(lambda: self.psql(self.replica_port, "SELECT pg_is_in_recovery()") == "f",
                   timeout=60, what="replica promoted")
        self.psql(self.replica_port, "ALTER SYSTEM SET synchronous_standby_names = ''")
        self.psql(self.replica_port, "SELECT pg_reload_conf()")

    def stop(self):
        for d in (self.replica_dir, self.primary_dir):
            if os.path.exists(os.path.join(d, "postmaster.pid")):
                self._ctl(d, "-m", "immediate", "stop", check=False)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)
