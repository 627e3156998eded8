/*
 * fifo.c — waiting clients are served in arrival order across workers.
 *
 * Usage: fifo CONNINFO HOLDER_WORKER WAITER_WORKER...
 *
 * Meant for a pool of size 1 in transaction mode. A holder client (on
 * HOLDER_WORKER) and one waiter per WAITER_WORKER argument connect first
 * (each reconnecting until it lands on its worker, judged by the fake
 * backend pid). The holder opens a transaction, so it holds the only
 * server. The waiters then send "SELECT clock_timestamp()" 200 ms apart, in
 * argument order; none may complete while the holder holds the server.
 * The holder commits; since the pool has one server, the waiters' queries
 * run one after another and the server-side timestamps give the exact order
 * in which pgshoal handed the server out. Passes when it is arrival order.
 */
#include "t/integration/itest.h"

#define MAXW  16
#define TRIES 400

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s CONNINFO HOLDER_WORKER WAITER_WORKER...\n", argv[0]);
		return 2;
	}
	alarm(120);
	const char *ci = argv[1];
	int nw = argc - 3;
	if (nw > MAXW)
		nw = MAXW;
	PGconn *holder = itest_connect_on_worker(ci, atoi(argv[2]), TRIES);
	PGconn *w[MAXW];
	if (holder == NULL)
		return 1;
	for (int i = 0; i < nw; i++) {
		w[i] = itest_connect_on_worker(ci, atoi(argv[3 + i]), TRIES);
		if (w[i] == NULL)
			return 1;
	}
	printf("holder on worker %d; waiters on workers", itest_worker_of(holder));
	for (int i = 0; i < nw; i++)
		printf(" %d", itest_worker_of(w[i]));
	printf("\n");

	if (itest_exec_ok(holder, "BEGIN") < 0 || itest_exec_ok(holder, "SELECT 1") < 0)
		return 1;
	for (int i = 0; i < nw; i++) {
		if (!PQsendQuery(w[i], "SELECT extract(epoch FROM clock_timestamp())::float8")) {
			fprintf(stderr, "send failed: %s", PQerrorMessage(w[i]));
			return 1;
		}
		itest_sleep_ms(200);
	}
	int rc = 0;
	for (int i = 0; i < nw; i++) {
		PQconsumeInput(w[i]);
		if (!PQisBusy(w[i])) {
			printf("FAIL: waiter %d completed while the only server was held\n", i);
			rc = 1;
		}
	}
	double t0 = itest_now();
	if (itest_exec_ok(holder, "COMMIT") < 0)
		return 1;

	double ts[MAXW];
	int order_ok = 1;
	for (int i = 0; i < nw; i++) {
		PGresult *r;
		ts[i] = -1;
		while ((r = PQgetResult(w[i])) != NULL) {
			if (PQresultStatus(r) == PGRES_TUPLES_OK)
				ts[i] = atof(PQgetvalue(r, 0, 0));
			else
				fprintf(stderr, "waiter %d: %s", i, PQresultErrorMessage(r));
			PQclear(r);
		}
		if (ts[i] < 0) {
			printf("FAIL: waiter %d got no result\n", i);
			rc = 1;
		}
	}
	printf("all served %.0f ms after the commit; server-side order:", (itest_now() - t0) * 1e3);
	for (int i = 0; i < nw; i++) {
		int rank = 0;
		for (int j = 0; j < nw; j++)
			rank += ts[j] < ts[i];
		printf(" waiter%d(w%d)=#%d", i, itest_worker_of(w[i]), rank + 1);
		if (rank != i)
			order_ok = 0;
	}
	printf("\n%s\n",
	       order_ok ? "served in arrival order" : "FAIL: not served in arrival order");
	if (!order_ok)
		rc = 1;
	for (int i = 0; i < nw; i++)
		PQfinish(w[i]);
	PQfinish(holder);
	return rc;
}
