"""Kafka from the Python tiers: wy-kafkatool (produce, watermarks and committed
offsets) and reading one labelled series of a daemon's /metrics."""
import os
import subprocess

import requests


def kafkatool(build_dir, *args, timeout=90):
    exe = os.path.join(build_dir, "tests", "tools", "wy-kafkatool")
    out = subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, "wy-kafkatool %s failed:\n%s" % (args[0], out.stderr)
    return out.stdout


def produce(build_dir, brokers, topic, count=1, type_="test.event", key=None):
    """Produces `count` Envelopes; returns their event ids."""
    args = ["produce", "--brokers", brokers, "--topic", topic, "--count", str(count),
            "--type", type_]
    if key:
        args += ["--key", key]
    ids = kafkatool(build_dir, *args).split()
    assert len(ids) == count, ids
    return ids


def offsets(build_dir, brokers, topic, group):
    """{partition: (low, high, committed)} of topic for group (committed -1001: none)."""
    out = kafkatool(build_dir, "offsets", "--brokers", brokers, "--topic", topic,
                    "--group", group)
    res = {}
    for line in out.split("\n"):
        if line.strip():
            p, lo, hi, committed = (int(x) for x in line.split())
            res[p] = (lo, hi, committed)
    return res


def series(d, name, **labels):
    """Value of the one series of `name` with exactly these labels, or None."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    text = requests.get(d.ops_url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "{" in key:
            n, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(",")))
        else:
            n, got = key, ""
        if n == name and got == want:
            return float(value)
    return None
