"""The container engine the container tier drives: Docker where a Docker
engine answers, else podman (Debian's, run as root; see /work STACK.md and
deploy/README.md "Local: docker compose").

  eng = detect(top)               Engine or raises NoEngine (with the reason)
  eng.ensure_base(cache_dir)      debian:12 and debian:12-slim, imported from a
                                  debootstrap root filesystem when missing
  eng.ensure_standins(...)        redis / postgres / kafka stand-ins (standins/)
  eng.cli(...), eng.compose(...)  run the engine's CLI or its compose
Everything a command prints is kept in a log file; failures raise
CommandFailed with the command and the log's tail."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_TAGS = ("debian:12", "debian:12-slim")
BASE_TARBALL = "debian-12-minbase.tar"
DEBIAN_MIRROR = os.environ.get("WY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Services of compose.yaml whose images are stand-ins built here (standins/<name>).
STANDINS = {"redis": "redis", "postgres": "postgres", "kafka": "kafka"}


class NoEngine(Exception):
    pass


class CommandFailed(Exception):
    pass


def tail(path, lines=60, start=0):
    """The last lines of path after byte offset start."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(start, f.tell() - 32768))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join("  | " + l for l in text.splitlines()[-lines:])


class Engine:
    def __init__(self, kind, top, venv):
        self.kind = kind  # "podman" or "docker"
        self.top = top
        self.venv = venv
        self.log_path = None  # set by the tier: every command's output goes there

    # ------------------------------------------------------------ commands
    def run(self, argv, timeout=600, check=True, input=None, env=None, capture=False):
        """Runs argv from the repository root; output goes to the log (and is
        returned when capture). Returns (status, stdout text)."""
        t0 = time.monotonic()
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(self.log_path or os.devnull, "a") as log:
            start = log.tell()
            log.write("\n$ %s\n" % " ".join(argv))
            log.flush()
            try:
                p = subprocess.run(argv, cwd=self.top, env=full_env, input=input, text=True, timeout=timeout,
                                   stdout=subprocess.PIPE if capture else log, stderr=log)
            except subprocess.TimeoutExpired:
                log.write("(timed out after %d s)\n" % timeout)
                raise CommandFailed("%s: timed out after %d s\n%s" % (" ".join(argv), timeout,
                                                                      tail(self.log_path, start=start)))
            if capture and p.stdout:
                log.write(p.stdout if len(p.stdout) < 20000 else p.stdout[:20000] + "\n(cut)\n")
            log.write("(exit %d, %.1f s)\n" % (p.returncode, time.monotonic() - t0))
        if check and p.returncode != 0:
            raise CommandFailed("%s: exit status %d\n%s" % (" ".join(argv), p.returncode,
                                                             tail(self.log_path, start=start)))
        return p.returncode, (p.stdout or "")

    def cli(self, *args, **kw):
        return self.run([self.kind] + list(args), **kw)

    def build_args(self):
        """Extra `build` options: the host's network for RUN steps (apt), and,
        for podman, the docker image format (the OCI format drops HEALTHCHECK)."""
        extra = ["--network", "host"]
        if self.kind == "podman":
            extra += ["--format", "docker"]
        return extra

    def compose_argv(self):
        if self.kind == "docker":
            return ["docker", "compose"]
        return [os.path.join(self.venv, "bin", "podman-compose"), "--podman-path",
                os.path.join(HERE, "podman-shim")]

    # ------------------------------------------------------------ images
    def image_exists(self, ref):
        return self.cli("image", "inspect", ref, check=False, capture=True, timeout=60)[0] == 0

    def image_label(self, ref, label):
        rc, out = self.cli("image", "inspect", "--format", '{{index .Config.Labels "%s"}}' % label, ref,
                           check=False, capture=True, timeout=60)
        return out.strip() if rc == 0 else None

    def ensure_base(self, cache_dir):
        """debian:12 (and the same image as debian:12-slim) from Debian's
        packages: no registry is needed. The root filesystem tarball is cached
        in cache_dir, so only the first run on a machine pays for debootstrap."""
        if all(self.image_exists(t) for t in BASE_TAGS):
            return "present"
        os.makedirs(cache_dir, exist_ok=True)
        tarball = os.path.join(cache_dir, BASE_TARBALL)
        how = "from the cached " + os.path.relpath(tarball, self.top)
        if not os.path.exists(tarball):
            how = "debootstrap"
            self.debootstrap(tarball)
        with open(tarball, "rb") as f:
            with open(self.log_path or os.devnull, "a") as log:
                log.write("\n$ %s import - %s < %s\n" % (self.kind, BASE_TAGS[0], tarball))
                log.flush()
                p = subprocess.run([self.kind, "import", "-", BASE_TAGS[0]], stdin=f, stdout=log, stderr=log,
                                   timeout=600)
        if p.returncode != 0:
            raise CommandFailed("%s import: exit status %d\n%s" % (self.kind, p.returncode, tail(self.log_path)))
        for t in BASE_TAGS[1:]:
            self.cli("tag", BASE_TAGS[0], t)
        return how

    def debootstrap(self, tarball):
        """A Debian 12 minbase root filesystem, trimmed like the official slim
        image (no apt lists or .deb files; no docs, man pages or locales from
        later installs), written to tarball atomically."""
        if not shutil.which("debootstrap"):
            raise CommandFailed("debootstrap is missing: run tools/deps")
        work = tempfile.mkdtemp(prefix="wy-debootstrap-", dir=os.path.dirname(tarball))
        try:
            root = os.path.join(work, "rootfs")
            self.run(["debootstrap", "--variant=minbase", "bookworm", root, DEBIAN_MIRROR], timeout=900)
            for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
                p = os.path.join(root, d)
                for name in os.listdir(p):
                    full = os.path.join(p, name)
                    if os.path.isfile(full):
                        os.unlink(full)
            for name in os.listdir(os.path.join(root, "var/cache/apt")):
                if name.endswith(".bin"):
                    os.unlink(os.path.join(root, "var/cache/apt", name))
            with open(os.path.join(root, "etc/dpkg/dpkg.cfg.d/slim"), "w") as f:
                f.write("# like debian:12-slim: no documentation in images\n"
                        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
                        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
                        "path-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n")
            with open(os.path.join(root, "etc/apt/apt.conf.d/docker-clean"), "w") as f:
                f.write('DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
                        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
                        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n')
            part = tarball + ".part"
            self.run(["tar", "-C", root, "--numeric-owner", "-cf", part, "."], timeout=600)
            os.replace(part, tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def build_target(self, target, tag):
        self.cli("build", *self.build_args(), "--target", target, "-t", tag, ".", timeout=1800)

    def ensure_standins(self, images, kafka_libs, stage_dir):
        """Builds the stand-in image of each service in images ({service: tag})
        unless an image with that tag and the same inputs (label
        wyvern.standin, a hash of its folder and jars) exists. Returns
        {tag: "kept" | "built"}."""
        done = {}
        for svc, tag in sorted(images.items()):
            src = os.path.join(HERE, "standins", STANDINS[svc])
            jars = kafka_libs if svc == "kafka" else []
            digest = tree_hash(src, jars)
            if self.image_label(tag, "wyvern.standin") == digest:
                done[tag] = "kept"
                continue
            ctx = os.path.join(stage_dir, "standin-" + svc)
            shutil.rmtree(ctx, ignore_errors=True)
            shutil.copytree(src, ctx)
            if jars:
                os.makedirs(os.path.join(ctx, "libs"), exist_ok=True)
                for j in jars:
                    dst = os.path.join(ctx, "libs", os.path.basename(j))
                    try:
                        os.link(j, dst)
                    except OSError:
                        shutil.copyfile(j, dst)
            self.cli("build", *self.build_args(), "--label", "wyvern.standin=" + digest, "-t", tag, ctx,
                     timeout=1800)
            shutil.rmtree(ctx, ignore_errors=True)
            done[tag] = "built"
        return done

    # ------------------------------------------------------------ containers
    def project_ids(self, project, what="ps"):
        """Ids of the project's containers ("ps") or volumes ("volume")."""
        label = "label=com.docker.compose.project=" + project
        if what == "ps":
            _, out = self.cli("ps", "-a", "-q", "--filter", label, capture=True, timeout=60)
        else:
            _, out = self.cli("volume", "ls", "-q", "--filter", label, capture=True, timeout=60)
        return [l for l in out.split() if l]

    def remove_stale_projects(self, prefix):
        """Removes containers, volumes and networks of projects named
        prefix<pid> whose process is gone (a run killed before its cleanup).
        Returns the names of the projects removed."""
        stale = set()
        ids = self.cli("ps", "-a", "-q", "--filter", "label=com.docker.compose.project", capture=True,
                       timeout=60)[1].split()
        containers = self.inspect(ids)
        for c in containers:
            proj = c["Config"]["Labels"].get("com.docker.compose.project", "")
            if proj.startswith(prefix) and proj[len(prefix):].isdigit() and not pid_runs(int(proj[len(prefix):])):
                stale.add(proj)
        # first the compose processes the killed run left (still starting services)
        for proj in stale:
            stop_compose_of(proj)
        for c in containers:
            if c["Config"]["Labels"].get("com.docker.compose.project", "") in stale:
                self.cli("rm", "-f", "-v", c["Id"], check=False, timeout=120)
        for kind in ("volume", "network"):
            _, out = self.cli(kind, "ls", "--format", "{{.Name}}", capture=True, timeout=60)
            for name in out.split():
                proj = name.split("_", 1)[0]
                if "_" in name and proj.startswith(prefix) and proj[len(prefix):].isdigit() \
                        and not pid_runs(int(proj[len(prefix):])):
                    stale.add(proj)
                    self.cli(kind, "rm", name, check=False, timeout=120)
        return sorted(stale)

    def inspect(self, ids):
        if not ids:
            return []
        _, out = self.cli("container", "inspect", *ids, capture=True, timeout=60)
        return json.loads(out)

    def health(self, name):
        """Status of the container's HEALTHCHECK; under podman without systemd
        it is run here first (see health.py)."""
        if self.kind == "podman":
            from health import podman_health
            return podman_health(name)
        rc, out = self.cli("container", "inspect", "--format",
                           "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", name,
                           check=False, capture=True, timeout=60)
        return out.strip() if rc == 0 else "missing"


def pid_runs(pid):
    """True if pid is a live pytest (the process a project is named after)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"pytest" in f.read()
    except OSError:
        return False


def stop_compose_of(project):
    """Ends the compose processes a killed run left (podman-compose and its
    podman-shim, or docker compose) whose environment names this project:
    SIGTERM, then SIGKILL after 10 s. Container monitors (conmon), which
    inherit that environment too, are left to `rm -f`."""
    want = b"COMPOSE_PROJECT_NAME=" + project.encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
            if not any(a.endswith((b"podman-compose", b"podman-shim")) for a in argv) \
                    and not (argv[0].endswith(b"docker") and b"compose" in argv):
                continue
            with open("/proc/%s/environ" % d, "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(d))
        except OSError:
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if pid_runs_at_all(p)]
            time.sleep(0.2)
        if not pids:
            break


def pid_runs_at_all(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tree_hash(folder, files=()):
    h = hashlib.sha256()
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(root, n)
            h.update(os.path.relpath(p, folder).encode() + b"\0")
            h.update(b"%o\0" % (os.stat(p).st_mode & 0o777))
            with open(p, "rb") as f:
                h.update(f.read())
    for p in sorted(files):
        h.update(os.path.basename(p).encode() + b"\0%d\0" % os.path.getsize(p))
    return h.hexdigest()[:16]


def docker_answers():
    if not shutil.which("docker"):
        return False
    try:
        p = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                           text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return p.returncode == 0 and p.stdout.strip() != ""


def detect(top, venv):
    """Docker if its engine answers (not just a client binary), else podman.
    WY_CONTAINER_ENGINE=docker|podman forces one."""
    forced = os.environ.get("WY_CONTAINER_ENGINE")
    if forced not in (None, "", "docker", "podman"):
        raise NoEngine("WY_CONTAINER_ENGINE must be docker or podman, not %r" % forced)
    if forced != "podman" and docker_answers():
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
            raise NoEngine("the Docker engine answers but `docker compose` (the Compose plugin) is missing")
        return Engine("docker", top, venv)
    if forced == "docker":
        raise NoEngine("WY_CONTAINER_ENGINE=docker but no Docker engine answers (`docker info`)")
    if not shutil.which("podman"):
        raise NoEngine("no Docker engine answers and podman is not installed: run tools/deps")
    if os.geteuid() != 0:
        raise NoEngine("podman is used as root here (rootless podman needs subuid ranges "
                       "and a user session this tier does not set up): run as root")
    pc = os.path.join(venv, "bin", "podman-compose")
    if not os.access(pc, os.X_OK):
        raise NoEngine("%s is missing: run tools/deps" % pc)
    return Engine("podman", top, venv)
