"""The tracked tree carries no leftover merge-conflict markers (a merge resolved by hand
that left one in a README or a source file would still build and pass every other tier)."""
import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = re.compile(r"^(<<<<<<< |>>>>>>> |=======$)", re.M)


def test_no_conflict_markers_in_tracked_files():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=TOP, check=True,
                           capture_output=True).stdout.decode().split("\0")
    assert len(files) > 100, "git ls-files found too little: the scan is broken"
    bad = []
    for f in files:
        path = os.path.join(TOP, f)
        if not f or not os.path.isfile(path) or os.path.islink(path):
            continue
        with open(path, "rb") as fh:
            data = fh.read(2_000_000)
        if b"\0" in data:
            continue  # binary
        for m in MARKER.finditer(data.decode("utf-8", "replace")):
            line = data[:m.start()].count(b"\n") + 1
            bad.append("%s:%d" % (f, line))
    assert not bad, "merge-conflict markers left in: %s" % bad
