/*
 * bigvalue.c — one large bytea value round trip (a single huge Bind and a
 * single huge DataRow through the pooler).
 *
 * Usage: bigvalue CONNINFO MEGABYTES
 *
 * Inserts MEGABYTES of pseudo-random bytes as a binary parameter into table
 * big_value (created if missing), reads the value back in binary and in
 * text (hex, twice the size) format and compares both with what was sent.
 * The caller watches the pooler's memory meanwhile.
 */
#include "t/integration/itest.h"

static int hexval(char ch)
{
	return ch <= '9' ? ch - '0' : ch - 'a' + 10;
}

static int fetch_and_compare(PGconn *c, const unsigned char *data, size_t len, int binary)
{
	double t0 = itest_now();
	PGresult *r = PQexecParams(c, "SELECT b FROM big_value WHERE id = 1", 0, NULL, NULL, NULL,
	                           NULL, binary);
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (!ok) {
		fprintf(stderr, "select failed: %s", PQerrorMessage(c));
	} else if (binary) {
		ok = (size_t)PQgetlength(r, 0, 0) == len &&
		     memcmp(PQgetvalue(r, 0, 0), data, len) == 0;
	} else {
		const char *v = PQgetvalue(r, 0, 0);
		ok = (size_t)PQgetlength(r, 0, 0) == 2 + 2 * len && v[0] == '\\' && v[1] == 'x';
		for (size_t i = 0; ok && i < len; i++)
			ok = (hexval(v[2 + 2 * i]) << 4 | hexval(v[3 + 2 * i])) == data[i];
	}
	printf("read back %s (%d bytes on the wire): %s in %.0f ms\n", binary ? "binary" : "text",
	       ok ? PQgetlength(r, 0, 0) : 0, ok ? "identical" : "DIFFERENT",
	       (itest_now() - t0) * 1e3);
	PQclear(r);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s CONNINFO MEGABYTES\n", argv[0]);
		return 2;
	}
	alarm(300);
	size_t len = (size_t)atol(argv[2]) << 20;
	unsigned char *data = malloc(len);
	unsigned int x = 12345;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (unsigned char)(x >> 16);
	}
	PGconn *c = itest_connect(argv[1]);
	if (c == NULL)
		return 1;
	if (itest_exec_ok(c, "CREATE TABLE IF NOT EXISTS big_value (id int, b bytea)") < 0 ||
	    itest_exec_ok(c, "TRUNCATE big_value") < 0)
		return 1;
	const char *vals[1] = {(const char *)data};
	int lens[1] = {(int)len}, fmts[1] = {1};
	double t0 = itest_now();
	PGresult *r =
	    PQexecParams(c, "INSERT INTO big_value VALUES (1, $1)", 1, NULL, vals, lens, fmts, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		printf("FAIL: insert of %zu bytes failed: %s", len, PQerrorMessage(c));
		return 1;
	}
	PQclear(r);
	printf("inserted %zu bytes in %.0f ms\n", len, (itest_now() - t0) * 1e3);
	int rc = 0;
	if (fetch_and_compare(c, data, len, 1) < 0 || fetch_and_compare(c, data, len, 0) < 0)
		rc = 1;
	if (itest_exec_ok(c, "TRUNCATE big_value") < 0)
		rc = 1;
	PQfinish(c);
	free(data);
	return rc;
}
