"""The six daemons as real processes against the real stack: configuration,
ops endpoints, gRPC health, dependency loss and recovery, bad input of every
kind, and the graceful stop."""
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest
import requests

from harness.wait import wait_until

SERVICES = ["auth", "lobby", "game", "world", "actor", "chat"]
DEPS = {
    "auth": {"redis", "postgres", "kafka"},
    "lobby": {"redis", "postgres", "kafka"},
    "game": {"kafka"},
    "world": {"redis", "kafka"},
    "actor": {"redis", "postgres", "kafka"},
    "chat": {"redis", "postgres", "kafka"},
}


def readyz(d):
    r = requests.get(d.ops_url + "/readyz", timeout=5)
    return r.status_code, r.json()


def wait_healthy(d, timeout=30.0):
    return wait_until(lambda: readyz(d) == (200, {"status": "healthy"}), timeout,
                      what="%s /readyz healthy" % d.svc)


def metric(d, name):
    """Sum of every series of `name` in the daemon's /metrics."""
    text = requests.get(d.ops_url + "/metrics", timeout=5).text
    total = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name or key.startswith(name + "{"):
            total = (total or 0.0) + float(value)
    return total


def health_check(protos, addr, service=""):
    import health_pb2
    import health_pb2_grpc
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.mark.parametrize("svc", SERVICES)
def test_help_prints_the_config_table(build_dir, svc):
    exe = os.path.join(build_dir, "wy-" + svc)
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert "WY_%s_OPS_PORT" % svc.upper() in out.stdout
    assert "WY_%s_GRPC_PORT" % svc.upper() in out.stdout
    js = subprocess.run([exe, "--help", "--json"], capture_output=True, text=True, timeout=10)
    assert js.returncode == 0
    table = json.loads(js.stdout)
    assert table["service"] == svc
    names = {v["name"] for v in table["variables"]}
    assert {"WY_LOG_LEVEL", "WY_BIND_HOST", "WY_%s_OPS_PORT" % svc.upper()} <= names
    assert ("WY_REDIS_URL" in names) == ("redis" in DEPS[svc])
    assert ("WY_PG_URL" in names) == ("postgres" in DEPS[svc])
    for v in table["variables"]:
        assert v["help"], v["name"]


@pytest.mark.parametrize("var,value", [
    ("WY_WORLD_OPS_PORT", "abc"),
    ("WY_WORLD_GRPC_PORT", "70000"),
    ("WY_LOG_LEVEL", "loud"),
    ("WY_WORLD_DRAIN_TIMEOUT", "forever"),
])
def test_bad_config_value_exits_2_naming_the_variable(build_dir, var, value):
    env = dict(os.environ, **{var: value})
    out = subprocess.run([os.path.join(build_dir, "wy-world")], env=env, capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 2
    assert var in out.stderr
    assert value in out.stderr


def test_unknown_argument_exits_2(build_dir):
    out = subprocess.run([os.path.join(build_dir, "wy-chat"), "--frobnicate"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert "--frobnicate" in out.stderr


@pytest.mark.parametrize("svc", SERVICES)
def test_daemon_is_ready_healthy_and_serving(daemon, protos, svc):
    d = daemon(svc)
    assert d.ready_line["msg"] == "ready"
    assert d.ready_line["ops_port"] == d.ops_port and d.ready_line["grpc_port"] == d.grpc_port
    wait_healthy(d)
    r = requests.get(d.ops_url + "/healthz", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    import health_pb2
    serving = health_pb2.HealthCheckResponse.SERVING
    wait_until(lambda: health_check(protos, d.grpc_addr) == serving, what="gRPC health SERVING")
    assert health_check(protos, d.grpc_addr, "wyvern.%s.%s" % (svc, svc.capitalize())) == serving
    with pytest.raises(grpc.RpcError) as e:
        health_check(protos, d.grpc_addr, "no.such.Service")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # Secrets never reach the log.
    if "redis" in DEPS[svc]:
        assert d.ready_line["config"]["WY_REDIS_URL"] == "***"
        assert "redis://" not in d.log_text()


@pytest.mark.parametrize("svc", SERVICES)
def test_metrics_pass_promtool(daemon, svc):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run tools/deps"
    d = daemon(svc)
    wait_healthy(d)
    text = requests.get(d.ops_url + "/metrics", timeout=5)
    assert text.status_code == 200
    assert text.headers["Content-Type"].startswith("text/plain")
    assert "wy_%s_ready 1" % svc in text.text
    check = subprocess.run([promtool, "check", "metrics"], input=text.text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_readyz_follows_redis_without_restart(daemon, stack, protos):
    import health_pb2
    d = daemon("world")
    wait_healthy(d)
    pid = d.pid
    stack.stop_redis()
    try:
        code, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(d)),
                                what="/readyz 503 with Redis stopped")
        assert body["status"] == "unhealthy"
        assert body["down"] == ["redis"]
        assert metric(d, "wy_world_ready") == 0
        wait_until(lambda: health_check(protos, d.grpc_addr) ==
                   health_pb2.HealthCheckResponse.NOT_SERVING, what="gRPC NOT_SERVING")
    finally:
        stack.start_redis()
    wait_healthy(d)
    wait_until(lambda: health_check(protos, d.grpc_addr) == health_pb2.HealthCheckResponse.SERVING,
               what="gRPC SERVING again")
    assert d.pid == pid and d.running()


def test_oversized_http_body_gets_413_and_daemon_keeps_serving(daemon):
    d = daemon("auth")
    body = b"x" * (2 * 1024 * 1024)
    r = requests.post(d.ops_url + "/healthz", data=body, timeout=10)
    assert r.status_code == 413
    assert r.json()["error"]["code"]
    # Headers over the limit, then garbage: each gets a clear 4xx.
    r = requests.get(d.ops_url + "/healthz", headers={"X-Big": "y" * (64 * 1024)}, timeout=10)
    assert r.status_code == 431
    with socket.create_connection(("127.0.0.1", d.ops_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 400")
    assert requests.get(d.ops_url + "/healthz", timeout=5).status_code == 200


def test_malformed_protobuf_in_grpc_call_gets_invalid_argument(daemon, protos):
    import health_pb2
    d = daemon("lobby")
    with grpc.insecure_channel(d.grpc_addr) as ch:
        raw = ch.unary_unary("/grpc.health.v1.Health/Check",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\xff\x0f garbage", timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        unknown = ch.unary_unary("/wyvern.lobby.Lobby/NoSuchMethod",
                                 request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            unknown(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    wait_until(lambda: health_check(protos, d.grpc_addr) == health_pb2.HealthCheckResponse.SERVING,
               what="still SERVING")


def test_sigterm_under_load_exits_0_within_5s(daemon, protos):
    import health_pb2
    import health_pb2_grpc
    d = daemon("lobby")
    wait_healthy(d)
    stop = threading.Event()
    served = [0]

    def http_load():
        s = requests.Session()
        while not stop.is_set():
            try:
                s.get(d.ops_url + "/metrics", timeout=2)
                served[0] += 1
            except requests.RequestException:
                pass

    def grpc_load():
        with grpc.insecure_channel(d.grpc_addr) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while not stop.is_set():
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    served[0] += 1
                except grpc.RpcError:
                    pass

    threads = [threading.Thread(target=f) for f in (http_load, http_load, grpc_load, grpc_load)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: served[0] > 200, what="load running")
        t0 = time.monotonic()
        code = d.stop(signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert code == 0
    assert elapsed < 5.0, "stop took %.1fs" % elapsed
    assert '"msg":"stopped"' in d.log_text()
