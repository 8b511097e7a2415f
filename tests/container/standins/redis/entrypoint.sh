#!/bin/sh
# Like the official image: the server runs as user redis and, without a
# config file, with protected mode off (the container's network is the fence).
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  chown redis:redis /data 2>/dev/null || true
  exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
fi
exec "$@"
