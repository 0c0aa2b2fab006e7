#!/usr/bin/env bash
# The real servers behind wedge's server backends and its registry client, for tests,
# benchmarks and trying them out, from Debian's packages, on loopback only, with their state in
# a temporary directory:
#   redis       Redis (key-value)
#   mariadb     MariaDB (SQL, MySQL-compatible)
#   registry    four container registries (distribution 2.8, Debian's docker-registry), plain
#               HTTP on loopback unless said: open; htpasswd (Basic auth); token auth (Bearer;
#               the token server is the test's own, on REGISTRY_TOKEN_REALM_PORT, signing with
#               the key this script makes); TLS with a CA this script makes (and htpasswd)
#   containerd  containerd with runc (Debian's), its state and socket in the directory
#
#   eval "$(scripts/services.sh start [SERVICE...])"   install if missing, start (or reuse
#                                          running ones) and export their WEDGE_TEST_* variables;
#                                          no SERVICE: all of them
#   scripts/services.sh stop               stop every one and delete their state
#   scripts/services.sh status             what is running
#   scripts/services.sh running            exit 0 if any is running, 1 if none (silent)
#
# Only the `export` lines go to stdout; progress goes to stderr. Ports: REDIS_PORT (16379),
# MYSQL_PORT (13306), REGISTRY_PORT (15000; the next four are the htpasswd, token, token
# realm and TLS ones); the state lives in WEDGE_SERVICES_DIR (/tmp/wedge-services).
set -euo pipefail

DIR="${WEDGE_SERVICES_DIR:-/tmp/wedge-services}"
REDIS_PORT="${REDIS_PORT:-16379}"
MYSQL_PORT="${MYSQL_PORT:-13306}"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
# The user and database the tests and examples use. The user may also create databases
# named wedge_* (tests make their own).
MYSQL_URL="mysql://wedge:wedge@127.0.0.1:$MYSQL_PORT/wedge"
REGISTRY_PORT="${REGISTRY_PORT:-15000}"
REGISTRY_BASIC_PORT=$((REGISTRY_PORT + 1))
REGISTRY_TOKEN_PORT=$((REGISTRY_PORT + 2))
REGISTRY_TOKEN_REALM_PORT=$((REGISTRY_PORT + 3))
REGISTRY_TLS_PORT=$((REGISTRY_PORT + 4))
# The account of the registries with authentication (htpasswd, and the test's token server).
REGISTRY_USER=wedge
REGISTRY_PASSWORD=wedge-registry-secret
# Names the token-auth registry and its token server agree on.
REGISTRY_TOKEN_SERVICE=wedge-test-registry
REGISTRY_TOKEN_ISSUER=wedge-test-token-server
ALL_SERVICES=(redis mariadb registry containerd)

say() { echo "services: $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# install_missing SERVICE...: the Debian packages of these services that are not there yet.
install_missing() {
    local service missing=()
    for service in "$@"; do
        case "$service" in
        redis) command -v redis-server >/dev/null 2>&1 || missing+=(redis-server) ;;
        mariadb) command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server) ;;
        registry)
            command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
            command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
            command -v openssl >/dev/null 2>&1 || missing+=(openssl)
            command -v curl >/dev/null 2>&1 || missing+=(curl)
            ;;
        containerd)
            command -v containerd >/dev/null 2>&1 || missing+=(containerd)
            command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
            ;;
        esac
    done
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

# A CA, a server certificate for 127.0.0.1 and localhost signed by it (the TLS registry),
# and the token-signing key with its self-signed certificate (the token registry trusts it).
make_registry_keys() {
    local keys="$DIR/registry-keys"
    [ -f "$keys/token.crt" ] && return
    mkdir -p "$keys"
    (
        cd "$keys"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj /CN=wedge-test-ca -keyout ca.key -out ca.crt
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj /CN=127.0.0.1 -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt
        # PKCS#8, which the test's token server reads.
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out token.key
        openssl req -x509 -new -key token.key -days 3650 -subj "/CN=$REGISTRY_TOKEN_ISSUER" \
            -out token.crt
    ) >"$DIR/registry-keys.log" 2>&1 || { tail -20 "$DIR/registry-keys.log" >&2; exit 1; }
}

# start_one_registry NAME PORT AUTH_AND_TLS_YAML: one distribution instance.
start_one_registry() {
    local name="$1" port="$2" extra="$3"
    if alive "$DIR/$name.pid"; then say "$name already running on $port"; return; fi
    mkdir -p "$DIR/$name"
    cat >"$DIR/$name/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/$name/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$extra
YAML
    docker-registry serve "$DIR/$name/config.yml" >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
    wait_for "$name" 20 registry_answers "$port"
    say "$name on 127.0.0.1:$port"
}

# Any HTTP answer to /v2/ (200 open, 401 with auth; curl -k for the TLS one).
registry_answers() {
    local code
    code="$(curl -sk -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v2/" 2>/dev/null || true)"
    [ "$code" = 200 ] || [ "$code" = 401 ] || [ "$code" = 400 ]
}

start_registry() {
    make_registry_keys
    local keys="$DIR/registry-keys"
    [ -f "$DIR/registry.htpasswd" ] ||
        htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$DIR/registry.htpasswd"
    local htpasswd_yaml="auth:
  htpasswd:
    realm: wedge-test
    path: $DIR/registry.htpasswd"
    start_one_registry registry "$REGISTRY_PORT" ""
    start_one_registry registry-basic "$REGISTRY_BASIC_PORT" "$htpasswd_yaml"
    start_one_registry registry-token "$REGISTRY_TOKEN_PORT" "auth:
  token:
    realm: http://127.0.0.1:$REGISTRY_TOKEN_REALM_PORT/token
    service: $REGISTRY_TOKEN_SERVICE
    issuer: $REGISTRY_TOKEN_ISSUER
    rootcertbundle: $keys/token.crt"
    start_one_registry registry-tls "$REGISTRY_TLS_PORT" "  tls:
    certificate: $keys/server.crt
    key: $keys/server.key
$htpasswd_yaml"
}

registry_exports() {
    local keys="$DIR/registry-keys"
    echo "export WEDGE_TEST_REGISTRY=127.0.0.1:$REGISTRY_PORT"
    # Its storage: tests damage a blob there to check that a pull refuses it.
    echo "export WEDGE_TEST_REGISTRY_DATA=$DIR/registry/data"
    echo "export WEDGE_TEST_REGISTRY_BASIC=127.0.0.1:$REGISTRY_BASIC_PORT"
    echo "export WEDGE_TEST_REGISTRY_TOKEN=127.0.0.1:$REGISTRY_TOKEN_PORT"
    echo "export WEDGE_TEST_REGISTRY_TOKEN_REALM=127.0.0.1:$REGISTRY_TOKEN_REALM_PORT"
    echo "export WEDGE_TEST_REGISTRY_TOKEN_KEY=$keys/token.key"
    echo "export WEDGE_TEST_REGISTRY_TOKEN_CERT=$keys/token.crt"
    echo "export WEDGE_TEST_REGISTRY_TOKEN_SERVICE=$REGISTRY_TOKEN_SERVICE"
    echo "export WEDGE_TEST_REGISTRY_TOKEN_ISSUER=$REGISTRY_TOKEN_ISSUER"
    echo "export WEDGE_TEST_REGISTRY_TLS=127.0.0.1:$REGISTRY_TLS_PORT"
    echo "export WEDGE_TEST_REGISTRY_CA=$keys/ca.crt"
    echo "export WEDGE_TEST_REGISTRY_USER=$REGISTRY_USER"
    echo "export WEDGE_TEST_REGISTRY_PASSWORD=$REGISTRY_PASSWORD"
}

# containerd with runc, all of its state under $DIR/containerd (there is no systemd here).
start_containerd() {
    local root="$DIR/containerd"
    if alive "$DIR/containerd.pid"; then say "containerd already running"; return; fi
    mkdir -p "$root"
    # CRI is not used here (ctr talks to containerd's own API); it is disabled so that it
    # neither needs CNI plugins nor a kubelet's settings.
    cat >"$root/config.toml" <<TOML
version = 2
root = "$root/root"
state = "$root/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$root/containerd.sock"
[ttrpc]
  address = "$root/containerd.sock.ttrpc"
[debug]
  address = "$root/debug.sock"
TOML
    containerd --config "$root/config.toml" >"$DIR/containerd.log" 2>&1 &
    echo $! >"$DIR/containerd.pid"
    wait_for containerd 30 ctr --address "$root/containerd.sock" version
    say "containerd on $root/containerd.sock"
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

REGISTRIES=(registry registry-basic registry-token registry-tls)

case "${1:-}" in
start)
    shift
    services=("$@")
    [ "${#services[@]}" -gt 0 ] || services=("${ALL_SERVICES[@]}")
    install_missing "${services[@]}"
    mkdir -p "$DIR"
    for service in "${services[@]}"; do
        case "$service" in
        redis) start_redis; echo "export WEDGE_TEST_REDIS_URL=$REDIS_URL" ;;
        mariadb) start_mariadb; echo "export WEDGE_TEST_MYSQL_URL=$MYSQL_URL" ;;
        registry) start_registry; registry_exports ;;
        containerd) start_containerd; echo "export WEDGE_TEST_CONTAINERD=$DIR/containerd/containerd.sock" ;;
        *) say "unknown service $service (one of: ${ALL_SERVICES[*]})"; exit 2 ;;
        esac
    done
    ;;
stop)
    stop_pid redis
    stop_pid mariadb
    for name in "${REGISTRIES[@]}"; do stop_pid "$name"; done
    stop_pid containerd
    rm -rf "$DIR"
    ;;
status)
    alive "$DIR/redis.pid" && echo "redis: running, $REDIS_URL" || echo "redis: stopped"
    alive "$DIR/mariadb.pid" && echo "mariadb: running, $MYSQL_URL" || echo "mariadb: stopped"
    for name in "${REGISTRIES[@]}"; do
        alive "$DIR/$name.pid" && echo "$name: running" || echo "$name: stopped"
    done
    alive "$DIR/containerd.pid" && echo "containerd: running, $DIR/containerd/containerd.sock" ||
        echo "containerd: stopped"
    ;;
running)
    for name in redis mariadb "${REGISTRIES[@]}" containerd; do
        alive "$DIR/$name.pid" && exit 0
    done
    exit 1
    ;;
*)
    echo "usage: scripts/services.sh start [redis|mariadb|registry|containerd]...|stop|status|running" >&2
    exit 2
    ;;
esac
