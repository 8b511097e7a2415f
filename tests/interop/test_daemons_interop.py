"""Standard clients against the real daemons: Python grpcio speaks the gRPC
health protocol, `requests` reads /readyz and /metrics, and the independent
prometheus_client parser reads the exposition text."""
import time

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

SERVICES = ["auth", "lobby", "game", "world", "actor", "chat"]


@pytest.fixture(scope="module")
def daemons(module_daemon):
    started = {svc: module_daemon(svc) for svc in SERVICES}
    deadline = time.monotonic() + 40
    for d in started.values():
        while True:
            r = requests.get(d.ops_url + "/readyz", timeout=5)
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, "%s never ready: %s" % (d.svc, r.text)
            time.sleep(0.2)
    return started


@pytest.mark.parametrize("svc", SERVICES)
def test_grpcio_health_check(daemons, protos, svc):
    import health_pb2
    import health_pb2_grpc
    d = daemons[svc]
    with grpc.insecure_channel(d.grpc_addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        full = "wyvern.%s.%s" % (svc, svc.capitalize())
        resp = stub.Check(health_pb2.HealthCheckRequest(service=full), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("svc", SERVICES)
def test_requests_reads_readyz_and_metrics(daemons, svc):
    d = daemons[svc]
    r = requests.get(d.ops_url + "/readyz", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "healthy"}
    m = requests.get(d.ops_url + "/metrics", timeout=5)
    assert m.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(m.text)}
    ready = families["wy_%s_ready" % svc]
    assert ready.type == "gauge"
    assert [s.value for s in ready.samples] == [1.0]
    # prometheus_client strips _total from counter family names.
    resps = families["wy_%s_ops_http_responses" % svc]
    assert resps.type == "counter"
    ok = [s.value for s in resps.samples
          if s.name.endswith("_total") and s.labels.get("class") == "2xx"]
    assert ok and ok[0] >= 1  # the /readyz above
