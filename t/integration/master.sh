#!/bin/bash
# t/integration/master.sh — the master's duties against a real PostgreSQL:
# graceful reload (limits, new/removed databases, recycling, bad files),
# DNS re-resolution followed without a restart (private mount namespace with
# its own /etc/hosts), shutdown signals, the master's and a worker's death,
# daemon mode with its pidfile, and the LSB init script.
#
#   B=build bash t/integration/master.sh       all tests
#   TESTS="reload_bad_config" bash ...          a subset

cd "$(dirname "$0")/../.." || exit 2
. t/integration/lib.sh
shopt -s inherit_errexit

[ -x "$B/pgshoal" ] || die "missing $B/pgshoal (make)"
lib_init
pg_start
pgbench -i -q -s 1 -h 127.0.0.1 -p "$PGPORT" -U postgres postgres >/dev/null 2>&1 || die "pgbench -i failed"
say "postgres on $PGPORT, pgshoal on $SHOAL_PORT, logs in $TMPD"

# alive PID: running (a zombie nobody reaped yet counts as gone: a daemon's
# parent is whatever reaper the container has)
alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $st in Z*) return 1 ;; esac
	return 0
}

# worker_pid N: pid of worker N of our pgshoal (never another instance's)
worker_pid() {
	local p
	for p in $(pgrep -P "$SHOAL_PID"); do
		case $(ps -o args= -p "$p") in "pgshoal: worker $1"*) echo "$p" && return 0 ;; esac
	done
	return 0
}

reload() {
	kill -HUP "$SHOAL_PID"
	sleep 0.5
}

# max server connections seen while pgbench runs (sampled every 100 ms)
load_peak() {
	local secs=$1 peak=0 n
	shift
	pgbench -n -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -T "$secs" "$@" postgres \
		>"$TMPD/pgbench.out" 2>&1 &
	local pb=$!
	while kill -0 $pb 2>/dev/null; do
		n=$(pg_server_conns)
		[ "$n" -gt "$peak" ] && peak=$n
		sleep 0.1
	done
	wait $pb || {
		cat "$TMPD/pgbench.out"
		fail "pgbench failed"
	}
	grep -q "number of failed transactions: 0 " "$TMPD/pgbench.out" || {
		cat "$TMPD/pgbench.out"
		fail "pgbench reports failed transactions"
	}
	echo "$peak"
}

test_reload_pool_size() {
	shoal_start "$(shoal_config workers=2 default_pool_size=2 log_connections=false)"
	local peak
	peak=$(load_peak 2 -S -c 12 -j 2)
	echo "pool 2: peak $peak server connections"
	[ "$peak" -le 2 ] || fail "peak $peak > 2"
	sed -i 's/^default_pool_size = 2;/default_pool_size = 5;/' "$SHOAL_CONF"
	reload
	peak=$(load_peak 3 -c 12 -j 2)
	echo "pool 5 after reload: peak $peak server connections"
	[ "$peak" -le 5 ] || fail "peak $peak > 5"
	[ "$peak" -ge 3 ] || fail "the pool did not grow after the reload (peak $peak)"
	grep -q "configuration reloaded" "$SHOAL_LOG" || fail "no reload line in the log"
}

# workers changes by reload: more are forked at once; extra ones stop
# accepting, serve their clients to the end, then exit (not respawned).
test_reload_workers() {
	shoal_start "$(shoal_config workers=1 max_workers=3 default_pool_size=12)"
	[ "$(shoal_workers | wc -l)" -eq 1 ] || fail "not 1 worker at start"
	sed -i 's/^workers = 1;/workers = 3;/' "$SHOAL_CONF"
	reload
	[ "$(shoal_workers | wc -l)" -eq 3 ] || fail "not 3 workers after the reload: $(shoal_workers | wc -l)"
	# 12 clients in 3 s transactions, spread over the 3 workers (SO_REUSEPORT)
	local i n pids="" logins
	logins=$(grep -c "login attempt" "$SHOAL_LOG")
	for i in $(seq 12); do
		shoal_psql -d postgres -c "begin; select pg_sleep(3); select 'done $i'; commit" \
			>"$TMPD/hold.$i" 2>&1 &
		pids="$pids $!"
	done
	for n in $(seq 100); do # all in (a busy machine starts psql slowly)
		[ "$(grep -c "login attempt" "$SHOAL_LOG")" -ge $((logins + 12)) ] && break
		sleep 0.1
	done
	sed -i 's/^workers = 3;/workers = 1;/' "$SHOAL_CONF"
	reload
	grep -q "worker [12]: draining" "$SHOAL_LOG" || fail "no worker drained"
	[ "$(shoal_psql -d postgres -c "select 'new client'")" = "new client" ] ||
		fail "a new client was not served while workers drain"
	for i in $pids; do wait "$i" || true; done
	for i in $(seq 12); do
		grep -q "^done $i\$" "$TMPD/hold.$i" || fail "client $i did not finish: $(cat "$TMPD/hold.$i")"
	done
	sleep 1
	[ "$(shoal_workers | wc -l)" -eq 1 ] || fail "drained workers still running: $(shoal_workers | wc -l)"
	# each drained worker left after its last client, not before
	local w last gone served=0
	for w in 1 2; do
		last=$(grep "worker $w LOG: C-.*closing because" "$SHOAL_LOG" | tail -1 | cut -d' ' -f2 || true)
		gone=$(grep -m1 "master LOG: worker $w exited with code 0" "$SHOAL_LOG" | cut -d' ' -f2 || true)
		[ -n "$gone" ] || fail "no clean exit of worker $w"
		[ -z "$last" ] && continue
		served=$((served + 1))
		[[ ! "$gone" < "$last" ]] || fail "worker $w exited at $gone, before its last client left at $last"
	done
	[ $served -gt 0 ] || fail "no client landed on the drained workers"
	for i in $(seq 20); do
		shoal_psql -d postgres -c "select 1" >/dev/null || fail "connection $i after draining failed"
	done
	# past the room made at start (max_workers): capped, with a line
	sed -i 's/^workers = 1;/workers = 5;/' "$SHOAL_CONF"
	reload
	grep -q 'setting "max_workers" changed: it needs a restart' "$SHOAL_LOG" || fail "no restart line"
	grep -q "workers = 5 exceeds the 3 shared memory was sized for" "$SHOAL_LOG" || fail "no cap line"
	[ "$(shoal_workers | wc -l)" -eq 3 ] || fail "not capped at 3 workers: $(shoal_workers | wc -l)"
}

test_reload_bad_config() {
	shoal_start "$(shoal_config workers=2)"
	printf 'no_such_setting = 1;\n' >>"$SHOAL_CONF"
	reload
	grep -q "pgshoal.conf:[0-9]*: unknown setting \"no_such_setting\"" "$SHOAL_LOG" ||
		fail "no file:line error in the log"
	grep -q "configuration not reloaded" "$SHOAL_LOG" || fail "no 'not reloaded' line"
	[ "$(shoal_psql -d postgres -c "select 'still serving'")" = "still serving" ] ||
		fail "not serving after a bad reload"
	# restart-only settings keep their old value, with a log line
	sed -i '$d' "$SHOAL_CONF"
	sed -i 's/^max_client_conn = 1000;/max_client_conn = 7;/' "$SHOAL_CONF"
	reload
	grep -q 'setting "max_client_conn" changed: it needs a restart' "$SHOAL_LOG" ||
		fail "no restart-needed line"
}

dbs_with_extra() {
	echo "( { name = \"postgres\"; host = \"$TMPD\"; port = $PGPORT; }${1:+, $1} )"
}

test_reload_databases() {
	shoal_start "$(shoal_config workers=2 "databases=$(dbs_with_extra)")"
	local out rc=0
	out=$(shoal_psql -d extra -c "select 1" 2>&1) || rc=$?
	expect_contains "$out" 'database "extra" does not exist' "before the reload"
	local extra="{ name = \"extra\"; host = \"127.0.0.1\"; port = $PGPORT; dbname = \"postgres\"; }"
	sed -i "s|^databases = .*|databases = $(dbs_with_extra "$extra");|" "$SHOAL_CONF"
	reload
	out=$(shoal_psql -d extra -c "select 'extra ok'")
	expect_contains "$out" "extra ok" "new database after the reload"
	# a client of "extra" inside a transaction while "extra" is removed
	{
		echo "begin;"
		echo "select 'in transaction';"
		sleep 2
		echo "select 'still in transaction';"
		echo "commit;"
	} | shoal_psql -d extra >"$TMPD/extra.out" 2>&1 &
	local bg=$!
	sleep 0.7
	sed -i "s|^databases = .*|databases = $(dbs_with_extra);|" "$SHOAL_CONF"
	reload
	rc=0
	out=$(shoal_psql -d extra -c "select 1" 2>&1) || rc=$?
	echo "new client of the removed database: rc=$rc $out"
	expect_contains "$out" 'database "extra" does not exist' "after removal"
	wait $bg || fail "the client in a transaction failed: $(cat "$TMPD/extra.out")"
	expect_contains "$(cat "$TMPD/extra.out")" "still in transaction" "client in a transaction"
}

test_reload_recycles_servers() {
	shoal_start "$(shoal_config workers=2 default_pool_size=1 "databases=( { name = \"*\"; \
		host = \"$TMPD\"; port = $PGPORT; } )")"
	local before after out
	before=$(shoal_psql -d postgres -c "select pg_backend_pid()")
	# a transaction open across the reload finishes on its server
	{
		echo "begin;"
		echo "select 'b:' || pg_backend_pid();"
		sleep 1.5
		echo "select 'a:' || pg_backend_pid();"
		echo "commit;"
	} | shoal_psql -d postgres >"$TMPD/tx.out" 2>&1 &
	local bg=$!
	sleep 0.5
	sed -i "s|host = \"$TMPD\"|host = \"127.0.0.1\"|" "$SHOAL_CONF"
	reload
	wait $bg || fail "the transaction across the reload failed: $(cat "$TMPD/tx.out")"
	out=$(cat "$TMPD/tx.out")
	echo "$out"
	[ "$(echo "$out" | sed -n 's/^b://p')" = "$(echo "$out" | sed -n 's/^a://p')" ] ||
		fail "the transaction changed server"
	sleep 1.2 # janitor tick
	after=$(shoal_psql -d postgres -c "select pg_backend_pid()")
	out=$(shoal_psql -d postgres -c "select client_addr from pg_stat_activity where pid = pg_backend_pid()")
	echo "server before $before, after $after (client_addr '$out')"
	[ "$before" != "$after" ] || fail "the server connection was not recycled"
	[ "$out" = 127.0.0.1 ] || fail "the new connection does not use the new host"
	[ "$(pg_server_conns)" -le 1 ] || fail "more than pool_size server connections"
}

# DNS: pgshoal in a private mount namespace whose /etc/hosts we rewrite.
test_dns_follow() {
	unshare -m true 2>/dev/null || {
		echo "SKIP: mount namespaces are not permitted here"
		return 0
	}
	as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -w restart -m fast -o "-c listen_addresses=127.0.0.1,127.0.0.2,127.0.0.3 \
-c port=$PGPORT -c unix_socket_directories=$TMPD -c max_connections=300 -c fsync=off" >/dev/null
	local hosts=$TMPD/hosts conf=$TMPD/dns.conf
	printf '127.0.0.1 localhost\n127.0.0.2 db.lab\n' >"$hosts"
	shoal_config workers=2 default_pool_size=2 dns_max_ttl=1 log_connections=false \
		"databases=( { name = \"*\"; host = \"db.lab\"; port = $PGPORT; } )" >"$conf"
	SHOAL_CONF=$conf
	SHOAL_LOG=$TMPD/pgshoal.log
	unshare -m sh -c "mount --bind '$hosts' /etc/hosts && exec '$B/pgshoal' '$conf'" >>"$SHOAL_LOG" 2>&1 &
	SHOAL_PID=$!
	track_pid $SHOAL_PID
	local n=0 addr
	until addr=$(shoal_psql -d postgres -c "select inet_server_addr()" 2>/dev/null); do
		n=$((n + 1))
		[ $n -lt 50 ] || fail "pgshoal did not come up"
		sleep 0.1
	done
	echo "before the flip: $addr"
	[ "$addr" = 127.0.0.2 ] || fail "expected 127.0.0.2"
	# a client that stays connected through the flip, one query every 100 ms
	steady_client 60 0.1 "$TMPD/steady.out" &
	local steady=$!
	sleep 0.5
	local t0
	t0=$(now_ms)
	printf '127.0.0.1 localhost\n127.0.0.3 db.lab\n' >"$hosts" # same inode: the bind mount sees it
	while :; do
		addr=$(shoal_psql -d postgres -c "select inet_server_addr()")
		[ "$addr" = 127.0.0.3 ] && break
		[ $(($(now_ms) - t0)) -lt 10000 ] || fail "still on $addr 10 s after the flip"
		sleep 0.1
	done
	echo "followed the flip in $(($(now_ms) - t0)) ms"
	wait $steady || fail "the steady client failed: $(tail -3 "$TMPD/steady.out")"
	grep -q 'q127.0.0.3' "$TMPD/steady.out" || fail "the steady client never reached the new address"
	grep -q 'host "db.lab": 127.0.0.2 -> 127.0.0.3' "$SHOAL_LOG" || fail "no DNS change line in the log"
	sleep 1.5
	n=$(pg_sql "select count(*) from pg_stat_activity where usename = '$DBUSER' and client_addr = '127.0.0.2'")
	[ "$n" = 0 ] || fail "$n connections to the old address remain"
}

test_sigint_closes_idle_clients() {
	shoal_start "$(shoal_config workers=2)"
	{
		echo "select 'connected';"
		sleep 1.5
		echo "select 'after shutdown';"
	} | shoal_psql -d postgres >"$TMPD/idle.out" 2>&1 &
	local bg=$! t0
	sleep 0.5
	t0=$(now_ms)
	kill -INT "$SHOAL_PID"
	wait "$SHOAL_PID" 2>/dev/null || true
	echo "pgshoal exited $(($(now_ms) - t0)) ms after SIGINT"
	[ $(($(now_ms) - t0)) -lt 3000 ] || fail "SIGINT shutdown took too long"
	SHOAL_PID=
	wait $bg || true
	cat "$TMPD/idle.out"
	case $(cat "$TMPD/idle.out") in
	*"after shutdown"*) fail "the idle client was still served after SIGINT" ;;
	*"pgshoal shutdown"* | *"closed the connection"*) ;;
	*) fail "the idle client saw no disconnection" ;;
	esac
}

test_sigterm_waits_for_clients() {
	shoal_start "$(shoal_config workers=2 shutdown_wait_timeout=3)"
	{
		echo "select 'connected';"
		sleep 1.5
		echo "select 'still served';"
	} | shoal_psql -d postgres >"$TMPD/term.out" 2>&1 &
	local bg=$! t0 rc=0
	sleep 0.5
	t0=$(now_ms)
	kill -TERM "$SHOAL_PID"
	sleep 0.3
	psql -X -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d postgres -c "select 1" >/dev/null 2>&1 && rc=1
	[ $rc -eq 0 ] || fail "a new client was accepted after SIGTERM"
	wait $bg || fail "the connected client failed: $(cat "$TMPD/term.out")"
	expect_contains "$(cat "$TMPD/term.out")" "still served" "client kept after SIGTERM"
	wait "$SHOAL_PID" 2>/dev/null || true
	SHOAL_PID=
	echo "exited $(($(now_ms) - t0)) ms after SIGTERM, once its client left"
}

test_master_killed() {
	shoal_start "$(shoal_config workers=2 default_pool_size=2)"
	pgbench -n -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -S -c 4 -T 3 postgres >/dev/null 2>&1 &
	local pb=$! workers n=0
	sleep 1
	workers=$(shoal_workers)
	kill -KILL "$SHOAL_PID"
	SHOAL_PID=
	wait $pb || true
	while [ -n "$(ps -o pid= -p "$(echo $workers | tr ' ' ,)" 2>/dev/null)" ]; do
		n=$((n + 1))
		[ $n -lt 100 ] || fail "workers still alive 10 s after the master died"
		sleep 0.1
	done
	echo "workers gone $((n * 100)) ms after the master"
	n=0
	until [ "$(pg_server_conns)" = 0 ]; do
		n=$((n + 1))
		[ $n -lt 50 ] || fail "$(pg_server_conns) orphan server connections"
		sleep 0.1
	done
}

test_crash_loop_backoff() {
	shoal_start "$(shoal_config workers=2)"
	local i w spawns t0
	t0=$(date +%s)
	for i in $(seq 1 8); do
		w=$(worker_pid 1)
		[ -n "$w" ] && kill -KILL "$w"
		sleep 0.2
	done
	spawns=$(grep -c "worker 1 started" "$SHOAL_LOG")
	echo "8 kills in ~1.6 s: worker 1 started $spawns times"
	[ "$spawns" -le 7 ] || fail "no backoff: $spawns spawns"
	# it comes back once the crashes stop
	sleep 7
	[ -n "$(worker_pid 1)" ] || fail "worker 1 not respawned after the crash loop"
	[ "$(shoal_psql -d postgres -c "select 'ok'")" = ok ] || fail "not serving after the crash loop"
}

test_daemon_pidfile() {
	local conf=$TMPD/d.conf pid
	shoal_config workers=2 logfile="$TMPD/d.log" pidfile="$TMPD/d.pid" >"$conf"
	"$B/pgshoal" -d "$conf" || fail "pgshoal -d failed"
	sleep 0.5
	pid=$(cat "$TMPD/d.pid")
	track_pid "$pid"
	[ "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')" ] ||
		fail "the daemon did not leave the caller's session"
	[ "$(ps -o tty= -p "$pid" | tr -d ' ')" = "?" ] || fail "the daemon has a controlling terminal"
	[ "$(shoal_psql -d postgres -c "select 'daemon ok'")" = "daemon ok" ] || fail "daemon not serving"
	local rc=0
	"$B/pgshoal" "$conf" >"$TMPD/second.out" 2>&1 || rc=$?
	[ $rc -ne 0 ] || fail "a second pgshoal started on the same pidfile"
	expect_contains "$(cat "$TMPD/second.out")" "already running" "second start"
	kill -INT "$pid"
	for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
	! alive "$pid" || fail "daemon did not stop"
	[ ! -e "$TMPD/d.pid" ] || fail "pidfile left behind"
}

test_init_script() {
	local conf=$TMPD/i.conf defaults=$TMPD/defaults out pid
	shoal_config workers=2 logfile="$TMPD/i.log" pidfile="$TMPD/i.pid" >"$conf"
	printf 'DAEMON=%s\nCONF=%s\nPIDFILE=%s\n' "$B/pgshoal" "$conf" "$TMPD/i.pid" >"$defaults"
	export PGSHOAL_DEFAULTS=$defaults
	sh etc/pgshoal.init start || fail "init start failed"
	pid=$(cat "$TMPD/i.pid")
	track_pid "$pid"
	out=$(sh etc/pgshoal.init status) || fail "status says not running: $out"
	expect_contains "$out" "running (pid $pid)" "status"
	[ "$(pgrep -P "$pid" | wc -l)" = 2 ] || fail "expected 2 workers under the master"
	expect_contains "$(ps -o args= -p "$pid")" "pgshoal: master" "process title"
	[ "$(shoal_psql -d postgres -c "select 'init ok'")" = "init ok" ] || fail "not serving"
	sh etc/pgshoal.init reload || fail "init reload failed"
	sleep 0.3
	grep -q "configuration reloaded" "$TMPD/i.log" || fail "reload not logged"
	printf 'broken = ;\n' >>"$conf"
	rc=0
	out=$(sh etc/pgshoal.init reload 2>&1) || rc=$?
	[ $rc -ne 0 ] || fail "reload with a broken config succeeded"
	expect_contains "$out" "i.conf:" "reload refuses a broken config"
	sed -i '$d' "$conf"
	sh etc/pgshoal.init stop || fail "init stop failed"
	rc=0
	sh etc/pgshoal.init status >/dev/null || rc=$?
	[ $rc -eq 3 ] || fail "status after stop: rc $rc, want 3"
	! alive "$pid" || fail "master still running after stop"
}

# A primary (127.0.0.2) and its streaming standby (127.0.0.3), both on the
# same port; pgshoal lists both with target_session_attrs = read-write. The
# primary stops, the standby is promoted: writes must come back through
# pgshoal with no restart, and only transactions in flight may fail.
test_failover_promote() {
	local sb=$TMPD/standby sbsock=$TMPD/sbsock
	mkdir -p "$sbsock" && chown "$TEST_USER" "$sbsock" 2>/dev/null || true
	as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -w restart -m fast -o "-c listen_addresses=127.0.0.1,127.0.0.2 \
-c port=$PGPORT -c unix_socket_directories=$TMPD -c max_connections=300 -c fsync=off" >/dev/null
	as_user "$PGBIN/pg_basebackup" -h "$TMPD" -p "$PGPORT" -U postgres -D "$sb" -R -X stream >/dev/null 2>&1 ||
		fail "pg_basebackup failed"
	as_user "$PGBIN/pg_ctl" -D "$sb" -l "$TMPD/standby.log" -w start -o "-c listen_addresses=127.0.0.3 \
-c port=$PGPORT -c unix_socket_directories=$sbsock -c max_connections=300 -c fsync=off" >/dev/null ||
		fail "standby did not start"
	track_pid "$(head -1 "$sb/postmaster.pid")"
	pg_sql "create table if not exists fo (id serial, t timestamptz default now())" >/dev/null
	shoal_start "$(shoal_config workers=2 default_pool_size=20 server_check_period=1 server_login_retry=0.2 \
		log_connections=false log_disconnections=false \
		"databases=( { name = \"*\"; host = \"127.0.0.2,127.0.0.3\"; port = $PGPORT; \
		target_session_attrs = \"read-write\"; } )")"
	[ "$(shoal_psql -d postgres -c "select inet_server_addr()")" = 127.0.0.2 ] || fail "not on the primary"
	timeout 40 pgbench -n -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -c 100 -j 4 -T 8 postgres >"$TMPD/fo.pgbench" 2>&1 &
	local pb=$!
	# a writer that records each insert's outcome every 50 ms
	(
		while [ ! -e "$TMPD/fo.stop" ]; do
			if timeout 20 psql -X -q -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d postgres \
				-c "insert into fo default values" >/dev/null 2>&1; then
				echo "$(now_ms) ok"
			else
				echo "$(now_ms) err"
			fi
			sleep 0.05
		done
	) >"$TMPD/fo.writes" &
	local wr=$! t_stop t_promote first_ok
	sleep 2
	t_stop=$(now_ms)
	as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -w stop -m immediate >/dev/null # the primary dies
	sleep 0.5
	t_promote=$(now_ms)
	as_user "$PGBIN/pg_ctl" -D "$sb" -w promote >/dev/null || fail "promote failed"
	sleep 4
	touch "$TMPD/fo.stop"
	wait $wr || true
	local rc=0
	wait $pb || rc=$?
	[ $rc -ne 124 ] || fail "pgbench did not finish (a client stuck): $(tail -3 "$TMPD/fo.pgbench")"
	first_ok=$(awk -v t="$t_promote" '$1 > t && $2 == "ok" { print $1; exit }' "$TMPD/fo.writes")
	[ -n "$first_ok" ] || fail "no write succeeded after the promotion"
	echo "writes: $(grep -c ok "$TMPD/fo.writes") ok, $(grep -c err "$TMPD/fo.writes") failed"
	echo "primary stopped; promoted $((t_promote - t_stop)) ms later; writes succeed again $((first_ok - t_promote)) ms after the promotion"
	echo "pgbench (100 clients): $(grep -cE 'client [0-9]+ .*aborted' "$TMPD/fo.pgbench") clients aborted by failed in-flight transactions; $(grep 'processed' "$TMPD/fo.pgbench")"
	[ "$(shoal_psql -d postgres -c "select inet_server_addr()")" = 127.0.0.3 ] || fail "not on the new primary"
	grep -q 'now using host 127.0.0.3' "$SHOAL_LOG" || fail "no switch line in the log"
	[ $((first_ok - t_promote)) -lt 5000 ] || fail "writes took more than 5 s to come back"
	as_user "$PGBIN/pg_ctl" -D "$sb" -w stop -m immediate >/dev/null
	as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -w start -l "$TMPD/postgres.log" -o "-c listen_addresses=127.0.0.1 \
-c port=$PGPORT -c unix_socket_directories=$TMPD -c max_connections=300 -c fsync=off" >/dev/null
}

# A backend killed right after its last ReadyForQuery: the worker reads the
# ReadyForQuery and the FATAL in one read (held here with SIGSTOP), then EOF.
# The next connection on that slot (pool of 1, one worker) must serve two
# clients one after the other, not release itself after the first request
# (the old failover stall: the second client's BEGIN landed in the first
# one's transaction and the first never got its reply).
test_server_dies_after_ready() {
	shoal_start "$(shoal_config workers=1 default_pool_size=1)"
	local w pid n out_b out_c round
	w=$(shoal_workers)
	shoal_psql -d postgres -c "select pg_sleep(1)" >"$TMPD/a.out" 2>&1 &
	local a=$!
	sleep 0.3
	kill -STOP "$w"
	for n in $(seq 50); do # the backend has sent its ReadyForQuery
		[ "$(pg_sql "select state from pg_stat_activity where usename = '$DBUSER'")" = idle ] && break
		sleep 0.1
	done
	pid=$(pg_sql "select pid from pg_stat_activity where usename = '$DBUSER'")
	pg_sql "select pg_terminate_backend($pid)" >/dev/null
	sleep 0.3
	kill -CONT "$w"
	wait $a || true
	for round in 1 2 3; do
		timeout 10 psql -X -q -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d postgres \
			-c "begin" -c "select 'B', pg_sleep(0.3)" -c "commit" >"$TMPD/b.out" 2>&1 &
		local b=$!
		sleep 0.05
		out_c=$(timeout 10 psql -X -q -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d postgres \
			-c "begin" -c "select 'C'" -c "commit" 2>&1) || fail "round $round: client C failed: $out_c"
		wait $b || fail "round $round: client B failed or hung: $(cat "$TMPD/b.out")"
		out_b=$(cat "$TMPD/b.out")
		expect_contains "$out_b" "B|" "round $round: B's own reply"
		[ "$out_c" = C ] || fail "round $round: C got '$out_c'"
		case $out_b$out_c in *"already a transaction"* | *"arrived from server"*) fail "round $round: mixed replies" ;; esac
	done
}

test_sigusr_pause_resume() {
	shoal_start "$(shoal_config workers=2)"
	kill -USR1 "$SHOAL_PID"
	sleep 0.3
	shoal_psql -d postgres -c "select 'ran'" >"$TMPD/paused.out" 2>&1 &
	local bg=$!
	sleep 1
	[ ! -s "$TMPD/paused.out" ] || fail "a query ran while paused: $(cat "$TMPD/paused.out")"
	kill -USR2 "$SHOAL_PID"
	wait $bg || fail "the paused query failed: $(cat "$TMPD/paused.out")"
	expect_contains "$(cat "$TMPD/paused.out")" "ran" "after SIGUSR2"
}

run_test test_reload_pool_size
run_test test_reload_bad_config
run_test test_reload_workers
run_test test_reload_databases
run_test test_reload_recycles_servers
run_test test_sigint_closes_idle_clients
run_test test_sigterm_waits_for_clients
run_test test_master_killed
run_test test_crash_loop_backoff
run_test test_daemon_pidfile
run_test test_init_script
run_test test_dns_follow
run_test test_failover_promote
run_test test_server_dies_after_ready
run_test test_sigusr_pause_resume
finish
