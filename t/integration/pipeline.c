/*
 * pipeline.c — pipelined extended-protocol queries (libpq pipeline mode).
 *
 * Usage: pipeline CONNINFO THREADS BATCHES PER_BATCH
 *
 * Each thread enters pipeline mode and sends BATCHES batches before reading
 * anything. A batch is PER_BATCH queries followed by a Sync: even batches
 * Parse an unnamed statement once and Bind/Execute it PER_BATCH times
 * (PQsendPrepare + PQsendQueryPrepared), odd batches send
 * Parse/Bind/Describe/Execute each time (PQsendQueryParams). Between two
 * Syncs a transaction-mode pooler may hand the server to someone else, but
 * it must not while requests of this client are still pending. Every
 * result is checked ($1 + 1) and each batch must end with its sync.
 */
#include "t/integration/itest.h"

#include <pthread.h>
#include <stdatomic.h>

static const char *ci;
static int nbatches, perbatch;
static atomic_int bad;

static int send_all(PGconn *c)
{
	char buf[32];
	const char *vals[1] = {buf};
	for (int b = 0; b < nbatches; b++) {
		if (b % 2 == 0 && !PQsendPrepare(c, "", "SELECT $1::int + 1", 1, NULL))
			return -1;
		for (int i = 0; i < perbatch; i++) {
			snprintf(buf, sizeof buf, "%d", b * perbatch + i);
			int ok = b % 2 == 0 ? PQsendQueryPrepared(c, "", 1, vals, NULL, NULL, 0)
			                    : PQsendQueryParams(c, "SELECT $1::int + 1", 1, NULL,
			                                        vals, NULL, NULL, 0);
			if (!ok)
				return -1;
		}
		if (!PQpipelineSync(c))
			return -1;
	}
	return 0;
}

static int expect(PGconn *c, ExecStatusType st, long val)
{
	PGresult *r = PQgetResult(c);
	int ok = r != NULL && PQresultStatus(r) == st;
	if (ok && val >= 0)
		ok = atol(PQgetvalue(r, 0, 0)) == val;
	if (!ok)
		fprintf(stderr, "unexpected result %s (want %s %ld): %s",
		        r ? PQresStatus(PQresultStatus(r)) : "NULL", PQresStatus(st), val,
		        r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	if (st != PGRES_PIPELINE_SYNC && ok) { /* end of this query's results */
		r = PQgetResult(c);
		ok = r == NULL;
		PQclear(r);
	}
	return ok ? 0 : -1;
}

static int read_all(PGconn *c)
{
	for (int b = 0; b < nbatches; b++) {
		if (b % 2 == 0 && expect(c, PGRES_COMMAND_OK, -1) < 0)
			return -1;
		for (int i = 0; i < perbatch; i++)
			if (expect(c, PGRES_TUPLES_OK, b * perbatch + i + 1) < 0)
				return -1;
		if (expect(c, PGRES_PIPELINE_SYNC, -1) < 0)
			return -1;
	}
	return 0;
}

static void *run(void *arg)
{
	(void)arg;
	PGconn *c = itest_connect(ci);
	int ok = c != NULL && PQenterPipelineMode(c) && send_all(c) == 0 && read_all(c) == 0 &&
	         PQexitPipelineMode(c) && itest_exec_long(c, "SELECT 42") == 42;
	if (!ok) {
		if (c)
			fprintf(stderr, "pipeline client: %s", PQerrorMessage(c));
		atomic_fetch_add(&bad, 1);
	}
	PQfinish(c);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s CONNINFO THREADS BATCHES PER_BATCH\n", argv[0]);
		return 2;
	}
	alarm(120);
	ci = argv[1];
	int nth = atoi(argv[2]);
	nbatches = atoi(argv[3]);
	perbatch = atoi(argv[4]);
	pthread_t th[64];
	if (nth > 64)
		nth = 64;
	double t0 = itest_now();
	for (int i = 0; i < nth; i++)
		pthread_create(&th[i], NULL, run, NULL);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	printf("%d clients x %d batches x %d pipelined queries: %d failed clients, %.0f ms\n", nth,
	       nbatches, perbatch, atomic_load(&bad), (itest_now() - t0) * 1e3);
	return atomic_load(&bad) ? 1 : 0;
}
