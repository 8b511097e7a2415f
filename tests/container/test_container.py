"""The container tier: the repository's Dockerfile and compose file, built and run.

Builds the base image if missing (debootstrap; no registry is needed), the seven
images of the Dockerfile, and stand-ins for Redis, PostgreSQL and Kafka tagged
with the names compose.yaml uses (standins/README.md); runs deploy/README.md's
local quick start (quickstart.py) with deploy/compose/compose.loopback.yaml on
top (host networking, 127.0.0.1, free ports) and checks:
  - every image runs as non-root and holds no compiler and no source;
  - every service becomes healthy (each daemon by its image's HEALTHCHECK);
  - the player flow with the `wy` CLI (register, whoami, login, lobby, nickname,
    presence);
  - a daemon killed with SIGKILL is restarted by compose's restart policy and
    the flow passes again; `down` then `up` keeps accounts;
  - at the end nothing it created is left: containers, volumes, networks, the
    seven images; the build cache is pruned when the image store is over WY_CONTAINER_CACHE_MB
    (default 4096). Base images and stand-ins are kept so the next run is fast.
Uses Docker where a Docker engine answers, else podman (as root). Runs one at a
time per machine (a lock in .cache/container). Every command's output is in
run/container-<pid>/engine.log, kept when something fails (or with
WY_CONTAINER_KEEP_LOG=1)."""
import fcntl
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

import quickstart as qs
from engine import BASE_TAGS, STANDINS, CommandFailed, NoEngine, detect
from harness import TOP
from harness.ports import _bindable

COMPOSE = os.path.join(TOP, qs.COMPOSE_FILE)
OVERRIDE = os.path.join(TOP, qs.OVERRIDE_FILE)
README = os.path.join(TOP, "deploy", "README.md")
PASSWORD = "correct horse battery"
HEALTH_TIMEOUT = float(os.environ.get("WY_CONTAINER_HEALTH_TIMEOUT", "300"))
CACHE_MB = int(os.environ.get("WY_CONTAINER_CACHE_MB", "4096"))
KILL = os.environ.get("WY_CONTAINER_KILL", "auth")
ONE_SHOTS = ("kafka-init", "keygen", "keygen-tickets")
BIG = pytest.mark.timeout(int(os.environ.get("WY_CONTAINER_TIMEOUT", "2400")))


# ------------------------------------------------------------------ files, no engine needed

class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def load_compose(path):
    """A compose file with !reset / !override kept as Tag objects."""
    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, node):
        if isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        return Tag(node.tag, value)

    for t in ("!reset", "!override"):
        Loader.add_constructor(t, tagged)
    with open(path) as f:
        return yaml.load(f, Loader=Loader)


def dockerfile_targets():
    """Stages a user builds: every `FROM ... AS name` except the shared ones."""
    with open(os.path.join(TOP, "Dockerfile")) as f:
        names = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", f.read(), re.M | re.I)
    return [n for n in names if n not in ("build", "runtime")]


def readme_quickstart():
    """The lines of the first ```sh block under '### Quick start' in deploy/README.md."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"^### Quick start\b.*?^```sh\n(.*?)^```", text, re.M | re.S)
    assert m, "deploy/README.md has no '### Quick start' section with a ```sh block"
    return m.group(1).rstrip("\n").split("\n")


def test_readme_quickstart_is_what_the_tier_runs():
    assert readme_quickstart() == qs.render(), (
        "deploy/README.md's quick start differs from tests/container/quickstart.py; "
        "its block must be exactly the output of `python3 tests/container/quickstart.py`")


def test_seven_images_from_the_dockerfile_are_the_compose_images():
    services = load_compose(COMPOSE)["services"]
    built = {s["build"]["target"]: s["image"] for s in services.values() if "build" in s}
    assert sorted(dockerfile_targets()) == sorted(qs.TARGETS) == sorted(built)
    assert len(qs.TARGETS) == 7
    assert all(built[t] == "wyvern/%s:dev" % t for t in qs.TARGETS)
    pulled = {n for n, s in services.items() if "build" not in s}
    assert pulled == set(STANDINS) | {"kafka-init"}
    assert services["kafka-init"]["image"] == services["kafka"]["image"]


ALLOWED = {"network_mode", "ports", "environment", "healthcheck", "command"}
ADDRESS_VARS = re.compile(r"^(WY_BIND_HOST|WY_KAFKA_BROKERS|WY_REDIS_URL|WY_PG_URL|WY_[A-Z]+_(OPS|GRPC|HTTP|WS)_PORT|"
                          r"WY_[A-Z]+_[A-Z]+_GRPC|KAFKA_(LISTENERS|ADVERTISED_LISTENERS|CONTROLLER_QUORUM_VOTERS)|"
                          r"BOOTSTRAP|PGPORT|LOOPBACK_[A-Z_]+_PORT)$")


def test_override_changes_only_networking_and_addresses():
    base = load_compose(COMPOSE)["services"]
    over = load_compose(OVERRIDE)["services"]
    assert set(over) == set(base), "the override must put every service on the host's network"
    text = open(OVERRIDE).read()
    for ip in re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\b", text):
        assert ip.startswith("127."), "address outside 127.0.0.0/8 in the override: " + ip
    for name, svc in over.items():
        assert set(svc) <= ALLOWED, "%s: the override changes %s" % (name, sorted(set(svc) - ALLOWED))
        assert svc["network_mode"] == "host"
        if "ports" in svc:
            assert isinstance(svc["ports"], Tag) and svc["ports"].tag == "!reset"
        for k in svc.get("environment", {}):
            assert ADDRESS_VARS.match(k), "%s: %s is not an address or port" % (name, k)
        hc = svc.get("healthcheck")
        if hc is not None:
            if isinstance(hc, Tag):  # the image's own HEALTHCHECK (daemons)
                assert hc.tag == "!reset" and "build" in base[name]
            else:
                assert set(hc) == {"test"} and hc["test"].tag == "!override"
        if "command" in svc:
            # only listen addresses and ports added to what compose.yaml runs
            cmd, orig = svc["command"], base[name].get("command", [])
            assert cmd[:len(orig)] == orig or name == "postgres", (name, cmd)
            assert all(re.match(r"^(--bind|127\.0\.0\.1|--port|\$\{LOOPBACK_\w+:-\d+\}|"
                                r"-c|listen_addresses=127\.0\.0\.1|postgres)$", w) for w in cmd[len(orig):]), cmd


def test_containers_conf_adds_only_what_is_missing(tmp_path):
    import containers_conf
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "containers_conf.py")
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\nlog_size_max = 100\n\n[engine]\nruntime = "crun"  # mine\n')
    p = subprocess.run([tool, str(conf)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    have = containers_conf.tomllib.loads(conf.read_text())
    assert have == {"containers": {"log_size_max": 100, "default_ulimits": []},
                    "engine": {"runtime": "crun", "cgroup_manager": "cgroupfs"}}
    assert 'runtime = "crun"  # mine' in conf.read_text()
    before = conf.read_text()
    subprocess.run([tool, str(conf)], check=True)
    assert conf.read_text() == before  # nothing more to add
    empty = tmp_path / "new.conf"
    subprocess.run([tool, str(empty)], check=True)
    assert containers_conf.tomllib.loads(empty.read_text()) == {
        "containers": {"default_ulimits": []}, "engine": {"runtime": "runc", "cgroup_manager": "cgroupfs"}}
    bad = tmp_path / "bad.conf"
    bad.write_text("[engine\n")
    p = subprocess.run([tool, str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and bad.read_text() == "[engine\n"


# ------------------------------------------------------------------ the suite

# Ports of the suite: above Linux's ephemeral range (no outgoing connection
# takes them) and away from tools/stack's 12000-19999 and the test harness's
# 20000-32700, so that the stacks other test runs start meanwhile (they pick
# ports that are free when they look) do not take ours between the check here
# and the container's bind, minutes later.
PORTS = (61000, 65000)


def free_ports(n):
    lo, hi = PORTS
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        _, eph_hi = (int(x) for x in f.read().split())
    if eph_hi < hi - 1000:  # stay above a wider ephemeral range when there is room
        lo = max(lo, eph_hi + 1)
    got = []
    for port in random.sample(range(lo, hi + 1), hi - lo + 1):
        if _bindable(port):
            got.append(port)
            if len(got) == n:
                return got
    raise AssertionError("fewer than %d free ports in %d-%d" % (n, lo, hi))


class Suite:
    """One run: engine, ports, project; every step of the quick start goes
    through run_step so the tier runs exactly quickstart.STEPS."""

    def __init__(self, eng, workdir, build_dir):
        self.eng = eng
        self.workdir = workdir
        self.project = "wyvern-ct%d" % os.getpid()
        names = sorted(set(re.findall(r"\$\{(LOOPBACK_\w+):-\d+\}", open(OVERRIDE).read())))
        self.ports = dict(zip(names, (str(p) for p in free_ports(len(names)))))
        self.env = dict(self.ports, COMPOSE_PROJECT_NAME=self.project)
        self.wy_bin = os.path.join(build_dir, "tools", "wy")
        self.creds = os.path.join(workdir, "creds")
        os.makedirs(self.creds, exist_ok=True)
        self.done = []  # steps run, in order
        self.times = {}

    # -------- commands of the quick start, mapped (see quickstart.py)
    def argv(self, cmd):
        if cmd[0] == "docker":
            assert cmd[1] == "build"
            return [self.eng.kind, "build"] + self.eng.build_args() + cmd[2:]
        if cmd[0] == "compose":
            return self.eng.compose_argv() + ["-f", COMPOSE, "-f", OVERRIDE] + cmd[1:]
        if cmd[0] == "wy":
            return [self.wy_bin, "--json"] + cmd[1:]
        raise AssertionError(cmd)

    def wy_env(self):
        return {"WY_AUTH_URL": "http://127.0.0.1:%s" % self.ports["LOOPBACK_AUTH_HTTP_PORT"],
                "WY_LOBBY_URL": "ws://127.0.0.1:%s/v1/lobby" % self.ports["LOOPBACK_LOBBY_WS_PORT"],
                "WY_CREDENTIALS_DIR": self.creds, "WY_PASSWORD": PASSWORD}

    def wy(self, *args, ok=True):
        rc, out = self.eng.run(self.argv(["wy"] + list(args)), env=self.wy_env(), check=False, capture=True,
                               timeout=60)
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        if ok:
            assert rc == 0 and lines and lines[-1].get("ok") is not False, \
                "wy %s -> exit %d: %s" % (" ".join(args), rc, out)
        return rc, lines

    def compose(self, *args, timeout=900):
        return self.eng.run(self.argv(["compose"] + list(args)), env=self.env, timeout=timeout)

    def run_step(self, step, user=qs.USER, nick=qs.NICK):
        t0 = time.monotonic()
        _, _, cmds = next(s for s in qs.STEPS if s[0] == step)
        results = []
        for cmd in cmds:
            cmd = [user if w == qs.USER else nick if w == qs.NICK else w for w in cmd]
            if cmd[0] == "wy":
                results.append(self.wy(*cmd[1:]))
            elif cmd[0] == "compose":
                self.compose(*cmd[1:])
                if cmd[1] == "up":
                    self.wait_healthy()
            else:
                self.eng.run(self.argv(cmd), timeout=1800)
        self.done.append(step)
        self.times[step] = self.times.get(step, 0) + time.monotonic() - t0
        return results

    # -------- state
    def containers(self):
        """{service: inspect dict} of the project's containers."""
        out = {}
        for c in self.eng.inspect(self.eng.project_ids(self.project)):
            out[c["Config"]["Labels"]["com.docker.compose.service"]] = c
        return out

    def wait_healthy(self, timeout=HEALTH_TIMEOUT):
        """Until every service with a healthcheck is healthy and every one-shot
        exited 0; fails with the states seen."""
        deadline = time.monotonic() + timeout
        while True:
            cs = self.containers()
            states = {}
            for svc, c in cs.items():
                if svc in ONE_SHOTS:
                    st = c["State"]
                    states[svc] = "exited %d" % st["ExitCode"] if st["Status"] == "exited" else st["Status"]
                else:
                    states[svc] = self.eng.health(c["Name"].lstrip("/"))
            want = {s: ("exited 0" if s in ONE_SHOTS else "healthy") for s in load_compose(COMPOSE)["services"]}
            if states == want:
                return states
            bad = {s: v for s, v in states.items() if s in ONE_SHOTS and v.startswith("exited") and v != "exited 0"}
            if bad or time.monotonic() > deadline:
                raise AssertionError("services not healthy after %.0f s: %s (want %s)" % (
                    timeout, states, want))
            time.sleep(1)

    def flow(self, user, nick):
        """The quick start's play step for one user, with its results checked."""
        reg, who, login, lobby, nickset, pres = self.run_step("play", user=user, nick=nick)
        acct = reg[1][-1]["account_id"]
        assert reg[1][-1]["username"] == user and reg[1][-1]["created"] is True
        assert who[1][-1]["username"] == user and who[1][-1]["account_id"] == acct
        assert login[1][-1]["account_id"] == acct
        assert any(e.get("event") == "welcome" and e.get("account_id") == acct for e in lobby[1]), lobby[1]
        assert nickset[1][-1]["nickname"] == nick
        entries = pres[1][-1]["entries"]
        assert [(e["account_id"], e["nickname"]) for e in entries] == [(acct, nick)], entries
        return acct


def say(request, msg):
    """A line on the terminal even while pytest captures output (the tier's
    times belong in the CI log)."""
    cm = request.config.pluginmanager.getplugin("capturemanager")
    with cm.global_and_fixture_disabled():
        print(msg, flush=True)


def lock(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


@pytest.fixture(scope="module")
def engine():
    try:
        return detect(TOP, os.path.join(TOP, ".cache", "venv"))
    except NoEngine as e:
        pytest.fail("no container engine: %s" % e, pytrace=False)


@pytest.fixture(scope="module")
def suite(request, engine, build_dir):
    workdir = os.path.join(TOP, "run", "container-%d" % os.getpid())
    os.makedirs(workdir, exist_ok=True)
    engine.log_path = os.path.join(workdir, "engine.log")
    cache = os.path.join(TOP, ".cache", "container")
    held = lock(os.path.join(cache, "lock"))
    s = Suite(engine, workdir, build_dir)
    assert os.access(s.wy_bin, os.X_OK), "%s missing: make" % s.wy_bin
    t0 = time.monotonic()
    say(request, "\ncontainer: engine %s, project %s, log %s" % (engine.kind, s.project,
                                                               os.path.relpath(engine.log_path, TOP)))
    try:
        stale = engine.remove_stale_projects("wyvern-ct")
        if stale:
            s.times["stale"] = time.monotonic() - t0
            say(request, "container: removed what killed runs left: %s [%.1f s]" % (", ".join(stale),
                                                                                   s.times["stale"]))
        t0b = time.monotonic()
        how = engine.ensure_base(cache)
        s.times["base"] = time.monotonic() - t0b
        say(request, "container: base images %s: %s [%.1f s]" % (", ".join(BASE_TAGS), how, s.times["base"]))
        services = load_compose(COMPOSE)["services"]
        t1 = time.monotonic()
        jars = sorted(glob.glob(os.path.join(TOP, ".cache", "kafka-*", "libs", "*.jar")))
        assert any("kafka-tools-" in j for j in jars), "the Kafka tools jar is missing: run tools/deps"
        got = engine.ensure_standins({n: services[n]["image"] for n in STANDINS}, jars, workdir)
        s.times["standins"] = time.monotonic() - t1
        say(request, "container: stand-ins %s [%.1f s]" % (got, s.times["standins"]))
        s.run_step("build")
        say(request, "container: seven images built [%.1f s]" % s.times["build"])
        yield s
    finally:
        cleanup(s, request)
        held.close()
        total = time.monotonic() - t0
        say(request, "container: times %s, total %.1f s" % (
            ", ".join("%s %.1f s" % kv for kv in s.times.items()), total))


def cleanup(s, request):
    """compose down -v (the quick start's last step; also after a failure),
    then whatever is left of the project, the seven images, and the build
    cache when over the bound. Failures here fail the tier."""
    eng = s.eng
    problems = []
    try:
        if "wipe" not in s.done:
            s.run_step("wipe")
    except CommandFailed as e:
        problems.append(str(e))
    left = eng.project_ids(s.project)
    if left:
        problems.append("containers left after down -v: %s" % left)
        eng.cli("rm", "-f", *left, check=False)
    vols = eng.project_ids(s.project, "volume")
    if vols:
        problems.append("volumes left after down -v: %s" % vols)
        eng.cli("volume", "rm", "-f", *vols, check=False)
    _, nets = eng.cli("network", "ls", "--format", "{{.Name}}", capture=True, check=False)
    nets = [n for n in nets.split() if n.startswith(s.project)]
    if nets:
        problems.append("networks left after down -v: %s" % nets)
        eng.cli("network", "rm", *nets, check=False)
    # --no-prune keeps the untagged parents: the build cache of the next run
    eng.cli("rmi", "--no-prune", *["wyvern/%s:dev" % t for t in qs.TARGETS], check=False)
    prune_build_cache(eng)
    failed = request.session.testsfailed > 0 or problems or os.environ.get("WY_CONTAINER_KEEP_LOG")
    if not failed:
        shutil.rmtree(s.workdir, ignore_errors=True)
    else:
        say(request, "container: log kept in %s" % os.path.relpath(s.workdir, TOP))
    if problems:
        pytest.fail("container cleanup:\n" + "\n".join(problems), pytrace=False)


def prune_build_cache(eng):
    """Keeps the build cache (what makes the next build take seconds) while
    the engine's image store stays under WY_CONTAINER_CACHE_MB; prunes the
    cache (podman: the untagged images of earlier builds) when over."""
    if eng.kind == "docker":
        eng.cli("builder", "prune", "-f", "--keep-storage", "%dmb" % CACHE_MB, check=False)
        return
    used = podman_store_mb(eng)
    if used > CACHE_MB:
        print("container: image store %d MB > %d MB: pruning the build cache" % (used, CACHE_MB), flush=True)
        eng.cli("image", "prune", "-f", check=False)


def podman_store_mb(eng):
    """MB on disk of podman's image store (layers are shared between images,
    so the sum of image sizes would overstate it)."""
    _, root = eng.cli("info", "--format", "{{.Store.GraphRoot}}", capture=True)
    p = subprocess.run(["du", "-sxm", root.strip()], capture_output=True, text=True, timeout=300)
    return int(p.stdout.split()[0]) if p.returncode == 0 and p.stdout else 0


# ------------------------------------------------------------------ tests in run order

def sh(eng, image, script):
    rc, out = eng.cli("run", "--rm", "--network", "none", "--no-healthcheck", "--entrypoint", "/bin/sh", image,
                      "-c", script,
                      capture=True, check=False, timeout=120)
    return rc, out.strip()


@BIG
def test_images_non_root_without_compiler_or_source(suite):
    eng = suite.eng
    for t in qs.TARGETS:
        image = "wyvern/%s:dev" % t
        _, user = eng.cli("image", "inspect", "--format", "{{.Config.User}}", image, capture=True)
        user = user.strip()
        assert user and user.split(":")[0] not in ("0", "root"), "%s: image user %r" % (image, user)
        rc, uid = sh(eng, image, "id -u")
        assert rc == 0 and uid.isdigit() and int(uid) != 0, "%s: id -u -> %r" % (image, uid)
        rc, found = sh(eng, image, r"""
            for d in /usr/local/bin /usr/bin /bin /usr/local/sbin /usr/sbin /sbin; do
              ls "$d" 2>/dev/null | grep -E '^(cc|gcc|g\+\+|c\+\+|clang|clang\+\+|tcc|c89|c99|cpp|ld|as|make)(-[0-9.]+)?$' \
                | sed "s|^|$d/|"
            done
            ls -d /usr/lib/gcc/*/*/cc1 /src 2>/dev/null
            find / -xdev -path /usr/share/doc -prune -o \
              \( -name '*.c' -o -name '*.proto' -o -name Makefile -o -name 'wy_*.h' \) -print 2>/dev/null | head
            true""")
        assert rc == 0 and found == "", "%s holds build tools or sources:\n%s" % (image, found)
    # the daemons' binary is there and runs as that user
    rc, out = eng.cli("run", "--rm", "--network", "none", "--no-healthcheck", "wyvern/auth:dev", "--help",
                      capture=True, check=False)
    assert rc == 0 and "WY_AUTH" in out, out[-2000:]


@BIG
def test_suite_healthy_and_player_flow(suite):
    suite.run_step("up")  # waits until every service is healthy
    states = suite.wait_healthy()
    for svc in ("auth", "lobby", "game", "world", "actor", "chat"):
        assert states[svc] == "healthy"
    # the daemons' health is their images' own HEALTHCHECK (the override resets compose's)
    for svc, c in suite.containers().items():
        if svc in qs.TARGETS and svc != "keygen":
            hc = c["Config"].get("Healthcheck") or c["Config"].get("HealthCheck") or {}
            assert "/readyz" in " ".join(hc.get("Test", [])), (svc, hc)
            assert c["Config"]["User"].split(":")[0] not in ("", "0", "root"), (svc, c["Config"]["User"])
    suite.flow(qs.USER, qs.NICK)


@BIG
def test_sigkill_restarts_by_policy_and_flow_passes_again(suite):
    assert suite.done[-2:] == ["up", "play"], suite.done
    c = suite.containers()[KILL]
    before, pid = c["RestartCount"], c["State"]["Pid"]
    assert c["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        c = suite.containers()[KILL]
        if c["RestartCount"] > before and c["State"]["Running"] and c["State"]["Pid"] != pid:
            break
        assert time.monotonic() < deadline, "%s not restarted within 60 s: %s" % (KILL, c["State"])
        time.sleep(0.5)
    suite.wait_healthy()
    suite.flow("bob", "Bob")


@BIG
def test_down_then_up_keeps_accounts(suite):
    assert suite.done[-1] == "play", suite.done
    login, = suite.run_step("restart")
    assert login[1][-1]["username"] == qs.USER
    # the second user of the kill test survived too
    rc, out = suite.wy("login", "bob")
    assert out[-1]["username"] == "bob"
    suite.run_step("wipe")
    assert suite.eng.project_ids(suite.project) == []
    assert suite.eng.project_ids(suite.project, "volume") == []
    assert suite.done == [s[0] for s in qs.STEPS[:3]] + ["play", "restart", "wipe"], suite.done


def test_every_step_of_the_quick_start_ran():
    """The steps above cover quickstart.STEPS (kept here so a new step without
    a test is noticed)."""
    assert [s[0] for s in qs.STEPS] == ["build", "up", "play", "restart", "wipe"]
