"""The local quick start of deploy/README.md, as data: the container tier runs
these steps, and tests/container/test_container.py checks that the README
shows exactly these lines (`python3 tests/container/quickstart.py` prints
them). A studio runs them as written; the tier runs the same commands with:

  docker build            the engine's build, plus --network host (and, for
                          podman, --format docker, which keeps HEALTHCHECK)
  docker compose -f F     the engine's compose (podman-compose for podman) with
                          the override deploy/compose/compose.loopback.yaml
                          after F: host networking, 127.0.0.1, free ports
  wy                      build/tools/wy --json, with the auth and lobby URLs
                          of those ports, the password in the environment and
                          its own credentials folder
"""
import shlex

COMPOSE_FILE = "deploy/compose/compose.yaml"
OVERRIDE_FILE = "deploy/compose/compose.loopback.yaml"
TARGETS = ["auth", "lobby", "game", "world", "actor", "chat", "keygen"]
USER, NICK = "alice", "Alice"

# (step, comment, commands); a command is a list of words. The first word is
# "docker", "compose" (docker compose -f COMPOSE_FILE) or "wy".
STEPS = [
    ("build", "the seven images of the Dockerfile (the base is debian:12-slim)",
     [["docker", "build", "--target", t, "-t", "wyvern/%s:dev" % t, "."] for t in TARGETS]),
    ("up", "start; then wait until `ps` shows every service healthy (kafka-init, keygen and keygen-tickets exit 0)",
     [["compose", "up", "-d"], ["compose", "ps"]]),
    ("play", "an account, a session, the lobby (wy asks for the password; it finds auth and lobby on 127.0.0.1:8080/8081)",
     [["wy", "register", USER], ["wy", "whoami"], ["wy", "login", USER], ["wy", "lobby", "--for", "3"],
      ["wy", "nick", "set", NICK], ["wy", "presence", NICK]]),
    ("restart", "stop and start again: accounts are kept in the volumes",
     [["compose", "down"], ["compose", "up", "-d"], ["wy", "login", USER]]),
    ("wipe", "remove everything, data and signing key included",
     [["compose", "down", "-v"]]),
]


def studio_line(cmd):
    head = {"docker": ["docker"], "compose": ["docker", "compose", "-f", COMPOSE_FILE], "wy": ["wy"]}[cmd[0]]
    return " ".join(shlex.quote(w) for w in head + cmd[1:])


def render():
    """The README's block, line by line."""
    out = []
    for i, (step, comment, cmds) in enumerate(STEPS):
        out.append("# %d. %s" % (i + 1, comment))
        out += [studio_line(c) for c in cmds]
    return out


if __name__ == "__main__":
    print("\n".join(render()))
