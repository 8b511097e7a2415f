"""A Wyvern daemon started by a test as a real process: free ports, the stack's
URLs, stderr in a log file, ready when it logs {"msg":"ready"}."""
import ctypes
import itertools
import json
import os
import signal
import subprocess
import time

from . import TOP
from .ports import free_port

SERVICES = ("auth", "lobby", "game", "world", "actor", "chat")
# Test daemons (real wy_daemons built from tests/tools/wy-<name>.c) and the
# environment they need by default.
TOOL_DAEMONS = {
    "kafkatest": {"WY_KAFKATEST_MIGRATIONS_DIR": os.path.join(TOP, "tests", "tools",
                                                               "kafkatest-migrations")},
}
READY_TIMEOUT = float(os.environ.get("WY_TEST_READY_TIMEOUT", "30"))
# What a sanitizer build prints when it finds a bug; a daemon log containing one
# fails the test even if the test itself passed.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")
_seq = itertools.count(1)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # If the test process dies (kill -9, crash) its daemons get SIGTERM instead
    # of living on; runs in the child between fork and exec.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class DaemonError(Exception):
    pass


class Daemon:
    """One daemon process. Create through the `daemon` fixture."""

    def __init__(self, svc, build_dir, log_dir, stack_env, env=None, args=(), wait_ready=True,
                 ready_timeout=READY_TIMEOUT):
        if svc not in SERVICES and svc not in TOOL_DAEMONS:
            raise ValueError("unknown service %r (want one of %s)"
                             % (svc, ", ".join(SERVICES + tuple(TOOL_DAEMONS))))
        self.svc = svc
        if svc in TOOL_DAEMONS:
            self.binary = os.path.join(os.path.abspath(build_dir), "tests", "tools", "wy-" + svc)
        else:
            self.binary = os.path.join(os.path.abspath(build_dir), "wy-" + svc)
        if not os.access(self.binary, os.X_OK):
            raise DaemonError("%s is missing: build it first (make)" % self.binary)
        S = svc.upper()
        self.instance_id = "%s-t%d-%d" % (svc, os.getpid(), next(_seq))
        full = dict(os.environ)
        full.update(stack_env)
        full.update({
            "WY_BIND_HOST": "127.0.0.1",
            "WY_INSTANCE_ID": self.instance_id,
            "WY_LOG_LEVEL": os.environ.get("WY_LOG_LEVEL", "debug"),
        })
        env = dict(TOOL_DAEMONS.get(svc, {}), **(env or {}))
        for kind in ("OPS", "GRPC") + CLIENT_PORT_KINDS.get(svc, ()):
            var = "WY_%s_%s_PORT" % (S, kind)
            if var not in env:
                env[var] = str(free_port())
        if svc == "auth" and "WY_AUTH_KEYS_DIR" not in env:
            # wy-auth refuses to start without a signing key: give it a fresh one.
            env["WY_AUTH_KEYS_DIR"] = _auth_test_keys(log_dir)
            env.setdefault("WY_AUTH_SIGNING_KID", "test")
        if svc == "game" and "WY_GAME_TICKET_KEYS_DIR" not in env:
            # Join tickets: lobby signs with TICKET_KID, game verifies with the same folder.
            env["WY_GAME_TICKET_KEYS_DIR"] = ticket_test_keys(log_dir)
        if svc == "lobby" and "WY_LOBBY_TICKET_KEYS_DIR" not in env:
            env["WY_LOBBY_TICKET_KEYS_DIR"] = ticket_test_keys(log_dir)
            env.setdefault("WY_LOBBY_TICKET_KID", TICKET_KID)
        if svc == "lobby" and "WY_LOBBY_AUTH_GRPC" not in env and "WY_LOBBY_TOKEN_KEYS_DIR" not in env:
            # Lobby must be able to verify tokens: the key auth signs with in tests.
            env["WY_LOBBY_TOKEN_KEYS_DIR"] = _auth_test_keys(log_dir)
        full.update(env)
        # None removes a variable (to test what a missing one does).
        self.env = {k: v for k, v in full.items() if v is not None}
        self.ops_port = _int_or_none(self.env.get("WY_%s_OPS_PORT" % S))
        self.grpc_port = _int_or_none(self.env.get("WY_%s_GRPC_PORT" % S))
        self.ops_url = "http://127.0.0.1:%s" % self.ops_port
        self.grpc_addr = "127.0.0.1:%s" % self.grpc_port
        kinds = CLIENT_PORT_KINDS.get(svc)
        # The client-facing port (auth HTTP API, lobby WebSocket), or None.
        self.client_port = _int_or_none(self.env.get("WY_%s_%s_PORT" % (S, kinds[0]))) if kinds else None
        os.makedirs(log_dir, exist_ok=True)
        self.log_path = os.path.join(log_dir, "%s.log" % self.instance_id)
        self.ready_line = None
        self.stopped_by_test = False
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary] + list(args), cwd=TOP, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=_die_with_parent)
        if wait_ready:
            self.wait_ready(ready_timeout)

    @property
    def pid(self):
        return self.proc.pid

    def log_text(self):
        """Everything the daemon wrote so far (stdout and stderr)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_lines(self):
        """The JSON log lines as dicts (non-JSON lines are skipped)."""
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_log(self, pred, timeout=10.0):
        """Waits for a JSON log line for which pred(dict) is true; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.log_lines():
                if pred(rec):
                    return rec
            if time.monotonic() > deadline:
                raise DaemonError("%s: no matching log line within %.0f s\n%s"
                                  % (self.instance_id, timeout, self.log_tail()))
            time.sleep(0.05)

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Waits for the ready line; raises DaemonError with the log tail if the
        daemon exits first or the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.log_lines():
                if rec.get("msg") == "ready":
                    self.ready_line = rec
                    return rec
            rc = self.proc.poll()
            if rc is not None:
                raise DaemonError("%s exited with status %d before it was ready; log tail:\n%s"
                                  % (self.instance_id, rc, self.log_tail()))
            if time.monotonic() > deadline:
                raise DaemonError("%s not ready within %.0f s; log tail:\n%s"
                                  % (self.instance_id, timeout, self.log_tail()))
            time.sleep(0.05)

    def wait(self, timeout=10.0):
        """Waits for the process to exit on its own; returns its status."""
        try:
            rc = self.proc.wait(timeout)
            self.stopped_by_test = True  # the test saw the exit and owns its status
            return rc
        except subprocess.TimeoutExpired:
            raise DaemonError("%s still running after %.0f s\n%s" % (self.instance_id, timeout, self.log_tail()))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig and waits up to timeout for the exit; SIGKILL after that.
        Returns the exit status (negative: killed by that signal)."""
        self.stopped_by_test = True
        return self._stop(sig, timeout)

    def _stop(self, sig, timeout):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self):
        """Kills the daemon with SIGKILL (a crash); returns once it is gone."""
        return self.stop(signal.SIGKILL, 10.0)

    def running(self):
        return self.proc.poll() is None

    def sanitizer_report(self):
        text = self.log_text()
        for mark in SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                return text[max(0, i - 200):i + 4000]
        return None

    def finish(self, timeout=10.0):
        """Teardown: stops the daemon if the test did not and returns a problem
        description (bad exit status, sanitizer report) or None."""
        problems = []
        if self.stopped_by_test:
            self._stop(signal.SIGTERM, timeout)
        else:
            was_running = self.proc.poll() is None
            rc = self._stop(signal.SIGTERM, timeout)
            if was_running and rc != 0:
                problems.append("exit status %d after SIGTERM (want 0 within %.0f s)" % (rc, timeout))
            elif not was_running:
                problems.append("exited by itself during the test with status %d" % rc)
        report = self.sanitizer_report()
        if report:
            problems.append("sanitizer report in its log:\n" + report)
        if problems:
            return "%s (%s): %s" % (self.instance_id, self.log_path, "; ".join(problems))
        return None

    def __repr__(self):
        return "<Daemon %s pid=%s ops=%s grpc=%s>" % (self.instance_id, self.proc.pid, self.ops_port,
                                                    self.grpc_port)


# Client-facing ports by service: WY_<SVC>_<KIND>_PORT.
CLIENT_PORT_KINDS = {"auth": ("HTTP",), "lobby": ("WS",), "game": ("WS",)}

TICKET_KID = "t1"


def ticket_test_keys(log_dir):
    """A folder with the Ed25519 key "t1.pem" that signs (lobby) and verifies (game) join
    tickets in tests, made once per log dir."""
    return _auth_test_keys(log_dir, "ticket-keys", TICKET_KID)


def _auth_test_keys(log_dir, sub="auth-keys", kid="test"):
    """A keys folder with one Ed25519 signing key "test.pem" (0600), made once per log dir."""
    d = os.path.join(log_dir, sub)
    path = os.path.join(d, kid + ".pem")
    if not os.path.exists(path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        os.makedirs(d, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return d


def _int_or_none(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class DaemonFactory:
    """Starts daemons for one scope and stops all of them at its end."""

    def __init__(self, build_dir, log_dir, stack_env):
        self.build_dir, self.log_dir, self.stack_env = build_dir, log_dir, stack_env
        self.started = []

    def __call__(self, svc, env=None, args=(), wait_ready=True, ready_timeout=READY_TIMEOUT):
        """daemon("auth", env={...}) -> Daemon, ready unless wait_ready=False.
        env overrides (value None unsets); ports default to free ones."""
        d = Daemon.__new__(Daemon)
        self.started.append(d)  # registered first: a failed start still shows its log
        try:
            Daemon.__init__(d, svc, self.build_dir, self.log_dir, self.stack_env, env, args,
                            wait_ready, ready_timeout)
        except DaemonError:
            d.stopped_by_test = True  # the test already fails with the log; no second report
            raise
        except Exception:
            self.started.remove(d)
            raise
        return d

    def finish(self):
        """Stops everything; returns the list of problems found."""
        problems = []
        for d in reversed(self.started):
            if getattr(d, "proc", None) is None:
                continue
            p = d.finish()
            if p:
                problems.append(p)
        return problems
