#!/usr/bin/env bash
# t/bench/bench.sh — pgshoal against PgBouncer and direct PostgreSQL.
#
# Starts a throwaway PostgreSQL (as an unprivileged user, in a /tmp folder),
# PgBouncer and pgshoal with the same pool settings (transaction mode, pool
# 50), then runs each workload against every target, interleaved
# (A B C C B A, REPEAT times), and prints a markdown table: TPS (median,
# min-max), average and p99 latency, failed transactions and the CPU µs per
# transaction of the pooler, of PostgreSQL and of pgbench. Results also go to
# t/bench/results/latest.md, latest.csv (one row per workload and target)
# and runs.csv (one row per run). Everything it starts is stopped by pid on
# exit.
#
# Environment (all optional):
#   B          build dir holding pgshoal                  (default: build)
#   T          seconds per pgbench run                    (default: 10; FULL: 30)
#   REPEAT     rounds of A B C C B A                      (default: 1; FULL: 2)
#   WORKLOADS  comma list of S<n>, TPCB<n>, SC<n>, SCT<n>, SEXT<n>, SP<n>, IDLE<n>
#              (-S, TPC-B, -S -C, -S -C over client TLS, -S -M extended,
#              -S -M prepared, <n> idle clients' memory). SCT: every target
#              gets a harness-made certificate (PostgreSQL ssl = on, the
#              poolers' client TLS) and pgbench connects with sslmode=require;
#              every other workload runs with sslmode=disable, so TLS being on
#              changes nothing else (default: S100,SP100,S500,TPCB100,SC100,
#              IDLE1000; FULL: all of S10,S100,SP100,S500,SP500,TPCB10,TPCB100,
#              TPCB500,SC100,SEXT100,IDLE1000,IDLE10000). TPC-B is not run
#              with -M prepared: pgbench's blocking PQprepare deadlocks a
#              thread with several clients in any transaction-mode pooler.
#   WORKERS    pgshoal workers; a comma list (1,2,4,8) runs one pgshoal per
#              value (PGSHOAL_W<n>) and adds PGBOUNCER_X2, two PgBouncers on
#              one port with so_reuseport and the pool split 25 + 25 (default: 2)
#   J          pgbench threads                            (default: number of CPUs)
#   POOL       pool size of every pooler                  (default: 50)
#   PGBIN      PostgreSQL binaries       (default: newest /usr/lib/postgresql/*/bin)
#   BENCH_USER unprivileged user running PostgreSQL and PgBouncer (default: pgshoal_bench)
#   KEEP=1     keep the temp folder (logs, data) after the run
#   FULL=1     the whole matrix (defaults above)
#
# Exit status: 0; 1 when something could not be set up or a target did not
# start; 3 when a pooler died or a pgshoal worker was respawned during the
# runs (the table is still written; see its Notes). Failed transactions and
# error log lines are reported in the Notes but do not change the status.
#
# CPU: utime+stime from /proc/PID/stat before and after each run (a
# process's stat covers all its threads): every pgshoal process (master +
# workers, and the master's cutime/cstime for workers that exited), the
# PgBouncer process(es), the postmaster plus its live children plus its
# cutime/cstime (backends that exited during the run), and pgbench's own
# user+sys from GNU time. p99 comes from pgbench's per-transaction log.

set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
FULL=${FULL:-}
if [ -n "$FULL" ]; then
	T=${T:-30}
	REPEAT=${REPEAT:-2}
	WORKLOADS=${WORKLOADS:-S10,S100,SP100,S500,SP500,TPCB10,TPCB100,TPCB500,SC100,SEXT100,IDLE1000,IDLE10000}
else
	T=${T:-10}
	REPEAT=${REPEAT:-1}
	WORKLOADS=${WORKLOADS:-S100,SP100,S500,TPCB100,SC100,IDLE1000}
fi
WORKERS=${WORKERS:-2}
NCPU=$(nproc)
J=${J:-$NCPU}
POOL=${POOL:-50}
BENCH_USER=${BENCH_USER:-pgshoal_bench}
PG_MAX_CONN=300
RESULTS=$HERE/results
TMPD=
PM_PID=
EXIT_RC=0
T_START=$(date +%s)

say() { printf '# %s\n' "$*" >&2; }
die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}
note() { # an oddity worth reporting: goes into the results' Notes
	printf -- '- %s\n' "$*" >>"$TMPD/notes"
	printf '# NOTE: %s\n' "$*" >&2
}

# ------------------------------------------------------------ dependencies

install_deps() {
	local missing=""
	command -v pgbouncer >/dev/null || missing="$missing pgbouncer"
	[ -x /usr/bin/time ] || missing="$missing time"
	command -v pgbench >/dev/null || missing="$missing postgresql-contrib"
	ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
	command -v pg_config >/dev/null && [ -f "$(pg_config --includedir)/libpq-fe.h" ] ||
		missing="$missing libpq-dev"
	command -v cc >/dev/null || missing="$missing gcc"
	command -v psql >/dev/null || missing="$missing postgresql-client"
	command -v pgrep >/dev/null || missing="$missing procps"
	[ -z "$missing" ] && return 0
	[ "$(id -u)" = 0 ] || die "missing packages; run as root: apt-get install -y$missing"
	say "apt-get install -y$missing"
	# Debian starts a pgbouncer (and postgresql) service on install: forbid
	# it with policy-rc.d unless one is already there, and stop it after.
	local policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >"/tmp/pgshoal-bench-apt.$$" 2>&1 ||
		{ apt-get update >/dev/null 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >>"/tmp/pgshoal-bench-apt.$$" 2>&1; }
	local rc=$?
	[ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
	if [ $rc -ne 0 ]; then
		tail -20 "/tmp/pgshoal-bench-apt.$$" >&2
		rm -f "/tmp/pgshoal-bench-apt.$$"
		die "apt-get install failed"
	fi
	rm -f "/tmp/pgshoal-bench-apt.$$"
	case $missing in *pgbouncer*)
		if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
			systemctl disable --now pgbouncer >/dev/null 2>&1
		fi
		[ -x /etc/init.d/pgbouncer ] && /etc/init.d/pgbouncer stop >/dev/null 2>&1
		command -v update-rc.d >/dev/null && update-rc.d pgbouncer disable >/dev/null 2>&1
		;;
	esac
	return 0
}

ensure_user() {
	if [ "$(id -u)" != 0 ]; then
		BENCH_USER=$(id -un)
		return 0
	fi
	id "$BENCH_USER" >/dev/null 2>&1 || useradd -r -M -s /bin/bash "$BENCH_USER" ||
		die "useradd $BENCH_USER failed"
}

# as_user CMD...: run CMD as BENCH_USER in the same process (exec, so $! of
# "as_user ... &" is the command's own pid)
as_user() {
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid="$(id -u "$BENCH_USER")" --regid="$(id -g "$BENCH_USER")" \
			--init-groups -- "$@"
	else
		exec "$@"
	fi
}

# ------------------------------------------------------------ ports, pids

NEXT_PORT=27400
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { # first free port from NEXT_PORT (below 32768), into PORT_PICKED
	while [ "$NEXT_PORT" -lt 32768 ]; do
		if port_free "$NEXT_PORT" && [ ! -e "/tmp/.s.PGSQL.$NEXT_PORT" ]; then
			PORT_PICKED=$NEXT_PORT
			NEXT_PORT=$((NEXT_PORT + 1))
			return 0
		fi
		NEXT_PORT=$((NEXT_PORT + 1))
	done
	die "no free port below 32768"
}

track_pid() { echo "$1" >>"$TMPD/pids"; }

# stop PID and its direct children (pgshoal's workers): SIGTERM, then SIGKILL
stop_tree() {
	local p=$1 sig=${2:-TERM} kids n=0
	kids=$(pgrep -P "$p" 2>/dev/null | tr '\n' ' ')
	kill -"$sig" "$p" 2>/dev/null
	while kill -0 "$p" 2>/dev/null && [ $n -lt 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	kill -KILL "$p" $kids 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	if [ -n "${TMPD:-}" ] && [ -d "$TMPD" ]; then
		if [ -f "$TMPD/pids" ]; then
			for p in $(tac "$TMPD/pids"); do
				kill -0 "$p" 2>/dev/null && stop_tree "$p" INT
			done
		fi
		if [ -n "$PM_PID" ] && kill -0 "$PM_PID" 2>/dev/null; then
			(as_user "$PGBIN/pg_ctl" -D "$TMPD/data" -m immediate -w stop) >/dev/null 2>&1 ||
				stop_tree "$PM_PID" QUIT
		fi
		mkdir -p "$RESULTS/logs" && rm -f "$RESULTS"/logs/*.log
		cp "$TMPD"/*.log "$RESULTS/logs/" 2>/dev/null
		if [ -n "${KEEP:-}" ]; then
			say "kept $TMPD"
		else
			rm -rf "$TMPD"
		fi
	fi
	exit $rc
}

# ------------------------------------------------------------- CPU, memory

CLK_TCK=$(getconf CLK_TCK)
TICKS=0
# add_ticks PID...: TICKS += utime+stime+cutime+cstime of each (0 if gone)
add_ticks() {
	local p s f
	for p in "$@"; do
		{ read -r s <"/proc/$p/stat"; } 2>/dev/null || continue
		s=${s##*) }
		read -r -a f <<<"$s"
		TICKS=$((TICKS + f[11] + f[12] + f[13] + f[14]))
	done
}
# pooler processes of a target: pgshoal's master and workers, PgBouncer(s)
target_pids() {
	local p
	for p in ${TPIDS[$1]}; do
		echo "$p"
		pgrep -P "$p" 2>/dev/null
	done
}
# CPU ticks of a target's processes. /proc/PID/stat sums all the threads of
# a process; the master's cutime/cstime holds workers that exited.
pooler_ticks() {
	TICKS=0
	[ -n "${TPIDS[$1]:-}" ] && add_ticks $(target_pids "$1")
	echo "$TICKS"
}
# PostgreSQL: the postmaster (its cutime/cstime holds every backend that
# exited and was reaped) plus the live children
pg_ticks() {
	TICKS=0
	add_ticks "$PM_PID" $(pgrep -P "$PM_PID")
	echo "$TICKS"
}
# "RSS_kB PSS_kB" summed over PIDs
mem_kb() {
	local p k v r=0 s=0
	for p in "$@"; do
		while read -r k v _; do
			case $k in Rss:) r=$((r + v)) ;; Pss:) s=$((s + v)) ;; esac
		done <"/proc/$p/smaps_rollup" 2>/dev/null
	done
	echo "$r $s"
}

# ---------------------------------------------------------------- PostgreSQL

pg_start() {
	local data=$TMPD/data
	(as_user "$PGBIN/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8) \
		>"$TMPD/initdb.log" 2>&1 || {
		cat "$TMPD/initdb.log" >&2
		die "initdb failed"
	}
	(cd "$TMPD" && as_user "$PGBIN/pg_ctl" -D "$data" -l "$TMPD/postgres.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$TMPD \
-c max_connections=$PG_MAX_CONN -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c shared_buffers=256MB -c autovacuum_naptime=10$PG_TLS_OPTS" start) >"$TMPD/pg_ctl.log" 2>&1 || {
		cat "$TMPD/pg_ctl.log" "$TMPD/postgres.log" >&2
		die "pg_ctl start failed"
	}
	PM_PID=$(head -1 "$data/postmaster.pid")
	kill -0 "$PM_PID" 2>/dev/null || die "no postmaster"
}
pg_sql() { psql -X -q -At -h "$TMPD" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$1"; }

# SCT workloads: one self-signed certificate (ECDSA P-256, as the
# integration tests' CA makes) for PostgreSQL and the poolers' client side
TLS_ON=
PG_TLS_OPTS=
make_tls() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$TMPD/tls.key" -out "$TMPD/tls.crt" >/dev/null 2>&1 || die "openssl req failed"
	chmod 600 "$TMPD/tls.key"
	[ "$(id -u)" = 0 ] && chown "$BENCH_USER" "$TMPD/tls.key" "$TMPD/tls.crt"
	PG_TLS_OPTS=" -c ssl=on -c ssl_cert_file=$TMPD/tls.crt -c ssl_key_file=$TMPD/tls.key"
}

# ------------------------------------------------------------------ poolers

declare -A TPORT TPIDS TLOG TKIND TWORKERS TDEAD

# wait_up NAME PORT PIDS...: a psql through PORT works, while all PIDS live
wait_up() {
	local name=$1 port=$2 n=0 p
	shift 2
	while :; do
		for p in "$@"; do
			kill -0 "$p" 2>/dev/null || {
				echo "bench: $name (pid $p) exited at start; log:" >&2
				tail -20 "$TMPD/$name.log" >&2
				return 1
			}
		done
		psql -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'select 1' \
			>/dev/null 2>&1 && return 0
		n=$((n + 1))
		[ $n -lt 150 ] || {
			echo "bench: $name not reachable on port $port after 15 s; log:" >&2
			tail -20 "$TMPD/$name.log" >&2
			return 1
		}
		sleep 0.1
	done
}

# start_bouncer NAME PORT COPIES MAXCONN: COPIES PgBouncers on PORT (with
# so_reuseport when > 1), pool POOL/COPIES each. Sets TPIDS[NAME].
start_bouncer() {
	local name=$1 port=$2 copies=$3 maxconn=$4 i ini pid pids=""
	printf '"postgres" ""\n' >"$TMPD/userlist.txt"
	for i in $(seq 1 "$copies"); do
		ini=$TMPD/$name.$i.ini
		cat >"$ini" <<-EOF
			[databases]
			* = host=$TMPD port=$PGPORT
			[pgbouncer]
			listen_addr = 127.0.0.1
			listen_port = $port
			unix_socket_dir =
			so_reuseport = $([ "$copies" -gt 1 ] && echo 1 || echo 0)
			auth_type = trust
			auth_file = $TMPD/userlist.txt
			pool_mode = transaction
			default_pool_size = $((POOL / copies))
			max_client_conn = $maxconn
			log_connections = 0
			log_disconnections = 0
			log_stats = 0
			ignore_startup_parameters = extra_float_digits
		EOF
		[ -n "$TLS_ON" ] && printf 'client_tls_sslmode = allow\nclient_tls_key_file = %s\nclient_tls_cert_file = %s\n' \
			"$TMPD/tls.key" "$TMPD/tls.crt" >>"$ini"
		(cd "$TMPD" && as_user pgbouncer "$ini") >>"$TMPD/$name.log" 2>&1 &
		pid=$!
		track_pid "$pid"
		pids="$pids $pid"
	done
	TPIDS[$name]=${pids# }
	TLOG[$name]=$TMPD/$name.log
	wait_up "$name" "$port" $pids
}

# start_shoal NAME PORT WORKERS MAXCONN. Sets TPIDS[NAME] (the master).
start_shoal() {
	local name=$1 port=$2 w=$3 maxconn=$4 conf=$TMPD/$1.conf
	cat >"$conf" <<-EOF
		listen_addr = "127.0.0.1";
		listen_port = $port;
		unix_socket_dir = "";
		workers = $w;
		pool_mode = "transaction";
		max_client_conn = $maxconn;
		default_pool_size = $POOL;
		log_connections = false;
		log_disconnections = false;
		databases = ( { name = "*"; host = "$TMPD"; port = $PGPORT; } );
	EOF
	[ -n "$TLS_ON" ] && printf 'client_tls_sslmode = "allow";\nclient_tls_key_file = "%s";\nclient_tls_cert_file = "%s";\n' \
		"$TMPD/tls.key" "$TMPD/tls.crt" >>"$conf"
	"$SHOAL_BIN" "$conf" >>"$TMPD/$name.log" 2>&1 &
	TPIDS[$name]=$!
	track_pid "$!"
	TLOG[$name]=$TMPD/$name.log
	wait_up "$name" "$port" "$!"
}

# start_target NAME [PORT MAXCONN]: start the pooler behind target NAME
start_target() {
	local name=$1 port=${2:-${TPORT[$1]}} maxconn=${3:-2000}
	case ${TKIND[$name]} in
	bouncer) start_bouncer "$name" "$port" 1 "$maxconn" ;;
	bouncer2) start_bouncer "$name" "$port" 2 "$maxconn" ;;
	shoal) start_shoal "$name" "$port" "${TWORKERS[$name]}" "$maxconn" ;;
	direct) return 0 ;;
	esac
}

stop_target() {
	local p
	for p in ${TPIDS[$1]:-}; do stop_tree "$p" INT; done
	TPIDS[$1]=
}

worker_set() { # pgshoal's current worker pids, sorted, on one line
	[ "${TKIND[$1]}" = shoal ] && pgrep -P "${TPIDS[$1]}" 2>/dev/null | sort -n | tr '\n' ' '
}

# log lines FROM+1..TO of a target that look like trouble
log_trouble() {
	local log=${TLOG[$1]:-}
	[ -n "$log" ] && [ -f "$log" ] && [ "$3" -gt "$2" ] || return 0
	sed -n "$(($2 + 1)),$3p" "$log" | grep -E ' (ERROR|WARNING|FATAL|PANIC)[: ]|crash|respawn' || true
}
log_lines() { [ -f "${TLOG[$1]:-/nonexistent}" ] && wc -l <"${TLOG[$1]}" || echo 0; }

# ---------------------------------------------------------------- workloads

# workload NAME → sets WL_KIND (tx|idle), WL_N (clients), WL_OPTS (pgbench),
# WL_SSL (pgbench's sslmode)
parse_workload() {
	[[ $1 =~ ^(SEXT|SCT|SC|SP|S|TPCB|IDLE)([0-9]+)$ ]] || return 1
	WL_N=${BASH_REMATCH[2]}
	WL_KIND=tx
	WL_SSL=disable
	case ${BASH_REMATCH[1]} in
	S) WL_OPTS="-S" ;;
	TPCB) WL_OPTS="" ;;
	SC) WL_OPTS="-S -C" ;;
	SCT) WL_OPTS="-S -C" WL_SSL=require ;;
	SEXT) WL_OPTS="-S -M extended" ;;
	SP) WL_OPTS="-S -M prepared" ;; # named prepared statements (issue #7)
	IDLE) WL_KIND=idle WL_OPTS="" ;;
	esac
	[ "$WL_N" -gt 0 ]
}

# can DIRECT take N clients? (the poolers hold their pools meanwhile)
direct_ok() { [ $(($1 + POOL * N_POOLERS + 8)) -le "$PG_MAX_CONN" ]; }

RUNS_CSV_HDR="workload,target,round,tps,lat_avg_ms,p99_ms,txns,failed,aborted,pooler_us_txn,postgres_us_txn,pgbench_us_txn,rc,clients_ok,rss_before_kb,rss_after_kb,pss_before_kb,pss_after_kb,rss_b_per_client,pss_b_per_client"

# run_tx WORKLOAD TARGET ROUND: one pgbench run, one line into runs.csv
run_tx() {
	local wl=$1 tg=$2 round=$3 port=${TPORT[$2]} j=$J r=$TMPD/run
	local po0 po1 pg0 pg1 rc tps lat txns failed aborted p99 n k t_u t_s
	[ "$WL_N" -lt "$j" ] && j=$WL_N
	rm -rf "$r" && mkdir -p "$r"
	if [ -z "$WL_OPTS" ]; then # TPC-B: what pgbench's own vacuum step does, outside the timing
		psql -X -q -h "$TMPD" -p "$PGPORT" -U postgres -d postgres -c "truncate pgbench_history" \
			-c "vacuum pgbench_branches" -c "vacuum pgbench_tellers" >/dev/null 2>&1 ||
			note "$wl: truncate/vacuum before the run failed"
	fi
	sleep 0.5
	po0=$(pooler_ticks "$tg")
	pg0=$(pg_ticks)
	/usr/bin/time -f '%U %S' -o "$r/time" timeout --foreground -k 10 $((T + 60)) \
		env PGSSLMODE="$WL_SSL" pgbench -n $WL_OPTS -c "$WL_N" -j "$j" -T "$T" -h 127.0.0.1 -p "$port" -U postgres \
		-l --log-prefix="$r/log" postgres >"$r/out" 2>"$r/err"
	rc=$?
	sleep 0.5 # let the postmaster reap the backends that just exited
	po1=$(pooler_ticks "$tg")
	pg1=$(pg_ticks)

	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$r/out" | head -1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$r/out" | head -1)
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$r/out" | head -1)
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$r/out" | head -1)
	aborted=$(grep -cE 'client [0-9]+ (script [0-9]+ )?aborted' "$r/err")
	# GNU time's last line (a first one says "Command exited with non-zero status")
	read -r t_u t_s < <(tail -1 "$r/time" 2>/dev/null)
	[[ ${t_u:-} =~ ^[0-9.]+$ ]] && [[ ${t_s:-} =~ ^[0-9.]+$ ]] || t_u=0 t_s=0
	# p99 from the per-transaction log (3rd field: latency in µs)
	cat "$r"/log.* 2>/dev/null | awk '$3 ~ /^[0-9]+$/ { print $3 }' | sort -n >"$r/lat"
	n=$(wc -l <"$r/lat")
	p99=
	if [ "$n" -gt 0 ]; then
		k=$(((n * 99 + 99) / 100))
		p99=$(sed -n "${k}p" "$r/lat" | awk '{ printf "%.3f", $1 / 1000 }')
	fi
	: "${tps:=0}" "${txns:=0}" "${failed:=0}" "${lat:=}"
	local pooler_us="" pg_us pb_us
	if [ "$txns" -gt 0 ]; then
		[ "${TKIND[$tg]}" != direct ] &&
			pooler_us=$(awk -v d=$((po1 - po0)) -v n="$txns" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
		pg_us=$(awk -v d=$((pg1 - pg0)) -v n="$txns" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
		pb_us=$(awk -v u="$t_u" -v s="$t_s" -v n="$txns" 'BEGIN { printf "%.2f", (u + s) * 1e6 / n }')
	else
		pg_us='' pb_us=''
	fi
	echo "$wl,$tg,$round,$tps,$lat,$p99,$txns,$failed,$aborted,$pooler_us,$pg_us,$pb_us,$rc,,,,,,," >>"$TMPD/runs.csv"
	printf '#   %-9s %-13s tps %10s  lat %7s ms  p99 %8s ms  failed %s%s  µs/txn pooler %s pg %s pgbench %s\n' \
		"$wl" "$tg" "$tps" "$lat" "${p99:--}" "$failed" "$([ "$aborted" -gt 0 ] && echo " aborted $aborted")" \
		"${pooler_us:--}" "${pg_us:--}" "${pb_us:--}" >&2

	if [ $rc -ne 0 ] || [ "$failed" -gt 0 ] || [ "$aborted" -gt 0 ]; then
		note "$wl $tg round $round: pgbench exit $rc, failed $failed, aborted clients $aborted; stderr: $(grep -v '^$' "$r/err" | head -3 | tr '\n' '|')"
	fi
	watch_all "during the $wl run of $tg (round $round)"
}

# watch TARGET CONTEXT: note a pooler that died, pgshoal workers that were
# respawned, and error/warning log lines, since the last look
declare -A WS_SEEN LINES_SEEN
watch() {
	local tg=$1 ctx=$2 p ws n trouble
	[ "${TKIND[$tg]}" = direct ] || [ -n "${TDEAD[$tg]:-}" ] && return 0
	for p in ${TPIDS[$tg]:-}; do
		if ! kill -0 "$p" 2>/dev/null; then
			note "$tg died $ctx (pid $p); log tail: $(tail -5 "${TLOG[$tg]}" | tr '\n' '|')"
			TDEAD[$tg]=1
			EXIT_RC=3
		fi
	done
	ws=$(worker_set "$tg")
	if [ -z "${TDEAD[$tg]:-}" ] && [ -n "${WS_SEEN[$tg]+x}" ] && [ "$ws" != "${WS_SEEN[$tg]}" ]; then
		note "$tg: worker pids changed $ctx: [${WS_SEEN[$tg]% }] -> [${ws% }]"
		EXIT_RC=3
	fi
	WS_SEEN[$tg]=$ws
	n=$(log_lines "$tg")
	trouble=$(log_trouble "$tg" "${LINES_SEEN[$tg]:-0}" "$n")
	LINES_SEEN[$tg]=$n
	if [ -n "$trouble" ]; then
		note "$tg log $ctx: $(echo "$trouble" | wc -l) error/warning lines, first: $(echo "$trouble" | head -3 | tr '\n' '|')"
	fi
}
watch_all() {
	local tg
	for tg in "${TARGETS[@]}"; do watch "$tg" "$1"; done
}

# run_idle WORKLOAD TARGET ROUND: a fresh instance of the pooler, one
# warm-up connection, then WL_N idle clients; memory before and after
IDLE_PID=
run_idle() {
	local wl=$1 tg=$2 round=$3 name="IDLE_$2" maxconn port pids m0 m1 n ok=0 fl=0 line
	maxconn=$((WL_N + 100))
	[ $maxconn -lt 2000 ] && maxconn=2000
	pick_port
	port=$PORT_PICKED
	TKIND[$name]=${TKIND[$tg]}
	TWORKERS[$name]=${TWORKERS[$tg]:-}
	if ! start_target "$name" "$port" "$maxconn"; then
		note "$wl $tg: the idle-test instance did not start"
		stop_target "$name"
		EXIT_RC=3
		echo "$wl,$tg,$round,,,,,,,,,,1,0,,,,,," >>"$TMPD/runs.csv"
		return 0
	fi
	unset "WS_SEEN[$name]" "LINES_SEEN[$name]"
	TDEAD[$name]=
	sleep 0.5
	watch "$name" "at its start"
	pids=$(target_pids "$name" | tr '\n' ' ')
	m0=$(mem_kb $pids)
	"$TMPD/idle_conns" "host=127.0.0.1 port=$port user=postgres dbname=postgres connect_timeout=30" \
		"$WL_N" >"$TMPD/idle.out" 2>"$TMPD/idle.err" &
	IDLE_PID=$!
	track_pid "$IDLE_PID"
	for n in $(seq 1 1200); do
		line=$(head -1 "$TMPD/idle.out")
		[ -n "$line" ] && break
		kill -0 "$IDLE_PID" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	pids=$(target_pids "$name" | tr '\n' ' ')
	m1=$(mem_kb $pids)
	set -- $line
	[ "${1:-}" = ready ] && ok=$2 fl=$3
	stop_tree "$IDLE_PID" TERM
	IDLE_PID=
	if [ "$ok" -ne "$WL_N" ]; then
		note "$wl $tg: $ok of $WL_N idle connections opened ($fl failed): $(head -2 "$TMPD/idle.err" | tr '\n' '|')"
	fi
	watch "$name" "during the $wl run of $tg (round $round)"
	watch_all "during the $wl run of $tg (round $round)"
	stop_target "$name"
	set -- $m0 $m1
	local rb="" pb=""
	if [ "$ok" -gt 0 ]; then
		rb=$(((${3} - ${1}) * 1024 / ok))
		pb=$(((${4} - ${2}) * 1024 / ok))
	fi
	echo "$wl,$tg,$round,,,,,,,,,,0,$ok,$1,$3,$2,$4,$rb,$pb" >>"$TMPD/runs.csv"
	printf '#   %-9s %-13s %s clients: RSS %s -> %s kB (%s B/client), PSS %s -> %s kB (%s B/client)\n' \
		"$wl" "$tg" "$ok" "$1" "$3" "${rb:--}" "$2" "$4" "${pb:--}" >&2
}

# ------------------------------------------------------------------ report

# stats: numbers on stdin → "median min max" (empty when none)
stats() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%s %s %s\n", m, v[1], v[NR] }'
}
# col WORKLOAD TARGET FIELD → the field's non-empty values over the runs
col() {
	awk -F, -v w="$1" -v t="$2" -v f="$3" 'NR > 1 && $1 == w && $2 == t && $f != "" { print $f }' "$TMPD/runs.csv"
}
med() { col "$@" | stats | awk '{ print $1 }'; }
fmt() { [ -n "$1" ] && awk -v v="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, v }' || echo "—"; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "—" }' || echo "—"; }

declare -A AGG
report() {
	local md=$RESULTS/latest.md csv=$RESULTS/latest.csv wl tg s tps tmin tmax lat p99 fl ab po pg pb
	local ok rb pb n
	{
		echo "# pgshoal benchmark — $(date '+%Y-%m-%d %H:%M %Z')"
		echo
		echo "- machine: $NCPU × $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
		echo "- pgshoal $SHOAL_REV (workers: $WORKERS), $(pgbouncer --version 2>/dev/null | head -1), PostgreSQL $("$PGBIN/postgres" --version | awk '{ print $3 }')"
		echo "- command: \`$( [ -n "$FULL" ] && echo 'FULL=1 ')T=$T REPEAT=$REPEAT WORKLOADS=$WORKLOADS WORKERS=$WORKERS J=$J bash t/bench/bench.sh\`"
		echo "- setup: pool $POOL, transaction mode, clients over TCP 127.0.0.1, poolers → PostgreSQL over its unix socket; PostgreSQL max_connections=$PG_MAX_CONN, fsync/synchronous_commit/full_page_writes off, shared_buffers=256MB, pgbench -i -s 10; pgbench -j $J -T $T; order per workload: $(echo "${TARGETS[*]}" | tr ' ' ','), then reversed, × $REPEAT"
		[ -n "$TLS_ON" ] && echo "- SCT: pgbench -S -C with sslmode=require to each target (PostgreSQL ssl = on, the poolers' client TLS; one self-signed ECDSA P-256 certificate, $(openssl version | awk '{ print $1, $2 }')); other workloads sslmode=disable"
		echo "- floor ($(echo "$FLOOR_TXT" | sed -n '1s/socket floor: //p')):"
		echo "$FLOOR_TXT" | sed -n '2,4s/^ */  - /p'
		echo
	} >"$md"
	echo "workload,target,runs,tps_median,tps_min,tps_max,lat_avg_ms,p99_ms,failed,aborted,pooler_us_txn,postgres_us_txn,pgbench_us_txn,clients_ok,rss_before_kb,rss_after_kb,rss_b_per_client,pss_b_per_client" >"$csv"

	local have_tx="" have_idle=""
	for wl in ${WORKLOADS//,/ }; do
		parse_workload "$wl"
		[ "$WL_KIND" = tx ] && have_tx=1 || have_idle=1
	done
	if [ -n "$have_tx" ]; then
		{
			echo "## Throughput (medians over runs; CPU µs per transaction)"
			echo
			echo "| workload | target | TPS | TPS min–max | avg lat ms | p99 ms | failed | pooler µs/txn | postgres µs/txn | pgbench µs/txn |"
			echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		} >>"$md"
	fi
	for wl in ${WORKLOADS//,/ }; do
		parse_workload "$wl"
		[ "$WL_KIND" = tx ] || continue
		for tg in "${TARGETS[@]}"; do
			n=$(col "$wl" "$tg" 4 | wc -l)
			if [ "$n" -eq 0 ]; then
				echo "| $wl | $tg | — | — | — | — | — | — | — | — |" >>"$md"
				continue
			fi
			read -r tps tmin tmax < <(col "$wl" "$tg" 4 | stats)
			lat=$(med "$wl" "$tg" 5)
			p99=$(med "$wl" "$tg" 6)
			fl=$(col "$wl" "$tg" 8 | awk '{ s += $1 } END { print s + 0 }')
			ab=$(col "$wl" "$tg" 9 | awk '{ s += $1 } END { print s + 0 }')
			po=$(med "$wl" "$tg" 10)
			pg=$(med "$wl" "$tg" 11)
			pb=$(med "$wl" "$tg" 12)
			AGG[$wl.$tg.tps]=$tps AGG[$wl.$tg.p99]=$p99 AGG[$wl.$tg.po]=$po
			echo "| $wl | $tg | $(fmt "$tps") | $(fmt "$tmin")–$(fmt "$tmax") | $(fmt "$lat" 3) | $(fmt "$p99" 3) | $fl$([ "$ab" -gt 0 ] && echo " (+$ab aborted)") | $(fmt "$po" 2) | $(fmt "$pg" 2) | $(fmt "$pb" 2) |" >>"$md"
			echo "$wl,$tg,$n,$tps,$tmin,$tmax,$lat,$p99,$fl,$ab,$po,$pg,$pb,,,,," >>"$csv"
		done
	done
	if [ -n "$have_tx" ]; then
		{
			echo
			echo "## Ratios (medians)"
			echo
			echo "| workload | pgshoal | TPS / PgBouncer | TPS / direct |$([ -n "$MULTI" ] && echo ' TPS / PgBouncer×2 |') pooler CPU / PgBouncer's | p99 / PgBouncer's |"
			echo "|---|---|---:|---:|$([ -n "$MULTI" ] && echo '---:|')---:|---:|"
		} >>"$md"
		for wl in ${WORKLOADS//,/ }; do
			parse_workload "$wl"
			[ "$WL_KIND" = tx ] || continue
			for tg in "${SHOALS[@]}"; do
				echo "| $wl | $tg | $(ratio "${AGG[$wl.$tg.tps]:-}" "${AGG[$wl.PGBOUNCER.tps]:-}") | $(ratio "${AGG[$wl.$tg.tps]:-}" "${AGG[$wl.DIRECT.tps]:-}") |$([ -n "$MULTI" ] && echo " $(ratio "${AGG[$wl.$tg.tps]:-}" "${AGG[$wl.PGBOUNCER_X2.tps]:-}") |") $(ratio "${AGG[$wl.$tg.po]:-}" "${AGG[$wl.PGBOUNCER.po]:-}") | $(ratio "${AGG[$wl.$tg.p99]:-}" "${AGG[$wl.PGBOUNCER.p99]:-}") |" >>"$md"
			done
		done
	fi
	if [ -n "$have_idle" ]; then
		{
			echo
			echo "## Idle clients: memory of the pooler's processes (fresh instance, one warm-up connection, then N idle clients; medians)"
			echo
			echo "| workload | target | clients | RSS before → after (kB) | RSS B/client | PSS before → after (kB) | PSS B/client | PSS vs PgBouncer |"
			echo "|---|---|---:|---:|---:|---:|---:|---:|"
		} >>"$md"
		for wl in ${WORKLOADS//,/ }; do
			parse_workload "$wl"
			[ "$WL_KIND" = idle ] || continue
			for tg in "${TARGETS[@]}"; do
				[ "${TKIND[$tg]}" = direct ] && {
					echo "| $wl | $tg | — | — | — | — | — | — |" >>"$md"
					continue
				}
				n=$(col "$wl" "$tg" 19 | wc -l)
				[ "$n" -gt 0 ] || {
					echo "| $wl | $tg | failed | — | — | — | — | — |" >>"$md"
					continue
				}
				ok=$(med "$wl" "$tg" 14)
				rb=$(med "$wl" "$tg" 19)
				pb=$(med "$wl" "$tg" 20)
				AGG[$wl.$tg.pss]=$pb
				echo "| $wl | $tg | $(fmt "$ok") | $(fmt "$(med "$wl" "$tg" 15)") → $(fmt "$(med "$wl" "$tg" 16)") | $(fmt "$rb") | $(fmt "$(med "$wl" "$tg" 17)") → $(fmt "$(med "$wl" "$tg" 18)") | $(fmt "$pb") | $([ "${TKIND[$tg]}" = shoal ] && ratio "$pb" "${AGG[$wl.PGBOUNCER.pss]:-}" || echo "") |" >>"$md"
				echo "$wl,$tg,$n,,,,,,,,,,,$ok,$(med "$wl" "$tg" 15),$(med "$wl" "$tg" 16),$rb,$pb" >>"$csv"
			done
		done
	fi
	{
		echo
		echo "## Notes"
		echo
		if [ -s "$TMPD/notes" ]; then cat "$TMPD/notes"; else echo "- none: no failed transactions, aborted clients, crashes or error log lines"; fi
		echo "- total time: $(($(date +%s) - T_START)) s"
	} >>"$md"
	cp "$TMPD/runs.csv" "$RESULTS/runs.csv"
	cat "$md"
}

# ------------------------------------------------------------------ main

main() {
	local wl tg round w order i port ws
	for wl in ${WORKLOADS//,/ }; do
		parse_workload "$wl" || die "unknown workload '$wl' (S<n>, TPCB<n>, SC<n>, SCT<n>, SEXT<n>, SP<n>, IDLE<n>)"
		[ "$WL_SSL" = require ] && TLS_ON=1
	done
	# TLS only where a workload asks for it (libpq's default would be prefer)
	export PGSSLMODE=disable
	[[ $T =~ ^[0-9]+$ ]] && [ "$T" -gt 0 ] || die "T must be a positive integer"
	[[ $REPEAT =~ ^[0-9]+$ ]] && [ "$REPEAT" -gt 0 ] || die "REPEAT must be a positive integer"
	[[ $WORKERS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "WORKERS must be a comma list of numbers"
	[ -x "$B/pgshoal" ] || die "no $B/pgshoal (run make)"
	install_deps
	PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
	[ -x "$PGBIN/initdb" ] || die "no initdb in '$PGBIN' (set PGBIN)"
	ensure_user

	# file descriptors for the idle tests (clients, poolers): as many as allowed
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
	for wl in ${WORKLOADS//,/ }; do
		parse_workload "$wl"
		[ "$WL_KIND" = idle ] && [ $((WL_N + 200)) -gt "$(ulimit -n)" ] &&
			die "$wl needs $((WL_N + 200)) file descriptors; ulimit -n is $(ulimit -n)"
	done

	TMPD=$(mktemp -d /tmp/pgshoal-bench.XXXXXX) || die "mktemp failed"
	chmod 755 "$TMPD"
	[ "$(id -u)" = 0 ] && chown "$BENCH_USER" "$TMPD"
	: >"$TMPD/pids"
	: >"$TMPD/notes"
	echo "$RUNS_CSV_HDR" >"$TMPD/runs.csv"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$RESULTS"

	# targets
	TARGETS=(DIRECT PGBOUNCER)
	TKIND[DIRECT]=direct TKIND[PGBOUNCER]=bouncer
	SHOALS=()
	MULTI=
	if [[ $WORKERS == *,* ]]; then
		MULTI=1
		TARGETS+=(PGBOUNCER_X2)
		TKIND[PGBOUNCER_X2]=bouncer2
		for w in ${WORKERS//,/ }; do
			SHOALS+=("PGSHOAL_W$w")
			TKIND[PGSHOAL_W$w]=shoal TWORKERS[PGSHOAL_W$w]=$w
		done
	else
		SHOALS=(PGSHOAL)
		TKIND[PGSHOAL]=shoal TWORKERS[PGSHOAL]=$WORKERS
	fi
	TARGETS+=("${SHOALS[@]}")
	N_POOLERS=$((${#TARGETS[@]} - 1))
	# every pooler keeps its pool open all along; DIRECT needs 100 more
	if [ $((POOL * N_POOLERS + 100 + 8)) -gt $PG_MAX_CONN ]; then
		PG_MAX_CONN=$((POOL * N_POOLERS + 100 + 8))
		say "max_connections raised to $PG_MAX_CONN for $N_POOLERS poolers × $POOL"
	fi

	# a copy of pgshoal, so that a rebuild during the run changes nothing
	SHOAL_BIN=$TMPD/pgshoal
	cp "$B/pgshoal" "$SHOAL_BIN" || die "cannot copy $B/pgshoal"
	SHOAL_REV="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), binary of $(date -r "$B/pgshoal" '+%Y-%m-%d %H:%M')"

	# the floor
	cc -O2 -o "$TMPD/floor" "$HERE/floor.c" || die "cannot compile floor.c"
	cc -O2 -I"$(pg_config --includedir)" -o "$TMPD/idle_conns" "$HERE/idle_conns.c" -lpq ||
		die "cannot compile idle_conns.c"
	FLOOR_TXT=$("$TMPD/floor") || die "floor failed"
	echo "$FLOOR_TXT" | grep -v '^FLOOR' >&2

	# PostgreSQL
	[ -n "$TLS_ON" ] && make_tls
	pick_port
	PGPORT=$PORT_PICKED
	say "PostgreSQL on port $PGPORT, socket in $TMPD (user $BENCH_USER)"
	pg_start
	say "pgbench -i -s 10"
	pgbench -i -s 10 -q -h "$TMPD" -p "$PGPORT" -U postgres postgres >"$TMPD/pgbench-init.log" 2>&1 || {
		tail -20 "$TMPD/pgbench-init.log" >&2
		die "pgbench -i failed"
	}
	pg_sql "vacuum analyze" >/dev/null || die "vacuum failed"

	# poolers
	for tg in "${TARGETS[@]}"; do
		[ "${TKIND[$tg]}" = direct ] && {
			TPORT[$tg]=$PGPORT
			continue
		}
		pick_port
		TPORT[$tg]=$PORT_PICKED
		say "starting $tg on port ${TPORT[$tg]}"
		start_target "$tg" || die "$tg did not start"
	done
	watch_all "at start"
	# warm-up: open the pools and load the cache
	for tg in "${TARGETS[@]}"; do
		pgbench -n -S -c $((POOL + 10)) -j "$J" -T 2 -h 127.0.0.1 -p "${TPORT[$tg]}" -U postgres postgres \
			>"$TMPD/warmup.out" 2>&1 || {
			cat "$TMPD/warmup.out" >&2
			die "warm-up through $tg failed"
		}
	done

	for wl in ${WORKLOADS//,/ }; do
		parse_workload "$wl"
		say "workload $wl"
		for round in $(seq 1 "$REPEAT"); do
			order=("${TARGETS[@]}")
			for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do order+=("${TARGETS[i]}"); done
			for tg in "${order[@]}"; do
				if [ "${TKIND[$tg]}" = direct ]; then
					[ "$WL_KIND" = tx ] && direct_ok "$WL_N" || continue
				fi
				[ -n "${TDEAD[$tg]:-}" ] && continue
				if [ "$WL_KIND" = tx ]; then
					run_tx "$wl" "$tg" "$round"
				else
					run_idle "$wl" "$tg" "$round"
				fi
			done
		done
	done
	watch_all "at the end"
	report
	exit $EXIT_RC
}

main "$@"
