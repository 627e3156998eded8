/*
 * health.c — GET /health, for HAProxy or keepalived in front of several
 * pgshoal instances: 200 when this one should get clients, 503 when not,
 * with a one-line reason. Runs in the master, reads shared memory only,
 * never waits (pool rows through shm_view_pools with VIEW_TRYLOCK).
 *
 * Healthy means: not shutting down, at least one worker alive, and every
 * pool that has clients can reach its server — it has a logged-in server
 * connection, or its last server login did not fail (a failed login is
 * forgotten at the next successful one, which clients trigger when they
 * ask for a server after server_login_retry). A pool without clients does
 * not count: nobody is waiting for it. PAUSE keeps it healthy (clients
 * wait, they are not refused).
 */
#include "master.h"
#include "shm/view.h"

#include <stdlib.h>

static bool any_worker_alive(void)
{
	for (uint32_t w = 0; w < M.shm.hdr->nworkers; w++)
		if (atomic_load_explicit(&M.shm.workers[w].pid, memory_order_relaxed) > 0)
			return true;
	return false;
}

int master_health(struct obuf *out)
{
	struct shm_pool_view *v;
	int n, down = 0, first_down = -1;

	if (atomic_load_explicit(&M.shm.hdr->flags, memory_order_relaxed) & SHM_F_SHUTDOWN) {
		obuf_printf(out, "unavailable: shutting down\n");
		return 503;
	}
	if (!any_worker_alive()) {
		obuf_printf(out, "unavailable: no worker is running\n");
		return 503;
	}
	v = calloc(M.shm.hdr->max_pools, sizeof(*v));
	if (!v) {
		obuf_printf(out, "unknown: out of memory\n");
		return 503;
	}
	n = shm_view_pools(&M.shm, &M.cfg, v, now_usec(), VIEW_TRYLOCK);
	for (int p = 0; p < n; p++) {
		if (v[p].cl_active + v[p].cl_idle + v[p].cl_waiting == 0 ||
		    shm_view_reachable(&v[p]))
			continue;
		if (!down++)
			first_down = p;
	}
	free(v);
	if (down) {
		obuf_printf(
		    out,
		    "unavailable: %d pool(s) with clients cannot reach their server, first %s/%s\n",
		    down, M.shm.pools[first_down].db, M.shm.pools[first_down].user);
		return 503;
	}
	obuf_printf(out, "ok\n");
	return 200;
}
