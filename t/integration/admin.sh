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

# PgBouncer 1.25's columns, in order; SHOW STATS and SHOW DATABASES end with
# one column each under an older PgBouncer's name (total_requests < 1.8,
# reserve_pool < 1.24), which older consumers such as Debian 12's
# prometheus-pgbouncer-exporter read (test_admin_exporter).

# type oids: 25 text, 23 int4, 20 int8, 1700 numeric, 17 bytea
GOLDEN=$(
	cat <<'EOF'
SHOW POOLS|database:25,user:25,cl_active:23,cl_waiting:23,cl_active_cancel_req:23,cl_waiting_cancel_req:23,sv_active:23,sv_active_cancel:23,sv_being_canceled:23,sv_idle:23,sv_used:23,sv_tested:23,sv_login:23,maxwait:23,maxwait_us:23,pool_mode:25,load_balance_hosts:25
SHOW STATS|database:25,total_server_assignment_count:1700,total_xact_count:1700,total_query_count:1700,total_received:1700,total_sent:1700,total_xact_time:1700,total_query_time:1700,total_wait_time:1700,total_client_parse_count:1700,total_server_parse_count:1700,total_bind_count:1700,total_client_login_count:1700,avg_server_assignment_count:1700,avg_xact_count:1700,avg_query_count:1700,avg_recv:1700,avg_sent:1700,avg_xact_time:1700,avg_query_time:1700,avg_wait_time:1700,avg_client_parse_count:1700,avg_server_parse_count:1700,avg_bind_count:1700,avg_client_login_count:1700,total_requests:1700
SHOW STATS_TOTALS|database:25,server_assignment_count:1700,xact_count:1700,query_count:1700,bytes_received:1700,bytes_sent:1700,xact_time:1700,query_time:1700,wait_time:1700,client_parse_count:1700,server_parse_count:1700,bind_count:1700,client_login_count:1700
SHOW STATS_AVERAGES|database:25,server_assignment_count:1700,xact_count:1700,query_count:1700,bytes_received:1700,bytes_sent:1700,xact_time:1700,query_time:1700,wait_time:1700,avg_client_parse_count:1700,avg_server_parse_count:1700,avg_bind_count:1700,avg_client_login_count:1700
SHOW TOTALS|name:25,value:1700
SHOW DATABASES|name:25,host:25,port:23,database:25,force_user:25,pool_size:23,min_pool_size:23,reserve_pool_size:23,server_lifetime:23,pool_mode:25,load_balance_hosts:25,max_connections:23,current_connections:23,max_client_connections:23,current_client_connections:23,paused:23,disabled:23,reserve_pool:23
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

# known_load N: N one-statement sessions, 10 at a time so that both workers
# take some, then one explicit transaction of three statements: N + 1
# transactions, N + 3 queries, N + 1 logins
known_load() {
	local i pids=
	for i in $(seq 1 "$1"); do
		shoal_psql -d postgres -c "select $i" >/dev/null &
		pids="$pids $!"
		[ $((i % 10)) -ne 0 ] || { wait $pids; pids=; }
	done
	[ -z "$pids" ] || wait $pids # (a bare wait would wait for pgshoal too)
	shoal_psql -d postgres -c "begin" -c "select 1" -c "commit" >/dev/null
}

test_admin_stats() {
	local n=40 before after xacts queries logins
	shoal_start "$(admin_config workers=2 default_pool_size=2)"
	before=$(admin_psql "SHOW STATS_TOTALS" | grep '^postgres|')
	echo "before: $before"
	known_load $n
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
	admin_psql -U adm 'SET verbose = 1'
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

# ------------------------------------------------------------- metrics

# The master's HTTP endpoints (metrics_listen). METRICS_PORT is set by
# metrics_start; http_get PATH prints the body, http_code PATH the status.
metrics_start() {
	METRICS_PORT=$(free_port 27432)
	shoal_start "$(admin_config metrics_listen="127.0.0.1:$METRICS_PORT" "$@")"
}
http_get() { curl -sS -m 5 "http://127.0.0.1:$METRICS_PORT$1"; }
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "${@:2}" "http://127.0.0.1:$METRICS_PORT$1"; }

# metrics_check: /metrics parsed by the Prometheus client library's own
# parser (python3-prometheus-client, installed with the exporter); fails on
# a parse error or a family without HELP/TYPE; prints "name{labels} value"
# one per line, labels sorted.
metrics_check() {
	/usr/bin/python3 -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
for f in text_string_to_metric_families(text):
    if f.type == "unknown" or not f.documentation:
        sys.exit("family %s has no TYPE or HELP" % f.name)
    for s in f.samples:
        labels = ",".join("%s=\"%s\"" % kv for kv in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, s.value))
'
}
# mval TEXT SERIES: the value of one series in metrics_check's output
mval() { awk -v k="$2" '$1 == k { v = $2 } END { if (v == "") exit 1; printf "%d\n", v }' <<<"$1"; }

test_metrics() {
	metrics_start workers=2 default_pool_size=2
	local m0 m1 i n=30 pids= fam v
	m0=$(http_get /metrics | metrics_check) || fail "/metrics does not parse"
	for fam in pgshoal_info pgshoal_config_generation pgshoal_reloads_total pgshoal_clients \
		pgshoal_pool_clients pgshoal_pool_servers pgshoal_pool_maxwait_seconds pgshoal_pool_size \
		pgshoal_pool_server_reachable pgshoal_database_paused pgshoal_transactions_total \
		pgshoal_queries_total pgshoal_received_bytes_total pgshoal_sent_bytes_total \
		pgshoal_transaction_seconds_total pgshoal_query_seconds_total pgshoal_client_logins_total \
		pgshoal_server_assignments_total pgshoal_wait_seconds_bucket pgshoal_wait_seconds_count \
		pgshoal_target_resolved pgshoal_target_address pgshoal_worker_pid pgshoal_worker_respawns_total; do
		grep -q "^$fam{" <<<"$m0" || grep -q "^$fam " <<<"$m0" || fail "no $fam in /metrics"
	done
	known_load $n # through two workers
	m1=$(http_get /metrics | metrics_check)
	local db='{database="postgres"}'
	for v in "pgshoal_transactions_total $((n + 1))" "pgshoal_queries_total $((n + 3))" \
		"pgshoal_client_logins_total $((n + 1))"; do
		set -- $v
		local d=$(($(mval "$m1" "$1$db") - $(mval "$m0" "$1$db")))
		echo "$1 grew by $d"
		[ "$d" -eq "$2" ] || fail "$1 grew by $d, want $2"
	done
	# the histogram counts every assignment, and agrees with SHOW STATS_TOTALS
	[ "$(mval "$m1" "pgshoal_wait_seconds_count$db")" = "$(mval "$m1" "pgshoal_server_assignments_total$db")" ] ||
		fail "wait histogram count differs from the assignments"
	[ "$(mval "$m1" "pgshoal_wait_seconds_bucket{database=\"postgres\",le=\"+Inf\"}")" = \
		"$(mval "$m1" "pgshoal_wait_seconds_count$db")" ] || fail "+Inf bucket differs from the count"
	[ "$(mval "$m1" "pgshoal_transactions_total$db")" = "$(column 'SHOW STATS_TOTALS' xact_count postgres)" ] ||
		fail "transactions differ from SHOW STATS_TOTALS"
	[ "$(mval "$m1" "pgshoal_received_bytes_total$db")" -gt 0 ] || fail "no bytes received"
	# clients and servers by state while one query runs
	shoal_psql -d postgres -c "select pg_sleep(1.5)" >/dev/null &
	pids=$!
	sleep 0.7
	m1=$(http_get /metrics | metrics_check)
	wait $pids
	[ "$(mval "$m1" 'pgshoal_pool_clients{database="postgres",state="active",user="tuser"}')" -ge 1 ] ||
		fail "no active client in /metrics"
	[ "$(mval "$m1" 'pgshoal_pool_servers{database="postgres",state="active",user="tuser"}')" -ge 1 ] ||
		fail "no active server in /metrics"
	[ "$(mval "$m1" 'pgshoal_clients{state="admin"}')" -eq 0 ] || fail "admin sessions counted"
	# workers are the master's children; DNS state of the "*" entry
	for i in 0 1; do
		shoal_workers | grep -qx "$(mval "$m1" "pgshoal_worker_pid{worker=\"$i\"}")" ||
			fail "worker $i's pid is not a child of the master"
	done
	[ "$(mval "$m1" "pgshoal_target_resolved{database=\"*\",host=\"$TMPD\"}")" = 1 ] || fail "target not resolved"
	grep -q "^pgshoal_target_address{address=\"$TMPD/.s.PGSQL.$PGPORT\",database=\"\*\"} 1.0" <<<"$m1" ||
		fail "the current address is not listed"
	# a reload moves the generation and the reload counter
	v=$(mval "$m1" pgshoal_config_generation{})
	admin_psql RELOAD
	sleep 0.3
	m1=$(http_get /metrics | metrics_check)
	[ "$(mval "$m1" pgshoal_config_generation{})" -eq $((v + 1)) ] || fail "config generation did not move"
	[ "$(mval "$m1" 'pgshoal_reloads_total{result="ok"}')" -eq 1 ] || fail "reload not counted"
}

test_metrics_http() {
	metrics_start workers=1
	local out t0 i fds=()
	[ "$(http_code /metrics)" = 200 ] || fail "GET /metrics"
	[ "$(http_code /health)" = 200 ] || fail "GET /health"
	[ "$(http_code /nope)" = 404 ] || fail "unknown path"
	[ "$(http_code /metrics -X POST -d x=1)" = 405 ] || fail "POST"
	[ "$(http_code /metrics -X DELETE)" = 405 ] || fail "DELETE"
	expect_contains "$(curl -s -i -m 5 -X PUT "http://127.0.0.1:$METRICS_PORT/health")" "Allow: GET, HEAD" "405's Allow"
	out=$(curl -s -I -m 5 "http://127.0.0.1:$METRICS_PORT/metrics")
	expect_contains "$out" "200 OK" "HEAD"
	expect_contains "$out" "text/plain; version=0.0.4" "content type"
	[ "$(http_code '/metrics?x=1')" = 200 ] || fail "a query string"
	# an oversize request (9 kB of headers): 431
	[ "$(http_code /metrics -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' 'a')")" = 431 ] || fail "oversize request"
	# garbage: 400
	exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"
	printf 'HELLO THERE\r\n\r\n' >&3
	out=$(timeout 5 cat <&3)
	exec 3<&-
	expect_contains "$out" "400 Bad Request" "garbage"
	# a slow client (half a request) does not hold the master up: other
	# requests are answered meanwhile; it is closed after 5 s
	exec 4<>"/dev/tcp/127.0.0.1/$METRICS_PORT"
	printf 'GET /metrics HTTP/1.1\r\nHost: x\r\n' >&4
	t0=$(now_ms)
	[ "$(http_code /health)" = 200 ] || fail "/health while a client is slow"
	[ $(($(now_ms) - t0)) -lt 1000 ] || fail "/health took $(($(now_ms) - t0)) ms next to a slow client"
	shoal_psql -d postgres -c "select 1" >/dev/null # and the pooler serves
	timeout 10 cat <&4 >/dev/null || fail "the slow client was not closed"
	exec 4<&-
	echo "slow client closed after $(($(now_ms) - t0)) ms"
	[ $(($(now_ms) - t0)) -ge 4000 ] || fail "slow client closed too early"
	[ $(($(now_ms) - t0)) -le 7000 ] || fail "slow client closed too late"
	grep -q "closing an HTTP client" "$SHOAL_LOG" || fail "no log line for the slow client"
	# eight slow clients fill the table: the ninth is told 503 at once
	for i in 5 6 7 8 9 10 11 12; do
		eval "exec $i<>/dev/tcp/127.0.0.1/$METRICS_PORT"
		printf 'GET ' >&$i
	done
	sleep 0.3
	[ "$(http_code /health)" = 503 ] || fail "a ninth connection was not refused"
	for i in 5 6 7 8 9 10 11 12; do eval "exec $i<&-"; done
	sleep 0.3
	[ "$(http_code /health)" = 200 ] || fail "/health after the slow clients left"
	kill -0 "$SHOAL_PID" || fail "pgshoal died"
}

test_metrics_health() {
	metrics_start workers=2 query_wait_timeout=3
	local n=0 body
	[ "$(http_get /health)" = ok ] || fail "/health: $(http_get /health)"
	# a client stays connected (transaction mode: it holds no server)
	mkfifo "$TMPD/idle.in"
	shoal_psql -d postgres <"$TMPD/idle.in" >/dev/null 2>&1 &
	exec 7>"$TMPD/idle.in"
	echo "select 1;" >&7
	sleep 0.5
	[ "$(http_code /health)" = 200 ] || fail "/health with a client"
	pg_stop
	# the next server login fails: the pool with a client is unreachable
	while [ "$(http_code /health)" != 503 ]; do
		[ $((n % 10)) -ne 0 ] || (shoal_psql -d postgres -c "select 1" >/dev/null 2>&1 &)
		n=$((n + 1))
		[ $n -lt 50 ] || { pg_run; fail "/health stayed $(http_code /health) with the server down"; }
		sleep 0.2
	done
	body=$(http_get /health)
	echo "server down: $body"
	expect_contains "$body" "postgres/tuser" "/health names the pool"
	expect_contains "$(http_get /metrics | metrics_check)" \
		'pgshoal_pool_server_reachable{database="postgres",user="tuser"} 0' "reachable gauge"
	pg_run
	n=0
	until shoal_psql -d postgres -c "select 1" >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -lt 50 ] || fail "no query through pgshoal after the server came back"
		sleep 0.2
	done
	[ "$(http_code /health)" = 200 ] || fail "/health after the server came back: $(http_get /health)"
	# SIGTERM waits for the connected client: 503 meanwhile
	kill -TERM "$SHOAL_PID"
	sleep 0.3
	kill -0 "$SHOAL_PID" || fail "pgshoal did not wait for its client"
	[ "$(http_code /health)" = 503 ] || fail "/health while shutting down"
	expect_contains "$(http_get /health)" "shutting down" "/health's reason"
	exec 7>&-
}

# ------------------------------------------------------------------ SET

# admin_err SQL: the console's error with its SQLSTATE ("ERROR:  42704: ...")
admin_err() { psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SHOAL_PORT" -U "${2:-$DBUSER}" -d pgbouncer -c "$1" 2>&1 || true; }

test_admin_set() {
	shoal_start "$(admin_config workers=2 default_pool_size=2)"
	local bg t0 out
	[ "$(admin_psql 'SET default_pool_size = 1')" = "" ]
	[ "$(column 'SHOW CONFIG' value default_pool_size)" = 1 ] || fail "SHOW CONFIG after SET"
	# it takes effect: two sleeping clients through two workers share one server
	admin_psql "SET pool_mode = 'session'" "SET query_wait_timeout = 30.5" "SET log_stats = off"
	expect_contains "$(admin_psql 'SHOW CONFIG' | grep -E '^(pool_mode|query_wait_timeout|log_stats)\|')" \
		"pool_mode|session" "string SET"
	expect_contains "$(admin_psql 'SHOW CONFIG' | grep '^query_wait_timeout|')" "|30.5|" "time SET"
	expect_contains "$(admin_psql 'SHOW CONFIG' | grep '^log_stats|')" "log_stats|0|" "bool SET"
	t0=$(now_ms)
	shoal_psql -d postgres -c "select pg_sleep(1)" >/dev/null &
	bg=$!
	shoal_psql -d postgres -c "select pg_sleep(1)" >/dev/null &
	bg="$bg $!"
	sleep 0.5
	[ "$(column 'SHOW POOLS' cl_waiting postgres)" -ge 1 ] || fail "no client waits with pool_size 1"
	[ "$(column 'SHOW POOLS' sv_active postgres)" -eq 1 ] || fail "more than one server with pool_size 1"
	wait $bg
	[ $(($(now_ms) - t0)) -ge 1900 ] || fail "both ran at once with pool_size 1"
	# errors, with PostgreSQL's SQLSTATEs
	expect_contains "$(admin_err 'SET nosuch = 1')" '42704: unrecognized configuration parameter "nosuch"' "unknown key"
	expect_contains "$(admin_err 'SET listen_port = 7000')" "55P02" "restart-only key"
	expect_contains "$(admin_err 'SET listen_port = 7000')" "without restarting" "restart-only key"
	expect_contains "$(admin_err 'SET default_pool_size = 99999')" "22023" "out of range"
	expect_contains "$(admin_err 'SET default_pool_size = 99999')" "between 0 and 10000" "out of range"
	expect_contains "$(admin_err 'SET default_pool_size = many')" "must be an integer" "not a number"
	expect_contains "$(admin_err "SET pool_mode = 'sometimes'")" "unknown pool_mode" "bad word"
	expect_contains "$(admin_err "SET auth_type = 'md5'")" "needs auth_file" "cross-check"
	expect_contains "$(admin_err 'SET default_pool_size = 5' st)" "42501" "SET by a stats user"
	[ "$(column 'SHOW CONFIG' value default_pool_size)" = 1 ] || fail "a refused SET changed something"
	# RELOAD: the file's values win (PgBouncer's rule)
	admin_psql RELOAD
	sleep 0.5
	[ "$(column 'SHOW CONFIG' value default_pool_size)" = 2 ] || fail "RELOAD kept the SET value"
	[ "$(column 'SHOW CONFIG' value pool_mode)" = transaction ] || fail "RELOAD kept pool_mode"
	grep -q 'SET default_pool_size = "1" (worker' "$SHOAL_LOG" || fail "the master did not log SET"
}

# ------------------------------------------- a real consumer: exporter

test_admin_exporter() {
	local exp=/usr/bin/prometheus-pgbouncer-exporter port n=0 out q
	[ -x $exp ] || fail "$exp missing (make deps installs prometheus-pgbouncer-exporter)"
	shoal_start "$(admin_config workers=2)"
	for q in 1 2 3 4 5; do shoal_psql -d postgres -c "select $q" >/dev/null; done
	port=$(free_port 28432)
	$exp --pgbouncer-host 127.0.0.1 --pgbouncer-port "$SHOAL_PORT" --pgbouncer-user "$DBUSER" \
		--host 127.0.0.1 --port "$port" >"$TMPD/exporter.log" 2>&1 &
	track_pid $!
	until out=$(curl -sf -m 5 "http://127.0.0.1:$port/metrics"); do
		n=$((n + 1))
		[ $n -lt 50 ] || { cat "$TMPD/exporter.log"; fail "the exporter did not answer /metrics"; }
		sleep 0.2
	done
	grep '^pgbouncer_' <<<"$out" | head -20
	q=$(column 'SHOW STATS' total_query_count postgres)
	grep -qE "^pgbouncer_requests_total\{database=\"postgres\"\} $q(\.0)?\$" <<<"$out" ||
		fail "pgbouncer_requests_total is not SHOW STATS' $q"
	grep -qE '^pgbouncer_pool_size\{database="postgres"\} [1-9]' <<<"$out" || fail "no pool_size"
	grep -qE '^pgbouncer_used_clients [1-9]' <<<"$out" || fail "no used_clients"
	grep -qE '^pgbouncer_active_clients\{database="postgres",user="tuser"\}' <<<"$out" || fail "no active_clients"
	if grep -nE 'Traceback|Error|Exception|error' "$TMPD/exporter.log"; then
		fail "errors in the exporter's log"
	fi
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
run_test test_admin_set
run_test test_admin_exporter
run_test test_metrics
run_test test_metrics_http
run_test test_admin_shutdown
run_test test_metrics_health # last: it stops and restarts PostgreSQL
finish
