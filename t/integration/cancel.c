/*
 * cancel.c — a CancelRequest cancels the query of the client it names,
 * whichever worker the CancelRequest connection lands on.
 *
 * Usage: cancel CONNINFO WORKERS ROUNDS
 *
 * Round r uses a client on worker r % WORKERS (WORKERS = 0: any worker),
 * starts "SELECT pg_sleep(30)", waits 300 ms and calls PQcancel. The
 * CancelRequest is a new connection that pgshoal's accept spreads over the
 * workers, so over several rounds and client workers some cancels arrive
 * at a worker other than the client's. Each round must end with SQLSTATE
 * 57014 within 5 s, and the client must stay usable afterwards.
 */
#include "t/integration/itest.h"

static int one_round(const char *ci, int want_w)
{
	PGconn *c = itest_connect_on_worker(ci, want_w, 400);
	if (c == NULL)
		return -1;
	int rc = -1;
	if (!PQsendQuery(c, "SELECT pg_sleep(30)")) {
		fprintf(stderr, "send failed: %s", PQerrorMessage(c));
		goto out;
	}
	itest_sleep_ms(300);
	double t0 = itest_now();
	char err[256] = "";
	PGcancel *cn = PQgetCancel(c);
	if (cn == NULL || !PQcancel(cn, err, sizeof err)) {
		printf("  PQcancel failed: %s\n", err);
		PQfreeCancel(cn);
		goto out;
	}
	PQfreeCancel(cn);
	const char *state = NULL;
	char statebuf[8] = "none";
	PGresult *r;
	while ((r = PQgetResult(c)) != NULL) {
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (state != NULL)
			snprintf(statebuf, sizeof statebuf, "%s", state);
		PQclear(r);
	}
	double dt = itest_now() - t0;
	long one = itest_exec_long(c, "SELECT 1");
	printf("  client on worker %d: sqlstate %s after %.0f ms; next query %s\n",
	       itest_worker_of(c), statebuf, dt * 1e3, one == 1 ? "ok" : "FAILED");
	if (strcmp(statebuf, "57014") == 0 && dt < 5.0 && one == 1)
		rc = 0;
out:
	PQfinish(c);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s CONNINFO WORKERS ROUNDS\n", argv[0]);
		return 2;
	}
	alarm(300);
	int nworkers = atoi(argv[2]), rounds = atoi(argv[3]), bad = 0;
	for (int r = 0; r < rounds; r++)
		if (one_round(argv[1], nworkers > 0 ? r % nworkers : -1) < 0)
			bad++;
	printf("%d of %d cancels worked\n", rounds - bad, rounds);
	if (bad)
		printf("FAIL: %d cancels did not give 57014 within 5 s\n", bad);
	return bad ? 1 : 0;
}
