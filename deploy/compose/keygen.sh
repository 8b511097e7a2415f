#!/bin/sh
# wy-keygen: one-shot of the compose stack. Creates the auth signing key
# $KEYS_DIR/$KID.pem (Ed25519, PKCS#8 PEM) if it is absent, readable only by
# the daemons' user (uid $KEY_UID, default 10001, the image's user). An
# existing key is never replaced, so tokens stay valid across restarts;
# delete the volume to start over.
set -eu
dir=${KEYS_DIR:-/keys}
kid=${KID:-dev-1}
uid=${KEY_UID:-10001}
case "$kid" in
  *[!A-Za-z0-9._-]*|'') echo "wy-keygen: KID must be [A-Za-z0-9._-]+, got '$kid'" >&2; exit 2 ;;
esac
key="$dir/$kid.pem"
if [ -s "$key" ]; then
  echo "wy-keygen: $key exists, keeping it" >&2
  exit 0
fi
chmod 0711 "$dir"  # the daemons must reach the key
umask 077
tmp="$dir/.$kid.pem.tmp"
openssl genpkey -algorithm ed25519 -out "$tmp"
chown "$uid:$uid" "$tmp"
chmod 0400 "$tmp"
mv "$tmp" "$key"
echo "wy-keygen: wrote $key" >&2
