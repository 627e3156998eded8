#!/bin/bash
# t/integration/prepared.sh — named prepared statements in transaction mode
# (issue #7): real drivers through pgshoal with several workers and a pool
# smaller than the number of clients, against a real PostgreSQL.
#
#   B=build bash t/integration/prepared.sh
#   TESTS="pgbench_eviction" ...   a subset;   T=10 for longer pgbench runs
#
# Checks: pgbench -M prepared (-S and TPC-B) with 0 failed transactions;
# the bound (max_prepared_statements) holds on every server, sampled while
# pgbench runs many distinct statements; the libpq program prepared.c
# (many clients, names and texts, pipelines with errors, raw protocol
# sequences); psycopg 3 with prepare_threshold=0; node-postgres named
# queries when its package is installed (t/integration/node_modules).

cd "$(dirname "$0")/../.." || exit 2
. t/integration/lib.sh
shopt -s inherit_errexit

[ -x "$B/t/prepared" ] || die "missing $B/t/prepared (make $B/t/prepared)"
[ -x "$B/pgshoal" ] || die "missing $B/pgshoal (make)"
lib_init
pg_start
say "postgres on $PGPORT, pgshoal on $SHOAL_PORT, logs in $TMPD"
T=${T:-5}
SHOAL_CI=$(shoal_conninfo)
pgbench -i -s 2 -q -h 127.0.0.1 -p "$PGPORT" -U postgres postgres >"$TMPD/pgbench-init.log" 2>&1 ||
	die "pgbench -i failed: $(tail -3 "$TMPD/pgbench-init.log")"
pg_sql "grant all on all tables in schema public to $DBUSER" >/dev/null

# prepared_config [key=value ...]: transaction mode, 2 workers, a small pool
prepared_config() {
	shoal_config workers=2 default_pool_size=8 stats_users="$DBUSER" "$@"
}

# run_pgbench OUTFILE ARGS...: pgbench through pgshoal; fails unless every
# transaction went through
run_pgbench() {
	local out=$1 rc=0
	shift
	timeout $((T + 60)) pgbench -n -M prepared -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" "$@" \
		postgres >"$out" 2>&1 || rc=$?
	grep -E "processed|failed|tps|abort|error" "$out" | head -8
	[ $rc -eq 0 ] || fail "pgbench exited $rc"
	grep -q "number of failed transactions: 0 " "$out" || fail "failed transactions"
	! grep -qiE "aborted|error" "$out" || fail "pgbench reported errors"
}

show() { psql -X -q -At -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" -d pgbouncer -c "$1"; }

# the server-side counts: SHOW SERVERS' prepared_statements column
max_server_prepared() {
	show "SHOW SERVERS" | awk -F'|' '{ if ($20 > m) m = $20 } END { print m + 0 }'
}

# ------------------------------------------------------------------ tests

# pgbench -S, 50 clients on 4 threads, pool of 8: every select runs on
# whichever server is free, prepared there on demand
test_pgbench_select() {
	shoal_start "$(prepared_config)"
	run_pgbench "$TMPD/select.out" -S -c 50 -j 4 -T "$T"
	local s
	s=$(show "SHOW STATS_TOTALS" | awk -F'|' '$1 == "postgres" { print $10, $11, $12 }')
	echo "client parses, server parses, binds: $s"
	set -- $s
	[ "$1" -ge 50 ] || fail "client_parse_count $1 < 50"
	[ "$3" -gt 1000 ] || fail "bind_count $3"
	[ "$2" -le $((8 * 2)) ] || fail "server_parse_count $2: the 8 servers should each prepare once"
}

# TPC-B: BEGIN ... END holds a server across statements. pgbench prepares
# with a blocking PQprepare, so a thread whose other client holds a server
# in a transaction waits on itself when the pool is full — with any pooler.
# One client per thread avoids that; the pool is still smaller than the clients.
test_pgbench_tpcb() {
	shoal_start "$(prepared_config default_pool_size=12)"
	run_pgbench "$TMPD/tpcb.out" -c 50 -j 50 -T "$T"
}

# statement mode: the server goes back after every statement
test_statement_mode() {
	shoal_start "$(prepared_config pool_mode=statement default_pool_size=4)"
	run_pgbench "$TMPD/stmt.out" -S -c 20 -j 4 -T 2
}

# 30 distinct statements per transaction-free script with a bound of 10:
# eviction all the time; a sampler through pgshoal (simple protocol, so it
# lands on any server) reads pg_prepared_statements there, and SHOW SERVERS
# reports each registry; neither may exceed the bound.
test_pgbench_eviction() {
	local i n sampler f=$TMPD/many.sql
	shoal_start "$(prepared_config max_prepared_statements=10 default_pool_size=6)"
	printf '\\set x random(1, 1000)\n' >"$f"
	for i in $(seq 1 30); do echo "SELECT $i + :x::int AS v$i;" >>"$f"; done
	(
		for i in $(seq 1 $((T * 10))); do
			shoal_psql -d postgres -c "select count(*) from pg_prepared_statements" 2>/dev/null || true
			max_server_prepared
			sleep 0.1
		done
	) >"$TMPD/samples" &
	sampler=$!
	run_pgbench "$TMPD/many.out" -f "$f" -c 40 -j 4 -T "$T"
	wait "$sampler"
	n=$(sort -n "$TMPD/samples" | tail -1)
	echo "largest sample of prepared statements on a server: $n ($(wc -l <"$TMPD/samples") samples)"
	[ -n "$n" ] && [ "$n" -le 10 ] || fail "a server held $n prepared statements (bound 10)"
	[ "$n" -ge 5 ] || fail "samples never saw the statements ($n)"
	n=$(show "SHOW STATS_TOTALS" | awk -F'|' '$1 == "postgres" { print $11 }')
	[ "$n" -gt 100 ] || fail "server_parse_count $n: no eviction and re-prepare seen"
	# after the run every server is within the bound too (a sampler may be late)
	for i in $(seq 1 12); do
		n=$(shoal_psql -d postgres -c "select count(*) from pg_prepared_statements")
		[ "$n" -le 10 ] || fail "$n prepared statements on a server"
	done
}

# the libpq program: many clients, pipelines, exact reply sequences
test_libpq_clients() {
	shoal_start "$(prepared_config default_pool_size=3)"
	"$B/t/prepared" "$SHOAL_CI" 127.0.0.1 "$SHOAL_PORT" "$DBUSER" postgres 16 60 ||
		fail "prepared.c failed"
	# the same program straight against PostgreSQL: the expectations are PostgreSQL's
	"$B/t/prepared" "$(direct_conninfo)" 127.0.0.1 "$PGPORT" postgres postgres 2 5 >/dev/null ||
		fail "prepared.c fails against PostgreSQL itself"
}

# pgshoal keeps unnamed statements and pipelines as before when the feature is off
test_disabled() {
	shoal_start "$(prepared_config max_prepared_statements=0)"
	out=$(shoal_psql -d postgres -c "select 1" 2>&1)
	expect_contains "$out" "1" "plain query"
	out=$(show "SHOW MEM")
	case $out in *shm_prepared*) fail "registry allocated with max_prepared_statements = 0" ;; esac
	out=$(timeout 30 pgbench -n -M prepared -c 4 -j 4 -t 20 -S -h 127.0.0.1 -p "$SHOAL_PORT" \
		-U "$DBUSER" postgres 2>&1 || true)
	# the client's own name reaches the servers: one that lacks it, or has it from another client
	echo "$out" | grep -qE 'prepared statement "P_0" (does not exist|already exists)' ||
		fail "named statements should be untracked when disabled: $out"
}

# psycopg 3 prepares every statement at once with prepare_threshold=0
test_psycopg() {
	/usr/bin/python3 -c 'import psycopg' 2>/dev/null || fail "python3-psycopg missing (make deps)"
	shoal_start "$(prepared_config default_pool_size=2)"
	/usr/bin/python3 - "$SHOAL_CI" <<-'EOF'
		import sys, threading, psycopg
		errors = []
		def client(k):
		    try:
		        with psycopg.connect(sys.argv[1], prepare_threshold=0, autocommit=True) as c:
		            for i in range(60):
		                assert c.execute("select %s::int + %s::int", (i, k)).fetchone()[0] == i + k
		                if i % 5 == 0:
		                    with c.transaction():
		                        c.execute("select pg_sleep(0.001)")
		                        assert c.execute("select %s::text || 'x'", (str(k),)).fetchone()[0] == f"{k}x"
		    except Exception as e:
		        errors.append(repr(e))
		ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
		for t in ts: t.start()
		for t in ts: t.join()
		print("psycopg: 8 clients x 60 statements, errors:", errors)
		sys.exit(1 if errors else 0)
	EOF
	# SHOW CLIENTS / SHOW SERVERS count the statements (column 20)
	/usr/bin/python3 - "$SHOAL_CI" "$(shoal_conninfo pgbouncer)" <<-'EOF'
		import sys, psycopg
		with psycopg.connect(sys.argv[1], prepare_threshold=0, autocommit=True) as c:
		    c.execute("select %s::int", (1,))
		    c.execute("select %s::text", ("x",))
		    with psycopg.connect(sys.argv[2], autocommit=True) as a:
		        cl = [r[19] for r in a.execute("SHOW CLIENTS", prepare=False).fetchall()]
		        sv = [r[19] for r in a.execute("SHOW SERVERS", prepare=False).fetchall()]
		print("prepared_statements: clients", cl, "servers", sv)
		sys.exit(0 if 2 in cl and sum(sv) >= 2 else 1)
	EOF
}

# node-postgres named queries, when t/integration/node_modules has "pg"
test_node_pg() {
	if [ ! -d t/integration/node_modules/pg ]; then
		say "node-postgres not installed (make deps-node): skipped"
		return 0
	fi
	shoal_start "$(prepared_config default_pool_size=2)"
	PGHOST=127.0.0.1 PGPORT=$SHOAL_PORT PGUSER=$DBUSER PGDATABASE=postgres \
		timeout 60 node t/integration/prepared_node.js || fail "node-postgres named queries failed"
}

run_test test_pgbench_select
run_test test_pgbench_tpcb
run_test test_statement_mode
run_test test_pgbench_eviction
run_test test_libpq_clients
run_test test_disabled
run_test test_psycopg
run_test test_node_pg
finish
