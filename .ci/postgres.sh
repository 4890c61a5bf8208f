#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests and print its URL on stdout; stop it after.
#   .ci/postgres.sh [--install] DIR    cluster in DIR (created), socket and data there, port 127.0.0.1:PORT
#   .ci/postgres.sh --stop DIR         stop the server whose cluster is in DIR and remove DIR
# With --install, Debian's postgresql package is installed when no server binaries are found.
# The server runs as the `postgres` user when we are root (it refuses to run as root).
set -euo pipefail
install=0
stop=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
if [ "${1:-}" = "--stop" ]; then stop=1; shift; fi
dir="${1:?usage: postgres.sh [--install|--stop] DIR}"
port="${PLAYNEXT_PG_PORT:-54329}"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
bin="$(find_bin || true)"
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi

if [ "$stop" = 1 ]; then
  if [ -n "$bin" ] && [ -f "$dir/data/PG_VERSION" ]; then
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit 0
fi
if [ -z "$bin" ] && [ "$install" = 1 ]; then
  echo "installing postgresql (Debian package)" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin="$(find_bin || true)"
fi
[ -n "$bin" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 3; }

mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 3; }
fi
if ! "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200" start >&2 \
    || { cat "$dir/server.log" >&2; exit 3; }
fi
"${as_pg[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='playnext'" \
  | grep -q 1 || "${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres playnext
echo "postgresql://postgres@127.0.0.1:$port/playnext"
