"""Fixtures shared by the integration, e2e and interop tiers.

  stack          (session) the Redis/PostgreSQL/Kafka stack: the one tests/run
                 exported, else a private one started for this session
  build_dir      (session) WY_BUILD_DIR or build/
  protos         (session) generates Python stubs of proto/*.proto into
                 BUILD/py and puts them on sys.path: `import health_pb2`
  daemon         (function) factory: d = daemon("auth", env={...}); all its
                 daemons are stopped at teardown, which fails if one exits
                 non-zero on SIGTERM or its log holds a sanitizer report
  module_daemon  the same factory, daemons live for the whole module
  free_port      function returning a free loopback port
When a test fails, the logs of its daemons are attached to the report.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TOP  # noqa: E402
from harness.daemon import DaemonFactory  # noqa: E402
from harness.ports import free_port as _free_port  # noqa: E402
from harness.protos import ensure_stubs  # noqa: E402
from harness.stack import open_stack  # noqa: E402

LOG_TAIL_LINES = 150


@pytest.fixture(scope="session")
def build_dir():
    d = os.environ.get("WY_BUILD_DIR", "build")
    return d if os.path.isabs(d) else os.path.join(TOP, d)


@pytest.fixture(scope="session")
def stack(request):
    s = open_stack()
    yield s
    failed = request.session.testsfailed > 0
    if failed and s.owned:
        print("\nstack logs kept in %s" % s.dir)
    s.close(keep=failed)


@pytest.fixture(scope="session")
def protos(build_dir):
    return ensure_stubs(build_dir)


@pytest.fixture(scope="session")
def daemon_log_dir(stack):
    d = os.path.join(stack.dir, "daemons")
    os.makedirs(d, exist_ok=True)
    return d


def _factory(request, build_dir, daemon_log_dir, stack):
    f = DaemonFactory(build_dir, daemon_log_dir, stack.env())
    request.node._wy_daemon_factory = f
    return f


def _finish(f):
    problems = f.finish()
    if problems:
        pytest.fail("daemon teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(request, build_dir, daemon_log_dir, stack):
    f = _factory(request, build_dir, daemon_log_dir, stack)
    yield f
    _finish(f)


@pytest.fixture(scope="module")
def module_daemon(request, build_dir, daemon_log_dir, stack):
    f = _factory(request, build_dir, daemon_log_dir, stack)
    yield f
    _finish(f)


@pytest.fixture
def free_port():
    return _free_port


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for node in item.listchain():
        f = getattr(node, "_wy_daemon_factory", None)
        if not f:
            continue
        for d in f.started:
            if getattr(d, "log_path", None) and ("daemon log: %s" % d.instance_id) not in dict(rep.sections):
                lines = d.log_text().splitlines()
                text = "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"
                rep.sections.append(("daemon log: %s" % d.instance_id,
                                     "%s (last %d of %d lines)\n%s" % (d.log_path, min(len(lines), LOG_TAIL_LINES),
                                                                        len(lines), text)))
