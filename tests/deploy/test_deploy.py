"""Deploy tier: the Helm charts, the compose stack, the Dockerfile and the docs
install for real: lint, render, validate against the Kubernetes 1.30 schemas
and the Compose Specification offline, and cross-check every WY_* variable
against the daemons' `--help --json` (deploy/tools/wy-deploy-check does the
work; these tests run it on the real files and on broken fixtures, which it
must refuse). Needs `make daemons` and `tools/deps` (helm, compose-check,
kubernetes-validate); a missing tool fails the tier, never skips it."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(TOP, "deploy", "tools", "wy-deploy-check")
FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
HELM_DIR = os.path.join(TOP, "deploy", "helm")
COMPOSE = os.path.join(TOP, "deploy", "compose", "compose.yaml")
SERVICES = ["auth", "lobby", "game", "world", "actor", "chat"]


@pytest.fixture(scope="session")
def tools(build_dir):
    """Fails (not skips) when a tool the tier needs is missing."""
    missing = []
    for name in ("helm", "compose-check"):
        if not os.access(os.path.join(TOP, ".cache", "bin", name), os.X_OK) and not shutil.which(name):
            missing.append(name)
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        missing.append("kubernetes-validate (Python)")
    for svc in SERVICES:
        if not os.access(os.path.join(build_dir, "wy-%s" % svc), os.X_OK):
            missing.append("%s/wy-%s (make daemons)" % (build_dir, svc))
    if missing:
        pytest.fail("deploy tier needs: %s; run tools/deps and make" % ", ".join(missing), pytrace=False)
    return build_dir


def check(build_dir, *args, help_json=None):
    cmd = [sys.executable, CHECK, "--build", build_dir]
    if help_json:
        cmd += ["--help-json", help_json]
    r = subprocess.run(cmd + list(args), cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=240)
    print(r.stdout)
    return r.returncode, r.stdout


def problems(out):
    return [ln for ln in out.splitlines() if ": " in ln and not ln.startswith(("wy-deploy-check:", "note:"))]


def specs_dir(build_dir, tmp_path, edit=None):
    """The daemons' --help --json in a folder, optionally edited."""
    d = tmp_path / "help"
    d.mkdir()
    for svc in SERVICES:
        out = subprocess.run([os.path.join(build_dir, "wy-%s" % svc), "--help", "--json"], stdout=subprocess.PIPE,
                             check=True, text=True).stdout
        data = json.loads(out)
        if edit:
            edit(svc, data)
        (d / ("%s.json" % svc)).write_text(json.dumps(data))
    return str(d)


def render(build_dir, tmp_path, svc, *values):
    """helm template of one chart (after helm dependency build in a copy)."""
    helm = os.path.join(TOP, ".cache", "bin", "helm")
    helm = helm if os.access(helm, os.X_OK) else "helm"
    charts = tmp_path / "helm"
    shutil.copytree(HELM_DIR, charts, ignore=shutil.ignore_patterns("charts"))
    subprocess.run([helm, "dependency", "build", str(charts / svc)], check=True, stdout=subprocess.DEVNULL)
    args = []
    for v in values:
        args += ["-f", v]
    r = subprocess.run([helm, "template", "wyvern-%s" % svc, str(charts / svc)] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return r


# ------------------------------------------------------------------ the real files pass

@pytest.mark.parametrize("svc", SERVICES)
def test_chart_lints_renders_validates(tools, svc):
    """helm lint --strict, helm template, strict Kubernetes 1.30 schemas and the
    WY_* cross-check, with default values and with every option on."""
    rc, out = check(tools, "--chart", svc)
    assert rc == 0, problems(out)
    assert "chart %s (defaults)" % svc in out and "chart %s (all-on)" % svc in out


def test_compose_validates(tools):
    rc, out = check(tools, "--compose", COMPOSE)
    assert rc == 0, problems(out)


def test_docs_name_only_real_variables(tools):
    rc, out = check(tools, "--docs", os.path.join(TOP, "deploy", "README.md"))
    assert rc == 0, problems(out)


def test_dockerfile_runtime_covers_linked_libraries(tools):
    rc, out = check(tools, "--dockerfile", os.path.join(TOP, "Dockerfile"))
    assert rc == 0, problems(out)


def test_everything_at_once(tools):
    """What the deploy README tells people to run."""
    rc, out = check(tools)
    assert rc == 0, problems(out)
    assert "15 checked" in out


# ------------------------------------------------------------------ broken fixtures are caught

@pytest.mark.parametrize("fixture,expect", [
    ("unknown-var-values.yaml", r"WY_AUTH_DRAIN_TIMOUT is not a variable of wy-auth"),
    ("probe-port-values.yaml", r"livenessProbe port 'metrics' is not a port of the container"),
    ("probe-wrong-port-values.yaml", r"readinessProbe port 'grpc' is 9201, but /healthz and /readyz are on the ops"),
    ("secret-in-configmap-values.yaml", r"WY_PG_URL is secret: set it only from a Secret"),
    ("schema-typo-values.yaml", r"not valid Kubernetes 1.30: .*DuringExecutoin"),
    ("servicemonitor-bad-values.yaml", r"ServiceMonitor/wyvern-auth: spec.endpoints.0.interval"),
    ("short-grace-values.yaml", r"terminationGracePeriodSeconds=5 is shorter than"),
    ("typo-values.yaml", r"Additional property autoscalling is not allowed"),
    ("client-port-unknown-var-values.yaml", r"WY_AUTH_WS_PORT is not a variable of wy-auth"),
    ("client-port-mismatch-values.yaml", r"container port 'http' is 9090, but wy-auth listens on no such port "
                                         r"\(WY_AUTH_HTTP_PORT=8080\)"),
    ("client-port-off-values.yaml", r"wy-auth serves clients on WY_AUTH_HTTP_PORT=8080, but the container declares"),
    ("instance-id-fixed-values.yaml", r"WY_INSTANCE_ID is not the pod name"),
    ("steam-key-in-configmap-values.yaml", r"WY_AUTH_STEAM_WEB_API_KEY is secret: set it only from a Secret"),
    ("no-signing-keys-values.yaml", r"signingKeys.existingSecret is required: .*kubectl create secret generic"),
])
def test_broken_chart_values_are_caught(tools, fixture, expect):
    rc, out = check(tools, "--chart", "auth", "-f", os.path.join(FIX, fixture))
    assert rc == 1
    assert re.search(expect, out), "expected %r in:\n%s" % (expect, out)


def test_lobby_that_cannot_verify_tokens_is_caught(tools):
    rc, out = check(tools, "--chart", "lobby", "-f", os.path.join(FIX, "lobby-no-token-keys-values.yaml"))
    assert rc == 1
    assert problems(out) == ["chart lobby (values lobby-no-token-keys-values.yaml): wy-lobby cannot verify access "
                             "tokens: set WY_LOBBY_AUTH_GRPC (auth's gRPC address) or WY_LOBBY_TOKEN_KEYS_DIR"]


@pytest.mark.parametrize("fixture,expect", [
    ("compose-unknown-var.yaml", r"service auth: WY_AUTH_NO_SUCH_THING is not a variable of wy-auth"),
    ("compose-lobby-miswired.yaml", r"service lobby: WY_INSTANCE_ID is fixed \('lobby-1'\)"),
    ("compose-lobby-miswired.yaml", r"service lobby: WY_LOBBY_AUTH_GRPC=auth:9101 is not auth's gRPC address"),
    ("compose-lobby-miswired.yaml", r"service lobby: wy-lobby serves clients on WY_LOBBY_WS_PORT=8081, but the "
                                    r"port is not published"),
    ("compose-lobby-miswired.yaml", r"service lobby: publishes container port 8082, where wy-lobby listens on"),
    ("compose-missing-pg.yaml", r"service auth: WY_PG_URL is not set \(its default .* is loopback\)"),
    ("compose-invalid-spec.yaml", r"not valid against the Compose Specification"),
])
def test_broken_compose_is_caught(tools, fixture, expect):
    rc, out = check(tools, "--compose", os.path.join(FIX, fixture))
    assert rc == 1
    assert re.search(expect, out), "expected %r in:\n%s" % (expect, out)


def test_unknown_variable_in_docs_is_caught(tools):
    rc, out = check(tools, "--docs", os.path.join(FIX, "docs-unknown-var.md"))
    assert rc == 1
    assert "docs-unknown-var.md:3: WY_AUTH_PASSWORD_PEPPER is not a variable of any daemon" in out


def test_required_variable_must_be_wired(tools, tmp_path):
    """A variable a daemon marks required: true must be set by the chart and
    by compose, or the check fails."""

    def add_required(svc, data):
        if svc == "chat":
            data["variables"].append({"name": "WY_CHAT_RETENTION", "type": "string", "default": "",
                                      "required": True, "help": "test", "secret": False})

    help_json = specs_dir(tools, tmp_path, add_required)
    rc, out = check(tools, "--chart", "chat", "--compose", COMPOSE, help_json=help_json)
    assert rc == 1
    assert "chart chat (defaults): WY_CHAT_RETENTION is not set (required)" in out
    assert "service chat: WY_CHAT_RETENTION is not set (required)" in out


@pytest.mark.parametrize("svc,name,var,port", [("auth", "http", "WY_AUTH_HTTP_PORT", 8080),
                                               ("lobby", "ws", "WY_LOBBY_WS_PORT", 8081),
                                               ("game", "ws", "WY_GAME_WS_PORT", 8082)])
def test_client_ports_are_wired(tools, tmp_path, svc, name, var, port):
    """The daemon's own client-port variable, the Pod's and the Service's
    port agree (chart), and compose sets and publishes it. The checker
    refuses the opposite (client-port-* fixtures); world, actor and chat have
    no client port, so they render none (test_service_ports_...)."""
    listed = json.loads(subprocess.run([os.path.join(tools, "wy-%s" % svc), "--help", "--json"],
                                       stdout=subprocess.PIPE, check=True, text=True).stdout)
    assert {v["name"]: v["default"] for v in listed["variables"]}[var] == str(port)
    r = render(tools, tmp_path, svc)
    assert r.returncode == 0, r.stderr
    docs = docs_of(r.stdout)
    cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
    assert cm["data"][var] == str(port)
    c = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": name, "containerPort": port, "protocol": "TCP"} in c["ports"]
    sp = [p for p in [d for d in docs if d["kind"] == "Service"][0]["spec"]["ports"] if p["name"] == name]
    assert sp and sp[0]["port"] == port and sp[0]["targetPort"] == name
    out = subprocess.run([os.path.join(TOP, ".cache", "bin", "compose-check"), COMPOSE], stdout=subprocess.PIPE,
                         check=True, text=True).stdout
    s = json.loads(out)["services"][svc]
    assert s["environment"][var] == str(port)
    assert any(p["target"] == port and p["published"] == str(port) for p in s["ports"])


def test_lobby_verifies_tokens_with_auth(tools, tmp_path):
    """Helm: WY_LOBBY_AUTH_GRPC defaults to the auth release's Service and
    gRPC port; compose: the auth service."""
    r = render(tools, tmp_path, "lobby")
    assert r.returncode == 0, r.stderr
    cm = [d for d in docs_of(r.stdout) if d["kind"] == "ConfigMap"][0]
    auth = render(tools, tmp_path / "a", "auth")
    assert auth.returncode == 0, auth.stderr
    auth_svc = [d for d in docs_of(auth.stdout) if d["kind"] == "Service"][0]
    grpc = [p["port"] for p in auth_svc["spec"]["ports"] if p["name"] == "grpc"][0]
    assert cm["data"]["WY_LOBBY_AUTH_GRPC"] == "%s:%d" % (auth_svc["metadata"]["name"], grpc) == "wyvern-auth:9201"
    out = subprocess.run([os.path.join(TOP, ".cache", "bin", "compose-check"), COMPOSE], stdout=subprocess.PIPE,
                         check=True, text=True).stdout
    project = json.loads(out)
    assert project["services"]["lobby"]["environment"]["WY_LOBBY_AUTH_GRPC"] == "auth:9201"
    assert project["services"]["auth"]["environment"]["WY_AUTH_GRPC_PORT"] == "9201"


def test_dockerfile_missing_runtime_library_is_caught(tools, tmp_path):
    text = open(os.path.join(TOP, "Dockerfile")).read()
    broken = text.replace(" libpq5 ", " ", 1)
    assert broken != text
    p = tmp_path / "Dockerfile"
    p.write_text(broken)
    rc, out = check(tools, "--dockerfile", str(p))
    assert rc == 1
    assert re.search(r"wy-auth: links libpq\.so\.5 from libpq5, which the runtime stage does not install", out), out


def test_dockerfile_unknown_runtime_package_is_caught(tools, tmp_path):
    p = tmp_path / "Dockerfile"
    p.write_text(open(os.path.join(TOP, "Dockerfile")).read().replace("libhiredis0.14", "libhiredis0.13"))
    rc, out = check(tools, "--dockerfile", str(p))
    assert rc == 1
    assert "runtime package libhiredis0.13 does not exist in Debian" in out


def test_dockerfile_port_nothing_listens_on_is_caught(tools, tmp_path):
    p = tmp_path / "Dockerfile"
    text = open(os.path.join(TOP, "Dockerfile")).read()
    p.write_text(text.replace("EXPOSE 9104 9204", "EXPOSE 8084 9104 9204").replace("EXPOSE 8081 ", "EXPOSE "))
    rc, out = check(tools, "--dockerfile", str(p))
    assert rc == 1
    assert "target world: EXPOSE 8084, where wy-world listens on nothing" in out
    assert "target lobby: wy-lobby serves clients on WY_LOBBY_WS_PORT=8081, but the image does not EXPOSE it" in out


def test_dockerfile_root_user_is_caught(tools, tmp_path):
    p = tmp_path / "Dockerfile"
    p.write_text(open(os.path.join(TOP, "Dockerfile")).read().replace("USER 10001:10001", "USER root"))
    rc, out = check(tools, "--dockerfile", str(p))
    assert rc == 1
    assert "target auth: does not run as a non-root user" in out


# ------------------------------------------------------------------ what the charts render

def docs_of(text):
    import yaml
    return [d for d in yaml.safe_load_all(text) if d]


def test_auth_signing_keys_are_always_mounted(tools, tmp_path):
    """wy-auth requires WY_AUTH_KEYS_DIR and WY_AUTH_SIGNING_KID: the chart
    always mounts the keys Secret (default wyvern-auth-keys, kid k1)."""
    for sub, values, secret, kid, path in [("d", (), "wyvern-auth-keys", "k1", "/etc/wyvern/keys"),
                                           ("o", ("signingKeys: {existingSecret: prod-keys, kid: k7}\n",),
                                            "prod-keys", "k7", "/etc/wyvern/keys")]:
        files = []
        for n, text in enumerate(values):
            f = tmp_path / ("v%d-%s.yaml" % (n, sub))
            f.write_text(text)
            files.append(str(f))
        r = render(tools, tmp_path / sub, "auth", *files)
        assert r.returncode == 0, r.stderr
        dep = [d for d in docs_of(r.stdout) if d["kind"] == "Deployment"][0]
        c = dep["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["WY_AUTH_KEYS_DIR"] == path and env["WY_AUTH_SIGNING_KID"] == kid
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["signing-keys"]["readOnly"] is True and mounts["signing-keys"]["mountPath"] == path
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert vols["signing-keys"]["secret"]["secretName"] == secret


def test_auth_provider_secrets_come_from_secrets(tools, tmp_path):
    vals = tmp_path / "steam.yaml"
    vals.write_text("steam: {appId: 480, existingSecret: steam}\ncustomLogin: {existingSecret: custom}\n")
    r = render(tools, tmp_path, "auth", str(vals))
    assert r.returncode == 0, r.stderr
    docs = docs_of(r.stdout)
    env = {e["name"]: e for e in [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert env["WY_AUTH_STEAM_WEB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "steam", "key": "web-api-key"}
    assert env["WY_AUTH_CUSTOM_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "custom", "key": "server-key"}
    assert [d for d in docs if d["kind"] == "ConfigMap"][0]["data"]["WY_AUTH_STEAM_APP_ID"] == "480"
    vals.write_text("steam: {appId: 480}\n")
    r = render(tools, tmp_path / "x", "auth", str(vals))
    assert r.returncode != 0 and "steam.existingSecret is empty" in r.stderr


@pytest.mark.parametrize("svc,client", [("auth", "http"), ("lobby", "ws"), ("game", "ws"), ("world", None),
                                        ("actor", None), ("chat", None)])
def test_service_ports_are_named_and_client_port_only_where_it_exists(tools, tmp_path, svc, client):
    r = render(tools, tmp_path, svc)
    assert r.returncode == 0, r.stderr
    svc_doc = [d for d in docs_of(r.stdout) if d["kind"] == "Service"][0]
    names = [p["name"] for p in svc_doc["spec"]["ports"]]
    assert names == ([client] if client else []) + ["grpc", "ops"]
    dep = [d for d in docs_of(r.stdout) if d["kind"] == "Deployment"][0]
    ids = [e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "WY_INSTANCE_ID"]
    assert ids == [{"name": "WY_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    hpa = [d for d in docs_of(r.stdout) if d["kind"] == "HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_daemon_is_not_given_the_secret_urls_in_its_configmap(tools, tmp_path):
    r = render(tools, tmp_path, "actor")
    assert r.returncode == 0, r.stderr
    cm = [d for d in docs_of(r.stdout) if d["kind"] == "ConfigMap"][0]
    assert "WY_PG_URL" not in cm["data"] and "WY_REDIS_URL" not in cm["data"]
    dep = [d for d in docs_of(r.stdout) if d["kind"] == "Deployment"][0]
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WY_PG_URL"]["valueFrom"]["secretKeyRef"] == {"name": "wyvern-postgresql", "key": "url"}
    assert env["WY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "wyvern-redis", "key": "url"}


# ------------------------------------------------------------------ compose one-shots

def test_keygen_makes_one_ed25519_key_and_keeps_it(tmp_path):
    keygen = os.path.join(TOP, "deploy", "compose", "keygen.sh")
    # In compose keygen runs as root and hands the key to uid 10001; a
    # non-root test run can only hand it to itself.
    uid = 10001 if os.geteuid() == 0 else os.geteuid()
    env = dict(os.environ, KEYS_DIR=str(tmp_path), KID="k1", KEY_UID=str(uid))
    subprocess.run([keygen], env=env, check=True)
    key = tmp_path / "k1.pem"
    first = key.read_bytes()
    st = key.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o400)
    text = subprocess.run(["openssl", "pkey", "-in", str(key), "-noout", "-text"], stdout=subprocess.PIPE,
                          check=True, text=True).stdout
    assert "ED25519 Private-Key" in text
    subprocess.run([keygen], env=env, check=True)
    assert key.read_bytes() == first
    bad = subprocess.run([keygen], env=dict(env, KID="../etc/x"))
    assert bad.returncode == 2


def test_compose_creates_every_topic_the_daemons_use(tools):
    """kafka-init creates the topics named in the compose file's daemons'
    docs (services/*/README.md); auto-creation is off, so a missing one would
    fail at run time."""
    out = subprocess.run([os.path.join(TOP, ".cache", "bin", "compose-check"), COMPOSE], stdout=subprocess.PIPE,
                         check=True, text=True).stdout
    project = json.loads(out)
    script = " ".join(project["services"]["kafka-init"]["command"])
    created = set(re.findall(r"(wy\.[a-z.]+[a-z]):\d+", script))
    named = set()
    for svc in SERVICES:
        with open(os.path.join(TOP, "services", svc, "README.md")) as f:
            named |= set(re.findall(r"`(wy\.[a-z.]+[a-z])`", f.read()))
    assert named, "no wy.* topic named in services/*/README.md"
    assert named <= created, "topics not created by kafka-init: %s" % sorted(named - created)
    assert project["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


# ------------------------------------------------------------------ the image's build stage

def dockerignored(path, patterns):
    """Docker's rule, simplified: the last matching pattern wins, "!" re-includes,
    a pattern matching a folder covers what is inside."""
    import fnmatch
    excluded = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pat) or (pat.startswith("**/") and fnmatch.fnmatch(p.split("/")[-1], pat[3:]))
               for p in prefixes):
            excluded = not neg
    return excluded


def test_build_stage_compiles_the_daemons_from_its_context_alone(tools, tmp_path):
    """Copies exactly what the build stage COPYs (and .dockerignore lets
    through) into an empty folder and runs the stage's make there: a file
    the daemons need but the image build does not get fails here, without
    a Docker engine."""
    stages, cur = {}, None
    with open(os.path.join(TOP, "Dockerfile")) as f:
        for line in re.sub(r"\\\n", " ", f.read()).splitlines():
            m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
            if m:
                cur = m.group(1)
                stages[cur] = []
            elif cur and line.strip() and not line.startswith("#"):
                stages[cur].append(line.strip())
    copies = [ln.split()[1:-1] for ln in stages["build"] if ln.startswith("COPY") and "--from" not in ln]
    runs = [ln[4:].strip() for ln in stages["build"] if ln.startswith("RUN") and "make" in ln]
    assert copies and len(runs) == 1
    with open(os.path.join(TOP, ".dockerignore")) as f:
        patterns = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    ctx = tmp_path / "src"
    ctx.mkdir()
    for srcs in copies:
        for src in srcs:
            src = src.rstrip("/")
            assert not dockerignored(src, patterns), "%s is COPYed but .dockerignore excludes it" % src
            full = os.path.join(TOP, src)
            if os.path.isdir(full):
                shutil.copytree(full, ctx / src, ignore=lambda d, names: [
                    n for n in names if dockerignored(os.path.relpath(os.path.join(d, n), TOP), patterns)])
            else:
                shutil.copy2(full, ctx / src)
    cmd = runs[0].split("&&")[0].replace('"$(nproc)"', "2")
    r = subprocess.run(cmd, shell=True, cwd=ctx, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    for svc in SERVICES:
        assert os.access(ctx / "build" / ("wy-%s" % svc), os.X_OK)
    assert not dockerignored("Makefile", patterns) and dockerignored("build/wy-auth", patterns)
    assert dockerignored(".cache/venv", patterns) and dockerignored("tests/deploy/test_deploy.py", patterns)
