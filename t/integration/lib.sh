# t/integration/lib.sh — sourced helpers for pgshoal's integration and
# acceptance tests: a throwaway PostgreSQL run by an unprivileged user, a
# pgshoal started from a generated config, cleanup by pid on exit, and a
# tiny TAP-like test runner (run_test / finish).
#
# Environment (all optional):
#   B            build dir holding pgshoal and t/<prog>   (default: build)
#   PGBIN        PostgreSQL server binaries   (default: /usr/lib/postgresql/15/bin)
#   PGPORT       PostgreSQL port              (default: first free from 25432)
#   PG_LISTEN    PostgreSQL listen_addresses  (default: 127.0.0.1)
#   SHOAL_PORT   pgshoal port                 (default: first free from 26432)
#   TEST_USER    system user running postgres (default: pgshoal_test)
#   TESTS        space-separated test names to run (default: all)
#   TEST_TIMEOUT seconds before one test is killed (default: 180)
#   KEEP=1       keep the temp dir (logs) after the run
#
# Nothing from the checkout is read by the unprivileged user: the data dir,
# sockets and logs live in a fresh /tmp/pgshoal-test.XXXXXX (mode 755).

B=${B:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
TEST_USER=${TEST_USER:-pgshoal_test}
TEST_TIMEOUT=${TEST_TIMEOUT:-180}
DBUSER=tuser # role the pooled clients use; pg_stat_activity counts it
SHOAL_PID=
PG_STARTED=
T_PASS=0
T_FAIL=0
T_FAILED_NAMES=

# ---------------------------------------------------------------- utilities

say() { printf '# %s\n' "$*"; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 2
}
now_ms() { date +%s%3N; }

# port_free PORT: nothing listens on 127.0.0.1:PORT (TCP)
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# free_port START: first free port >= START (below 32768), reserved for this
# run: concurrent runs of the harness (initdb takes a while before PostgreSQL
# binds) would otherwise pick the same port. A reservation is a directory
# /tmp/pgshoal-port.N holding the owner's pid; a dead owner's is taken over.
free_port() {
	local p=$1 d owner
	while [ "$p" -lt 32768 ]; do
		d=/tmp/pgshoal-port.$p
		if port_free "$p" && [ ! -e "/tmp/.s.PGSQL.$p" ]; then
			if mkdir "$d" 2>/dev/null; then
				echo $$ >"$d/pid"
				echo "$d" >>"${TMPD:-/tmp}/ports.$$"
				echo "$p"
				return 0
			fi
			owner=$(cat "$d/pid" 2>/dev/null)
			if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
				echo $$ >"$d/pid"
				echo "$d" >>"${TMPD:-/tmp}/ports.$$"
				echo "$p"
				return 0
			fi
		fi
		p=$((p + 1))
	done
	die "no free port from $1"
}

release_ports() {
	local f=${TMPD:-/tmp}/ports.$$ d
	[ -f "$f" ] || return 0
	while read -r d; do
		[ "$(cat "$d/pid" 2>/dev/null)" = $$ ] && rm -rf "$d"
	done <"$f"
	rm -f "$f"
}

as_user() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$TEST_USER" -- "$@"
	else
		"$@"
	fi
}

ensure_user() {
	[ "$(id -u)" = 0 ] || {
		TEST_USER=$(id -un)
		return 0
	}
	id "$TEST_USER" >/dev/null 2>&1 || useradd -r -M -s /bin/bash "$TEST_USER" ||
		die "useradd $TEST_USER failed"
}

# ------------------------------------------------------------ temp + cleanup

lib_init() {
	ensure_user
	TMPD=$(mktemp -d /tmp/pgshoal-test.XXXXXX) || die "mktemp failed"
	chmod 755 "$TMPD"
	[ "$(id -u)" = 0 ] && chown "$TEST_USER" "$TMPD"
	: >"$TMPD/pids"
	PGPORT=${PGPORT:-$(free_port 25432)}
	SHOAL_PORT=${SHOAL_PORT:-$(free_port 26432)}
	export PGPORT SHOAL_PORT TMPD B DBUSER
	trap lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# remember a pid for the EXIT cleanup (also from subshells: it is a file)
track_pid() { echo "$1" >>"$TMPD/pids"; }

kill_tree() { # kill -KILL a pid and its direct children (pgshoal's workers)
	local p=$1 c
	for c in $(pgrep -P "$p" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
	kill -KILL "$p" 2>/dev/null
}

lib_cleanup() {
	local rc=$? p
	if [ -n "${TMPD:-}" ] && [ -d "$TMPD" ]; then
		while read -r p; do
			[ -n "$p" ] && kill -0 "$p" 2>/dev/null && kill_tree "$p"
		done <"$TMPD/pids"
		pg_stop >/dev/null 2>&1
		release_ports
		if [ -n "${KEEP:-}" ]; then
			echo "# kept $TMPD" >&2
		else
			rm -rf "$TMPD"
		fi
	fi
	exit $rc
}

# ---------------------------------------------------------------- PostgreSQL

pg_start() {
	local data=$TMPD/data
	[ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb (set PGBIN)"
	as_user "$PGBIN/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 \
		>"$TMPD/initdb.log" 2>&1 || {
		cat "$TMPD/initdb.log" >&2
		die "initdb failed"
	}
	pg_run
	pg_sql "create role $DBUSER login superuser" >/dev/null || die "create role failed"
}

# pg_run: start the server of pg_start's data directory (again, after pg_stop)
pg_run() {
	as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -l "$TMPD/postgres.log" -w -t 60 \
		-o "-c listen_addresses=${PG_LISTEN:-127.0.0.1} -c port=$PGPORT -c unix_socket_directories=$TMPD \
-c max_connections=${PG_MAX_CONN:-300} -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
		start >"$TMPD/pg_ctl.log" 2>&1 || {
		cat "$TMPD/pg_ctl.log" "$TMPD/postgres.log" >&2
		die "pg_ctl start failed"
	}
	PG_STARTED=1
}

pg_stop() {
	[ -n "$PG_STARTED" ] || return 0
	as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -m immediate -w stop >/dev/null 2>&1
	PG_STARTED=
}

# pg_sql SQL: run SQL directly on PostgreSQL as postgres, unaligned output
pg_sql() { psql -X -q -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$1"; }

# server connections pgshoal holds (role $DBUSER)
pg_server_conns() { pg_sql "select count(*) from pg_stat_activity where usename = '$DBUSER'"; }

# conninfo strings for the C programs
direct_conninfo() { echo "host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"; }
shoal_conninfo() { echo "host=127.0.0.1 port=$SHOAL_PORT user=$DBUSER dbname=${1:-postgres} connect_timeout=10"; }

# ------------------------------------------------------------------- pgshoal

# shoal_config [key=value ...]: print a config; values that are not numbers,
# booleans, lists or already quoted get double quotes.  "databases=( ... )"
# replaces the database list; "key=-" leaves a setting out (its default).
shoal_config() {
	local -A c=(
		[listen_addr]=127.0.0.1 [listen_port]=$SHOAL_PORT [unix_socket_dir]=$TMPD
		[workers]=4 [pool_mode]=transaction [max_client_conn]=1000
		[default_pool_size]=2 [reserve_pool_size]=0 [query_wait_timeout]=120.0
		[client_login_timeout]=5.0 [server_login_retry]=1.0 [logfile]=''
		[databases]="( { name = \"*\"; host = \"$TMPD\"; port = $PGPORT; } )"
	)
	local order="listen_addr listen_port unix_socket_dir workers pool_mode max_client_conn
		default_pool_size reserve_pool_size query_wait_timeout client_login_timeout
		server_login_retry logfile"
	local kv k v
	for kv in "$@"; do
		k=${kv%%=*}
		v=${kv#*=}
		[ -n "${c[$k]+x}" ] || order="$order $k"
		c[$k]=$v
	done
	for k in $order; do
		v=${c[$k]}
		[ "$v" = - ] && continue # key=- leaves the setting at its default
		case $v in
		true | false | \"* | \(*) ;;
		*) [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || v="\"$v\"" ;;
		esac
		printf '%s = %s;\n' "$k" "$v"
	done
	printf 'databases = %s;\n' "${c[databases]}"
}

# shoal_start CONFIG_TEXT: write it, start pgshoal in the background, wait
# until a psql through it works (SHOAL_PROBE_DB=postgres; "" = only wait for
# the TCP port).  Sets SHOAL_PID, SHOAL_CONF, SHOAL_LOG.
shoal_start() {
	local n=0 probe=${SHOAL_PROBE_DB-postgres}
	[ -x "$B/pgshoal" ] || die "no $B/pgshoal (run make)"
	SHOAL_CONF=$TMPD/pgshoal.conf
	SHOAL_LOG=$TMPD/pgshoal.log
	printf '%s\n' "$1" >"$SHOAL_CONF"
	echo "---- start $(date +%T.%N) ${CURRENT_TEST:-}" >>"$SHOAL_LOG"
	"$B/pgshoal" ${SHOAL_FLAGS:-} "$SHOAL_CONF" >>"$SHOAL_LOG" 2>&1 &
	SHOAL_PID=$!
	track_pid "$SHOAL_PID"
	while :; do
		kill -0 "$SHOAL_PID" 2>/dev/null || {
			echo "pgshoal exited at start; log:" >&2
			tail -20 "$SHOAL_LOG" >&2
			return 1
		}
		if [ -n "$probe" ]; then
			psql -X -q -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d "$probe" \
				-c 'select 1' >/dev/null 2>&1 && break
		else
			port_free "$SHOAL_PORT" || break
		fi
		n=$((n + 1))
		[ $n -lt 100 ] || {
			echo "pgshoal not reachable after 10 s; log:" >&2
			tail -20 "$SHOAL_LOG" >&2
			return 1
		}
		sleep 0.1
	done
	# the probe may have reached someone else's listener on that port
	sleep 0.1
	kill -0 "$SHOAL_PID" 2>/dev/null || {
		echo "pgshoal exited at start; log:" >&2
		tail -20 "$SHOAL_LOG" >&2
		return 1
	}
}

shoal_stop() {
	[ -n "$SHOAL_PID" ] || return 0
	local n=0
	kill -TERM "$SHOAL_PID" 2>/dev/null
	while kill -0 "$SHOAL_PID" 2>/dev/null && [ $n -lt 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	kill -0 "$SHOAL_PID" 2>/dev/null && {
		echo "pgshoal did not stop on SIGTERM in 5 s; killing" >&2
		kill_tree "$SHOAL_PID"
	}
	wait "$SHOAL_PID" 2>/dev/null || true
	SHOAL_PID=
}

shoal_workers() { pgrep -P "$SHOAL_PID" | sort -n || true; }

# psql through pgshoal as $DBUSER; extra args follow
shoal_psql() {
	psql -X -q -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -v ON_ERROR_STOP=1 "$@"
}

# steady_client N SECS OUT: one psql session through pgshoal (database
# postgres) running "select 'q' || inet_server_addr()" N times, SECS apart,
# output to OUT; run it in the background and wait for it
steady_client() {
	local i
	for i in $(seq 1 "$1"); do
		echo "select 'q' || inet_server_addr();"
		sleep "$2"
	done | shoal_psql -d postgres >"$3" 2>&1
}

# max RSS in kB over pgshoal's processes right now
shoal_rss_kb() {
	local pids
	pids=$(echo "$SHOAL_PID" $(pgrep -P "$SHOAL_PID") | tr ' ' ',')
	ps -o rss= -p "$pids" 2>/dev/null | sort -n | tail -1
}

# ------------------------------------------------------------------ runner

# in a test: fail MESSAGE — print it and fail the test
fail() {
	echo "FAIL: $*"
	exit 1
}

# expect_contains TEXT NEEDLE WHAT
expect_contains() {
	case $1 in
	*"$2"*) ;;
	*) fail "$3: expected '$2' in: $1" ;;
	esac
}

want_test() {
	[ -z "${TESTS:-}" ] && return 0
	case " $TESTS " in *" $1 "* | *" ${1#test_} "*) return 0 ;; esac
	return 1
}

# run_test NAME: run function NAME in a subshell with set -e and a deadline;
# pgshoal instances it started are stopped afterwards.
run_test() {
	local name=$1 rc pid wd t0
	want_test "$name" || return 0
	t0=$(now_ms)
	: >"$TMPD/pids.before"
	cp "$TMPD/pids" "$TMPD/pids.before"
	(
		CURRENT_TEST=$name
		trap 'rc=$?; set +e; shoal_stop >/dev/null 2>&1; exit $rc' EXIT
		set -eE -o pipefail
		"$name"
	) >"$TMPD/$name.out" 2>&1 &
	pid=$!
	(
		sleep "$TEST_TIMEOUT" >/dev/null 2>&1 </dev/null
		echo "FAIL: timed out after ${TEST_TIMEOUT}s" >>"$TMPD/$name.out"
		pkill -TERM -P "$pid" 2>/dev/null
		kill -TERM "$pid" 2>/dev/null
	) &
	wd=$!
	wait "$pid"
	rc=$?
	kill_tree "$wd" # its sleep too: it holds our stdout open
	wait "$wd" 2>/dev/null
	# stop whatever the test started and left behind
	local p
	for p in $(comm -13 <(sort "$TMPD/pids.before") <(sort "$TMPD/pids")); do
		kill -0 "$p" 2>/dev/null && kill_tree "$p"
	done
	# a sanitizer build reports into pgshoal's log, and pgshoal's own
	# consistency checks log "BUG:": any such line fails the test
	if [ $rc -eq 0 ] && [ -f "$TMPD/pgshoal.log" ] &&
		grep -qE "runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)| BUG: " "$TMPD/pgshoal.log"; then
		grep -E -A12 "runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)| BUG: " "$TMPD/pgshoal.log" |
			head -40 >>"$TMPD/$name.out"
		echo "FAIL: sanitizer report or BUG line in pgshoal.log" >>"$TMPD/$name.out"
		rc=1
	fi
	if [ $rc -eq 0 ]; then
		T_PASS=$((T_PASS + 1))
		echo "ok - $name ($(($(now_ms) - t0)) ms)"
		[ -n "${VERBOSE:-}" ] && sed 's/^/#   /' "$TMPD/$name.out"
	else
		T_FAIL=$((T_FAIL + 1))
		T_FAILED_NAMES="$T_FAILED_NAMES $name"
		echo "not ok - $name (rc $rc, $(($(now_ms) - t0)) ms)"
		tail -n 40 "$TMPD/$name.out" | sed 's/^/#   /'
		if [ -f "$TMPD/pgshoal.log" ]; then
			echo "#   --- pgshoal.log (last 15 lines)"
			tail -n 15 "$TMPD/pgshoal.log" | sed 's/^/#   /'
		fi
	fi
	# keep one pgshoal log per test
	[ -f "$TMPD/pgshoal.log" ] && mv "$TMPD/pgshoal.log" "$TMPD/$name.pgshoal.log"
	return 0
}

finish() {
	[ $T_FAIL -eq 0 ] || echo "# failed:$T_FAILED_NAMES"
	echo "$T_PASS passed, $T_FAIL failed"
	[ $T_FAIL -eq 0 ]
	exit $?
}
