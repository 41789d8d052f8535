# shellcheck shell=bash
# Test-environment bring-up, shared by scripts/test and `make bench`.
#
# Source it (after log.sh) and call `test_env_up`. It
#   1. installs what the tests need from Debian when missing and we are root:
#      iptables (both the nf_tables and the legacy backend), iproute2, nftables,
#      ethtool (the VTEP offload test checks what ethtool(8) reports), a
#      PostgreSQL server, a MariaDB server, ruby (the BOSH template tests) and
#      make (the BOSH packaging test);
#   2. makes sure PostgreSQL answers on 127.0.0.1:5432 (user postgres, no
#      password) and MariaDB on 127.0.0.1:3306 (root, empty password), starting
#      them when they are installed but stopped;
#   3. exports the variables the Go tests read:
#        NETMAN_TEST_POSTGRES        postgres URL (a caller's value is kept)
#        NETMAN_TEST_MYSQL           go-sql-driver DSN (a caller's value is kept)
#        NETMAN_REQUIRE_DBS=1        only when both databases answered: database
#                                    tests then fail instead of skipping
#        NETMAN_REQUIRE_ROOT_TESTS=1 when running as root: privileged tests must run
#
# It never drops data and leaves a working setup alone: servers are only started
# when they do not answer, and authentication is only changed when the login the
# tests use is refused.

PG_HOST=127.0.0.1 PG_PORT=5432
MY_HOST=127.0.0.1 MY_PORT=3306
DB_WAIT_SECONDS=${NETMAN_DB_WAIT_SECONDS:-30}
PG_HBA_MARKER='netman: passwordless loopback TCP for the test suite'

# Daemons and admin tools live in sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# ---------------------------------------------------------------------------
# 1. Packages

postgres_server_installed() {
  have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

mariadb_server_binary() {
  local bin
  for bin in /usr/sbin/mariadbd /usr/sbin/mysqld; do
    [[ -x $bin ]] && { echo "$bin"; return 0; }
  done
  return 1
}

# mariadb_tool NAME... prints the first of the given client programs that exists
# (newer packages call them mariadb*, older ones mysql*).
mariadb_tool() {
  local name
  for name in "$@"; do
    have "$name" && { command -v "$name"; return 0; }
  done
  return 1
}
mariadb_client() { mariadb_tool mariadb mysql; }
mariadb_admin() { mariadb_tool mariadb-admin mysqladmin; }

# missing_packages prints the Debian packages that provide what is missing.
missing_packages() {
  local -a pkgs=()
  { have iptables && have iptables-restore; } || pkgs+=(iptables)
  have ip || pkgs+=(iproute2)
  have nft || pkgs+=(nftables)
  have ethtool || pkgs+=(ethtool)
  have chromium || pkgs+=(chromium)
  { postgres_server_installed && have psql && have pg_isready; } || pkgs+=(postgresql)
  { mariadb_server_binary && mariadb_client && mariadb_admin; } >/dev/null || pkgs+=(mariadb-server)
  have ruby || pkgs+=(ruby)
  have make || pkgs+=(make)
  echo "${pkgs[*]}"
}

apt_install() {
  local aptlog
  aptlog=$(mktemp "${TMPDIR:-/tmp}/netman-apt.XXXXXX")
  log "installing Debian packages: $* (log: $aptlog)"
  if DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$aptlog" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$aptlog" 2>&1; then
    rm -f "$aptlog"
    return 0
  fi
  warn "apt-get failed; last lines of $aptlog:"
  tail -n 20 "$aptlog" >&2
  return 1
}

ensure_packages() {
  local missing
  missing=$(missing_packages)
  if [[ -z $missing ]]; then
    log "system tools present (iptables, iproute2, nftables, ethtool, postgresql, mariadb, ruby, make)"
    return 0
  fi
  if ! is_root; then
    warn "missing (not root, so not installing): $missing"
    warn "install them with: sudo apt-get install --no-install-recommends $missing"
    return 0
  fi
  # shellcheck disable=SC2086 # one package name per word
  apt_install $missing || warn "continuing without: $missing"
}

# ---------------------------------------------------------------------------
# 2a. PostgreSQL

pg_accepting() { have pg_isready && pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }

# pg_login_ok checks the exact login the tests use: user postgres, no password.
pg_login_ok() {
  have psql || return 1
  PGCONNECT_TIMEOUT=3 PGPASSWORD='' psql -w -X -q -At \
    -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1
}

# pg_cluster prints "<version> <name>" of the cluster that serves $PG_PORT,
# falling back to the newest version's "main" cluster.
pg_cluster() {
  local found
  found=$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2; exit }') || true
  if [[ -z $found && -d /etc/postgresql ]]; then
    local ver
    ver=$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -printf '%P\n' 2>/dev/null |
      cut -d/ -f1 | sort -V | tail -n 1)
    [[ -n $ver ]] && found="$ver main"
  fi
  [[ -n $found ]] && echo "$found"
}

# wait_until SECONDS CMD... retries CMD once a second until it succeeds.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

pg_start() {
  local ver=$1 name=$2
  log "starting postgresql $ver/$name"
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
    warn "pg_ctlcluster $ver $name start failed (see /var/log/postgresql/postgresql-$ver-$name.log)"
  log "waiting up to ${DB_WAIT_SECONDS}s for postgresql on $PG_HOST:$PG_PORT"
  wait_until "$DB_WAIT_SECONDS" pg_accepting
}

# pg_trust_loopback puts trust rules for loopback TCP at the top of pg_hba.conf
# (first match wins), then reloads. A fresh Debian cluster asks for a password.
pg_trust_loopback() {
  local ver=$1 name=$2
  local hba=/etc/postgresql/$ver/$name/pg_hba.conf
  [[ -f $hba ]] || { warn "no $hba to edit"; return 1; }
  if grep -qF "$PG_HBA_MARKER" "$hba"; then
    warn "$hba already has netman's trust rules, yet the login is refused"
    return 1
  fi
  log "postgresql refuses user postgres without password: trusting 127.0.0.1 and ::1 in $hba"
  [[ -e $hba.netman-orig ]] || cp -p "$hba" "$hba.netman-orig"
  local tmp
  tmp=$(mktemp)
  {
    printf '# %s\n' "$PG_HBA_MARKER"
    printf 'host    all    all    127.0.0.1/32    trust\n'
    printf 'host    all    all    ::1/128         trust\n'
    cat "$hba"
  } >"$tmp"
  cat "$tmp" >"$hba" # keeps the file's owner and mode
  rm -f "$tmp"
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
  wait_until 10 pg_login_ok
}

ensure_postgres() {
  if pg_login_ok; then
    log "postgresql is up on $PG_HOST:$PG_PORT"
    return 0
  fi
  postgres_server_installed || { warn "no PostgreSQL server installed"; return 1; }
  local cluster
  cluster=$(pg_cluster) || { warn "no PostgreSQL cluster under /etc/postgresql"; return 1; }
  # shellcheck disable=SC2086 # "<version> <name>"
  set -- $cluster
  if ! pg_accepting; then
    is_root || warn "not root: starting postgresql may fail"
    pg_start "$1" "$2" || { warn "postgresql did not come up on $PG_HOST:$PG_PORT"; return 1; }
  fi
  pg_login_ok && { log "postgresql is up on $PG_HOST:$PG_PORT"; return 0; }
  is_root || { warn "postgresql refuses user postgres without password (not root, not changing pg_hba.conf)"; return 1; }
  pg_trust_loopback "$1" "$2" || { warn "postgresql still refuses user postgres without password"; return 1; }
  log "postgresql is up on $PG_HOST:$PG_PORT"
}

# ---------------------------------------------------------------------------
# 2b. MariaDB

# my_alive tells whether the server accepts TCP connections. (mariadb-admin
# ping is no good here: it fails when the server refuses the host, as a fresh
# install does for root from 127.0.0.1 with skip-name-resolve.)
my_alive() {
  # shellcheck disable=SC2016 # $0 and $1 expand in the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$MY_HOST" "$MY_PORT" 2>/dev/null
}

# my_login_ok checks the exact login the tests use: root, empty password, TCP.
my_login_ok() {
  local client
  client=$(mariadb_client) || return 1
  "$client" --no-defaults --connect-timeout=3 --protocol=TCP -h "$MY_HOST" -P "$MY_PORT" -uroot \
    -e 'SELECT 1' >/dev/null 2>&1
}

# my_server_option NAME prints the server option from the config files, if set.
my_server_option() {
  have my_print_defaults || return 0
  my_print_defaults --mysqld 2>/dev/null | sed -n "s/^--$1=//p" | tail -n 1
}

# my_prepare_dirs creates what a server started outside systemd needs and a
# fresh container may lack. It creates missing directories only.
my_prepare_dirs() {
  id mysql >/dev/null 2>&1 || return 0
  local sock logerr dir
  sock=$(my_server_option socket)
  logerr=$(my_server_option log-error)
  for dir in /run/mysqld "$(dirname "${sock:-/run/mysqld/mysqld.sock}")" ${logerr:+"$(dirname "$logerr")"}; do
    [[ -d $dir ]] || install -d -o mysql -g mysql -m 0755 "$dir"
  done
  local datadir
  datadir=$(my_server_option datadir)
  datadir=${datadir:-/var/lib/mysql}
  if [[ ! -d $datadir/mysql ]]; then
    log "initialising the mariadb data directory $datadir"
    "$(mariadb_tool mariadb-install-db mysql_install_db)" --user=mysql --datadir="$datadir" >/dev/null
  fi
}

my_start() {
  local bin
  bin=$(mariadb_server_binary) || { warn "no MariaDB server installed"; return 1; }
  local -a args=()
  if is_root; then
    my_prepare_dirs || warn "could not prepare mariadb's directories"
    args=(--user=mysql)
  else
    warn "not root: starting mariadb may fail"
  fi
  local out=${TMPDIR:-/tmp}/netman-mariadbd.out
  log "starting mariadb ($bin, console output in $out)"
  start-stop-daemon --start --oknodo --background --output "$out" --exec "$bin" -- "${args[@]}" ||
    warn "start-stop-daemon could not start $bin"
  log "waiting up to ${DB_WAIT_SECONDS}s for mariadb on $MY_HOST:$MY_PORT"
  wait_until "$DB_WAIT_SECONDS" my_alive
}

# my_allow_root_tcp lets root log in over TCP with an empty password, as the
# tests do. A fresh Debian install authenticates root by unix socket only; we
# keep that and add the password method, through the socket, as root.
my_allow_root_tcp() {
  local client
  client=$(mariadb_client) || return 1
  log "mariadb refuses root over TCP: allowing root with an empty password from localhost and 127.0.0.1"
  "$client" --protocol=SOCKET -uroot <<'SQL'
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
}

ensure_mariadb() {
  if my_login_ok; then
    log "mariadb is up on $MY_HOST:$MY_PORT"
    return 0
  fi
  if ! my_alive; then
    my_start || { warn "mariadb did not come up on $MY_HOST:$MY_PORT"; return 1; }
  fi
  my_login_ok && { log "mariadb is up on $MY_HOST:$MY_PORT"; return 0; }
  is_root || { warn "mariadb refuses root with an empty password (not root, not changing users)"; return 1; }
  if ! { my_allow_root_tcp && my_login_ok; }; then
    warn "mariadb still refuses root with an empty password"
    return 1
  fi
  log "mariadb is up on $MY_HOST:$MY_PORT"
}

# ---------------------------------------------------------------------------
# 3. Environment for the Go tests

export_test_env() {
  local pg_up=$1 my_up=$2
  export NETMAN_TEST_POSTGRES=${NETMAN_TEST_POSTGRES:-"postgres://postgres@$PG_HOST:$PG_PORT/postgres?sslmode=disable"}
  export NETMAN_TEST_MYSQL=${NETMAN_TEST_MYSQL:-"root:@tcp($MY_HOST:$MY_PORT)/"}
  if [[ $pg_up == yes && $my_up == yes ]]; then
    export NETMAN_REQUIRE_DBS=1
  else
    local -a down=()
    [[ $pg_up == yes ]] || down+=("PostgreSQL ($PG_HOST:$PG_PORT)")
    [[ $my_up == yes ]] || down+=("MariaDB ($MY_HOST:$MY_PORT)")
    banner "WARNING: not reachable: ${down[*]}" \
      "Tests against that database will SKIP (FAIL under CI=true); NETMAN_REQUIRE_DBS is not set." \
      "See the messages above; on a Debian machine 'sudo scripts/test' installs and starts both."
  fi
  if is_root; then
    export NETMAN_REQUIRE_ROOT_TESTS=1
  else
    banner "WARNING: not root: privileged tests (network namespaces, iptables) will SKIP (FAIL under CI=true)."
  fi
  log "NETMAN_TEST_POSTGRES=$NETMAN_TEST_POSTGRES"
  log "NETMAN_TEST_MYSQL=$NETMAN_TEST_MYSQL"
  log "NETMAN_REQUIRE_DBS=${NETMAN_REQUIRE_DBS:-} NETMAN_REQUIRE_ROOT_TESTS=${NETMAN_REQUIRE_ROOT_TESTS:-}"
}

test_env_up() {
  ensure_packages
  local pg_up=no my_up=no
  ensure_postgres && pg_up=yes
  ensure_mariadb && my_up=yes
  export_test_env "$pg_up" "$my_up"
}
