/*
 * writer.c — a timed writer for the failover tests: one client connection
 * (reopened when it breaks) runs SQL every INTERVAL ms until the file STOP
 * exists, and prints one line per attempt: "END_MS ok|err DURATION_MS"
 * (wall clock, ms since the epoch, comparable with the log and with the
 * monitor's event times).
 *
 *   writer CONNINFO SQL INTERVAL_MS STOP_FILE
 */
#include "itest.h"

#include <stdbool.h>
#include <sys/time.h>

static long long wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int main(int argc, char **argv)
{
	PGconn *c = NULL;

	if (argc != 5) {
		fprintf(stderr, "usage: writer CONNINFO SQL INTERVAL_MS STOP_FILE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (access(argv[4], F_OK) != 0) {
		long long t0 = wall_ms();
		bool ok = false;
		if (!c || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = PQconnectdb(argv[1]);
		}
		if (PQstatus(c) == CONNECTION_OK) {
			PGresult *r = PQexec(c, argv[2]);
			ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
			     PQresultStatus(r) == PGRES_TUPLES_OK;
			PQclear(r);
		}
		printf("%lld %s %lld\n", wall_ms(), ok ? "ok" : "err", wall_ms() - t0);
		itest_sleep_ms(atoi(argv[3]));
	}
	PQfinish(c);
	return 0;
}
