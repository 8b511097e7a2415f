"""Issue 11: a returning login is an index probe per login whatever the table statistics say.
Auth plans each statement once per connection (generic plans); a fresh database analyzed while
empty (or statistics that lag a launch-day storm) once made the batched identity lookup a hash
join over a sequential scan of every identity, kept until the next ANALYZE
(services/auth/sql.c, auth_identity_find)."""
import concurrent.futures
import os
import subprocess
import uuid

import requests

from harness.ports import free_port
from harness.wait import wait_until

ACCOUNTS = 1200


def test_identity_lookup_never_scans_the_table_after_an_empty_analyze(daemon, build_dir, stack,
                                                                      tmp_path):
    subprocess.run([os.path.join(build_dir, "tools", "wy-keygen"), str(tmp_path / "k1.pem")],
                   check=True, timeout=10)
    db = "wyplan_" + uuid.uuid4().hex[:8]
    stack.psql("CREATE DATABASE %s" % db)
    url = stack.pg_url.rsplit("/", 1)[0] + "/" + db

    def psql(sql):
        p = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()
    port = free_port()
    auth = daemon("auth", env={"WY_AUTH_KEYS_DIR": str(tmp_path), "WY_AUTH_SIGNING_KID": "k1",
                               "WY_AUTH_HTTP_PORT": str(port), "WY_PG_URL": url})
    base = "http://127.0.0.1:%d" % port
    wait_until(lambda: requests.get(auth.ops_url + "/readyz", timeout=5).status_code == 200,
               timeout=60, what="auth ready")
    # The statistics say "empty" and stay so for the whole test (no autovacuum analyze).
    psql("ALTER TABLE auth.identities SET (autovacuum_enabled = off); "
         "ALTER TABLE auth.accounts SET (autovacuum_enabled = off); ANALYZE")
    devices = ["plan-%d-%s" % (i, uuid.uuid4().hex[:8]) for i in range(ACCOUNTS)]

    def login(device):
        with requests.Session() as s:
            r = s.post(base + "/v1/login", json={"method": "device", "device_id": device},
                       timeout=30)
            assert r.status_code in (200, 201), r.text
            return r.status_code

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        assert set(ex.map(login, devices)) == {201}

    def scans():
        out = psql("SELECT seq_scan || ' ' || coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                   "WHERE relid = 'auth.identities'::regclass")
        return tuple(int(x) for x in out.split())
    seq0, _ = scans()
    _, idx0 = scans()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        assert set(ex.map(login, devices)) == {200}
    # The backends report their counters when idle (at most once a second): wait for the
    # returning logins' index probes to show, then no sequential scan may have run.
    wait_until(lambda: scans()[1] > idx0, timeout=30, interval=0.5,
               what="the returning logins' index probes counted")
    seq1, _ = scans()
    assert seq1 == seq0, "the batched identity lookup scanned auth.identities %d times" % (
        seq1 - seq0)
