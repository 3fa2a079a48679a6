#!/bin/sh
# Makes the secrets compose.yaml reads, in $WARDEN_SECRETS_DIR (default
# deploy/compose/secrets): a CA and the TLS certificates of the control plane
# and the gateways (for the names in WARDEN_CONTROL_PLANE_NAMES and
# WARDEN_GATEWAY_NAMES, by default compose.yaml's), the admin
# and gateway tokens, database passwords. Existing files are kept, so it can be
# run again. The agent's enrollment token is written after `warden agents enroll`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${WARDEN_SECRETS_DIR:-$here/compose/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
# The containers run as uid 10001 and read these through bind mounts: the
# files are readable (0644), the directory (0700) keeps other host users out.
umask 022

random() { openssl rand -hex 32; }
secret() { [ -s "$1" ] || random > "$1"; }

[ -s ca.key ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
  -subj "/CN=Warden compose CA" -keyout ca.key -out ca.crt 2>/dev/null

# cert NAME SUBJECT_ALT_NAMES
cert() {
  [ -s "$1.crt" ] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
  chmod 644 "$1.key"
}
# The names clients and agents dial; Kubernetes wants others (README, "Deploy").
cert control-plane "${WARDEN_CONTROL_PLANE_NAMES:-DNS:control-plane,DNS:localhost,IP:127.0.0.1}"
cert gateway "${WARDEN_GATEWAY_NAMES:-DNS:gateway-1,DNS:gateway-2,DNS:localhost,IP:127.0.0.1}"

secret gateway-token
secret control-plane-db-password
secret sample-db-password
secret sample-db-admin-password
[ -s admin.env ] || echo "WARDEN_ADMIN_TOKEN=$(random)" > admin.env
if [ ! -s control-plane.env ]; then
  {
    cat admin.env
    echo "WARDEN_GATEWAY_TOKEN=$(cat gateway-token)"
    echo "WARDEN_DATABASE_URL=postgres://warden:$(cat control-plane-db-password)@${WARDEN_DATABASE_HOST:-control-plane-db}:5432/warden"
  } > control-plane.env
fi
# Empty until the agent is enrolled (README, "Deploy").
[ -e enrollment-token ] || : > enrollment-token
echo "secrets in $dir"
