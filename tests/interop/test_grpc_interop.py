"""Interop: the standard grpcio client against wy-grpctest (libs/common/wy_grpc).

Stubs for grpc.health.v1 are generated from proto/health.proto with grpc_tools.protoc
into a temp dir. Build dir: env WY_BUILD_DIR (default "build").
"""
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

import grpc
import pytest
from grpc_tools import protoc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("WY_BUILD_DIR", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
TOOL = os.path.join(BUILD, "tests", "tools", "wy-grpctest")


@pytest.fixture(scope="module")
def health_pb():
    out = tempfile.mkdtemp(prefix="wy-health-pb-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{os.path.join(ROOT, 'proto')}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(ROOT, "proto", "health.proto"),
    ])
    assert rc == 0, "grpc_tools.protoc failed on proto/health.proto"
    sys.path.insert(0, out)
    try:
        pb2 = importlib.import_module("health_pb2")
        pb2_grpc = importlib.import_module("health_pb2_grpc")
    finally:
        sys.path.remove(out)
    return pb2, pb2_grpc


class Server:
    """wy-grpctest as a child process; keeps its log for failure messages."""

    def __init__(self):
        assert os.path.exists(TOOL), f"{TOOL} missing: run make tests (WY_BUILD_DIR={BUILD})"
        self.proc = subprocess.Popen([TOOL, "--port", "0"], stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.port = None
        ready = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("msg") == "ready":
                    self.port = obj["grpc_port"]
                    ready.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            self.proc.kill()
            raise AssertionError("wy-grpctest not ready in 10 s; log:\n" + "".join(self.lines))

    def log(self):
        return "".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("wy-grpctest did not exit 10 s after SIGTERM; log:\n" + self.log())


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def check(channel, pb2, pb2_grpc, service):
    stub = pb2_grpc.HealthStub(channel)
    return stub.Check(pb2.HealthCheckRequest(service=service), timeout=5)


def test_health_serving(server, health_pb):
    pb2, pb2_grpc = health_pb
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        assert check(ch, pb2, pb2_grpc, "").status == pb2.HealthCheckResponse.SERVING, server.log()
        assert check(ch, pb2, pb2_grpc, "wyvern.test.Echo").status == pb2.HealthCheckResponse.SERVING


def test_health_unknown_service(server, health_pb):
    pb2, pb2_grpc = health_pb
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        with pytest.raises(grpc.RpcError) as exc:
            check(ch, pb2, pb2_grpc, "no.such.Service")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no.such.Service" in exc.value.details()


def test_malformed_request_then_still_serving(server, health_pb):
    pb2, pb2_grpc = health_pb
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        raw = ch.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        # Field 1, length-delimited, claims 100 bytes but carries 3: not a valid message.
        with pytest.raises(grpc.RpcError) as exc:
            raw(b"\x0a\x64abc", timeout=5)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid grpc.health.v1.HealthCheckRequest" in exc.value.details()
        assert check(ch, pb2, pb2_grpc, "").status == pb2.HealthCheckResponse.SERVING


def test_unknown_method(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        raw = ch.unary_unary("/no.Such/Method", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as exc:
            raw(b"", timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_sigterm_exits_zero(health_pb):
    pb2, pb2_grpc = health_pb
    s = Server()
    with grpc.insecure_channel(f"127.0.0.1:{s.port}") as ch:
        assert check(ch, pb2, pb2_grpc, "").status == pb2.HealthCheckResponse.SERVING
    rc = s.stop()
    assert rc == 0, s.log()
    assert '"msg":"stopped"' in s.log()
