#!/usr/bin/env bash
# The real servers behind wedge's server backends, for tests, benchmarks and trying them out:
# Redis (key-value) and MariaDB (SQL, MySQL-compatible), from Debian's packages, on loopback
# only, with their data in a temporary directory.
#
#   eval "$(scripts/services.sh start)"   install if missing, start (or reuse running ones) and
#                                          export WEDGE_TEST_REDIS_URL and WEDGE_TEST_MYSQL_URL
#   scripts/services.sh stop               stop both and delete their data
#   scripts/services.sh status             what is running
#   scripts/services.sh running            exit 0 if either is running, 1 if neither (silent)
#
# Only the `export` lines go to stdout; progress goes to stderr. Ports: REDIS_PORT (16379) and
# MYSQL_PORT (13306); the state lives in WEDGE_SERVICES_DIR (/tmp/wedge-services).
set -euo pipefail

DIR="${WEDGE_SERVICES_DIR:-/tmp/wedge-services}"
REDIS_PORT="${REDIS_PORT:-16379}"
MYSQL_PORT="${MYSQL_PORT:-13306}"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
# The user and database the tests and examples use. The user may also create databases
# named wedge_* (tests make their own).
MYSQL_URL="mysql://wedge:wedge@127.0.0.1:$MYSQL_PORT/wedge"

say() { echo "services: $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_missing() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        # Debian's packages start their own system-wide servers on install: harmless (other
        # ports), but they are not ours, so they are stopped again where systemd is absent.
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}

# wait_for WHAT SECONDS COMMAND...: run COMMAND until it succeeds.
wait_for() {
    local what="$1" seconds="$2"; shift 2
    local i
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    say "$what did not come up in ${seconds}s; its log: $DIR/$what.log"
    tail -20 "$DIR/$what.log" >&2 || true
    return 1
}

start_redis() {
    if alive "$DIR/redis.pid"; then say "redis already running on $REDIS_PORT"; return; fi
    mkdir -p "$DIR/redis"
    # No persistence: Redis here is a test and benchmark peer; wedge's own durability
    # guarantees are made (and tested) on its embedded SQLite backend.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR/redis" --save '' \
        --appendonly no --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >&2
    wait_for redis 20 redis-cli -p "$REDIS_PORT" ping
    say "redis on 127.0.0.1:$REDIS_PORT"
}

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

start_mariadb() {
    local socket="$DIR/mysql.sock"
    if alive "$DIR/mariadb.pid"; then say "mariadb already running on $MYSQL_PORT"; return; fi
    if [ ! -d "$DIR/mariadb/mysql" ]; then
        mkdir -p "$DIR/mariadb"
        say "mariadb-install-db into $DIR/mariadb"
        mariadb-install-db --user=root --datadir="$DIR/mariadb" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/mariadb-install.log" 2>&1 ||
            { tail -20 "$DIR/mariadb-install.log" >&2; exit 1; }
    fi
    "$(mariadbd_bin)" --no-defaults --user=root --datadir="$DIR/mariadb" --socket="$socket" \
        --port="$MYSQL_PORT" --bind-address=127.0.0.1 --pid-file="$DIR/mariadb.pid" \
        --log-error="$DIR/mariadb.log" --skip-name-resolve --max-connections=500 \
        --innodb-buffer-pool-size=128M --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_unicode_ci >/dev/null 2>&1 &
    wait_for mariadb 60 mariadb --no-defaults --socket="$socket" -uroot -e "select 1"
    mariadb --no-defaults --socket="$socket" -uroot >&2 <<'SQL'
CREATE DATABASE IF NOT EXISTS wedge;
CREATE USER IF NOT EXISTS 'wedge'@'127.0.0.1' IDENTIFIED BY 'wedge';
CREATE USER IF NOT EXISTS 'wedge'@'localhost' IDENTIFIED BY 'wedge';
GRANT ALL PRIVILEGES ON wedge.* TO 'wedge'@'127.0.0.1', 'wedge'@'localhost';
GRANT ALL PRIVILEGES ON `wedge\_%`.* TO 'wedge'@'127.0.0.1', 'wedge'@'localhost';
-- For tests that find and kill wedge's connections to check reconnects.
GRANT CONNECTION ADMIN, PROCESS ON *.* TO 'wedge'@'127.0.0.1', 'wedge'@'localhost';
FLUSH PRIVILEGES;
SQL
    say "mariadb on 127.0.0.1:$MYSQL_PORT"
}

stop_pid() {
    local name="$1" pidfile="$DIR/$1.pid" i
    if alive "$pidfile"; then
        kill "$(cat "$pidfile")"
        for ((i = 0; i < 300; i++)); do alive "$pidfile" || break; sleep 0.1; done
        if alive "$pidfile"; then kill -9 "$(cat "$pidfile")" || true; fi
        say "$name stopped"
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
start)
    install_missing
    mkdir -p "$DIR"
    start_redis
    start_mariadb
    echo "export WEDGE_TEST_REDIS_URL=$REDIS_URL"
    echo "export WEDGE_TEST_MYSQL_URL=$MYSQL_URL"
    ;;
stop)
    stop_pid redis
    stop_pid mariadb
    rm -rf "$DIR"
    ;;
status)
    alive "$DIR/redis.pid" && echo "redis: running, $REDIS_URL" || echo "redis: stopped"
    alive "$DIR/mariadb.pid" && echo "mariadb: running, $MYSQL_URL" || echo "mariadb: stopped"
    ;;
running)
    alive "$DIR/redis.pid" || alive "$DIR/mariadb.pid"
    ;;
*)
    echo "usage: scripts/services.sh start|stop|status|running" >&2
    exit 2
    ;;
esac
