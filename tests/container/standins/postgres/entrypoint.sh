#!/bin/sh
# Like the official image: on first start (empty PGDATA) initdb with
# POSTGRES_USER as the superuser and POSTGRES_PASSWORD, make POSTGRES_DB,
# accept password logins from anywhere; then run postgres as user postgres
# with listen_addresses='*' (a later -c listen_addresses=... wins).
set -eu
if [ "${1:-}" != postgres ]; then exec "$@"; fi
shift
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
: "${POSTGRES_PASSWORD:?the stand-in, like the real image, needs POSTGRES_PASSWORD}"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
  chown postgres "$pw"
  as_pg initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\" OWNER \"$user\";" |
      as_pg postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "stand-in postgres: initialised $PGDATA (user $user, database $db)" >&2
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" \
  -c listen_addresses='*' "$@"
