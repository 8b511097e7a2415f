#!/usr/bin/env python3
"""containers_conf.py FILE: makes podman usable on this kind of machine by
adding to containers.conf (normally /etc/containers/containers.conf) what it
does not set yet:

  [containers] default_ulimits = []      the default ulimits are refused here
  [engine]     runtime = "runc"          crun refuses hybrid cgroups
  [engine]     cgroup_manager = "cgroupfs"   no systemd to manage cgroups

A setting the file already has is left as it is, whatever its value; every
other line of the file is kept. Called by tools/deps (as root). Prints one line
per setting it adds; exit 1 if the file is not valid TOML."""
import os
import re
import sys
import tomllib

WANT = [
    ("containers", "default_ulimits", "[]"),
    ("engine", "runtime", '"runc"'),
    ("engine", "cgroup_manager", '"cgroupfs"'),
]


def plan(text):
    """The (section, key, value) of WANT the text does not set."""
    have = tomllib.loads(text)
    return [(s, k, v) for s, k, v in WANT if k not in have.get(s, {})]


def add(text, missing):
    """text with each missing setting as the first line of its section (the
    section is appended when absent)."""
    lines = text.splitlines()
    for section, key, value in missing:
        header = re.compile(r"^\s*\[\s*%s\s*\]\s*(#.*)?$" % re.escape(section))
        at = next((i for i, l in enumerate(lines) if header.match(l)), None)
        if at is None:
            if lines and lines[-1].strip():
                lines.append("")
            lines += ["[%s]" % section, "%s = %s" % (key, value)]
        else:
            lines.insert(at + 1, "%s = %s" % (key, value))
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    try:
        missing = plan(text)
    except tomllib.TOMLDecodeError as e:
        print("containers_conf: %s is not valid TOML (%s): left alone" % (path, e), file=sys.stderr)
        return 1
    if not missing:
        return 0
    new = add(text, missing)
    assert not plan(new)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".wyvern-tmp"
    with open(tmp, "w") as f:
        f.write(new)
    if os.path.exists(path):
        st = os.stat(path)
        os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)
    for section, key, value in missing:
        print("deps: %s: [%s] %s = %s" % (path, section, key, value), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
