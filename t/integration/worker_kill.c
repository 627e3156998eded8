/*
 * worker_kill.c — kill -9 of one pgshoal worker during a load: only that
 * worker's clients may notice.
 *
 * Usage: worker_kill CONNINFO CLIENTS SECONDS KILL_PID KILL_AFTER_MS [KILL_WORKER]
 *
 * CLIENTS threads run short transactions (BEGIN / pg_sleep(2 ms) / COMMIT)
 * for SECONDS, reconnecting after an error. After KILL_AFTER_MS the main
 * thread sends SIGKILL to KILL_PID (a worker). Every error is charged to the
 * worker that served that connection (from its fake backend pid). Passes
 * when errors happened only after the kill and only on one worker (on
 * KILL_WORKER if given, >= 0), no reconnect failed later than 3 s after the
 * kill, and transactions kept succeeding after the kill (no 3 s stretch
 * without one). It prints the timeline of successful transactions.
 */
#include "t/integration/itest.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define MAXW 64

static const char *ci;
static double t_end, t_kill = 1e18;
static atomic_int ok_before, ok_after, err_before, conn_err_late, conn_err_early;
static atomic_int err_by_worker[MAXW];
#define NBUCKET 240 /* successful transactions per 250 ms, for the timeline */
static atomic_int ok_bucket[NBUCKET];
static double t_start;

static pthread_mutex_t steer_lock = PTHREAD_MUTEX_INITIALIZER;

static void *client(void *arg)
{
	long idx = (long)arg;
	PGconn *c = NULL;
	if (idx < 8) {
		/* the first clients start on given workers (0,1,2,3,0,1,...),
		 * so that the killed worker surely has clients */
		pthread_mutex_lock(&steer_lock);
		c = itest_connect_on_worker(ci, (int)(idx % 4), 64);
		pthread_mutex_unlock(&steer_lock);
	}
	while (itest_now() < t_end) {
		if (c == NULL) {
			c = PQconnectdb(ci);
			if (PQstatus(c) != CONNECTION_OK) {
				double t = itest_now();
				fprintf(stderr, "connect failed %.3fs after kill: %s", t - t_kill,
				        PQerrorMessage(c));
				atomic_fetch_add(t > t_kill + 3 || t < t_kill ? &conn_err_late
				                                              : &conn_err_early,
				                 1);
				PQfinish(c);
				c = NULL;
				itest_sleep_ms(50);
				continue;
			}
		}
		int w = itest_worker_of(c);
		if (itest_exec_ok(c, "BEGIN") == 0 &&
		    itest_exec_ok(c, "SELECT pg_sleep(0.002)") == 0 &&
		    itest_exec_ok(c, "COMMIT") == 0) {
			double t = itest_now();
			atomic_fetch_add(t < t_kill ? &ok_before : &ok_after, 1);
			int b = (int)((t - t_start) * 4);
			if (b >= 0 && b < NBUCKET)
				atomic_fetch_add(&ok_bucket[b], 1);
			continue;
		}
		if (itest_now() < t_kill)
			atomic_fetch_add(&err_before, 1);
		fprintf(stderr, "error on worker %d: %s", w, PQerrorMessage(c));
		atomic_fetch_add(&err_by_worker[w >= 0 && w < MAXW ? w : 0], 1);
		PQfinish(c);
		c = NULL;
		itest_sleep_ms(20);
	}
	PQfinish(c);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr,
		        "usage: %s CONNINFO CLIENTS SECONDS KILL_PID KILL_AFTER_MS [KILL_WORKER]\n",
		        argv[0]);
		return 2;
	}
	ci = argv[1];
	int n = atoi(argv[2]), secs = atoi(argv[3]), kpid = atoi(argv[4]), kafter = atoi(argv[5]);
	int kw = argc > 6 ? atoi(argv[6]) : -1;
	alarm(secs + 60);
	pthread_t th[256];
	if (n > 256)
		n = 256;
	t_start = itest_now();
	t_end = t_start + secs;
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, client, (void *)(long)i);
	itest_sleep_ms(kafter);
	t_kill = itest_now();
	if (kill(kpid, SIGKILL) < 0) {
		perror("kill");
		return 1;
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);

	int rc = 0, nerrw = 0, kb = (int)((t_kill - t_start) * 4), stall = 0, longest = 0;
	printf("transactions per 250 ms (| = the kill):");
	for (int b = 0; b < secs * 4 && b < NBUCKET; b++) {
		printf("%s %d", b == kb ? " |" : "", atomic_load(&ok_bucket[b]));
		if (b > kb && b < secs * 4 - 1) { /* the last bucket is partial */
			stall = atomic_load(&ok_bucket[b]) == 0 ? stall + 1 : 0;
			if (stall > longest)
				longest = stall;
		}
	}
	printf("\n");
	if (longest * 250 > 3000) {
		printf("FAIL: no transaction completed for %d ms after the kill\n", longest * 250);
		rc = 1;
	}
	printf("tx ok before kill=%d after=%d; errors by worker:", atomic_load(&ok_before),
	       atomic_load(&ok_after));
	for (int w = 0; w < MAXW; w++) {
		int e = atomic_load(&err_by_worker[w]);
		if (e == 0)
			continue;
		printf(" w%d=%d", w, e);
		nerrw++;
		if (kw >= 0 && w != kw) {
			printf(" (FAIL: not the killed worker %d)", kw);
			rc = 1;
		}
	}
	printf("; reconnect failures within 3 s of the kill=%d, later=%d\n",
	       atomic_load(&conn_err_early), atomic_load(&conn_err_late));
	if (nerrw > 1) {
		printf("FAIL: clients of %d workers saw errors\n", nerrw);
		rc = 1;
	}
	if (atomic_load(&err_before) || atomic_load(&conn_err_late)) {
		printf(
		    "FAIL: errors before the kill (%d) or reconnect failures later than 3 s (%d)\n",
		    atomic_load(&err_before), atomic_load(&conn_err_late));
		rc = 1;
	}
	if (atomic_load(&ok_after) == 0) {
		printf("FAIL: no transaction succeeded after the kill\n");
		rc = 1;
	}
	return rc;
}
