#!/bin/bash
# t/accept/load.sh — the acceptance load run, as for a PgBouncer deployment:
# a throwaway PostgreSQL, pgshoal in transaction mode with
# max_client_conn = 1000, default_pool_size = 50, reserve_pool_size = 10;
# `pgbench -i -s 10` through pgshoal, then `pgbench -c 500 -j 8 -T $T`
# through pgshoal. Passes only with 0 failed transactions and 0 connection
# errors.
#
#   B=build T=30 bash t/accept/load.sh       (make accept; make check uses T=10)
#   DIRECT=1 ...    also run the same pgbench straight at PostgreSQL and
#                   print its TPS for comparison
#   CLIENTS=500 JOBS=8 SCALE=10 WORKERS=<n>   override the shape of the run
#
# Exit codes: 0 ok, 1 errors (failed transactions, connection errors),
# 2 unreachable (PostgreSQL or pgshoal did not come up), 3 missing tool.

cd "$(dirname "$0")/../.." || exit 2
T=${T:-30}
CLIENTS=${CLIENTS:-500}
JOBS=${JOBS:-8}
SCALE=${SCALE:-10}

. t/integration/lib.sh

for tool in pgbench psql "$PGBIN/initdb" "$PGBIN/pg_ctl" "$B/pgshoal"; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "load.sh: missing $tool" >&2
		exit 3
	}
done

# 500 clients + pgshoal's 1000 client slots + servers, in this shell and children
want=$((CLIENTS * 2 + 1200))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want" 2>/dev/null ||
	ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" -ge $((CLIENTS + 100)) ] || {
	echo "load.sh: ulimit -n is $(ulimit -n); need at least $((CLIENTS + 100))" >&2
	exit 3
}

PG_MAX_CONN=$((CLIENTS + 100)) # room for the direct comparison run
lib_init
pg_start || exit 2
conf=$(shoal_config workers="${WORKERS:--}" pool_mode=transaction max_client_conn=1000 \
	default_pool_size=50 reserve_pool_size=10 query_wait_timeout=120.0 \
	client_login_timeout=60.0)
shoal_start "$conf" || {
	echo "load.sh: pgshoal unreachable" >&2
	exit 2
}
echo "# postgres on $PGPORT, pgshoal on $SHOAL_PORT (pid $SHOAL_PID), logs in $TMPD"

# run_pgbench LABEL PORT USER: prints TPS; returns 0 clean, 1 errors
run_pgbench() {
	local label=$1 port=$2 user=$3 out=$TMPD/pgbench-$1.out err=$TMPD/pgbench-$1.err rc=0
	pgbench -c "$CLIENTS" -j "$JOBS" -T "$T" -h 127.0.0.1 -p "$port" -U "$user" postgres \
		>"$out" 2>"$err" || rc=$?
	local tps processed failed errs
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	errs=$(grep -ciE 'error|abort|fatal|could not' "$err")
	echo "$label: pgbench rc=$rc, transactions=${processed:-?}, failed=${failed:-?}," \
		"stderr error lines=$errs, tps=${tps:-?}"
	if [ $rc -ne 0 ] || [ "${failed:-x}" != 0 ] || [ "$errs" -ne 0 ] ||
		[ -z "$processed" ] || [ "$processed" = 0 ]; then
		grep -iE 'error|abort|fatal|could not' "$err" | sort | uniq -c | sort -rn | head -10
		tail -5 "$out"
		return 1
	fi
	return 0
}

echo "# pgbench -i -s $SCALE through pgshoal"
if ! pgbench -i -s "$SCALE" -h 127.0.0.1 -p "$SHOAL_PORT" -U "$DBUSER" postgres \
	>"$TMPD/init.out" 2>&1; then
	tail -10 "$TMPD/init.out"
	echo "load.sh: pgbench -i through pgshoal failed"
	exit 1
fi
tail -1 "$TMPD/init.out"

echo "# pgbench -c $CLIENTS -j $JOBS -T $T through pgshoal"
rc=0
run_pgbench pgshoal "$SHOAL_PORT" "$DBUSER" || rc=1
kill -0 "$SHOAL_PID" 2>/dev/null || {
	echo "load.sh: pgshoal died during the run"
	rc=1
}
n=$(pg_server_conns)
echo "server connections after the run: $n (limit 60)"
[ "$n" -le 60 ] || rc=1

if [ -n "${DIRECT:-}" ]; then
	echo "# the same straight at PostgreSQL, for comparison"
	run_pgbench direct "$PGPORT" "$DBUSER" || echo "(the direct run had errors)"
fi
if [ $rc -eq 0 ]; then echo "load.sh: ok"; else echo "load.sh: FAILED (logs in $TMPD)"; fi
[ $rc -eq 0 ] || KEEP=1
exit $rc
