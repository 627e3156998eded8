#!/bin/bash
# t/integration/admin.sh — the admin console and statistics (issue 5): every
# SHOW command's columns and types against PgBouncer's (golden list below),
# SHOW STATS totals after known traffic through two workers, PAUSE/RESUME,
# KILL_CLIENT, RECONNECT + WAIT_CLOSE, DISABLE/ENABLE, permissions, and
# malformed console input. Same harness as run.sh (t/integration/lib.sh).
#
#   B=build bash t/integration/admin.sh
#   TESTS="admin_pause" bash t/integration/admin.sh

cd "$(dirname "$0")/../.." || exit 2
. t/integration/lib.sh
shopt -s inherit_errexit

for prog in admin_cols rawclient; do
	[ -x "$B/t/$prog" ] || die "missing $B/t/$prog (make $B/t/$prog)"
done
[ -x "$B/pgshoal" ] || die "missing $B/pgshoal (make)"
lib_init
pg_start
say "postgres on $PGPORT, pgshoal on $SHOAL_PORT, logs in $TMPD"

# the console through TCP as USER (default: $DBUSER, an admin here)
admin_ci() { echo "host=127.0.0.1 port=$SHOAL_PORT user=${1:-$DBUSER} dbname=pgbouncer connect_timeout=10"; }
admin_psql() { # admin_psql [-U user] SQL...: unaligned, one -c per argument
	local user=$DBUSER args=()
	if [ "$1" = -U ]; then
		user=$2
		shift 2
	fi
	for q in "$@"; do args+=(-c "$q"); done
	psql -X -q -At -F '|' -h 127.0.0.1 -p "$SHOAL_PORT" -U "$user" -d pgbouncer "${args[@]}"
}
admin_config() { shoal_config admin_users="$DBUSER, adm" stats_users=st stats_period=1 "$@"; }

# column COMMAND NAME: the value of column NAME in the first row of COMMAND
column() {
	admin_psql "$1" >/dev/null # fail early with psql's message
	psql -X -q -A -F '|' -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d pgbouncer -c "$1" |
		awk -F'|' -v col="$2" -v db="${3:-}" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
			c && (db == "" || $1 == db) { print $c; exit }'
}

# ------------------------------------------------------------ golden list

# type oids: 25 text, 23 int4, 20 int8, 1700 numeric, 17 bytea
GOLDEN=$(
	cat <<'EOF'
SHOW POOLS|database:25,user:25,cl_active:23,cl_waiting:23,cl_active_cancel_req:23,cl_waiting_cancel_req:23,sv_active:23,sv_active_cancel:23,sv_being_canceled:23,sv_idle:23,sv_used:23,sv_tested:23,sv_login:23,maxwait:23,maxwait_us:23,pool_mode:25,load_balance_hosts:25
SHOW STATS|database:25,total_server_assignment_count:1700,total_xact_count:1700,total_query_count:1700,total_received:1700,total_sent:1700,total_xact_time:1700,total_query_time:1700,total_wait_time:1700,total_client_parse_count:1700,total_server_parse_count:1700,total_bind_count:1700,total_client_login_count:1700,avg_server_assignment_count:1700,avg_xact_count:1700,avg_query_count:1700,avg_recv:1700,avg_sent:1700,avg_xact_time:1700,avg_query_time:1700,avg_wait_time:1700,avg_client_parse_count:1700,avg_server_parse_count:1700,avg_bind_count:1700,avg_client_login_count:1700
SHOW STATS_TOTALS|database:25,server_assignment_count:1700,xact_count:1700,query_count:1700,bytes_received:1700,bytes_sent:1700,xact_time:1700,query_time:1700,wait_time:1700,client_parse_count:1700,server_parse_count:1700,bind_count:1700,client_login_count:1700
SHOW STATS_AVERAGES|database:25,server_assignment_count:1700,xact_count:1700,query_count:1700,bytes_received:1700,bytes_sent:1700,xact_time:1700,query_time:1700,wait_time:1700,avg_client_parse_count:1700,avg_server_parse_count:1700,avg_bind_count:1700,avg_client_login_count:1700
SHOW TOTALS|name:25,value:1700
SHOW DATABASES|name:25,host:25,port:23,database:25,force_user:25,pool_size:23,min_pool_size:23,reserve_pool_size:23,server_lifetime:23,pool_mode:25,load_balance_hosts:25,max_connections:23,current_connections:23,max_client_connections:23,current_client_connections:23,paused:23,disabled:23
SHOW CLIENTS|type:25,user:25,database:25,replication:25,state:25,addr:25,port:23,local_addr:25,local_port:23,connect_time:25,request_time:25,wait:23,wait_us:23,close_needed:23,ptr:25,link:25,remote_pid:23,tls:25,application_name:25,prepared_statements:23,id:23
SHOW SERVERS|type:25,user:25,database:25,replication:25,state:25,addr:25,port:23,local_addr:25,local_port:23,connect_time:25,request_time:25,wait:23,wait_us:23,close_needed:23,ptr:25,link:25,remote_pid:23,tls:25,application_name:25,prepared_statements:23,id:23
SHOW USERS|name:25,pool_size:25,reserve_pool_size:25,pool_mode:25,max_user_connections:23,current_connections:23,max_user_client_connections:23,current_client_connections:23
SHOW CONFIG|key:25,value:25,default:25,changeable:25
SHOW LISTS|list:25,items:23
SHOW DNS_HOSTS|hostname:25,ttl:20,addrs:25
SHOW DNS_ZONES|zonename:25,serial:20,count:23
SHOW MEM|name:25,size:23,used:23,free:23,memtotal:23
SHOW STATE|key:25,value:25
SHOW VERSION|version:25
SHOW FDS|fd:23,task:25,user:25,database:25,addr:25,port:23,cancel:20,link:23,client_encoding:25,std_strings:25,datestyle:25,timezone:25,password:25,scram_client_key:17,scram_server_key:17
SHOW PEERS|peer_id:23,host:25,port:23,pool_size:23
SHOW PEER_POOLS|peer_id:23,cl_active_cancel_req:23,cl_waiting_cancel_req:23,sv_active_cancel:23,sv_login:23
SHOW WORKERS|worker:23,pid:23,clients:23,servers:23,fds_cached:23,loops:20,respawns:23
SHOW SLOTS|pool:23,database:25,user:25,pool_mode:25,paused:25,pool_size:23,reserve_pool_size:23,max_db_connections:23,max_user_connections:23,servers:23,connecting:23,idle:23,waiting:23,slots:23,recycle_gen:23,kill_gen:23,last_error:25
EOF
)

test_admin_columns() {
	shoal_start "$(admin_config workers=2)"
	local cmds=() line got want
	while IFS='|' read -r cmd _; do cmds+=("$cmd"); done <<<"$GOLDEN"
	got=$("$B/t/admin_cols" "$(admin_ci)" "${cmds[@]}")
	echo "$got"
	while IFS= read -r line; do
		want=${line}
		local cmd=${line%%|*}
		local g
		g=$(grep -F "$cmd|" <<<"$got" | head -1)
		[ "${g%|rows=*}" = "$want" ] || fail "$cmd: columns differ
  want: $want
  got:  ${g%|rows=*}"
	done <<<"$GOLDEN"
	# rows where there must be some; SHOW HELP is a notice + SHOW
	expect_contains "$(grep -F 'SHOW POOLS|' <<<"$got")" "rows=1" "a pool from the start probe"
	expect_contains "$(grep -F 'SHOW WORKERS|' <<<"$got")" "rows=2" "two workers"
	expect_contains "$(grep -F 'SHOW STATE|' <<<"$got")" "rows=3" "state rows"
	expect_contains "$(grep -F 'SHOW LISTS|' <<<"$got")" "rows=14" "list rows"
	got=$("$B/t/admin_cols" "$(admin_ci)" "SHOW HELP" "show client_encoding" "SET client_encoding = 'UTF8'")
	echo "$got"
	expect_contains "$got" "SHOW HELP|OK SHOW" "SHOW HELP"
	expect_contains "$got" "show client_encoding|client_encoding:25|rows=1" "fake parameter"
	expect_contains "$got" "OK SET" "SET of a driver parameter"
	# values: SHOW CLIENTS lists this very session, SHOW DATABASES the console
	expect_contains "$(admin_psql 'SHOW CLIENTS')" "C|$DBUSER|pgbouncer|none|idle|127.0.0.1" "own session"
	expect_contains "$(admin_psql 'SHOW DATABASES')" "pgshoal||$SHOAL_PORT|pgshoal|pgbouncer" "admin db row"
}

# ---------------------------------------------------------------- stats

test_admin_stats() {
	local n=40 before after xacts queries logins i pids=
	shoal_start "$(admin_config workers=2 default_pool_size=2)"
	before=$(admin_psql "SHOW STATS_TOTALS" | grep '^postgres|')
	echo "before: $before"
	# 40 one-statement sessions, 10 at a time so both workers take some
	for i in $(seq 1 $n); do
		shoal_psql -d postgres -c "select $i" >/dev/null &
		pids="$pids $!"
		[ $((i % 10)) -ne 0 ] || { wait $pids; pids=; }
	done
	# one explicit transaction of three statements: 1 xact, 3 queries
	shoal_psql -d postgres -c "begin" -c "select 1" -c "commit" >/dev/null
	after=$(admin_psql "SHOW STATS_TOTALS" | grep '^postgres|')
	echo "after:  $after"
	xacts=$(($(cut -d'|' -f3 <<<"$after") - $(cut -d'|' -f3 <<<"$before")))
	queries=$(($(cut -d'|' -f4 <<<"$after") - $(cut -d'|' -f4 <<<"$before")))
	logins=$(($(cut -d'|' -f13 <<<"$after") - $(cut -d'|' -f13 <<<"$before")))
	echo "xacts=$xacts queries=$queries logins=$logins"
	[ "$xacts" -eq $((n + 1)) ] || fail "xact_count grew by $xacts, want $((n + 1))"
	[ "$queries" -eq $((n + 3)) ] || fail "query_count grew by $queries, want $((n + 3))"
	[ "$logins" -eq $((n + 1)) ] || fail "client_login_count grew by $logins, want $((n + 1))"
	[ "$(cut -d'|' -f5 <<<"$after")" -gt 0 ] || fail "no bytes received"
	[ "$(cut -d'|' -f6 <<<"$after")" -gt 0 ] || fail "no bytes sent"
	# SHOW STATS and SHOW TOTALS agree with STATS_TOTALS
	[ "$(column 'SHOW STATS' total_xact_count postgres)" = "$(cut -d'|' -f3 <<<"$after")" ] ||
		fail "SHOW STATS disagrees"
	[ "$(admin_psql 'SHOW TOTALS' | grep '^total_xact_count|' | cut -d'|' -f2)" -ge $((n + 1)) ] ||
		fail "SHOW TOTALS total_xact_count too small"
	# both workers served clients (counted in SHOW WORKERS by their loops)
	admin_psql "SHOW WORKERS"
	# averages over stats_period = 1 s: non-zero right after the load
	sleep 1.2
	admin_psql "SHOW STATS_AVERAGES"
	grep -q 'stats: .* xacts/s, .* queries/s, in .* B/s, out .* B/s, xact .* us, query .* us, wait .* us' \
		"$SHOAL_LOG" || fail "no stats log line"
}

# ------------------------------------------------------- pause / resume

test_admin_pause() {
	shoal_start "$(admin_config workers=2 default_pool_size=2)"
	local t0 bg out
	[ "$(admin_psql 'PAUSE postgres')" = "" ] || true
	expect_contains "$(admin_psql 'SHOW DATABASES' | grep '^postgres|')" "|1|0" "paused flag"
	t0=$(now_ms)
	(shoal_psql -d postgres -c "select 'after resume'" >"$TMPD/paused.out" 2>&1; echo "rc=$?" >>"$TMPD/paused.out") &
	bg=$!
	sleep 1
	kill -0 $bg 2>/dev/null || fail "a query ran while paused: $(cat "$TMPD/paused.out")"
	[ "$(column 'SHOW POOLS' cl_waiting postgres)" -ge 1 ] || fail "no waiting client in SHOW POOLS"
	admin_psql 'RESUME postgres'
	wait $bg
	out=$(cat "$TMPD/paused.out")
	echo "$out ($(($(now_ms) - t0)) ms)"
	expect_contains "$out" "after resume" "query after RESUME"
	expect_contains "$out" "rc=0" "no error"
	out=$(admin_psql 'RESUME postgres' 2>&1 || true)
	expect_contains "$out" "is not paused" "RESUME when not paused"
	# pooler-wide PAUSE waits for a running transaction, then returns
	shoal_psql -d postgres -c "select pg_sleep(1.5)" >/dev/null &
	bg=$!
	sleep 0.3
	t0=$(now_ms)
	admin_psql 'PAUSE'
	[ $(($(now_ms) - t0)) -ge 800 ] || fail "PAUSE returned while a query ran"
	expect_contains "$(admin_psql 'SHOW STATE')" "paused|yes" "SHOW STATE"
	out=$(admin_psql 'PAUSE' 2>&1 || true)
	expect_contains "$out" "already suspended/paused" "second PAUSE"
	admin_psql 'RESUME'
	wait $bg
	shoal_psql -d postgres -c "select 1" >/dev/null
}

# ---------------------------------------------------- kill, kill_client

test_admin_kill_client() {
	shoal_start "$(admin_config workers=2 pool_mode=session)"
	local victim other id out
	shoal_psql -d postgres -c "set application_name = 'victim'" -c "select pg_sleep(30)" >/dev/null 2>&1 &
	victim=$!
	PGAPPNAME=other shoal_psql -d postgres -c "select pg_sleep(4)" >/dev/null 2>&1 &
	other=$!
	sleep 1
	admin_psql 'SHOW CLIENTS'
	id=$(admin_psql 'SHOW CLIENTS' | awk -F'|' '$3 == "postgres" && $5 == "active" { print $21 }' | head -1)
	[ -n "$id" ] || fail "no active client listed"
	# the first active client may be either: kill it, the other must live
	admin_psql "KILL_CLIENT $id"
	sleep 0.3
	out=$(admin_psql 'SHOW CLIENTS' | awk -F'|' -v id="$id" '$21 == id')
	[ -z "$out" ] || fail "client $id still listed: $out"
	if ! kill -0 $victim 2>/dev/null; then
		kill -0 $other 2>/dev/null || fail "both clients are gone"
		wait $other || fail "the other client failed"
	else
		! wait $other || fail "the killed client succeeded"
		kill $victim
	fi
	out=$(admin_psql "KILL_CLIENT 999999" 2>&1 || true)
	expect_contains "$out" "client not found" "unknown id"
	out=$(admin_psql "KILL_CLIENT abc" 2>&1 || true)
	expect_contains "$out" "ERROR" "bad id"
}

test_admin_kill_db() {
	shoal_start "$(admin_config workers=2 pool_mode=session)"
	local bg out
	shoal_psql -d postgres -c "select pg_sleep(30)" >/dev/null 2>&1 &
	bg=$!
	sleep 0.5
	admin_psql 'KILL postgres'
	sleep 0.5
	! kill -0 $bg 2>/dev/null || fail "client of a killed database survived"
	# new clients wait until RESUME
	(shoal_psql -d postgres -c "select 'resumed'" >"$TMPD/kill.out" 2>&1) &
	bg=$!
	sleep 0.8
	kill -0 $bg 2>/dev/null || fail "a client ran on a killed database: $(cat "$TMPD/kill.out")"
	admin_psql 'RESUME postgres'
	wait $bg
	expect_contains "$(cat "$TMPD/kill.out")" "resumed" "after RESUME"
}

# ------------------------------------------------ reconnect, disable

test_admin_reconnect() {
	shoal_start "$(admin_config workers=2 default_pool_size=1)"
	local p1 p2
	p1=$(shoal_psql -d postgres -c "select pg_backend_pid()")
	admin_psql 'RECONNECT postgres'
	expect_contains "$(admin_psql 'SHOW SERVERS')" "|1|S-" "close_needed"
	admin_psql 'WAIT_CLOSE postgres'
	p2=$(shoal_psql -d postgres -c "select pg_backend_pid()")
	echo "server before $p1, after $p2"
	[ "$p1" != "$p2" ] || fail "RECONNECT kept server $p1"
	# a running transaction keeps its server until it ends
	p1=$p2
	admin_psql 'RECONNECT'
	admin_psql 'WAIT_CLOSE'
	p2=$(shoal_psql -d postgres -c "select pg_backend_pid()")
	[ "$p1" != "$p2" ] || fail "RECONNECT (all) kept server $p1"
}

test_admin_disable() {
	shoal_start "$(admin_config workers=2)"
	local out
	admin_psql 'DISABLE postgres'
	out=$(shoal_psql -d postgres -c "select 1" 2>&1 || true)
	expect_contains "$out" "not currently accepting connections" "login to a disabled database"
	admin_psql 'ENABLE postgres'
	shoal_psql -d postgres -c "select 1" >/dev/null
	out=$(admin_psql 'DISABLE' 2>&1 || true)
	expect_contains "$out" "a database is required" "DISABLE without a database"
	out=$(admin_psql 'DISABLE nosuchdb_x' 2>&1 || true)
	expect_contains "$out" "no such database" "DISABLE of an unknown database"
	out=$(admin_psql 'PAUSE pgbouncer' 2>&1 || true)
	expect_contains "$out" "cannot pause admin db" "PAUSE of the console"
}

# --------------------------------------------------------- permissions

test_admin_permissions() {
	shoal_start "$(admin_config workers=2)"
	local out
	out=$(admin_psql -U nobody 'SHOW POOLS' 2>&1 || true)
	expect_contains "$out" "not allowed" "a user in neither list"
	# stats_users: SHOW yes, control and SHOW FDS no
	admin_psql -U st 'SHOW POOLS' >/dev/null
	for q in 'PAUSE' 'RESUME' 'RELOAD' 'KILL_CLIENT 1' 'SHUTDOWN' 'SHOW FDS' 'SET verbose = 2' 'RECONNECT'; do
		out=$(admin_psql -U st "$q" 2>&1 || true)
		expect_contains "$out" "admin access needed" "$q as a stats user"
	done
	kill -0 "$SHOAL_PID" || fail "pgshoal died"
	# the second admin in the list (spaces around the comma are ignored)
	admin_psql -U adm 'SHOW FDS' >/dev/null
	out=$(admin_psql -U adm 'SET verbose = 2' 2>&1 || true)
	expect_contains "$out" "not supported" "SET of a setting"
	out=$(admin_psql -U adm 'SUSPEND' 2>&1 || true)
	expect_contains "$out" "not supported" "SUSPEND"
	# RELOAD reaches the master (SIGHUP)
	admin_psql -U adm 'RELOAD'
	sleep 0.3
	grep -qi 'reload\|SIGHUP' "$SHOAL_LOG" || fail "the master saw no reload"
}

# ------------------------------------------------------ malformed input

test_admin_malformed() {
	shoal_start "$(admin_config workers=2)"
	local q out long
	for q in 'FOO' 'SHOW' 'SHOW NOSUCH' 'SHOW POOLS; DROP TABLE x' "SHOW POOLS' OR '1'='1" \
		"'; select pg_sleep(10); --" 'select * from pg_authid' 'SHOW "unterminated' 'PAUSE a b' \
		'KILL_CLIENT 1; SHUTDOWN' 'SET x' "SET a = 'unterminated" 'RELOAD now'; do
		out=$(admin_psql "$q" 2>&1) && fail "'$q' succeeded: $out"
		expect_contains "$out" "ERROR" "'$q'"
		case $out in *"|"*) fail "'$q' returned rows: $out" ;; esac
	done
	# a 100 kB command: a FATAL error and a closed session, nothing else
	long="SHOW $(head -c 100000 /dev/zero | tr '\0' 'x')"
	out=$(admin_psql "$long" 2>&1) && fail "a very long command succeeded"
	expect_contains "$out" "too long" "very long command"
	# a name longer than a database name can be
	out=$(admin_psql "PAUSE $(head -c 200 /dev/zero | tr '\0' 'y')" 2>&1) && fail "long argument accepted"
	expect_contains "$out" "bad arguments" "long argument"
	# raw protocol abuse on the console
	"$B/t/rawclient" badmsg 127.0.0.1 "$SHOAL_PORT" pgbouncer "$DBUSER" || fail "badmsg: no close"
	"$B/t/rawclient" hugemsg 127.0.0.1 "$SHOAL_PORT" pgbouncer "$DBUSER" || fail "hugemsg: no close"
	# still serving, and not paused or shut down by any of it
	kill -0 "$SHOAL_PID" || fail "pgshoal died"
	expect_contains "$(admin_psql 'SHOW STATE')" "paused|no" "not paused"
	shoal_psql -d postgres -c "select 1" >/dev/null
}

# ------------------------------------------------------------- shutdown

test_admin_shutdown() {
	shoal_start "$(admin_config workers=2)"
	local n=0
	admin_psql 'SHUTDOWN WAIT_FOR_CLIENTS'
	while kill -0 "$SHOAL_PID" 2>/dev/null && [ $n -lt 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	! kill -0 "$SHOAL_PID" 2>/dev/null || fail "pgshoal still running 5 s after SHUTDOWN WAIT_FOR_CLIENTS"
}

run_test test_admin_columns
run_test test_admin_stats
run_test test_admin_pause
run_test test_admin_kill_client
run_test test_admin_kill_db
run_test test_admin_reconnect
run_test test_admin_disable
run_test test_admin_permissions
run_test test_admin_malformed
run_test test_admin_shutdown
finish
