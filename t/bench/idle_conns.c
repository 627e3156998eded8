/*
 * idle_conns.c — open N idle libpq connections and hold them.
 * usage: idle_conns CONNINFO N
 * Opens the connections (at most 64 logins in flight, non-blocking), runs
 * nothing on them, prints "ready OK FAILED" on stdout, then waits for
 * SIGTERM/SIGINT and closes them all (sending Terminate). The first
 * failure's message goes to stderr. Exit 0 when all N connected.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INFLIGHT 64

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: idle_conns CONNINFO N\n");
		return 2;
	}
	int n = atoi(argv[2]), ok = 0, failed = 0, next = 0, busy = 0;
	PGconn **c = calloc((size_t)n, sizeof(*c));
	PostgresPollingStatusType *st = calloc((size_t)n, sizeof(*st));
	struct pollfd *pf = calloc(INFLIGHT, sizeof(*pf));
	int *idx = calloc(INFLIGHT, sizeof(*idx));
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	while ((next < n || busy > 0) && !stop) {
		/* start logins until INFLIGHT are in progress */
		for (; next < n && busy < INFLIGHT; next++) {
			c[next] = PQconnectStart(argv[1]);
			if (!c[next] || PQstatus(c[next]) == CONNECTION_BAD) {
				if (!failed++)
					fprintf(stderr, "connection %d: %s", next,
					        c[next] ? PQerrorMessage(c[next])
					                : "out of memory\n");
				continue;
			}
			st[next] = PGRES_POLLING_WRITING;
			busy++;
		}
		int m = 0;
		for (int i = 0; i < next; i++) {
			if (st[i] != PGRES_POLLING_READING && st[i] != PGRES_POLLING_WRITING)
				continue;
			pf[m].fd = PQsocket(c[i]);
			pf[m].events = st[i] == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			idx[m++] = i;
		}
		if (m == 0)
			continue;
		if (poll(pf, (nfds_t)m, 10000) <= 0) {
			fprintf(stderr, "poll timed out with %d logins in flight\n", m);
			break;
		}
		for (int j = 0; j < m; j++) {
			int i = idx[j];
			if (!pf[j].revents)
				continue;
			st[i] = PQconnectPoll(c[i]);
			if (st[i] == PGRES_POLLING_OK) {
				ok++, busy--;
			} else if (st[i] == PGRES_POLLING_FAILED) {
				if (!failed++)
					fprintf(stderr, "connection %d: %s", i,
					        PQerrorMessage(c[i]));
				busy--;
			}
		}
	}
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	printf("ready %d %d\n", ok, failed);
	fflush(stdout);
	while (!stop)
		sigsuspend(&old);
	for (int i = 0; i < n; i++)
		if (c[i])
			PQfinish(c[i]);
	return ok == n ? 0 : 1;
}
