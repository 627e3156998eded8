#!/bin/bash
# t/integration/auth.sh — client authentication (auth_type, auth_file), server
# login with md5/SCRAM (including SCRAM pass-through), client TLS (verify-full,
# channel binding, cert auth, garbage and stalled handshakes) and server TLS,
# against a real PostgreSQL whose pg_hba.conf asks for scram-sha-256 / md5.
#
#   B=build bash t/integration/auth.sh            all tests
#   TESTS="auth_md5 client_tls" bash t/integration/auth.sh
#
# Roles: tuser (trust at the server), scram_u (SCRAM verifier, hba
# scram-sha-256), md5_u (md5 hash, hba md5), tls_u (hba hostssl +
# scram-sha-256 only: a connection without TLS is refused; the userlist
# has only its verifier); for auth_query: authq (the auth_user, superuser,
# in the userlist), aq_md5 and aq_scram (only on the server). The test CA,
# server and client certificates are made with the openssl CLI in the temp
# dir; PostgreSQL runs with ssl = on and listens on 127.0.0.1 and 127.0.0.2
# (an address its certificate does not name).

cd "$(dirname "$0")/../.." || exit 2
. t/integration/lib.sh
shopt -s inherit_errexit

[ -x "$B/pgshoal" ] || die "missing $B/pgshoal (make)"
command -v openssl >/dev/null || die "no openssl CLI"
command -v python3 >/dev/null || die "no python3"
lib_init
PG_LISTEN=127.0.0.1,127.0.0.2 pg_start
say "postgres on $PGPORT, pgshoal on $SHOAL_PORT, logs in $TMPD"

# ---------------------------------------------------------------- set-up

make_certs() {
	local d=$TMPD/certs
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=pgshoal test CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	# $1 name, $2 CN, $3 extensions
	mk() {
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \
			-keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
		openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -out "$d/$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
	}
	mk server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
	mk client "$DBUSER" "extendedKeyUsage=clientAuth"
	# a CA nobody trusts, for the negative cases
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=other CA" -keyout "$d/other.key" -out "$d/other.crt" 2>/dev/null
	chmod 600 "$d"/*.key
	[ "$(id -u)" = 0 ] && chown -R "$TEST_USER" "$d"
	CERTS=$d
}

setup_roles() {
	local data=$TMPD/data
	pg_sql "create role scram_u login password 'scrampw'" >/dev/null
	pg_sql "set password_encryption = 'md5'; create role md5_u login password 'md5pw'" >/dev/null
	pg_sql "create role authq login superuser password 'authpw'" >/dev/null
	pg_sql "set password_encryption = 'md5'; create role aq_md5 login password 'aqmd5pw'" >/dev/null
	pg_sql "create role aq_scram login password 'aqscrampw'" >/dev/null
	pg_sql "create role aq_exp login password 'exppw' valid until '2001-01-01'" >/dev/null
	pg_sql "create role tls_u login password 'tlspw'" >/dev/null
	cat >"$data/pg_hba.conf" <<-EOT
		hostssl all tls_u 127.0.0.0/8 scram-sha-256
		local all postgres trust
		host  all postgres 127.0.0.1/32 trust
		local all $DBUSER trust
		host  all $DBUSER 127.0.0.1/32 trust
		local all scram_u scram-sha-256
		host  all scram_u 127.0.0.1/32 scram-sha-256
		local all md5_u md5
		host  all md5_u 127.0.0.1/32 md5
		local all authq scram-sha-256
		local all aq_md5 md5
		local all aq_scram scram-sha-256
		local all aq_exp scram-sha-256
	EOT
	pg_sql "alter system set ssl = on" >/dev/null
	pg_sql "alter system set ssl_cert_file = '$CERTS/server.crt'" >/dev/null
	pg_sql "alter system set ssl_key_file = '$CERTS/server.key'" >/dev/null
	pg_sql "select pg_reload_conf()" >/dev/null
	sleep 0.5
	SCRAM_VERIFIER=$(pg_sql "select rolpassword from pg_authid where rolname = 'scram_u'")
	MD5_HASH=$(pg_sql "select rolpassword from pg_authid where rolname = 'md5_u'")
	TLS_VERIFIER=$(pg_sql "select rolpassword from pg_authid where rolname = 'tls_u'")
	case $SCRAM_VERIFIER in SCRAM-SHA-256*) ;; *) die "no SCRAM verifier: $SCRAM_VERIFIER" ;; esac
	case $MD5_HASH in md5*) ;; *) die "no md5 hash: $MD5_HASH" ;; esac
	# the userlist: cleartext, a SCRAM verifier only, an md5 hash only; a
	# comment, a blank line, a user with a doubled quote, one bad line
	USERLIST=$TMPD/userlist.txt
	cat >"$USERLIST" <<-EOT
		;; pgshoal test userlist
		"$DBUSER" "tpw"

		"scram_u" "$SCRAM_VERIFIER"
		"md5_u" "$MD5_HASH"
		"tls_u" "$TLS_VERIFIER"
		"quo""te" "pw"
		this line is bad
	EOT
	AQ_USERLIST=$TMPD/aq_userlist.txt
	printf '"%s" "tpw"\n"authq" "authpw"\n' "$DBUSER" >"$AQ_USERLIST"
}

make_certs
setup_roles

# psql through pgshoal as USER with PASSWORD (may be empty) and extra conninfo
try_login() {
	local user=$1 pw=$2 extra=${3:-}
	PGPASSWORD=$pw psql -X -q -At -w -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$SHOAL_PORT user=$user dbname=postgres connect_timeout=10 $extra" \
		-c "select current_user" 2>&1
}
expect_login() {
	local out
	out=$(try_login "$@") || fail "login $1 failed: $out"
	echo "login $1 ok: $out"
}
expect_reject() { # USER PW EXTRA NEEDLE
	local out rc=0
	out=$(try_login "$1" "$2" "${3:-}") || rc=$?
	echo "login $1 rejected (rc=$rc): $out"
	[ $rc -ne 0 ] || fail "login $1 with '$2' was accepted"
	expect_contains "$out" "$4" "rejection of $1"
}

auth_config() { # extra key=value ...
	shoal_config pool_mode=session "auth_file=$USERLIST" "$@"
}

PW_FAILED='password authentication failed for user'

# ------------------------------------------------------------------ tests

test_auth_trust_any() {
	local t
	for t in trust any; do
		SHOAL_PROBE_DB=postgres shoal_start "$(shoal_config auth_type=$t)"
		expect_login "$DBUSER" ""
		expect_login "$DBUSER" "whatever"
		shoal_stop
	done
}

test_auth_md5() {
	export PGPASSWORD=tpw # for shoal_start's probe
	shoal_start "$(auth_config auth_type=md5)"
	expect_login "$DBUSER" tpw                           # cleartext in the userlist
	expect_login md5_u md5pw                             # md5 hash: client md5, server md5
	expect_login scram_u scrampw                         # verifier: upgraded to SCRAM, pass-through
	expect_reject "$DBUSER" wrong "" "$PW_FAILED \"$DBUSER\""
	expect_reject nosuchuser tpw "" "$PW_FAILED \"nosuchuser\""
	expect_reject md5_u "" "" "password"
	grep -q 'authentication failed: wrong password' "$SHOAL_LOG" || fail "no log line for the wrong password"
	grep -q 'addr=127.0.0.1' "$SHOAL_LOG" || fail "no client address in the log"
}

# A flood of logins with made-up user names must not use up max_pools.
test_unknown_users_take_no_pools() {
	export PGPASSWORD=tpw
	shoal_start "$(auth_config auth_type=scram-sha-256 max_pools=3)"
	local i
	for i in $(seq 8); do
		expect_reject "stranger$i" x "" "$PW_FAILED \"stranger$i\"" >/dev/null
	done
	expect_login scram_u scrampw
	expect_login "$DBUSER" tpw "channel_binding=disable"
}

test_auth_scram() {
	export PGPASSWORD=tpw
	shoal_start "$(auth_config auth_type=scram-sha-256)"
	expect_login "$DBUSER" tpw "channel_binding=disable" # cleartext in the userlist: SCRAM anyway
	expect_login scram_u scrampw
	expect_reject scram_u wrong "" "$PW_FAILED \"scram_u\""
	expect_reject nosuchuser x "" "$PW_FAILED \"nosuchuser\""
	expect_reject md5_u md5pw "" "$PW_FAILED \"md5_u\"" # an md5 hash cannot do SCRAM
}

# the userlist has only a verifier, PostgreSQL requires SCRAM: the keys
# from the client's login let a new server connection in
test_scram_passthrough() {
	local out
	export PGPASSWORD=tpw
	shoal_start "$(auth_config auth_type=scram-sha-256 workers=2)"
	pg_sql "select pg_terminate_backend(pid) from pg_stat_activity where usename = 'scram_u'" >/dev/null
	out=$(PGPASSWORD=scrampw psql -X -At -w "host=127.0.0.1 port=$SHOAL_PORT user=scram_u dbname=postgres" \
		-c "select current_user, (select count(*) from pg_stat_activity where usename = 'scram_u')") ||
		fail "pass-through login failed: $out"
	echo "$out"
	expect_contains "$out" "scram_u|1" "server connection as scram_u"
	grep -q "pgshoal has no cleartext password" "$SHOAL_LOG" && fail "server login without keys" || true
}

test_auth_plain() {
	export PGPASSWORD=tpw
	shoal_start "$(auth_config auth_type=plain)"
	expect_login "$DBUSER" tpw
	expect_login scram_u scrampw # plain against a verifier; keys kept for the server
	expect_login md5_u md5pw
	expect_reject scram_u nope "" "$PW_FAILED \"scram_u\""
	expect_reject md5_u nope "" "$PW_FAILED \"md5_u\""
}

# the database entry forces a user and its cleartext password; PostgreSQL
# asks that user for SCRAM
test_server_scram_password() {
	local out
	shoal_start "$(shoal_config pool_mode=session auth_type=trust \
		"databases=( { name = \"*\"; host = \"$TMPD\"; port = $PGPORT; user = \"scram_u\"; password = \"scrampw\"; } )")"
	out=$(try_login "$DBUSER" "") || fail "login failed: $out"
	expect_contains "$out" "scram_u" "server user"
}

test_server_login_failure() {
	local out rc=0
	SHOAL_PROBE_DB= shoal_start "$(shoal_config pool_mode=session auth_type=trust \
		"databases=( { name = \"*\"; host = \"$TMPD\"; port = $PGPORT; user = \"scram_u\"; password = \"bad\"; } )")"
	out=$(try_login "$DBUSER" "") || rc=$?
	echo "$out"
	[ $rc -ne 0 ] || fail "login with a bad server password worked"
	expect_contains "$out" "password authentication failed for user \"scram_u\"" "server's error"
}

tls_config() { # extra key=value ...
	auth_config client_tls_sslmode=verify-ca "client_tls_key_file=$CERTS/server.key" \
		"client_tls_cert_file=$CERTS/server.crt" "client_tls_ca_file=$CERTS/ca.crt" "$@"
}

test_client_tls() {
	local ci="sslmode=verify-full sslrootcert=$CERTS/ca.crt sslcert=$CERTS/client.crt sslkey=$CERTS/client.key"
	SHOAL_PROBE_DB= shoal_start "$(shoal_config pool_mode=session auth_type=scram-sha-256 \
		"auth_file=$USERLIST" client_tls_sslmode=require "client_tls_key_file=$CERTS/server.key" \
		"client_tls_cert_file=$CERTS/server.crt")"
	# the issue's "done when": verify-full + channel binding, verifier only, SCRAM-only server
	expect_login scram_u scrampw "sslmode=verify-full sslrootcert=$CERTS/ca.crt channel_binding=require"
	expect_login "$DBUSER" tpw "sslmode=require channel_binding=require"
	expect_reject scram_u wrong "sslmode=require channel_binding=require" "$PW_FAILED"
	expect_reject scram_u scrampw "sslmode=disable" "SSL required"
	expect_reject scram_u scrampw "sslmode=verify-full sslrootcert=$CERTS/other.crt" "certificate verify failed"
	# a bigger result through TLS: records bigger than a read
	out=$(PGPASSWORD=tpw psql -X -At -w "host=127.0.0.1 port=$SHOAL_PORT user=$DBUSER dbname=postgres sslmode=require" \
		-c "select sum(length(x)) from (select repeat('x', 100000) || g as x from generate_series(1, 50) g) s" \
		-c "select md5(string_agg(repeat(g::text, 1000), '')) from generate_series(1, 300) g") ||
		fail "big query over TLS: $out"
	want=$(pg_sql "select md5(string_agg(repeat(g::text, 1000), '')) from generate_series(1, 300) g")
	expect_contains "$out" "$want" "big result over TLS"
	: "$ci"
}

test_auth_cert() {
	local ci="sslmode=verify-full sslrootcert=$CERTS/ca.crt sslcert=$CERTS/client.crt sslkey=$CERTS/client.key"
	SHOAL_PROBE_DB= shoal_start "$(tls_config auth_type=cert)"
	expect_login "$DBUSER" "" "$ci"
	expect_reject scram_u "" "$ci" "certificate authentication failed for user \"scram_u\""
	expect_reject "$DBUSER" "" "sslmode=verify-full sslrootcert=$CERTS/ca.crt" "certificate"
}

# raw sockets: garbage instead of a ClientHello, and a client that stops
# mid-handshake; neither disturbs a normal client, the second is closed by
# client_login_timeout
test_tls_bad_clients() {
	local out
	export PGPASSWORD=tpw
	shoal_start "$(tls_config auth_type=md5 client_tls_sslmode=prefer client_login_timeout=2.0 workers=1)"
	out=$(python3 - "$SHOAL_PORT" <<-'PY'
		import socket, struct, sys, time
		port = int(sys.argv[1])
		def ssl_request():
		    s = socket.create_connection(("127.0.0.1", port), timeout=10)
		    s.sendall(struct.pack("!II", 8, 80877103))
		    assert s.recv(1) == b"S"
		    return s
		g = ssl_request()
		g.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
		g.settimeout(5)
		try:
		    data = g.recv(100)
		    print("garbage: closed" if not data or data[:1] == b"\x15" else "garbage: got %r" % data)
		except ConnectionResetError:
		    print("garbage: closed")
		stall = ssl_request()
		stall.sendall(bytes.fromhex("16030100"))  # the start of a ClientHello
		t0 = time.time()
		stall.settimeout(10)
		try:
		    data = stall.recv(100)
		except ConnectionResetError:
		    data = b""
		print("stall: closed after %.1f s" % (time.time() - t0) if not data else "stall: %r" % data)
		PY
	) || fail "python: $out"
	echo "$out"
	expect_contains "$out" "garbage: closed" "garbage ClientHello"
	expect_contains "$out" "stall: closed after" "stalled handshake"
	expect_login "$DBUSER" tpw "sslmode=require"
	expect_login "$DBUSER" tpw "sslmode=disable"
}

# ------------------------------------------------------------ server TLS

# a config whose server leg is TCP to HOST with server_tls_sslmode MODE and
# the test CA (clients: SCRAM against the userlist); key=value pairs follow
server_tls_config() { # MODE HOST [key=value ...]
	local mode=$1 host=$2
	shift 2
	shoal_config auth_type=scram-sha-256 "auth_file=$USERLIST" pool_mode=transaction \
		admin_users=$DBUSER server_tls_sslmode=$mode "server_tls_ca_file=$CERTS/ca.crt" \
		"databases=( { name = \"*\"; host = \"$host\"; port = $PGPORT; } )" "$@"
}

# psql through pgshoal as tls_u; the client leg in the clear unless EXTRA
tls_u_psql() { # SQL [EXTRA]
	PGPASSWORD=tlspw psql -X -q -At -w -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$SHOAL_PORT user=tls_u dbname=postgres connect_timeout=10 ${2:-}" -c "$1" 2>&1
}

# tls_u's backends as PostgreSQL sees them: "TOTAL WITH_TLS"
tls_u_backends() {
	pg_sql "select count(*), count(*) filter (where s.ssl) from pg_stat_activity a
		join pg_stat_ssl s using (pid) where a.usename = 'tls_u'" | tr '|' ' '
}

# what pgshoal's server connection for this session negotiated
SSL_OF_BACKEND="select ssl from pg_stat_ssl where pid = pg_backend_pid()"

# verify-full by address and by name; PostgreSQL refuses tls_u without TLS,
# so every query through pgshoal proves its server leg is TLS
test_server_tls_verify_full() {
	local out host total ssl
	export PGPASSWORD=tpw
	out=$(PGPASSWORD=tlspw psql -X -At -w "host=127.0.0.1 port=$PGPORT user=tls_u dbname=postgres sslmode=disable" \
		-c "select 1" 2>&1) && fail "tls_u logged in without TLS: $out"
	expect_contains "$out" "no encryption" "tls_u without TLS"
	for host in 127.0.0.1 localhost; do
		shoal_start "$(server_tls_config verify-full $host workers=2)"
		out=$(tls_u_psql "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()") ||
			fail "query through verify-full to $host: $out"
		echo "host $host: $out"
		expect_contains "$out" "t|TLSv1." "pgshoal's backend"
		read -r total ssl <<<"$(tls_u_backends)"
		[ "$total" -ge 1 ] && [ "$total" = "$ssl" ] || fail "tls_u backends: $total, with TLS: $ssl"
		out=$(psql -X -At -F '|' "host=127.0.0.1 port=$SHOAL_PORT user=$DBUSER dbname=pgbouncer" -c "SHOW SERVERS")
		expect_contains "$out" "|TLS|" "SHOW SERVERS' tls column"
		shoal_stop
	done
}

# the certificate names localhost and 127.0.0.1; PostgreSQL also listens on
# 127.0.0.2; other.crt did not sign it
test_server_tls_verify_fails() {
	local out rc=0
	export PGPASSWORD=tpw
	SHOAL_PROBE_DB= shoal_start "$(server_tls_config verify-full 127.0.0.2)"
	out=$(tls_u_psql "select 1") || rc=$?
	echo "verify-full, wrong name: $out"
	[ $rc -ne 0 ] || fail "verify-full accepted a certificate for another name"
	expect_contains "$out" 'server certificate verification failed: IP address mismatch (the certificate does not name "127.0.0.2")' "wrong name"
	shoal_stop
	SHOAL_PROBE_DB= shoal_start "$(server_tls_config verify-ca 127.0.0.2)" # no name check
	out=$(tls_u_psql "$SSL_OF_BACKEND") || fail "verify-ca to 127.0.0.2: $out"
	[ "$out" = t ] || fail "verify-ca to 127.0.0.2: $out"
	shoal_stop
	rc=0
	SHOAL_PROBE_DB= shoal_start "$(server_tls_config verify-ca 127.0.0.1 "server_tls_ca_file=$CERTS/other.crt")"
	out=$(tls_u_psql "select 1") || rc=$?
	echo "verify-ca, another CA: $out"
	[ $rc -ne 0 ] || fail "verify-ca accepted a certificate of another CA"
	expect_contains "$out" "server certificate verification failed: unable to get local issuer certificate" "wrong CA"
	grep -q "server login failed: server certificate verification failed" "$SHOAL_LOG" ||
		fail "no log line for the failed verification"
}

pg_ssl() { # on|off, by reload
	pg_sql "alter system set ssl = $1" >/dev/null
	pg_sql "select pg_reload_conf()" >/dev/null
	for _ in $(seq 50); do
		[ "$(pg_sql 'show ssl')" = "$1" ] && return 0
		sleep 0.1
	done
	fail "ssl did not turn $1"
}

against_plain_server() {
	local out mode
	export PGPASSWORD=tpw
	for mode in prefer allow; do
		shoal_start "$(server_tls_config $mode 127.0.0.1)"
		out=$(shoal_psql -d postgres -c "$SSL_OF_BACKEND") || fail "$mode against a server without TLS: $out"
		[ "$out" = f ] || fail "$mode against a server without TLS: ssl=$out"
		shoal_stop
	done
	SHOAL_PROBE_DB= shoal_start "$(server_tls_config require 127.0.0.1)"
	out=$(shoal_psql -d postgres -c "select 1" 2>&1) && fail "require against a server without TLS worked: $out"
	echo "require: $out"
	expect_contains "$out" "server does not support SSL, but server_tls_sslmode requires it" "require"
}

# PostgreSQL with ssl = off for a moment (tuser: hba without hostssl)
test_server_tls_plain_server() {
	local rc=0
	pg_ssl off
	(against_plain_server) || rc=$?
	pg_ssl on
	return $rc
}

# several workers, a pool smaller than the clients, TLS server connections
# (each serves one worker): every transaction succeeds, and PostgreSQL never
# sees more than pool_size connections nor one without TLS
test_server_tls_pool_load() {
	local peak=0 total ssl pb
	export PGPASSWORD=tpw
	shoal_start "$(server_tls_config verify-full 127.0.0.1 workers=3 default_pool_size=4 \
		log_connections=false log_disconnections=false)"
	echo "select count(*) from pg_stat_ssl where ssl and pid = pg_backend_pid();" >"$TMPD/ssl.sql"
	PGPASSWORD=tlspw pgbench -n -c 20 -j 2 -T 5 -f "$TMPD/ssl.sql" -h 127.0.0.1 -p "$SHOAL_PORT" -U tls_u \
		postgres >"$TMPD/pgbench.out" 2>&1 &
	pb=$!
	while kill -0 $pb 2>/dev/null; do
		read -r total ssl <<<"$(tls_u_backends)"
		[ "$total" = "$ssl" ] || fail "a server connection without TLS ($total, $ssl with TLS)"
		[ "$total" -gt "$peak" ] && peak=$total
		sleep 0.1
	done
	wait $pb || {
		cat "$TMPD/pgbench.out"
		fail "pgbench failed"
	}
	grep -E "processed|failed" "$TMPD/pgbench.out"
	grep -q "number of failed transactions: 0 " "$TMPD/pgbench.out" || fail "failed transactions"
	echo "peak $peak server connections for default_pool_size 4"
	[ "$peak" -ge 1 ] && [ "$peak" -le 4 ] || fail "peak $peak server connections, pool_size 4"
}

# pool_size 1, two workers, one session after another (the kernel spreads
# them over the workers): a worker's client gets the room of the other
# worker's idle TLS connection, which its owner closes
test_server_tls_affinity() {
	local out pids="" n total ssl
	export PGPASSWORD=tpw
	shoal_start "$(server_tls_config require 127.0.0.1 workers=2 default_pool_size=1)"
	for i in $(seq 12); do
		out=$(tls_u_psql "select pg_backend_pid()") || fail "session $i: $out"
		pids="$pids $out"
		read -r total ssl <<<"$(tls_u_backends)"
		[ "$total" -le 1 ] || fail "session $i: $total server connections for pool_size 1"
	done
	n=$(printf '%s\n' $pids | sort -u | wc -l)
	echo "backends:$pids ($n different)"
	[ "$n" -ge 2 ] || fail "one backend for 12 sessions over two workers: a TLS connection changed workers?"
}

# the worker that owns TLS connections dies: they end with it (nobody else
# holds their state), its slots are freed, and the respawned worker opens
# new ones
test_server_tls_worker_dies() {
	local before out total ssl
	export PGPASSWORD=tpw
	shoal_start "$(server_tls_config require 127.0.0.1 workers=1 default_pool_size=3 pool_mode=session)"
	local jobs=()
	for i in 1 2 3; do
		tls_u_psql "select pg_sleep(0.5)" >/dev/null &
		jobs+=($!)
	done
	wait "${jobs[@]}"
	before=$(pg_sql "select string_agg(pid::text, ',') from pg_stat_activity where usename = 'tls_u'")
	[ -n "$before" ] || fail "no TLS server connections"
	echo "idle TLS backends: $before"
	kill -9 $(shoal_workers)
	for _ in $(seq 50); do
		[ "$(pg_sql "select count(*) from pg_stat_activity where pid in ($before)")" = 0 ] && break
		sleep 0.1
	done
	[ "$(pg_sql "select count(*) from pg_stat_activity where pid in ($before)")" = 0 ] ||
		fail "the dead worker's TLS connections live on"
	for _ in $(seq 50); do
		out=$(tls_u_psql "$SSL_OF_BACKEND") && break
		sleep 0.2
	done
	[ "$out" = t ] || fail "after the respawn: $out"
	# tls_u's three and the start-up probe's (tuser): all idle, all TLS
	grep -q "worker 0: shared state repaired (4 server connections closed)" "$SHOAL_LOG" ||
		fail "repair did not free the idle TLS slots: $(grep repaired "$SHOAL_LOG")"
	read -r total ssl <<<"$(tls_u_backends)"
	[ "$total" -le 3 ] || fail "$total server connections after the respawn"
}

# reload: a changed server_tls_sslmode recycles the connections made under
# the old one (idle plain ones by the janitor, idle TLS ones by their owner)
test_server_tls_reload() {
	local out n
	export PGPASSWORD=tpw
	shoal_start "$(server_tls_config disable 127.0.0.1 workers=1)"
	out=$(shoal_psql -d postgres -c "$SSL_OF_BACKEND")
	[ "$out" = f ] || fail "disable: ssl=$out"
	for mode in verify-full disable; do
		sed -i "s/^server_tls_sslmode = .*/server_tls_sslmode = \"$mode\";/" "$SHOAL_CONF"
		kill -HUP "$SHOAL_PID"
		for _ in $(seq 40); do
			n=$(pg_sql "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid)
				where a.usename = '$DBUSER' and s.ssl = ('$mode' = 'disable')")
			[ "$n" = 0 ] && break
			sleep 0.1
		done
		[ "$n" = 0 ] || fail "$n server connections of the old sslmode survived the reload to $mode"
		out=$(shoal_psql -d postgres -c "$SSL_OF_BACKEND")
		[ "$out" = "$([ $mode = disable ] && echo f || echo t)" ] || fail "$mode after reload: ssl=$out"
		echo "reload to $mode: server ssl=$out, old connections gone"
	done
}

# the issue's "done when", with TLS on both legs: client verify-full +
# channel binding, SCRAM with only a verifier in the userlist (pass-through
# keys for the server login), server verify-full, PostgreSQL hostssl +
# scram-sha-256 only
test_tls_both_legs() {
	local out
	export PGPASSWORD=tpw
	shoal_start "$(server_tls_config verify-full localhost client_tls_sslmode=require \
		"client_tls_key_file=$CERTS/server.key" "client_tls_cert_file=$CERTS/server.crt")"
	out=$(tls_u_psql "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()" \
		"sslmode=verify-full sslrootcert=$CERTS/ca.crt channel_binding=require") || fail "login: $out"
	[ "$out" = "tls_u|t" ] || fail "got: $out"
	grep -q "pgshoal has no cleartext password" "$SHOAL_LOG" && fail "server login without keys" || true
}

test_config_errors() {
	local rc out
	printf 'auth_type = "md5";\n' >"$TMPD/a1.conf"
	rc=0; out=$("$B/pgshoal" -t "$TMPD/a1.conf" 2>&1) || rc=$?
	[ $rc -eq 2 ] || fail "md5 without auth_file: rc $rc"
	expect_contains "$out" "needs auth_file" "md5 without auth_file"
	printf 'auth_type = "kerberos";\n' >"$TMPD/a2.conf"
	rc=0; out=$("$B/pgshoal" -t "$TMPD/a2.conf" 2>&1) || rc=$?
	[ $rc -eq 2 ] || fail "bad auth_type: rc $rc"
	expect_contains "$out" "a2.conf:1: unknown auth_type" "bad auth_type"
	printf 'client_tls_sslmode = "require";\n' >"$TMPD/a3.conf"
	rc=0; out=$("$B/pgshoal" -t "$TMPD/a3.conf" 2>&1) || rc=$?
	[ $rc -eq 2 ] || fail "tls without files: rc $rc"
	printf 'server_tls_sslmode = "verify-full";\n' >"$TMPD/a4.conf"
	rc=0; out=$("$B/pgshoal" -t "$TMPD/a4.conf" 2>&1) || rc=$?
	[ $rc -eq 2 ] || fail "server verify-full without a CA: rc $rc"
	expect_contains "$out" "needs server_tls_ca_file" "server verify-full without a CA"
	printf 'server_tls_sslmode = "require";\n' >"$TMPD/a5.conf"
	out=$("$B/pgshoal" -t "$TMPD/a5.conf" 2>&1) || fail "server_tls_sslmode require refused: $out"
}

test_hash_password() {
	local line
	line=$(echo scrampw | "$B/pgshoal" --hash-password scram_u) || fail "--hash-password failed"
	echo "$line"
	case $line in '"scram_u" "SCRAM-SHA-256$4096:'*) ;; *) fail "bad line: $line" ;; esac
	line=$(echo md5pw | "$B/pgshoal" --hash-password --method md5 md5_u)
	[ "$line" = "\"md5_u\" \"$MD5_HASH\"" ] || fail "md5 line $line, want $MD5_HASH"
	# the generated verifier works end to end
	echo scrampw | "$B/pgshoal" --hash-password scram_u >"$TMPD/ul2.txt"
	export PGPASSWORD=scrampw
	SHOAL_PROBE_DB= shoal_start "$(shoal_config pool_mode=session auth_type=scram-sha-256 "auth_file=$TMPD/ul2.txt" \
		"databases=( { name = \"*\"; host = \"$TMPD\"; port = $PGPORT; user = \"scram_u\"; password = \"scrampw\"; } )")"
	expect_login scram_u scrampw
}

# ---------------------------------------------------------------- hba

HBA_REJECTS='pg_hba.conf rejects connection for host "127.0.0.1"'
HBA_NO_ENTRY='no pg_hba.conf entry for host "127.0.0.1"'

hba_config() { # HBA_TEXT extra key=value ...
	local text=$1
	shift
	printf '%s\n' "$text" >"$TMPD/hba.conf"
	tls_config client_tls_sslmode=prefer auth_type=hba "auth_hba_file=$TMPD/hba.conf" "$@"
}

HBA_RULES="# pgshoal test hba
local     all      all                     trust
hostssl   all      scram_u  127.0.0.1/32   scram-sha-256
hostnossl all      scram_u  127.0.0.1/32   reject
host      postgres md5_u,\"$DBUSER\" 127.0.0.0 255.0.0.0  md5
host      sameuser all      ::1/128        trust"

test_hba() {
	local sock="host=$TMPD"
	export PGPASSWORD=tpw
	shoal_start "$(hba_config "$HBA_RULES")"
	# local: trust, whatever the password
	out=$(PGPASSWORD=wrong psql -X -At -w "$sock port=$SHOAL_PORT user=$DBUSER dbname=postgres" \
		-c "select current_user") || fail "local trust: $out"
	expect_contains "$out" "$DBUSER" "local trust"
	# hostssl: scram; the same user without TLS is rejected by its line
	expect_login scram_u scrampw "sslmode=require channel_binding=require"
	expect_reject scram_u wrong "sslmode=require" "$PW_FAILED \"scram_u\""
	expect_reject scram_u scrampw "sslmode=disable" \
		"$HBA_REJECTS, user \"scram_u\", database \"postgres\""
	# host with an address and mask, a list of users, one database
	expect_login md5_u md5pw "sslmode=disable"
	expect_login "$DBUSER" tpw "sslmode=require"
	expect_reject "$DBUSER" wrong "sslmode=disable" "$PW_FAILED \"$DBUSER\""
	expect_reject "$DBUSER" tpw "sslmode=disable dbname=template1" \
		"$HBA_NO_ENTRY, user \"$DBUSER\", database \"template1\""
	expect_reject nosuchuser tpw "" "$HBA_NO_ENTRY, user \"nosuchuser\", database \"postgres\""
	grep -q 'addr=127.0.0.1:[0-9]* no auth_hba_file entry' "$SHOAL_LOG" || fail "no log line for no entry"
	grep -q 'user=scram_u addr=127.0.0.1:[0-9]* rejected by auth_hba_file line 4' "$SHOAL_LOG" ||
		fail "no log line for the reject"
}

test_hba_reload() {
	local out rc
	export PGPASSWORD=tpw
	shoal_start "$(hba_config "$HBA_RULES")"
	expect_login md5_u md5pw "sslmode=disable"
	# md5_u is rejected after a reload
	printf 'local all all trust\nhost all md5_u 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 md5\n' \
		>"$TMPD/hba.conf"
	kill -HUP "$SHOAL_PID"
	for _ in $(seq 50); do
		out=$(try_login md5_u md5pw "sslmode=disable") || true
		case $out in *"rejects connection"*) break ;; esac
		sleep 0.1
	done
	expect_reject md5_u md5pw "sslmode=disable" "$HBA_REJECTS, user \"md5_u\""
	expect_login "$DBUSER" tpw "sslmode=disable"
	# a broken file: the reload is refused and the rules stay
	printf 'local all all trust\nhost all all 127.0.0.1/33 md5\n' >"$TMPD/hba.conf"
	kill -HUP "$SHOAL_PID"
	for _ in $(seq 50); do
		grep -q 'configuration not reloaded' "$SHOAL_LOG" && break
		sleep 0.1
	done
	grep -q "hba.conf:2: invalid CIDR mask in address \"127.0.0.1/33\"" "$SHOAL_LOG" ||
		fail "no FILE:LINE error for the broken hba file"
	grep -q 'configuration not reloaded' "$SHOAL_LOG" || fail "the broken hba file was not refused"
	# every worker, a respawned one too, keeps the rules that were accepted
	kill -KILL "$(shoal_workers | head -1)"
	sleep 0.5
	for _ in 1 2 3 4 5 6; do
		expect_reject md5_u md5pw "sslmode=disable" "$HBA_REJECTS, user \"md5_u\""
		expect_login "$DBUSER" tpw "sslmode=disable"
	done
	# and pgshoal -t names the line
	rc=0
	out=$("$B/pgshoal" -t "$SHOAL_CONF" 2>&1) || rc=$?
	[ $rc -eq 2 ] || fail "pgshoal -t with a broken hba file: rc $rc"
	expect_contains "$out" "hba.conf:2: invalid CIDR mask" "pgshoal -t"
	printf 'local all all trust\nhost all all 127.0.0.1/32 md5 clientcert=verify-ca\n' >"$TMPD/hba.conf"
	out=$("$B/pgshoal" -t "$SHOAL_CONF" 2>&1) || true
	expect_contains "$out" "hba.conf:2: authentication options (\"clientcert=verify-ca\") are not supported" \
		"-t: options"
	printf 'local all +grp trust\n' >"$TMPD/hba.conf"
	out=$("$B/pgshoal" -t "$SHOAL_CONF" 2>&1) || true
	expect_contains "$out" "hba.conf:1: group membership (\"+role\") is not supported" "-t: +group"
}

# ----------------------------------------------------------- auth_query

aq_config() { # extra key=value ...
	shoal_config pool_mode=session "auth_file=$AQ_USERLIST" auth_user=authq "$@"
}

# server connections of a role right now
role_conns() { pg_sql "select count(*) from pg_stat_activity where usename = '$1'"; }

test_auth_query() {
	local out n pids=
	export PGPASSWORD=tpw
	shoal_start "$(aq_config auth_type=md5 admin_users="$DBUSER" pool_mode=transaction)"
	expect_login aq_md5 aqmd5pw     # md5 hash from the server; md5 to the server (pass-through)
	expect_login aq_scram aqscrampw # a verifier from the server: upgraded to SCRAM, keys pass through
	expect_reject aq_md5 wrong "" "$PW_FAILED \"aq_md5\""
	expect_reject aq_scram wrong "" "$PW_FAILED \"aq_scram\""
	expect_reject nosuchuser x "" "$PW_FAILED \"nosuchuser\""
	expect_reject aq_exp exppw "" "$PW_FAILED \"aq_exp\"" # VALID UNTIL passed: no password
	grep -q 'user=nosuchuser .*user not in auth_file nor found by auth_query' "$SHOAL_LOG" ||
		fail "no log line for the unknown user"
	# many lookups at once go through authq's pool of 2, never more
	for n in $(seq 8); do
		try_login "aq_scram" aqscrampw >"$TMPD/aq.$n" 2>&1 &
		pids="$pids $!"
		try_login "nouser$n" x >/dev/null 2>&1 &
		pids="$pids $!"
	done
	for n in $pids; do wait "$n" || true; done
	for n in $(seq 8); do
		grep -q aq_scram "$TMPD/aq.$n" || fail "parallel login $n: $(cat "$TMPD/aq.$n")"
	done
	n=$(role_conns authq)
	echo "authq server connections: $n"
	[ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "authq has $n server connections (pool size 2)"
	out=$(psql -X -At -w "host=127.0.0.1 port=$SHOAL_PORT user=$DBUSER dbname=pgshoal" -c "SHOW POOLS")
	echo "$out"
	expect_contains "$out" "postgres|authq|" "SHOW POOLS: the auth_user's pool"
	expect_contains "$out" "postgres|aq_scram|" "SHOW POOLS: the user's own pool"
	shoal_stop
	# auth_type scram-sha-256: the verifier works, an md5 hash cannot
	shoal_start "$(aq_config auth_type=scram-sha-256)"
	expect_login aq_scram aqscrampw "channel_binding=disable"
	expect_reject aq_md5 aqmd5pw "" "$PW_FAILED \"aq_md5\""
}

# the cache: a changed password is seen after one failure (one worker, so
# every login meets the same cache)
test_auth_query_cache() {
	export PGPASSWORD=tpw
	shoal_start "$(aq_config auth_type=md5 workers=1)"
	expect_login aq_md5 aqmd5pw
	pg_sql "set password_encryption = 'md5'; alter role aq_md5 password 'newpw'" >/dev/null
	expect_login aq_md5 aqmd5pw # the cached hash
	expect_reject aq_md5 newpw "" "$PW_FAILED \"aq_md5\""
	expect_login aq_md5 newpw # the failure dropped the entry: looked up again
	expect_reject aq_md5 aqmd5pw "" "$PW_FAILED \"aq_md5\""
	pg_sql "set password_encryption = 'md5'; alter role aq_md5 password 'aqmd5pw'" >/dev/null
}

# per-database auth_user / auth_dbname; an auth_query with the wrong shape
test_auth_query_per_db() {
	local dbs="( { name = \"postgres\"; host = \"$TMPD\"; port = $PGPORT; },
		{ name = \"aqdb\"; dbname = \"postgres\"; host = \"$TMPD\"; port = $PGPORT;
		  auth_user = \"authq\"; auth_dbname = \"postgres\"; } )"
	export PGPASSWORD=tpw
	shoal_start "$(shoal_config pool_mode=session "auth_file=$AQ_USERLIST" auth_type=md5 "databases=$dbs")"
	expect_login aq_md5 aqmd5pw "dbname=aqdb"
	expect_reject aq_md5 aqmd5pw "dbname=postgres" "$PW_FAILED \"aq_md5\"" # no auth_user there
	n=$(role_conns authq)
	[ "$n" -ge 1 ] || fail "no authq connection"
	shoal_stop
	shoal_start "$(shoal_config pool_mode=session "auth_file=$AQ_USERLIST" auth_type=md5 \
		auth_user=authq "auth_query=select passwd from pg_shadow where usename = \$1")"
	expect_reject aq_md5 aqmd5pw "" "authentication query failed"
	grep -q 'auth_query failed: it must return (user name, password) rows' "$SHOAL_LOG" ||
		fail "no log line for the bad auth_query"
	shoal_stop
	# a server that does not answer: client_login_timeout ends the lookup
	shoal_start "$(shoal_config pool_mode=session "auth_file=$AQ_USERLIST" auth_type=md5 \
		auth_user=authq client_login_timeout=1.0 \
		"auth_query=select \$1::text, null::text from pg_sleep(5)")"
	t0=$(now_ms)
	expect_reject aq_md5 aqmd5pw "" "client_login_timeout"
	t=$(($(now_ms) - t0))
	echo "rejected after $t ms"
	[ $t -lt 4000 ] || fail "the lookup was not cut short ($t ms)"
	grep -q 'auth_query timed out' "$SHOAL_LOG" || fail "the lookup's server was not closed"
}

run_test test_config_errors
run_test test_auth_trust_any
run_test test_auth_md5
run_test test_auth_scram
run_test test_unknown_users_take_no_pools
run_test test_scram_passthrough
run_test test_auth_plain
run_test test_server_scram_password
run_test test_server_login_failure
run_test test_client_tls
run_test test_auth_cert
run_test test_tls_bad_clients
run_test test_hash_password
run_test test_hba
run_test test_hba_reload
run_test test_auth_query
run_test test_auth_query_cache
run_test test_auth_query_per_db
run_test test_server_tls_verify_full
run_test test_server_tls_verify_fails
run_test test_server_tls_plain_server
run_test test_server_tls_pool_load
run_test test_server_tls_affinity
run_test test_server_tls_worker_dies
run_test test_server_tls_reload
run_test test_tls_both_legs
finish
