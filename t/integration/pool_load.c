/*
 * pool_load.c — the shared-pool invariant under concurrent transactions.
 *
 * Usage: pool_load CONNINFO MONITOR_CONNINFO CLIENTS TXS MAX_SERVERS WORKERS [USER]
 *
 * CLIENTS threads connect through pgshoal (CONNINFO) and each run TXS
 * transactions (BEGIN / SELECT pg_backend_pid() / COMMIT, three round trips,
 * so a transaction holds its server across messages). Meanwhile a monitor
 * connected straight to PostgreSQL (MONITOR_CONNINFO) samples
 * pg_stat_activity for USER's connections (default "tuser").
 *
 * Passes (exit 0) when every transaction succeeded, the monitor never saw
 * more than MAX_SERVERS server connections, and clients were served on all
 * WORKERS workers (0 = don't check). The first WORKERS clients are placed
 * one onto each worker (itest_connect_on_worker), the others land where
 * the kernel puts them.
 */
#include "t/integration/itest.h"

#include <pthread.h>
#include <stdatomic.h>

#define MAX_PIDS    4096
#define MAX_WORKERS 64

static const char *conninfo, *monconninfo, *dbuser = "tuser";
static int nclients, ntx;
static atomic_int ok_tx, err_tx, done_clients, ready;
static atomic_int per_worker[MAX_WORKERS];
static pthread_mutex_t pid_lock = PTHREAD_MUTEX_INITIALIZER;
static int server_pids[MAX_PIDS], nserver_pids;

static void note_pid(int pid)
{
	pthread_mutex_lock(&pid_lock);
	int i;
	for (i = 0; i < nserver_pids && server_pids[i] != pid; i++)
		;
	if (i == nserver_pids && nserver_pids < MAX_PIDS)
		server_pids[nserver_pids++] = pid;
	pthread_mutex_unlock(&pid_lock);
}

static int one_tx(PGconn *c)
{
	if (itest_exec_ok(c, "BEGIN") < 0)
		return -1;
	long pid = itest_exec_long(c, "SELECT pg_backend_pid()");
	if (pid < 0)
		return -1;
	note_pid((int)pid);
	return itest_exec_ok(c, "COMMIT");
}

static pthread_mutex_t steer_lock = PTHREAD_MUTEX_INITIALIZER;
static int nworkers;

static void *client(void *arg)
{
	long idx = (long)arg;
	PGconn *c;
	if (idx < nworkers) {
		/* the first WORKERS clients are steered one onto each worker */
		pthread_mutex_lock(&steer_lock);
		c = itest_connect_on_worker(conninfo, (int)idx, 64);
		pthread_mutex_unlock(&steer_lock);
	} else {
		c = itest_connect(conninfo);
	}
	atomic_fetch_add(&ready, 1);
	if (c == NULL) {
		atomic_fetch_add(&err_tx, ntx);
		goto out;
	}
	int w = itest_worker_of(c);
	if (w >= 0 && w < MAX_WORKERS)
		atomic_fetch_add(&per_worker[w], 1);
	while (atomic_load(&ready) < nclients) /* start together */
		itest_sleep_ms(5);
	for (int i = 0; i < ntx; i++) {
		if (one_tx(c) == 0) {
			atomic_fetch_add(&ok_tx, 1);
		} else {
			atomic_fetch_add(&err_tx, 1);
			if (PQstatus(c) != CONNECTION_OK) {
				atomic_fetch_add(&err_tx, ntx - i - 1);
				break;
			}
			PQclear(PQexec(c, "ROLLBACK"));
		}
	}
	PQfinish(c);
out:
	atomic_fetch_add(&done_clients, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(
		    stderr,
		    "usage: %s CONNINFO MONITOR_CONNINFO CLIENTS TXS MAX_SERVERS WORKERS [USER]\n",
		    argv[0]);
		return 2;
	}
	conninfo = argv[1];
	monconninfo = argv[2];
	nclients = atoi(argv[3]);
	ntx = atoi(argv[4]);
	int maxsrv = atoi(argv[5]);
	nworkers = atoi(argv[6]);
	if (argc > 7)
		dbuser = argv[7];
	alarm(300);

	PGconn *mon = itest_connect(monconninfo);
	if (mon == NULL)
		return 1;
	char q[256];
	snprintf(q, sizeof q, "SELECT count(*) FROM pg_stat_activity WHERE usename = '%s'", dbuser);

	pthread_t *th = calloc(nclients, sizeof *th);
	double t0 = itest_now();
	for (int i = 0; i < nclients; i++)
		pthread_create(&th[i], NULL, client, (void *)(long)i);
	long maxseen = 0, samples = 0;
	while (atomic_load(&done_clients) < nclients) {
		long n = itest_exec_long(mon, q);
		if (n > maxseen)
			maxseen = n;
		samples++;
		itest_sleep_ms(2);
	}
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	free(th);
	double dt = itest_now() - t0;

	int served = 0;
	printf("clients=%d tx_ok=%d tx_err=%d in %.2fs; max server conns seen=%ld (%ld samples), "
	       "distinct server pids=%d; clients per worker:",
	       nclients, atomic_load(&ok_tx), atomic_load(&err_tx), dt, maxseen, samples,
	       nserver_pids);
	for (int w = 0; w < MAX_WORKERS; w++) {
		int n = atomic_load(&per_worker[w]);
		if (n) {
			printf(" w%d=%d", w, n);
			served++;
		}
	}
	printf("\n");
	int rc = 0;
	if (atomic_load(&err_tx) != 0 || atomic_load(&ok_tx) != nclients * ntx) {
		printf("FAIL: %d transactions failed\n", atomic_load(&err_tx));
		rc = 1;
	}
	if (maxseen > maxsrv) {
		printf("FAIL: pg_stat_activity showed %ld server connections > %d\n", maxseen,
		       maxsrv);
		rc = 1;
	}
	if (nserver_pids > maxsrv) {
		/* not a hard proof of a violation (a server may have been replaced) */
		printf("note: clients saw %d distinct server pids > %d\n", nserver_pids, maxsrv);
	}
	if (nworkers > 0 && served < nworkers) {
		printf("FAIL: clients were served on %d of %d workers\n", served, nworkers);
		rc = 1;
	}
	PQfinish(mon);
	return rc;
}
