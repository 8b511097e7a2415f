"""Issue 17 must-show 4: docs/keys.md's Redis key map and Kafka topic table match the source.

Keys: every `#define RKEY_<NAME> "<format>"` under services/ and libs/ is a row of the key map
(first column, exactly) and every row is such a macro; every string in a C file using wy_redis
or wy_ratelimit that looks like a Redis key ("<root>:...", in C or in Lua, root a documented
prefix or a service's name) sits on an RKEY_ line or is a piece of a documented format. Topics: every "wy.<x>"
topic named in the source and every topic compose creates is a row, and every row is used."""
import glob
import os
import re

from harness import TOP

DOC = os.path.join(TOP, "docs", "keys.md")
RKEY_RE = re.compile(r'^\s*#\s*define\s+(RKEY_[A-Z0-9_]+)\s+"([^"]*)"', re.M)
# "<prefix>:<something>" in double or single quotes: how a Redis key starts; or a key whose
# root is its hash tag ("{rank}:level").
KEYISH_RE = re.compile(r'''(["'])((?:[a-z][a-z0-9_-]*|\{[a-z][a-z0-9_-]*\}):[a-z{%][^"'\s]*)\1''')
TOPIC_RE = re.compile(r'"(wy\.[a-z][a-z0-9_.]*)"')


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sources():
    out = []
    for top in ("services", "libs"):
        for ext in ("c", "h"):
            out += glob.glob(os.path.join(TOP, top, "**", "*." + ext), recursive=True)
    return sorted(out)


def doc_table(marker):
    """First-column backticked values of the table after marker in docs/keys.md."""
    section = read(DOC).split(marker, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        line = line.strip()
        if not line.startswith("|"):
            if rows:
                break
            continue
        m = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows.append(m.group(1))
    assert rows, "docs/keys.md has no table after %r" % marker
    return rows


def rkey_macros():
    found = {}
    for path in sources():
        for name, fmt in RKEY_RE.findall(read(path)):
            found.setdefault(fmt, []).append("%s:%s" % (os.path.relpath(path, TOP), name))
    return found


def test_key_map_matches_rkey_macros():
    documented = doc_table("<!-- redis-keys")
    assert len(documented) == len(set(documented)), "a key format is documented twice"
    code = rkey_macros()
    assert code, "no RKEY_ macro found: the scan is broken"
    missing = sorted(set(code) - set(documented))
    stale = sorted(set(documented) - set(code))
    assert not missing, "RKEY_ formats not in docs/keys.md: %s" % [(m, code[m]) for m in missing]
    assert not stale, "docs/keys.md rows no RKEY_ macro defines: %s" % stale


def test_no_undeclared_redis_key_in_the_source():
    documented = doc_table("<!-- redis-keys")
    prefixes = {d.split(":", 1)[0] for d in documented}
    # Key roots: the documented ones and every service's name (a new service's first key,
    # "chat:{channel:%s}:...", is checked before it has a row). Other "x:y" strings (hash
    # fields such as "char:%s", "ip:port") are not keys.
    roots = prefixes | {os.path.basename(p) for p in glob.glob(os.path.join(TOP, "services", "*"))}
    bad = []
    for path in sources():
        text = read(path)
        if "wy_redis_" not in text and "wy_ratelimit_" not in text:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if RKEY_RE.match(line):
                continue
            for _, lit in KEYISH_RE.findall(line):
                root = lit.split(":", 1)[0]
                if root not in roots and not root.startswith("{"):
                    continue
                # A literal on an ordinary line is fine only as a piece of a documented format
                # (a Lua script building 'sess:{'..a..'}:s:'), never as a key of its own.
                if root not in prefixes or not any(lit in d or d.startswith(lit)
                                                   for d in documented):
                    bad.append("%s:%d: %s" % (os.path.relpath(path, TOP), lineno, lit))
    assert not bad, ("Redis keys outside an RKEY_ macro or with an undocumented prefix "
                     "(docs/keys.md, rule 4): %s" % bad)


def test_topic_table_matches_source_and_compose():
    documented = set(doc_table("<!-- kafka-topics"))
    used = set()
    for path in sources():
        used |= set(TOPIC_RE.findall(read(path)))
    assert used, "no topic found in the source: the scan is broken"
    compose = read(os.path.join(TOP, "deploy", "compose", "compose.yaml"))
    m = re.search(r"for spec in (.*?); do", compose, re.S)
    assert m, "compose.yaml's kafka-init loop not found"
    created = {s.split(":")[0] for s in m.group(1).replace("\\", " ").split()}
    assert used - documented == set(), "topics the source uses, not in docs/keys.md"
    assert created == documented, ("compose creates %s, docs/keys.md lists %s"
                                   % (sorted(created), sorted(documented)))


def test_production_topic_settings_documented_and_used():
    doc = read(DOC)
    for s in ("replication factor 3", "min.insync.replicas=2", "acks=all",
              "enable.idempotence=true"):
        assert s in doc, s
    deploy = read(os.path.join(TOP, "deploy", "README.md"))
    assert deploy.count("--replication-factor 3") >= 2
    assert deploy.count("min.insync.replicas=2") >= 2
    compose = read(os.path.join(TOP, "deploy", "compose", "compose.yaml"))
    assert "min.insync.replicas" in compose
    kafka_c = read(os.path.join(TOP, "libs", "common", "wy_kafka.c"))
    assert '"enable.idempotence", "true"' in kafka_c and '"acks", "all"' in kafka_c
