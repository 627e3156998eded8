#!/bin/bash
# t/integration/run.sh — pgshoal's integration suite: a real PostgreSQL (run
# by an unprivileged user in a temp dir), a real pgshoal started per test
# from a generated config, and libpq clients (psql and the C programs in
# t/integration/*.c, built to $B/t/<name>).
#
#   B=build bash t/integration/run.sh             all tests
#   TESTS="fifo cancel" bash t/integration/run.sh  a subset
#   VERBOSE=1 KEEP=1 ...                           show output, keep logs
#
# Each test is a function run in a subshell with `set -e`; `fail MSG` fails
# it. Output ends with "N passed, N failed"; the exit status is non-zero if
# any test failed.

cd "$(dirname "$0")/../.." || exit 2
. t/integration/lib.sh
shopt -s inherit_errexit

for prog in pool_load fifo cancel pipeline bigvalue worker_kill rawclient; do
	[ -x "$B/t/$prog" ] || die "missing $B/t/$prog (make $B/t/$prog)"
done
[ -x "$B/pgshoal" ] || die "missing $B/pgshoal (make)"
lib_init
pg_start
say "postgres on $PGPORT, pgshoal on $SHOAL_PORT, logs in $TMPD"

SHOAL_CI=$(shoal_conninfo)
DIRECT_CI=$(direct_conninfo)

# ------------------------------------------------------------------ config

test_config_check() {
	local f=$TMPD/good.conf out rc
	shoal_config >"$f"
	"$B/pgshoal" -t "$f" || fail "pgshoal -t on a good config failed"
	printf 'listen_port = %s;\nworkers = 2;\nno_such_setting = 1;\n' "$SHOAL_PORT" >"$TMPD/bad.conf"
	rc=0
	out=$("$B/pgshoal" -t "$TMPD/bad.conf" 2>&1) || rc=$?
	echo "unknown setting: rc=$rc: $out"
	[ $rc -eq 2 ] || fail "exit $rc, want 2"
	expect_contains "$out" "bad.conf:3:" "unknown setting"
	printf 'listen_port = %s;\nworkers = "four";\n' "$SHOAL_PORT" >"$TMPD/bad2.conf"
	rc=0
	out=$("$B/pgshoal" -t "$TMPD/bad2.conf" 2>&1) || rc=$?
	echo "wrong type: rc=$rc: $out"
	[ $rc -eq 2 ] || fail "exit $rc, want 2"
	expect_contains "$out" "bad2.conf:2:" "wrong type"
	printf 'listen_port = %s;\npool_mode = "transaction";\ndefault_pool_size = -5;\n' \
		"$SHOAL_PORT" >"$TMPD/bad3.conf"
	rc=0
	out=$("$B/pgshoal" -t "$TMPD/bad3.conf" 2>&1) || rc=$?
	echo "out of range: rc=$rc: $out"
	[ $rc -eq 2 ] || fail "exit $rc, want 2"
	expect_contains "$out" "bad3.conf:3:" "out of range"
	printf 'workers = 2;\nlisten_port = = %s;\n' "$SHOAL_PORT" >"$TMPD/bad4.conf"
	rc=0
	out=$("$B/pgshoal" -t "$TMPD/bad4.conf" 2>&1) || rc=$?
	echo "syntax error: rc=$rc: $out"
	[ $rc -eq 2 ] || fail "exit $rc, want 2"
	expect_contains "$out" "bad4.conf:2:" "syntax error"
}

# ----------------------------------------------------------- pooling modes

# the session-mode script: temp table and SET survive transactions
session_script() {
	local db=$1 out
	out=$(shoal_psql -d "$db" <<-'EOF'
		create temp table tt (x int);
		set work_mem = '7MB';
		begin;
		insert into tt values (1);
		commit;
		insert into tt values (2);
		select 'count=' || count(*) from tt;
		show work_mem;
	EOF
	) || fail "session script failed: $out"
	echo "$out"
	expect_contains "$out" "count=2" "temp table across transactions"
	expect_contains "$out" "7MB" "SET across transactions"
}

test_session_mode() {
	shoal_start "$(shoal_config pool_mode=session default_pool_size=1)"
	session_script postgres
	# the next session reuses the one server, reset by server_reset_query
	local p1 p2 out
	p1=$(shoal_psql -d postgres -c "set work_mem = '9MB'" -c "select pg_backend_pid()")
	out=$(shoal_psql -d postgres -c "select pg_backend_pid()" -c "show work_mem" \
		-c "select count(*) from pg_class where relpersistence = 't'")
	echo "first session's server $p1; second: $(echo $out)"
	p2=$(echo "$out" | sed -n 1p)
	[ "$p1" = "$p2" ] || fail "the second session got another server ($p1 vs $p2)"
	[ "$(echo "$out" | sed -n 2p)" = 4MB ] || fail "SET leaked into the next session"
	[ "$(echo "$out" | sed -n 3p)" = 0 ] || fail "temp table leaked into the next session"
	# unix socket listener
	out=$(psql -X -At -h "$TMPD" -p "$SHOAL_PORT" -U "$DBUSER" -d postgres -c "select 'unix ok'")
	expect_contains "$out" "unix ok" "unix socket"
}

test_pool_mode_override() {
	# global transaction mode, database "sess" in session mode
	shoal_start "$(shoal_config pool_mode=transaction "databases=( \
		{ name = \"*\"; host = \"$TMPD\"; port = $PGPORT; }, \
		{ name = \"sess\"; host = \"127.0.0.1\"; port = $PGPORT; dbname = \"postgres\"; \
		  pool_size = 2; pool_mode = \"session\"; } )")"
	session_script sess
}

test_transaction_mode() {
	shoal_start "$(shoal_config workers=2 default_pool_size=2)"
	# 10 clients share 2 servers
	"$B/t/pool_load" "$SHOAL_CI" "$DIRECT_CI" 10 20 2 0
	local n
	n=$(pg_server_conns)
	echo "server connections after the load: $n"
	[ "$n" -le 2 ] || fail "$n server connections > 2"
}

test_transaction_error() {
	# a failed transaction ('E') keeps its server until ROLLBACK
	shoal_start "$(shoal_config workers=2 default_pool_size=1)"
	{
		echo "begin;"
		echo "select 1/0;"
		sleep 2
		echo "rollback;"
		echo "select 'after rollback';"
	} | shoal_psql -d postgres -v ON_ERROR_STOP=0 >"$TMPD/txerr.out" 2>&1 &
	local a=$! t0 t1 out
	sleep 0.7
	t0=$(now_ms)
	out=$(shoal_psql -d postgres -c "select 'b ok'")
	t1=$(now_ms)
	wait $a || true
	cat "$TMPD/txerr.out"
	echo "second client: $out after $((t1 - t0)) ms"
	expect_contains "$(cat "$TMPD/txerr.out")" "division by zero" "first client"
	expect_contains "$(cat "$TMPD/txerr.out")" "after rollback" "first client"
	expect_contains "$out" "b ok" "second client"
	[ $((t1 - t0)) -ge 900 ] || fail "second client got the server while the failed transaction was open"
	out=$(shoal_psql -d postgres -c "begin" -c "select 1/0" 2>&1) || true
	out=$(shoal_psql -d postgres -c "select 'next ok'")
	expect_contains "$out" "next ok" "after an aborted client"
}

test_statement_mode() {
	shoal_start "$(shoal_config pool_mode=statement workers=2 default_pool_size=1)"
	local out rc=0
	out=$(shoal_psql -d postgres -c "select 1" -c "select 2" -c "select 3")
	[ "$(echo $out)" = "1 2 3" ] || fail "autocommit statements: $out"
	out=$({
		echo "begin;"
		echo "select 'inside';"
		echo "commit;"
	} | shoal_psql -d postgres 2>&1) || rc=$?
	echo "BEGIN in statement mode: rc=$rc: $out"
	[ $rc -ne 0 ] || fail "a multi-statement transaction was accepted"
	case $out in *inside*) fail "the second statement of a transaction ran" ;; esac
	sleep 0.5
	out=$(pg_sql "select count(*) from pg_stat_activity where usename = '$DBUSER' and state like 'idle in transaction%'")
	[ "$out" = 0 ] || fail "a server was left idle in transaction"
	out=$(shoal_psql -d postgres -c "select 'still ok'")
	expect_contains "$out" "still ok" "after the rejected transaction"
}

# ------------------------------------------------------- the shared pool

test_shared_pool() {
	shoal_start "$(shoal_config workers=4 default_pool_size=2)"
	"$B/t/pool_load" "$SHOAL_CI" "$DIRECT_CI" 40 50 2 4
	sleep 0.5
	local n
	n=$(pg_server_conns)
	echo "server connections after the load: $n"
	[ "$n" -le 2 ] || fail "$n server connections > 2"
}

test_fifo() {
	shoal_start "$(shoal_config workers=4 default_pool_size=1)"
	"$B/t/fifo" "$SHOAL_CI" 0 1 2 3 0
	"$B/t/fifo" "$SHOAL_CI" 3 0 3 2 1
}

test_cancel() {
	shoal_start "$(shoal_config workers=4 default_pool_size=2)"
	"$B/t/cancel" "$SHOAL_CI" 4 8
}

# ------------------------------------------------------- big data, pipelines

# sample pgshoal's max RSS (kB) into FILE until the flag file disappears
rss_sampler() {
	local file=$1 flag=$2 max=0 r
	while [ -e "$flag" ]; do
		r=$(shoal_rss_kb)
		[ -n "$r" ] && [ "$r" -gt "$max" ] && max=$r
		echo "$max" >"$file"
		sleep 0.1
	done
}

test_copy_bigvalue() {
	shoal_start "$(shoal_config workers=2 default_pool_size=2)"
	local mb=${COPY_MB:-40} f=$TMPD/copy.data rows s1 s2 rss
	touch "$TMPD/rss.flag"
	rss_sampler "$TMPD/rss.max" "$TMPD/rss.flag" &
	local sampler=$!
	# ~100 bytes a row
	awk -v n=$((mb * 10486)) 'BEGIN { pad = sprintf("%080d", 0);
		for (i = 1; i <= n; i++) printf "%d\t%s-%d\n", i, pad, i }' >"$f"
	shoal_psql -d postgres -c "drop table if exists copy_t" -c "create table copy_t (id int, v text)"
	shoal_psql -d postgres -c "\\copy copy_t from '$f'"
	rows=$(shoal_psql -d postgres -c "select count(*) from copy_t")
	echo "COPY FROM STDIN: $(stat -c %s "$f") bytes, $rows rows"
	[ "$rows" = $((mb * 10486)) ] || fail "rows: $rows"
	s1=$(shoal_psql -d postgres -c "copy (select * from copy_t order by id) to stdout" | md5sum)
	s2=$(md5sum <"$f")
	echo "COPY TO STDOUT md5 $s1 vs file $s2"
	[ "${s1%% *}" = "${s2%% *}" ] || fail "COPY TO STDOUT differs"
	"$B/t/bigvalue" "$SHOAL_CI" "${BIG_MB:-50}"
	rm -f "$TMPD/rss.flag" "$f"
	wait $sampler
	rss=$(cat "$TMPD/rss.max")
	echo "pgshoal max RSS over its processes: $((rss / 1024)) MB"
	[ "$rss" -lt $((64 * 1024)) ] || fail "RSS $((rss / 1024)) MB >= 64 MB"
	shoal_psql -d postgres -c "drop table copy_t"
}

test_pipeline() {
	shoal_start "$(shoal_config workers=2 default_pool_size=2)"
	"$B/t/pipeline" "$SHOAL_CI" 4 10 100
}

# ------------------------------------------------------------------ limits

test_max_client_conn() {
	shoal_start "$(shoal_config workers=2 max_client_conn=5 default_pool_size=2)"
	local i n pids="" out
	sleep 0.3 # the probe client of shoal_start has gone
	rm -f "$TMPD/mc.release"
	for i in 1 2 3 4 5; do
		{
			echo "select 'c$i first';"
			while [ ! -e "$TMPD/mc.release" ]; do sleep 0.1; done
			echo "select 'c$i second';"
		} | shoal_psql -d postgres >"$TMPD/mc$i.out" 2>&1 &
		pids="$pids $!"
	done
	for n in $(seq 100); do # all five connected and answered
		[ "$(cat "$TMPD"/mc?.out | grep -c first)" -eq 5 ] && break
		sleep 0.1
	done
	out=$("$B/t/rawclient" startup 127.0.0.1 "$SHOAL_PORT" postgres "$DBUSER" || true)
	echo "6th client: $out"
	touch "$TMPD/mc.release"
	expect_contains "$out" "53300" "6th client"
	for i in $pids; do wait "$i" || fail "a client below the limit failed"; done
	for i in 1 2 3 4 5; do
		expect_contains "$(cat "$TMPD/mc$i.out")" "c$i second" "client $i"
	done
	out=$(shoal_psql -d postgres -c "select 'after ok'")
	expect_contains "$out" "after ok" "a client after the others left"
}

test_unknown_database() {
	SHOAL_PROBE_DB=app shoal_start "$(shoal_config "databases=( \
		{ name = \"app\"; host = \"127.0.0.1\"; port = $PGPORT; dbname = \"postgres\"; } )")"
	local out
	out=$("$B/t/rawclient" startup 127.0.0.1 "$SHOAL_PORT" nosuchdb "$DBUSER" || true)
	echo "unknown database: $out"
	expect_contains "$out" "3D000" "unknown database"
	out=$(shoal_psql -d app -c "select 'app ok'")
	expect_contains "$out" "app ok" "known database"
}

test_malformed() {
	shoal_start "$(shoal_config workers=4 default_pool_size=2)"
	local before after m out bad=0
	before=$(shoal_workers | tr '\n' ' ')
	"$B/t/pool_load" "$SHOAL_CI" "$DIRECT_CI" 6 1500 2 0 >"$TMPD/bg.out" 2>&1 &
	local bg=$!
	for m in garbage biglen shortlen badproto nonul partial badmsg hugemsg cancel ssl \
		garbage biglen badmsg hugemsg; do
		out=$("$B/t/rawclient" "$m" 127.0.0.1 "$SHOAL_PORT" postgres "$DBUSER") || {
			echo "BAD: $out"
			bad=1
		}
		echo "$out"
		case $m in biglen | hugemsg)
			case $out in *error*) ;; *)
				echo "BAD: no ErrorResponse for $m"
				bad=1
				;;
			esac
			;;
		esac
	done
	local rc=0
	wait $bg || rc=$?
	cat "$TMPD/bg.out"
	[ $rc -eq 0 ] || fail "the concurrent client load saw errors"
	after=$(shoal_workers | tr '\n' ' ')
	echo "workers before: $before after: $after"
	[ "$before" = "$after" ] || fail "a worker died (pids changed)"
	kill -0 "$SHOAL_PID" || fail "pgshoal died"
	[ $bad -eq 0 ] || fail "a malformed client was not closed or got no error"
	out=$(shoal_psql -d postgres -c "select 'still ok'")
	expect_contains "$out" "still ok" "after the garbage"
}

test_query_wait_timeout() {
	shoal_start "$(shoal_config workers=2 default_pool_size=1 query_wait_timeout=1.0)"
	shoal_psql -d postgres -c "begin; select pg_sleep(4); commit" >/dev/null 2>&1 &
	local holder=$! t0 t1 out rc=0
	sleep 0.5
	t0=$(now_ms)
	out=$(shoal_psql -d postgres -v VERBOSITY=verbose -c "select 'got a server'" 2>&1) || rc=$?
	t1=$(now_ms)
	echo "waiting client: rc=$rc after $((t1 - t0)) ms: $out"
	wait $holder || fail "the holder failed"
	[ $rc -ne 0 ] || fail "the waiting client was served"
	[ $((t1 - t0)) -ge 800 ] && [ $((t1 - t0)) -le 3300 ] ||
		fail "error after $((t1 - t0)) ms, want about 1000"
	out=$(shoal_psql -d postgres -c "select 'after ok'")
	expect_contains "$out" "after ok" "after the timeout"
}

test_idle_transaction_timeout() {
	shoal_start "$(shoal_config workers=2 default_pool_size=1 idle_transaction_timeout=1.0)"
	local out rc=0 n
	out=$({
		echo "begin;"
		echo "select 'in tx';"
		sleep 3
		echo "select 'still in tx';"
	} | shoal_psql -d postgres 2>&1) || rc=$?
	echo "idle in transaction client: rc=$rc: $out"
	[ $rc -ne 0 ] || fail "the client idle in transaction was not disconnected"
	case $out in *"still in tx"*) fail "the client kept its transaction" ;; esac
	n=$(pg_sql "select count(*) from pg_stat_activity where usename = '$DBUSER' and state like 'idle in transaction%'")
	[ "$n" = 0 ] || fail "$n servers still idle in transaction"
	out=$(shoal_psql -d postgres -c "select 'after ok'")
	expect_contains "$out" "after ok" "the pool after the timeout"
}

test_client_login_timeout() {
	shoal_start "$(shoal_config workers=2 client_login_timeout=1.0)"
	local m out ms
	for m in silent partial; do
		out=$("$B/t/rawclient" "$m" 127.0.0.1 "$SHOAL_PORT") || fail "$m: $out"
		echo "$out"
		ms=$(echo "$out" | sed -n 's/.*closed after \([0-9]*\) ms.*/\1/p')
		# a silent client must get the whole timeout; a partial packet may
		# also be refused at once
		[ -n "$ms" ] && [ "$ms" -le 3500 ] ||
			fail "$m client closed after ${ms:-?} ms, want about 1000"
		[ "$m" = partial ] || [ "$ms" -ge 800 ] ||
			fail "$m client closed after $ms ms, before the timeout of 1000"
	done
}

test_server_down() {
	local dead
	dead=$(free_port 24000)
	shoal_start "$(shoal_config workers=2 server_login_retry=1.0 "databases=( \
		{ name = \"*\"; host = \"$TMPD\"; port = $PGPORT; }, \
		{ name = \"down\"; host = \"127.0.0.1\"; port = $dead; dbname = \"postgres\"; } )")"
	local out rc=0 t0 t1
	t0=$(now_ms)
	out=$(timeout 30 psql -X -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d down \
		-c "select 'reached'" 2>&1) || rc=$?
	t1=$(now_ms)
	echo "database on a closed port: rc=$rc after $((t1 - t0)) ms: $out"
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "rc $rc (124 = no answer in 30 s)"
	kill -0 "$SHOAL_PID" || fail "pgshoal died"
	out=$(shoal_psql -d postgres -c "select 'other db ok'")
	expect_contains "$out" "other db ok" "another database"
	rc=0
	out=$(timeout 30 psql -X -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d down \
		-c "select 'reached'" 2>&1) || rc=$?
	echo "again: rc=$rc: $out"
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "second try: rc $rc"
}

# ------------------------------------------------------------ crash repair

# worker index from a worker's process title ("pgshoal: worker 3"), or -1
worker_index_of() {
	local a
	a=$(ps -o args= -p "$1" 2>/dev/null)
	if [[ $a =~ worker\ ([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo -1; fi
}

test_worker_kill() {
	shoal_start "$(shoal_config workers=4 default_pool_size=4)"
	local victim idx n i out
	victim=$(shoal_workers | sed -n 2p)
	[ -n "$victim" ] || fail "no worker processes under the master $SHOAL_PID"
	idx=$(worker_index_of "$victim")
	echo "killing worker pid $victim (index $idx) during the load"
	"$B/t/worker_kill" "$SHOAL_CI" 16 6 "$victim" 2000 "$idx"
	kill -0 "$SHOAL_PID" || fail "the master died"
	for i in $(seq 50); do
		n=$(shoal_workers | wc -l)
		[ "$n" -eq 4 ] && break
		sleep 0.1
	done
	out=$(shoal_workers | tr '\n' ' ')
	echo "workers now: $out"
	[ "$n" -eq 4 ] || fail "$n workers, want 4 (not respawned)"
	case " $out " in *" $victim "*) fail "the killed worker is still listed" ;; esac
	sleep 1
	n=$(pg_server_conns)
	echo "server connections after the load: $n"
	[ "$n" -le 4 ] || fail "$n server connections > pool_size 4"
	# the pool recovered and every worker (the new one too) serves
	"$B/t/pool_load" "$SHOAL_CI" "$DIRECT_CI" 24 10 4 4
	sleep 1
	n=$(pg_server_conns)
	echo "server connections at the end: $n"
	[ "$n" -le 4 ] || fail "$n server connections leaked"
}

run_test test_config_check
run_test test_session_mode
run_test test_pool_mode_override
run_test test_transaction_mode
run_test test_transaction_error
run_test test_statement_mode
run_test test_shared_pool
run_test test_fifo
run_test test_cancel
run_test test_copy_bigvalue
run_test test_pipeline
run_test test_max_client_conn
run_test test_unknown_database
run_test test_malformed
run_test test_query_wait_timeout
run_test test_idle_transaction_timeout
run_test test_client_login_timeout
run_test test_server_down
run_test test_worker_kill
finish
