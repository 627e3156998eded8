/*
 * prepared.c — named prepared statements through a transaction-mode pooler
 * (issue #7).
 *
 * Usage: prepared CONNINFO HOST PORT USER DB THREADS ITERATIONS
 *
 * 1. THREADS libpq clients (PQprepare / PQexecPrepared) run ITERATIONS
 *    rounds each: a statement every client prepares under the same name and
 *    text, one with the same text under a name of its own, one under a
 *    shared name with a text of its own, some rounds inside BEGIN/COMMIT,
 *    and now and then DEALLOCATE ALL followed by preparing again. Every
 *    result is checked, so a statement run on the wrong server (or with
 *    another client's text) fails.
 * 2. libpq pipeline mode: Parse/Bind/Execute of named statements with a
 *    failing Parse in the middle; the results must be PostgreSQL's (the
 *    rest of the batch aborted, the statements after the error not created).
 * 3. A raw protocol client checks exact reply sequences: Close answered
 *    (CloseComplete), Close then reuse of the name with another text in one
 *    pipeline, a duplicate name (42P05), a Bind of an unknown name (26000),
 *    Describe, Flush with a local answer, DEALLOCATE ALL.
 * Exit status 0 when everything matched.
 */
#include "t/integration/itest.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

static const char *ci;
static int iterations;
static atomic_int bad;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, " (line %d)\n", __LINE__);                                 \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* ------------------------------------------------------ many clients */

static long exec_prepared(PGconn *c, const char *name, long arg)
{
	char buf[32];
	const char *vals[1] = {buf};
	long v = -1;
	snprintf(buf, sizeof(buf), "%ld", arg);
	PGresult *r = PQexecPrepared(c, name, 1, vals, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = atol(PQgetvalue(r, 0, 0));
	else
		fprintf(stderr, "execute %s: %s", name, PQresultErrorMessage(r));
	PQclear(r);
	return v;
}

static int prepare(PGconn *c, const char *name, const char *sql)
{
	PGresult *r = PQprepare(c, name, sql, 1, NULL);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "prepare %s (%s): %s", name, sql, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

static int prepare_all(PGconn *c, int t)
{
	char sql[128], own[32];
	snprintf(own, sizeof(own), "own_%d", t);
	snprintf(sql, sizeof(sql), "SELECT $1::int * %d", t + 2);
	return prepare(c, "common", "SELECT $1::int + 1") == 0 &&
	               prepare(c, own, "SELECT $1::int + 1") == 0 && prepare(c, "mine", sql) == 0
	           ? 0
	           : -1;
}

static int client_rounds(PGconn *c, int t)
{
	char own[32];
	snprintf(own, sizeof(own), "own_%d", t);
	CHECK(prepare_all(c, t) == 0, "client %d: prepare", t);
	for (int i = 0; i < iterations; i++) {
		bool tx = i % 3 == 1;
		if (tx)
			CHECK(itest_exec_ok(c, "BEGIN") == 0, "begin");
		CHECK(exec_prepared(c, "common", i) == i + 1, "client %d round %d: common", t, i);
		CHECK(exec_prepared(c, own, i) == i + 1, "client %d round %d: %s", t, i, own);
		CHECK(exec_prepared(c, "mine", i) == (long)i * (t + 2), "client %d round %d: mine",
		      t, i);
		if (tx)
			CHECK(itest_exec_ok(c, "COMMIT") == 0, "commit");
		if (i % 17 == 16) { /* everything is gone: prepare again */
			CHECK(itest_exec_ok(c, "DEALLOCATE ALL") == 0, "deallocate all");
			PGresult *r = PQexecPrepared(c, "common", 0, NULL, NULL, NULL, 0);
			int gone = PQresultStatus(r) == PGRES_FATAL_ERROR &&
			           strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "26000") == 0;
			PQclear(r);
			CHECK(gone, "client %d: statement still there after DEALLOCATE ALL", t);
			CHECK(prepare_all(c, t) == 0, "client %d: prepare again", t);
		}
	}
	return 0;
}

static void *run_client(void *arg)
{
	int t = (int)(intptr_t)arg;
	PGconn *c = itest_connect(ci);
	if (!c || client_rounds(c, t) < 0)
		atomic_fetch_add(&bad, 1);
	PQfinish(c);
	return NULL;
}

/* ---------------------------------------------------- libpq pipeline */

static int expect_result(PGconn *c, ExecStatusType want, const char *val)
{
	PGresult *r = PQgetResult(c);
	int ok = r && PQresultStatus(r) == want &&
	         (!val || (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), val) == 0));
	if (!ok)
		fprintf(stderr, "pipeline: got %s (want %s %s): %s\n",
		        r ? PQresStatus(PQresultStatus(r)) : "NULL", PQresStatus(want),
		        val ? val : "", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	if (ok && want != PGRES_PIPELINE_SYNC) {
		r = PQgetResult(c);
		ok = r == NULL;
		PQclear(r);
	}
	return ok ? 0 : -1;
}

static int pipeline_with_error(void)
{
	PGconn *c = itest_connect(ci);
	const char *one[1] = {"5"};
	int rc = -1;

	if (!c || !PQenterPipelineMode(c))
		goto out;
	PQsendPrepare(c, "p_ok", "SELECT $1::int + 100", 1, NULL);
	PQsendQueryPrepared(c, "p_ok", 1, one, NULL, NULL, 0);
	PQsendPrepare(c, "p_bad", "SELECT no_such_column", 0, NULL);
	PQsendPrepare(c, "p_after", "SELECT $1::int + 200", 1, NULL);
	PQsendQueryPrepared(c, "p_after", 1, one, NULL, NULL, 0);
	PQpipelineSync(c);
	PQsendQueryPrepared(c, "p_ok", 1, one, NULL, NULL, 0); /* still there */
	PQpipelineSync(c);
	PQsendPrepare(c, "p_after", "SELECT $1::int + 300", 1, NULL); /* was never created */
	PQsendQueryPrepared(c, "p_after", 1, one, NULL, NULL, 0);
	PQpipelineSync(c);
	if (expect_result(c, PGRES_COMMAND_OK, NULL) || expect_result(c, PGRES_TUPLES_OK, "105") ||
	    expect_result(c, PGRES_FATAL_ERROR, NULL) ||
	    expect_result(c, PGRES_PIPELINE_ABORTED, NULL) ||
	    expect_result(c, PGRES_PIPELINE_ABORTED, NULL) ||
	    expect_result(c, PGRES_PIPELINE_SYNC, NULL) ||
	    expect_result(c, PGRES_TUPLES_OK, "105") ||
	    expect_result(c, PGRES_PIPELINE_SYNC, NULL) ||
	    expect_result(c, PGRES_COMMAND_OK, NULL) || expect_result(c, PGRES_TUPLES_OK, "305") ||
	    expect_result(c, PGRES_PIPELINE_SYNC, NULL))
		goto out;
	if (!PQexitPipelineMode(c) || itest_exec_long(c, "SELECT 42") != 42)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		fprintf(stderr, "pipeline test failed: %s",
		        c ? PQerrorMessage(c) : "no connection\n");
	PQfinish(c);
	return rc;
}

/* ----------------------------------------------------------- raw wire */

struct raw {
	int fd;
	char types[256]; /* reply types since the last raw_read */
	char err[256];   /* first error: "SQLSTATE message" */
	char val[64];    /* first column of the last DataRow */
};

static void put32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

static int raw_msg(struct raw *r, char type, const char *body, uint32_t len)
{
	char hdr[5];
	hdr[0] = type;
	put32(hdr + 1, len + 4);
	return send(r->fd, hdr, 5, 0) == 5 &&
	               (len == 0 || send(r->fd, body, len, 0) == (ssize_t)len)
	           ? 0
	           : -1;
}

/* Parse NAME SQL with no parameter types */
static int raw_parse(struct raw *r, const char *name, const char *sql)
{
	char b[512];
	size_t n = strlen(name) + 1, q = strlen(sql) + 1;
	memcpy(b, name, n);
	memcpy(b + n, sql, q);
	b[n + q] = b[n + q + 1] = 0;
	return raw_msg(r, 'P', b, (uint32_t)(n + q + 2));
}

/* Bind unnamed portal to NAME with one text parameter (or none if !arg) */
static int raw_bind(struct raw *r, const char *name, const char *arg)
{
	char b[512];
	size_t n = strlen(name) + 1, off = 0;
	b[off++] = 0;
	memcpy(b + off, name, n);
	off += n;
	b[off++] = 0, b[off++] = 0; /* no parameter formats */
	b[off++] = 0, b[off++] = arg ? 1 : 0;
	if (arg) {
		put32(b + off, (uint32_t)strlen(arg));
		off += 4;
		memcpy(b + off, arg, strlen(arg));
		off += strlen(arg);
	}
	b[off++] = 0, b[off++] = 0; /* result formats */
	return raw_msg(r, 'B', b, (uint32_t)off);
}

static int raw_execute(struct raw *r)
{
	char b[5] = {0, 0, 0, 0, 0};
	return raw_msg(r, 'E', b, 5);
}

static int raw_dc(struct raw *r, char type, char kind, const char *name)
{
	char b[256];
	b[0] = kind;
	memcpy(b + 1, name, strlen(name) + 1);
	return raw_msg(r, type, b, (uint32_t)strlen(name) + 2);
}

/* Read replies until count Z (or, with count 0, until `until` type came). */
static int raw_read(struct raw *r, int count, char until)
{
	char hdr[5], body[8192];
	size_t nt = 0;
	r->types[0] = r->err[0] = 0;
	for (;;) {
		if (recv(r->fd, hdr, 5, MSG_WAITALL) != 5)
			return -1;
		uint32_t len = ((uint32_t)(uint8_t)hdr[1] << 24 | (uint32_t)(uint8_t)hdr[2] << 16 |
		                (uint32_t)(uint8_t)hdr[3] << 8 | (uint8_t)hdr[4]) -
		               4;
		if (len > sizeof(body) ||
		    (len && recv(r->fd, body, len, MSG_WAITALL) != (ssize_t)len))
			return -1;
		if (nt + 1 < sizeof(r->types))
			r->types[nt++] = hdr[0], r->types[nt] = 0;
		if (hdr[0] == 'E' && !r->err[0]) {
			char code[8] = "", *msg = "";
			for (uint32_t i = 0; i < len && body[i];) {
				char *f = body + i + 1;
				if (body[i] == 'C')
					snprintf(code, sizeof(code), "%s", f);
				if (body[i] == 'M')
					msg = f;
				i += (uint32_t)strlen(f) + 2;
			}
			snprintf(r->err, sizeof(r->err), "%s %s", code, msg);
		}
		if (hdr[0] == 'D' && len > 6) {
			uint32_t vl = (uint32_t)(uint8_t)body[2] << 24 |
			              (uint32_t)(uint8_t)body[3] << 16 |
			              (uint32_t)(uint8_t)body[4] << 8 | (uint8_t)body[5];
			snprintf(r->val, sizeof(r->val), "%.*s", (int)(vl < 60 ? vl : 60),
			         body + 6);
		}
		if ((hdr[0] == 'Z' && --count == 0) || (count <= 0 && hdr[0] == until))
			return 0;
	}
}

static int raw_connect(struct raw *r, const char *host, const char *port, const char *user,
                       const char *db)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	char pkt[256];
	uint32_t off = 8;

	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(r->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	put32(pkt + 4, 196608);
	off += (uint32_t)sprintf(pkt + off, "user") + 1;
	off += (uint32_t)sprintf(pkt + off, "%s", user) + 1;
	off += (uint32_t)sprintf(pkt + off, "database") + 1;
	off += (uint32_t)sprintf(pkt + off, "%s", db) + 1;
	pkt[off++] = 0;
	put32(pkt, off);
	if (send(r->fd, pkt, off, 0) != (ssize_t)off)
		return -1;
	return raw_read(r, 1, 0);
}

/* Sync, and read through its ReadyForQuery. */
static int raw_sync(struct raw *r)
{
	return raw_msg(r, 'S', NULL, 0) == 0 ? raw_read(r, 1, 0) : -1;
}

/* Bind NAME (one parameter, or none), Execute, Sync, read the replies. */
static int raw_run(struct raw *r, const char *name, const char *arg)
{
	return raw_bind(r, name, arg) == 0 && raw_execute(r) == 0 ? raw_sync(r) : -1;
}

#define RAW(expr) CHECK((expr) == 0, "raw: %s failed", #expr)
#define EXPECT(r, want)                                                                            \
	CHECK(strcmp((r)->types, want) == 0, "raw: replies %s, want %s (error: %s)", (r)->types,   \
	      want, (r)->err)

static int raw_tests(const char *host, const char *port, const char *user, const char *db)
{
	struct raw r = {.fd = -1};

	RAW(raw_connect(&r, host, port, user, db));
	/* prepare, run, run again (perhaps on another server) */
	RAW(raw_parse(&r, "s1", "SELECT $1::int + 1"));
	RAW(raw_run(&r, "s1", "41"));
	EXPECT(&r, "12DCZ");
	CHECK(strcmp(r.val, "42") == 0, "raw: s1(41) = %s", r.val);
	/* a duplicate name: PostgreSQL's error, and the group is skipped */
	RAW(raw_parse(&r, "s1", "SELECT 1"));
	RAW(raw_run(&r, "s1", "1"));
	EXPECT(&r, "EZ");
	CHECK(strstr(r.err, "42P05") && strstr(r.err, "\"s1\" already exists"),
	      "raw: duplicate: %s", r.err);
	/* Close, then the name is free: another text under it, in one pipeline */
	RAW(raw_dc(&r, 'C', 'S', "s1"));
	RAW(raw_parse(&r, "s1", "SELECT $1::int * 10"));
	RAW(raw_run(&r, "s1", "7"));
	EXPECT(&r, "312DCZ");
	CHECK(strcmp(r.val, "70") == 0, "raw: reused s1(7) = %s", r.val);
	/* Close, then using it fails as in PostgreSQL */
	RAW(raw_dc(&r, 'C', 'S', "s1"));
	RAW(raw_sync(&r));
	EXPECT(&r, "3Z");
	RAW(raw_run(&r, "s1", "7"));
	EXPECT(&r, "EZ");
	CHECK(strstr(r.err, "26000") && strstr(r.err, "\"s1\" does not exist"), "raw: closed: %s",
	      r.err);
	/* an error in the middle: what follows it in the group is not created */
	RAW(raw_parse(&r, "s2", "SELECT $1::int"));
	RAW(raw_parse(&r, "s3", "SELECT no_such_column"));
	RAW(raw_parse(&r, "s4", "SELECT 4"));
	RAW(raw_msg(&r, 'S', NULL, 0));
	RAW(raw_parse(&r, "s4", "SELECT 44")); /* a new group: s4 is free */
	RAW(raw_bind(&r, "s4", NULL));
	RAW(raw_execute(&r));
	RAW(raw_bind(&r, "s2", "2"));
	RAW(raw_execute(&r));
	RAW(raw_msg(&r, 'S', NULL, 0));
	RAW(raw_read(&r, 2, 0));
	EXPECT(&r, "1EZ12DC2DCZ");
	CHECK(strcmp(r.val, "2") == 0, "raw: s2(2) = %s", r.val);
	/* Describe a statement; Flush answers a Parse the server already has */
	RAW(raw_parse(&r, "d1", "SELECT $1::int AS a, 'x'::text AS b"));
	RAW(raw_dc(&r, 'D', 'S', "d1"));
	RAW(raw_msg(&r, 'H', NULL, 0));
	RAW(raw_read(&r, 0, 'T'));
	EXPECT(&r, "1tT");
	RAW(raw_parse(&r, "d2", "SELECT $1::int AS a, 'x'::text AS b")); /* same text */
	RAW(raw_msg(&r, 'H', NULL, 0));
	RAW(raw_read(&r, 0, '1'));
	EXPECT(&r, "1");
	RAW(raw_sync(&r));
	EXPECT(&r, "Z");
	/* DEALLOCATE ALL forgets this client's statements */
	RAW(raw_msg(&r, 'Q', "DEALLOCATE ALL", 15));
	RAW(raw_read(&r, 1, 0));
	EXPECT(&r, "CZ");
	RAW(raw_bind(&r, "d2", "1"));
	RAW(raw_sync(&r));
	EXPECT(&r, "EZ");
	RAW(raw_parse(&r, "d2", "SELECT 'again'"));
	RAW(raw_run(&r, "d2", NULL));
	EXPECT(&r, "12DCZ");
	CHECK(strcmp(r.val, "again") == 0, "raw: d2 = %s", r.val);
	close(r.fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr, "usage: %s CONNINFO HOST PORT USER DB THREADS ITERATIONS\n",
		        argv[0]);
		return 2;
	}
	alarm(120);
	ci = argv[1];
	int nth = atoi(argv[6]);
	iterations = atoi(argv[7]);
	pthread_t th[64];
	if (nth > 64)
		nth = 64;
	double t0 = itest_now();
	int raw = raw_tests(argv[2], argv[3], argv[4], argv[5]);
	printf("raw protocol checks: %s\n", raw == 0 ? "ok" : "FAILED");
	int pipe = pipeline_with_error();
	printf("pipeline with an error in the middle: %s\n", pipe == 0 ? "ok" : "FAILED");
	for (int i = 0; i < nth; i++)
		pthread_create(&th[i], NULL, run_client, (void *)(intptr_t)i);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	printf("%d clients x %d rounds of prepared statements: %d failed clients, %.0f ms\n", nth,
	       iterations, atomic_load(&bad), (itest_now() - t0) * 1e3);
	return raw || pipe || atomic_load(&bad) ? 1 : 0;
}
