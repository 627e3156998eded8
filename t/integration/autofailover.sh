#!/bin/bash
# t/integration/autofailover.sh — following pg_auto_failover's monitor
# (monitor_conninfo, master/monitor.c).
#
#  - test_monitor_notify, test_monitor_lost: the LISTEN path at unit level,
#    without pg_auto_failover: the test's PostgreSQL listens on 127.0.0.1-3
#    and also plays the monitor (a database pg_auto_failover with a
#    pgautofailover.node table and hand-made NOTIFY state payloads). The
#    entry lists 127.0.0.2 and 127.0.0.3, both that one server, so which one
#    pgshoal uses shows in inet_server_addr(): a notification switches it,
#    the loss of the monitor falls back to probing, a reload closes it.
#  - test_autofailover_switchover: a real pg_auto_failover formation (Debian's
#    postgresql-15-auto-failover: monitor on 127.0.0.1, nodes n1 on 127.0.0.2
#    and n2 on 127.0.0.3, same port), `pg_autoctl perform switchover` under
#    a pgbench load through pgshoal, once following the monitor and once
#    probing only; prints the figures. Skipped when pg_autoctl is missing;
#    PAF_TEST=0 skips it too.
#
#   B=build bash t/integration/autofailover.sh
#   TESTS="monitor_notify" VERBOSE=1 bash t/integration/autofailover.sh

cd "$(dirname "$0")/../.." || exit 2
. t/integration/lib.sh
shopt -s inherit_errexit

[ -x "$B/pgshoal" ] && [ -x "$B/t/writer" ] || die "missing $B/pgshoal or $B/t/writer (make)"
lib_init
trap 'rc=$?; paf_down >/dev/null 2>&1; (exit $rc); lib_cleanup' EXIT
pg_start
as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -w restart -m fast -o "-c listen_addresses=127.0.0.1,127.0.0.2,127.0.0.3 \
-c port=$PGPORT -c unix_socket_directories=$TMPD -c max_connections=300 -c fsync=off" >/dev/null ||
	die "restart on 127.0.0.1-3 failed"
say "postgres on $PGPORT (127.0.0.1-3), pgshoal on $SHOAL_PORT, logs in $TMPD"

# ------------------------------------------------------------ helpers

# log_ms LINE: the wall-clock time of a pgshoal log line, in ms
log_ms() { date -d "$(echo "$1" | cut -c1-23)" +%s%3N; }

# wait_log TEXT [MS] [NTH]: wait until the NTH (default 1) line of pgshoal's
# log holding TEXT appears; prints that line
wait_log() {
	local t0 line
	t0=$(now_ms)
	while :; do
		line=$(grep -F -- "$1" "$SHOAL_LOG" | sed -n "${3:-1}p" || true)
		[ -n "$line" ] && break
		[ $(($(now_ms) - t0)) -lt "${2:-5000}" ] || fail "no '$1' in the log after ${2:-5000} ms"
		sleep 0.02
	done
	echo "$line"
}

shoal_addr() { shoal_psql -d postgres -c "select inet_server_addr()"; }

# ------------------------------------------------ a PostgreSQL as the monitor

FAKE_CI="host=127.0.0.1 port=$PGPORT dbname=pg_auto_failover user=postgres"
fake_sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d pg_auto_failover -v ON_ERROR_STOP=1 -c "$1"; }

# fake_monitor PRIMARY_HOST: the node table, with PRIMARY_HOST's node primary
fake_monitor() {
	pg_sql "select 1 from pg_database where datname = 'pg_auto_failover'" | grep -q 1 ||
		pg_sql "create database pg_auto_failover" >/dev/null
	fake_sql "drop schema if exists pgautofailover cascade; create schema pgautofailover;
		create table pgautofailover.node (nodename text, nodehost text, nodeport int, reportedstate text,
			goalstate text, reporttime timestamptz default now());
		insert into pgautofailover.node values
			('n1', '127.0.0.2', $PGPORT, 'secondary', 'secondary'), ('n2', '127.0.0.3', $PGPORT, 'secondary', 'secondary');
		update pgautofailover.node set reportedstate = 'primary', goalstate = 'primary' where nodehost = '$1'"
}

# fake_notify NAME HOST PORT REPORTED GOAL: what the monitor does on a state
# change: update the node's row and NOTIFY state with its JSON, in one
# transaction; prints the server's clock (ms) at the notify
fake_notify() {
	fake_sql "with up as (update pgautofailover.node set nodename = '$1', reportedstate = '$4', goalstate = '$5',
			reporttime = now() where nodehost = '$2' and nodeport = $3 returning 1)
		insert into pgautofailover.node select '$1', '$2', $3, '$4', '$5', now() where not exists (select from up);
		select (extract(epoch from clock_timestamp()) * 1000)::bigint,
		pg_notify('state', '{\"type\": \"state\", \"formation\": \"default\", \"groupId\": 0, \"nodeId\": 7, \
\"name\": \"$1\", \"host\": \"$2\", \"port\": $3, \"reportedState\": \"$4\", \"goalState\": \"$5\", \"health\":\"good\"}')" |
		cut -d'|' -f1
}

monitor_config() { # [monitor_conninfo]
	shoal_config workers=2 default_pool_size=2 server_check_period=1 server_login_retry=0.2 \
		log_connections=false log_disconnections=false \
		"databases=( { name = \"*\"; host = \"127.0.0.2,127.0.0.3\"; port = $PGPORT; \
target_session_attrs = \"read-write\"; ${1:+monitor_conninfo = \"$1\";} } )"
}

# switch_ms T_NOTIFY NTH TEXT: ms from the notify to pgshoal's switch line
switch_ms() {
	local line
	line=$(wait_log "$3" 3000 "$2")
	echo $(($(log_ms "$line") - $1))
}

# A NOTIFY switches the entry's host within a tick; notifications that are
# not about our primary do not; the initial query counts; probing waits.
test_monitor_notify() {
	fake_monitor 127.0.0.3
	shoal_start "$(monitor_config "$FAKE_CI")"
	wait_log "following the pg_auto_failover monitor (LISTEN state); probing suspended" >/dev/null
	wait_log "monitor: node n2 (127.0.0.3:$PGPORT) reported primary: now using host 127.0.0.3" >/dev/null
	[ "$(shoal_addr)" = 127.0.0.3 ] || fail "the initial query did not pick 127.0.0.3"
	# a client connected throughout, one transaction every 50 ms
	steady_client 60 0.05 "$TMPD/steady.out" &
	local steady=$! t ms1 ms2 ms3
	t=$(fake_notify n1 127.0.0.2 "$PGPORT" wait_primary primary)
	ms1=$(switch_ms "$t" 1 "monitor: node n1 (127.0.0.2:$PGPORT) reported wait_primary: now using host 127.0.0.2")
	[ "$(shoal_addr)" = 127.0.0.2 ] || fail "not on 127.0.0.2 after the notification"
	# the old primary still reports primary while told to step down; a node
	# that is not ours; a standby: none of these moves the pool
	fake_notify n2 127.0.0.3 "$PGPORT" primary draining >/dev/null
	fake_notify n9 127.0.0.3 $((PGPORT + 1)) wait_primary primary >/dev/null
	fake_notify n2 127.0.0.3 "$PGPORT" secondary secondary >/dev/null
	fake_sql "select pg_notify('state', '{\"type\": \"state\", \"host\": broken')" >/dev/null
	sleep 0.3
	[ "$(shoal_addr)" = 127.0.0.2 ] || fail "a notification that is not a new primary moved the pool"
	wait_log "monitor: unreadable notification" 1000 >/dev/null
	t=$(fake_notify NODE2 127.0.0.3 "$PGPORT" primary primary)
	ms2=$(switch_ms "$t" 1 "monitor: node NODE2 (127.0.0.3:$PGPORT) reported primary: now using host 127.0.0.3")
	# probing is suspended: a probe would pick 127.0.0.2, the first read-write host
	sleep 2.5
	[ "$(shoal_addr)" = 127.0.0.3 ] || fail "a probe overrode the monitor"
	! grep -q "probe (target_session_attrs" "$SHOAL_LOG" || fail "probed while following the monitor"
	t=$(fake_notify n1 127.0.0.2 "$PGPORT" single single)
	ms3=$(switch_ms "$t" 1 "monitor: node n1 (127.0.0.2:$PGPORT) reported single: now using host 127.0.0.2")
	echo "notification to switch: $ms1 ms, $ms2 ms, $ms3 ms"
	wait $steady || fail "the steady client failed: $(tail -3 "$TMPD/steady.out")"
	grep -q q127.0.0.2 "$TMPD/steady.out" && grep -q q127.0.0.3 "$TMPD/steady.out" ||
		fail "the steady client did not follow the switches"
	# handled when the NOTIFY arrives (epoll), not on the next 100 ms tick
	[ "$ms1" -lt 50 ] && [ "$ms2" -lt 50 ] && [ "$ms3" -lt 50 ] || fail "a switch took 50 ms or more after its NOTIFY"
}

# The monitor goes away: logged once, probing takes over at once, the
# master reconnects with a backoff; a reload without monitor_conninfo closes
# the connection.
test_monitor_lost() {
	fake_monitor 127.0.0.3
	# a monitor host name: resolved by the master (getaddrinfo_a), not by libpq
	shoal_start "$(monitor_config "${FAKE_CI/host=127.0.0.1/host=localhost}")"
	wait_log "reported primary: now using host 127.0.0.3" >/dev/null
	local t line n
	pg_sql "alter database pg_auto_failover allow_connections false" >/dev/null
	t=$(now_ms)
	pg_sql "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pgshoal monitor'" \
		>/dev/null
	wait_log "monitor connection lost" 2000 >/dev/null
	line=$(wait_log "probe (target_session_attrs=read-write): now using host 127.0.0.2" 3000)
	echo "monitor lost: probing switched to 127.0.0.2 $(($(log_ms "$line") - t)) ms later"
	[ "$(shoal_addr)" = 127.0.0.2 ] || fail "probing did not take over"
	sleep 3.5 # reconnects fail at +1 s and +3 s: still one line
	n=$(grep -cE "monitor connection lost|could not connect to the monitor" "$SHOAL_LOG")
	[ "$n" = 1 ] || fail "the loss was logged $n times"
	pg_sql "alter database pg_auto_failover allow_connections true" >/dev/null
	wait_log "following the pg_auto_failover monitor" 10000 2 >/dev/null
	wait_log "reported primary: now using host 127.0.0.3" 2000 2 >/dev/null
	[ "$(shoal_addr)" = 127.0.0.3 ] || fail "not back on the monitor's primary"
	# reload without monitor_conninfo: the connection closes, probing resumes
	monitor_config >"$SHOAL_CONF"
	kill -HUP "$SHOAL_PID"
	wait_log "monitor_conninfo removed: closing the monitor connection" 2000 >/dev/null
	wait_log "probe (target_session_attrs=read-write): now using host 127.0.0.2" 3000 2 >/dev/null
	n=$(pg_sql "select count(*) from pg_stat_activity where application_name = 'pgshoal monitor'")
	[ "$n" = 0 ] || fail "$n monitor connections left after the reload"
}

# --------------------------------------------- a pg_auto_failover formation

PAF=$TMPD/paf
PAF_CLIENTS=${PAF_CLIENTS:-16} # pgbench clients during the switchovers (pool_size 20)
# paf CMD...: run as the test user with what pg_autoctl needs: its own HOME
# and XDG dirs, the PostgreSQL binaries first in PATH, the superuser name
paf() {
	as_user env HOME="$PAF" XDG_CONFIG_HOME="$PAF/cfg" XDG_DATA_HOME="$PAF/data" XDG_RUNTIME_DIR="$PAF/run" \
		PATH="$PGBIN:/usr/bin:/bin" PGUSER=postgres "$@"
}

# paf_node NAME ARGS...: `pg_autoctl create ... --run` in the background.
# Debian's postgres puts its socket in /var/run/postgresql, which the test
# user may not write: PG_REGRESS_SOCK_DIR (read by pg_autoctl, which then
# starts postgres with -k) gives each instance its own socket directory.
paf_node() {
	local name=$1
	shift
	paf env PG_REGRESS_SOCK_DIR="$PAF/sock-$name" PGHOST="$PAF/sock-$name" pg_autoctl create "$@" \
		--pgdata "$PAF/$name" --auth trust --no-ssl --run >"$PAF/$name.log" 2>&1 &
	track_pid $!
}

# initdb ourselves: a small shared_buffers (pg_autoctl would size it from
# the machine's memory) and no fsync; pg_autoctl adopts the directory
paf_initdb() {
	as_user "$PGBIN/initdb" -D "$PAF/$1" -A trust -U postgres --no-sync -E UTF8 >"$PAF/initdb-$1.log" 2>&1 ||
		fail "initdb $1 failed"
	printf "shared_buffers = '32MB'\nfsync = off\nmax_connections = 200\n" >>"$PAF/$1/postgresql.auto.conf"
}

paf_sql() { psql -X -q -At -h 127.0.0.1 -p "$MPORT" -U autoctl_node -d pg_auto_failover -c "$1"; }
paf_states() { paf_sql "select string_agg(nodename || ':' || reportedstate, ',' order by nodename) from pgautofailover.node" 2>/dev/null || true; }

# paf_wait STATES SECONDS: until the monitor reports exactly STATES
paf_wait() {
	local t0
	t0=$(now_ms)
	until [ "$(paf_states)" = "$1" ]; do
		[ $(($(now_ms) - t0)) -lt $(($2 * 1000)) ] || {
			tail -5 "$PAF"/*.log
			fail "formation not at '$1' after $2 s: '$(paf_states)'"
		}
		sleep 0.3
	done
}

paf_up() {
	local t0
	t0=$(now_ms)
	mkdir -p "$PAF"/sock-mon "$PAF"/sock-n1 "$PAF"/sock-n2
	chown -R "$TEST_USER" "$PAF" 2>/dev/null || true
	MPORT=$(free_port 27100)
	NPORT=$(free_port $((MPORT + 1)))
	MON_CI="host=127.0.0.1 port=$MPORT dbname=pg_auto_failover user=autoctl_node"
	paf_initdb mon
	paf_node mon monitor --pgport "$MPORT" --listen 127.0.0.1 --hostname 127.0.0.1
	paf_initdb n1
	paf_node n1 postgres --pgport "$NPORT" --listen 127.0.0.2 --hostname 127.0.0.2 --name n1 \
		--monitor "postgres://autoctl_node@127.0.0.1:$MPORT/pg_auto_failover?sslmode=disable"
	paf_wait n1:single 60
	paf_node n2 postgres --pgport "$NPORT" --listen 127.0.0.3 --hostname 127.0.0.3 --name n2 \
		--monitor "postgres://autoctl_node@127.0.0.1:$MPORT/pg_auto_failover?sslmode=disable"
	paf_wait n1:primary,n2:secondary 90
	echo "formation up in $(($(now_ms) - t0)) ms (monitor :$MPORT, nodes :$NPORT)"
}

# stop the formation: pg_autoctl first (it would restart postgres), then
# any postgres left
paf_down() {
	local d
	[ -d "$PAF" ] || return 0
	for d in n2 n1 mon; do
		[ -d "$PAF/$d" ] && paf pg_autoctl stop --pgdata "$PAF/$d" >/dev/null 2>&1
	done
	sleep 1
	for d in n2 n1 mon; do
		[ -f "$PAF/$d/postmaster.pid" ] && as_user "$PGBIN/pg_ctl" -D "$PAF/$d" -w stop -m immediate >/dev/null 2>&1
	done
	return 0
}

# switchover_run FROM TO LABEL SWITCH_LINE: pgbench (100 clients) and a
# timed writer through pgshoal, `pg_autoctl perform switchover` after 3 s;
# prints the figures, leaves FIRST_OK_MS (first write ok after TO reported
# wait_primary)
switchover_run() {
	local from=$1 to=$2 label=$3 pb wr t_sw t_wp t_switch first_ok rc=0 w=$TMPD/$3.writes
	rm -f "$TMPD/fo.stop"
	timeout 60 pgbench -n -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -c "$PAF_CLIENTS" -j 4 -T 12 postgres \
		>"$TMPD/$label.pgbench" 2>&1 &
	pb=$!
	"$B/t/writer" "$(shoal_conninfo)" "insert into fo default values" 20 "$TMPD/fo.stop" >"$w" 2>&1 &
	wr=$!
	sleep 3
	t_sw=$(now_ms)
	paf pg_autoctl perform switchover --monitor \
		"postgres://autoctl_node@127.0.0.1:$MPORT/pg_auto_failover?sslmode=disable" >"$TMPD/$label.switchover" 2>&1 ||
		fail "switchover failed: $(tail -3 "$TMPD/$label.switchover")"
	paf_wait "$([ "$to" = n2 ] && echo n1:secondary,n2:primary || echo n1:primary,n2:secondary)" 30
	sleep 2
	touch "$TMPD/fo.stop"
	wait $wr || true
	wait $pb || rc=$?
	[ $rc -ne 124 ] || fail "pgbench did not finish (a client stuck): $(tail -3 "$TMPD/$label.pgbench")"
	t_wp=$(paf_sql "select (extract(epoch from min(eventtime)) * 1000)::bigint from pgautofailover.event
		where nodename = '$to' and reportedstate = 'wait_primary' and eventtime > to_timestamp($t_sw / 1000.0)")
	[ -n "$t_wp" ] || fail "no wait_primary event for $to"
	first_ok=$(awk -v t="$t_wp" '$1 > t && $2 == "ok" { print $1; exit }' "$w")
	[ -n "$first_ok" ] || fail "$label: no write succeeded after $to reported wait_primary"
	t_switch=$(grep -F "$4" "$SHOAL_LOG" | tail -1)
	[ -n "$t_switch" ] || fail "$label: no '$4' in the log"
	FIRST_OK_MS=$((first_ok - t_wp))
	echo "$label: switchover $from -> $to: $to reported wait_primary $((t_wp - t_sw)) ms after the command;" \
		"pgshoal switched $(($(log_ms "$t_switch") - t_wp)) ms after wait_primary;" \
		"first write through pgshoal ok $FIRST_OK_MS ms after wait_primary;" \
		"writes: $(grep -c ok "$w") ok, $(grep -c err "$w") failed, longest time without a successful write" \
		"$(awk '$2 == "ok" { if (p && $1 - p > g) g = $1 - p; p = $1 } END { print g + 0 }' "$w") ms;" \
		"pgbench: $(grep -cE 'client [0-9]+ .*aborted' "$TMPD/$label.pgbench") of $PAF_CLIENTS clients aborted" \
		"(a transaction in flight failed), $(grep -E '^number of transactions actually processed' \
			"$TMPD/$label.pgbench" | sed 's/.*: //') transactions"
}

test_autofailover_switchover() {
	if [ "${PAF_TEST:-1}" = 0 ]; then
		echo "SKIP: PAF_TEST=0"
		return 0
	fi
	if ! command -v pg_autoctl >/dev/null ||
		[ ! -f "$("$PGBIN/pg_config" --sharedir)/extension/pgautofailover.control" ]; then
		echo "SKIP: pg_autoctl or the pgautofailover extension is missing (apt-get install postgresql-15-auto-failover)"
		return 0
	fi
	trap 'rc=$?; set +e; shoal_stop >/dev/null 2>&1; paf_down; exit $rc' EXIT
	paf_up
	psql -X -q -h 127.0.0.2 -p "$NPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
		-c "create role $DBUSER login superuser" -c "create table fo (id serial, t timestamptz default now())" ||
		fail "setup on n1 failed"
	pgbench -i -q -s 1 -h 127.0.0.2 -p "$NPORT" -U postgres postgres >/dev/null 2>&1 || fail "pgbench -i failed"
	local entry="name = \"*\"; host = \"127.0.0.2,127.0.0.3\"; port = $NPORT; target_session_attrs = \"read-write\";"
	local common="workers=2 default_pool_size=20 server_check_period=1 server_login_retry=0.2 log_connections=false log_disconnections=false"
	local mon_ms probe_ms
	# following the monitor
	# shellcheck disable=SC2086
	shoal_start "$(shoal_config $common "databases=( { $entry monitor_conninfo = \"$MON_CI\"; } )")"
	wait_log "following the pg_auto_failover monitor" >/dev/null
	[ "$(shoal_addr)" = 127.0.0.2 ] || fail "not on n1 at the start"
	switchover_run n1 n2 monitor "monitor: node n2 (127.0.0.3:$NPORT) reported wait_primary: now using host 127.0.0.3"
	mon_ms=$FIRST_OK_MS
	[ "$(shoal_addr)" = 127.0.0.3 ] || fail "not on n2 after the switchover"
	shoal_stop
	# probing only
	# shellcheck disable=SC2086
	shoal_start "$(shoal_config $common "databases=( { $entry } )")"
	wait_log "probe (target_session_attrs=read-write): now using host 127.0.0.3" 5000 >/dev/null
	[ "$(shoal_addr)" = 127.0.0.3 ] || fail "not on n2 at the start"
	switchover_run n2 n1 probe "probe (target_session_attrs=read-write): now using host 127.0.0.2"
	probe_ms=$FIRST_OK_MS
	[ "$(shoal_addr)" = 127.0.0.2 ] || fail "not on n1 after the switchover"
	echo "first write ok after wait_primary: $mon_ms ms following the monitor, $probe_ms ms probing"
	[ "$mon_ms" -lt 1000 ] || fail "following the monitor, writes took $mon_ms ms after wait_primary"
}

run_test test_monitor_notify
run_test test_monitor_lost
run_test test_autofailover_switchover
finish
