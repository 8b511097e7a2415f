"""Container health without systemd, shared by the tier and tests/container/podman-shim.

podman records a HEALTHCHECK's result only when something runs it; normally a
systemd timer does, every `interval`. Where there is no systemd, the tier runs
`podman healthcheck run` itself: the same command in the same container, the
result recorded by podman as the timer's would be (`podman inspect` then shows
State.Health.Status). Docker runs health checks itself: there we only read the
status."""
import datetime
import json
import subprocess
import time

POLL = 1.0  # seconds between two rounds of checks
# A "healthy" recorded by a check this recent, and run since the container's
# last start, is taken as it is (as Docker's status is that of its last
# periodic check): podman-compose asks about the same dependencies for every
# service it starts.
FRESH = 3.0


def _when(stamp):
    """Seconds since the epoch of podman's RFC 3339 time with nanoseconds."""
    stamp = stamp.rstrip("Z")
    if "." in stamp:
        head, frac = stamp.split(".", 1)
        stamp = head + "." + frac[:6]
    else:
        stamp += ".0"
    dt = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def _fresh_healthy(state):
    health = state.get("Health") or state.get("Healthcheck") or {}
    log = health.get("Log") or []
    if health.get("Status") != "healthy" or not log:
        return False
    try:
        last_start, last_end = _when(log[-1]["Start"]), _when(log[-1]["End"])
        return last_start > _when(state["StartedAt"]) and time.time() - last_end < FRESH
    except (KeyError, ValueError):
        return False


def podman_health(name, podman="podman"):
    """Runs the container's HEALTHCHECK once; returns "healthy", "unhealthy",
    "starting", "missing" (no such container), "not running" or "none" (no
    HEALTHCHECK)."""
    p = subprocess.run([podman, "container", "inspect", name], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return "missing"
    info = json.loads(p.stdout)[0]
    if not info["State"].get("Running"):
        return "not running"
    cfg = info.get("Config", {})
    if not cfg.get("Healthcheck") and not cfg.get("HealthCheck"):
        return "none"
    if _fresh_healthy(info["State"]):
        return "healthy"
    subprocess.run([podman, "healthcheck", "run", name], capture_output=True, text=True, timeout=120)
    p = subprocess.run([podman, "container", "inspect", "--format", "{{.State.Health.Status}}", name],
                       capture_output=True, text=True, timeout=60)
    return p.stdout.strip() or "starting"


def podman_wait_healthy(names, deadline, podman="podman", ignore_missing=False):
    """Runs the HEALTHCHECK of each container until all are healthy (True) or
    the deadline (time.monotonic()) passes (False). A container that is not
    running yet (or restarting) is waited for; a missing one fails unless
    ignore_missing."""
    left = list(names)
    while left:
        for name in list(left):
            st = podman_health(name, podman)
            if st == "healthy" or (st == "missing" and ignore_missing):
                left.remove(name)
            elif st in ("none", "missing"):
                return False
        if not left:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True
