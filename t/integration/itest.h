/*
 * itest.h — small helpers shared by the integration test programs in
 * t/integration/ (each a standalone libpq client built to $B/t/<name>).
 * Header-only so that every program stays one file for the makefile.
 *
 * The fake backend pid a client sees through pgshoal encodes where it lives:
 * worker index = (pid >> 20) - 1, client row = pid & 0xFFFFF.
 */
#ifndef PGSHOAL_ITEST_H
#define PGSHOAL_ITEST_H

#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline int itest_worker_of_pid(int pid)
{
	return (pid >> 20) - 1;
}

static inline int itest_worker_of(PGconn *c)
{
	return itest_worker_of_pid(PQbackendPID(c));
}

static inline double itest_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void itest_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static inline PGconn *itest_connect(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "connect failed: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

/*
 * Connect until the client lands on worker W (at most TRIES connects);
 * W < 0: any worker. Returns NULL if it never did.
 *
 * Connections are opened in concurrent batches: pgshoal's workers each
 * have their own SO_REUSEPORT listening socket, so the kernel spreads the
 * connects over them by a hash of the client's address and port.
 */
#define ITEST_BATCH 16
static inline PGconn *itest_connect_on_worker(const char *conninfo, int w, int tries)
{
	PGconn *found = NULL;
	for (int done = 0; done < tries && found == NULL; done += ITEST_BATCH) {
		PGconn *b[ITEST_BATCH];
		PostgresPollingStatusType st[ITEST_BATCH];
		int pending = 0;
		for (int i = 0; i < ITEST_BATCH; i++) {
			b[i] = PQconnectStart(conninfo);
			st[i] = PQstatus(b[i]) == CONNECTION_BAD ? PGRES_POLLING_FAILED
			                                         : PGRES_POLLING_WRITING;
			pending += st[i] != PGRES_POLLING_FAILED;
		}
		while (pending > 0) {
			struct pollfd pfd[ITEST_BATCH];
			int map[ITEST_BATCH], n = 0;
			for (int i = 0; i < ITEST_BATCH; i++) {
				if (st[i] != PGRES_POLLING_READING &&
				    st[i] != PGRES_POLLING_WRITING)
					continue;
				pfd[n].fd = PQsocket(b[i]);
				pfd[n].events = st[i] == PGRES_POLLING_READING ? POLLIN : POLLOUT;
				map[n++] = i;
			}
			if (poll(pfd, n, 10000) <= 0)
				break;
			for (int k = 0; k < n; k++) {
				if (pfd[k].revents == 0)
					continue;
				int i = map[k];
				st[i] = PQconnectPoll(b[i]);
				if (st[i] == PGRES_POLLING_OK || st[i] == PGRES_POLLING_FAILED)
					pending--;
			}
		}
		for (int i = 0; i < ITEST_BATCH; i++) {
			if (found == NULL && st[i] == PGRES_POLLING_OK &&
			    (w < 0 || itest_worker_of(b[i]) == w)) {
				found = b[i];
				continue;
			}
			if (st[i] != PGRES_POLLING_OK)
				fprintf(stderr, "connect failed: %s", PQerrorMessage(b[i]));
			PQfinish(b[i]);
		}
	}
	if (found == NULL)
		fprintf(stderr, "no client landed on worker %d in %d connects\n", w, tries);
	return found;
}

/* Run SQL that must succeed (command or tuples); returns 0 / -1 and prints why. */
static inline int itest_exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "\"%s\" failed: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

/* First column of the first row as an integer; -1 on error. */
static inline long itest_exec_long(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long v = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		v = atol(PQgetvalue(r, 0, 0));
	else
		fprintf(stderr, "\"%s\" failed: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return v;
}

#endif
