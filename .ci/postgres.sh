#!/usr/bin/env bash
# Throw-away PostgreSQL cluster in a temp dir on 127.0.0.1 (not the Debian
# "main" cluster, which stays untouched). Used by .ci/run and by the tests
# (tests/support/services.py).
#
#   postgres.sh [start|status|stop]   start (the default) is a no-op when it runs already;
#                                     status exits 0 when it runs; stop waits until it is down
#   PG_BASE [${TMPDIR:-/tmp}/integrator-services/pg]   PG_PORT [54329]
#   PG_PASSWORD [postgres-secret]        PG_FRESH=1  wipe + re-initdb
#
# postgresql-15 is preinstalled on this image; otherwise apt installs it.
# Timings here: initdb ~0.7 s, start ~0.1-0.5 s.  Client: pip install "psycopg[binary]".
set -euo pipefail
BASE=${PG_BASE:-${TMPDIR:-/tmp}/integrator-services/pg}
PORT=${PG_PORT:-54329}
PASSWORD=${PG_PASSWORD:-postgres-secret}
as_pg() { runuser -u postgres -- "$@"; }   # initdb/postgres refuse to run as root
case ${1:-start} in
    start) ;;
    status|stop)
        PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
        if [ -z "$PGBIN" ] || [ ! -f "$BASE/data/PG_VERSION" ]; then   # never set up here
            [ "$1" = stop ] && exit 0 || exit 1
        fi
        [ "$1" = status ] && exec runuser -u postgres -- "$PGBIN/pg_ctl" -D "$BASE/data" status >/dev/null
        if as_pg "$PGBIN/pg_ctl" -D "$BASE/data" status >/dev/null 2>&1; then
            as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -m fast -w -t 60 stop >/dev/null
            echo "[postgres] stopped"
        fi
        exit 0 ;;
    *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
t0=$(date +%s)
if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "[postgres] apt-get install postgresql ..."
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
echo "[postgres] install ok ($(( $(date +%s) - t0 ))s), using $PGBIN"

if [ "${PG_FRESH:-0}" = 1 ] && [ -d "$BASE/data" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$BASE/data"
fi
mkdir -p "$BASE"
chown postgres:postgres "$BASE"
if [ ! -f "$BASE/data/PG_VERSION" ]; then
    printf '%s\n' "$PASSWORD" > "$BASE/pwfile"
    chown postgres "$BASE/pwfile"; chmod 600 "$BASE/pwfile"
    t1=$(date +%s)
    # local socket: trust; TCP: scram password auth
    as_pg "$PGBIN/initdb" -D "$BASE/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --pwfile="$BASE/pwfile" \
        --no-sync >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log"; exit 1; }
    echo "[postgres] initdb done ($(( $(date +%s) - t1 ))s)"
fi
if as_pg "$PGBIN/pg_ctl" -D "$BASE/data" status >/dev/null 2>&1; then
    echo "[postgres] already running (pid $(head -1 "$BASE/data/postmaster.pid"))"
else
    t1=$(date +%s)
    # -w waits until the server accepts connections
    as_pg "$PGBIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || { tail -20 "$BASE/server.log"; exit 1; }
    echo "[postgres] server ready ($(( $(date +%s) - t1 ))s), total $(( $(date +%s) - t0 ))s"
fi
echo "[postgres] DSN: host=127.0.0.1 port=$PORT user=postgres password=$PASSWORD dbname=postgres"
echo "[postgres]      postgresql://postgres:$PASSWORD@127.0.0.1:$PORT/postgres   (socket dir: $BASE)"
echo "[postgres] stop with: bash $0 stop"
