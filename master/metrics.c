/*
 * metrics.c — GET /metrics: the whole pooler in the Prometheus text format
 * (version 0.0.4), rendered by the master from shared memory when asked.
 *
 * Invariants: the master never waits here. Counters are summed over the
 * workers' rows with relaxed loads (shm/stats.h), clients and slots are read
 * without locks, and a pool row's own fields through shm_view_pools with
 * VIEW_TRYLOCK (shm/view.h) — the same reading the admin console's SHOW
 * POOLS makes, so both report the same numbers. Each family's HELP and TYPE
 * come before its samples, and every sample of a family is written
 * together, as the format requires. Label values are escaped.
 */
#include "master.h"
#include "shm/ctl.h"
#include "shm/stats.h"
#include "shm/view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABELS_LEN 512

struct render {
	struct obuf *out;
	struct shm_pool_view *v; /* per pool row */
	int npools;
	char (*pool_labels)[LABELS_LEN]; /* database="..",user=".." per pool row */
};

/* A label value with \, " and newline escaped. */
static void escape(char *dst, size_t len, const char *src)
{
	size_t n = 0;

	for (; *src && n + 2 < len; src++) {
		if (*src == '\\' || *src == '"' || *src == '\n') {
			dst[n++] = '\\';
			dst[n++] = *src == '\n' ? 'n' : *src;
		} else {
			dst[n++] = *src;
		}
	}
	dst[n] = '\0';
}

/* name="value" (escaped) into a label buffer. */
static void label(char *dst, size_t len, const char *name, const char *value)
{
	char esc[LABELS_LEN / 2];

	escape(esc, sizeof(esc), value);
	snprintf(dst, len, "%s=\"%s\"", name, esc);
}

static void family(struct render *r, const char *name, const char *type, const char *help)
{
	obuf_printf(r->out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Counts as integers, seconds with microseconds. */
static void sample(struct render *r, const char *name, const char *labels, double value)
{
	char v[64];

	if (value == (double)(long long)value)
		snprintf(v, sizeof(v), "%lld", (long long)value);
	else
		snprintf(v, sizeof(v), "%.6f", value);
	if (labels && labels[0])
		obuf_printf(r->out, "%s{%s} %s\n", name, labels, v);
	else
		obuf_printf(r->out, "%s %s\n", name, v);
}

/* ---------------------------------------------------------- the pooler */

static void render_process(struct render *r)
{
	unsigned flags = atomic_load_explicit(&M.shm.hdr->flags, memory_order_relaxed), ok, failed;
	struct shm_client_totals t;
	int idle = 0, active = 0, waiting = 0;

	master_reload_counts(&ok, &failed);
	shm_view_client_totals(&M.shm, &t);
	for (int p = 0; p < r->npools; p++)
		idle += r->v[p].cl_idle, active += r->v[p].cl_active, waiting += r->v[p].cl_waiting;

	family(r, "pgshoal_info", "gauge", "pgshoal's version (always 1)");
	sample(r, "pgshoal_info", "version=\"" PGSHOAL_VERSION "\"", 1);
	family(r, "pgshoal_config_generation", "gauge",
	       "generation of the configuration in force (bumped by each reload and SET)");
	sample(r, "pgshoal_config_generation", NULL,
	       atomic_load_explicit(&M.shm.hdr->config_gen, memory_order_relaxed));
	family(r, "pgshoal_reloads_total", "counter",
	       "configuration reloads (SIGHUP, RELOAD) by result");
	sample(r, "pgshoal_reloads_total", "result=\"ok\"", ok);
	sample(r, "pgshoal_reloads_total", "result=\"failed\"", failed);
	family(r, "pgshoal_paused", "gauge",
	       "1 while the whole pooler is paused (PAUSE, KILL, SIGUSR1)");
	sample(r, "pgshoal_paused", NULL, (flags & SHM_F_PAUSED) ? 1 : 0);
	family(r, "pgshoal_shutting_down", "gauge", "1 once a shutdown has begun (no new clients)");
	sample(r, "pgshoal_shutting_down", NULL, (flags & SHM_F_SHUTDOWN) ? 1 : 0);
	family(r, "pgshoal_max_client_conn", "gauge",
	       "client connections allowed, all workers together");
	sample(r, "pgshoal_max_client_conn", NULL, M.shm.hdr->max_client_conn);
	family(r, "pgshoal_clients", "gauge",
	       "client connections by state: login (startup, TLS, password), idle (no server), "
	       "active (linked to a server), waiting (for a server), admin (console sessions)");
	sample(r, "pgshoal_clients", "state=\"login\"", t.login);
	sample(r, "pgshoal_clients", "state=\"idle\"", idle);
	sample(r, "pgshoal_clients", "state=\"active\"", active);
	sample(r, "pgshoal_clients", "state=\"waiting\"", waiting);
	sample(r, "pgshoal_clients", "state=\"admin\"", t.admin);
	family(r, "pgshoal_pools", "gauge",
	       "rows of the shared pool table in use ((database, user) pairs)");
	sample(r, "pgshoal_pools", NULL, r->npools);
}

/* -------------------------------------------------------------- pools */

static void pool_states(struct render *r, const char *name, const char *help,
                        const char *const *states, int nstates,
                        const int *(*field)(const struct shm_pool_view *v, int k))
{
	char l[LABELS_LEN + 64];

	family(r, name, "gauge", help);
	for (int p = 0; p < r->npools; p++)
		for (int k = 0; k < nstates; k++) {
			snprintf(l, sizeof(l), "%s,state=\"%s\"", r->pool_labels[p], states[k]);
			sample(r, name, l, *field(&r->v[p], k));
		}
}

static const int *client_field(const struct shm_pool_view *v, int k)
{
	const int *f[] = {&v->cl_active, &v->cl_idle, &v->cl_waiting};
	return f[k];
}

static const int *server_field(const struct shm_pool_view *v, int k)
{
	const int *f[] = {&v->sv_active, &v->sv_idle, &v->sv_used, &v->sv_tested, &v->sv_login};
	return f[k];
}

static void render_pools(struct render *r)
{
	static const char *const cl_states[] = {"active", "idle", "waiting"};
	static const char *const sv_states[] = {"active", "idle", "used", "tested", "login"};

	pool_states(r, "pgshoal_pool_clients",
	            "a pool's clients: active (linked to a server), idle, waiting (for a server)",
	            cl_states, 3, client_field);
	pool_states(r, "pgshoal_pool_servers",
	            "a pool's server connections as SHOW POOLS names them: active, idle, used "
	            "(idle, checked before use), tested, login (connecting)",
	            sv_states, 5, server_field);
	family(r, "pgshoal_pool_maxwait_seconds", "gauge",
	       "how long the pool's longest-waiting client has waited");
	for (int p = 0; p < r->npools; p++)
		sample(r, "pgshoal_pool_maxwait_seconds", r->pool_labels[p],
		       (double)r->v[p].maxwait / 1e6);
	family(r, "pgshoal_pool_size", "gauge", "the pool's pool_size in force");
	for (int p = 0; p < r->npools; p++)
		sample(r, "pgshoal_pool_size", r->pool_labels[p],
		       config_pool_size(&M.cfg, config_find_db(&M.cfg, M.shm.pools[p].db)));
	family(
	    r, "pgshoal_pool_server_reachable", "gauge",
	    "1 if the pool has a logged-in server or its last server login did not fail (/health)");
	for (int p = 0; p < r->npools; p++)
		sample(r, "pgshoal_pool_server_reachable", r->pool_labels[p],
		       shm_view_reachable(&r->v[p]));
}

/* ---------------------------------------------------------- databases */

static void render_accounts(struct render *r)
{
	static const char *const names[] = {"pgshoal_database_paused", "pgshoal_database_disabled",
	                                    "pgshoal_database_server_connections"};
	static const char *const helps[] = {"1 while the database is paused (PAUSE db, KILL db)",
	                                    "1 while the database is disabled (DISABLE db)",
	                                    "server connections of the database, all users"};
	char l[LABELS_LEN];

	for (int k = 0; k < 3; k++) {
		family(r, names[k], "gauge", helps[k]);
		for (uint32_t i = 0; i < M.shm.hdr->max_pools; i++) {
			const struct shm_account *a = &M.shm.accounts[i];
			unsigned flags;
			if (!atomic_load_explicit(&a->used, memory_order_acquire))
				continue;
			flags = atomic_load_explicit(&a->flags, memory_order_relaxed);
			label(l, sizeof(l), "database", a->name);
			sample(r, names[k], l,
			       k == 0   ? (flags & DB_F_PAUSED) != 0
			       : k == 1 ? (flags & DB_F_DISABLED) != 0
			                : atomic_load_explicit(&a->conns, memory_order_relaxed));
		}
	}
}

static void render_wait_histogram(struct render *r, const char *const *dbs, int ndb,
                                  const struct stat_sum *sums)
{
	const char *name = "pgshoal_wait_seconds";
	char l[LABELS_LEN + 64];

	family(
	    r, name, "histogram",
	    "how long clients waited for a server, per server assignment (SHOW STATS wait_time)");
	for (int k = 0; k < ndb; k++) {
		uint64_t cum = 0;
		char db[LABELS_LEN];
		label(db, sizeof(db), "database", dbs[k]);
		for (int b = 0; b < STAT_WAIT_BUCKETS; b++) {
			cum += sums[k].v[STAT_WAIT_HIST + b];
			if (b < STAT_WAIT_BUCKETS - 1)
				snprintf(l, sizeof(l), "%s,le=\"%g\"", db,
				         (double)shm_wait_bucket_usec[b] / 1e6);
			else
				snprintf(l, sizeof(l), "%s,le=\"+Inf\"", db);
			sample(r, "pgshoal_wait_seconds_bucket", l, (double)cum);
		}
		sample(r, "pgshoal_wait_seconds_sum", db, (double)sums[k].v[STAT_WAIT_TIME] / 1e6);
		sample(r, "pgshoal_wait_seconds_count", db, (double)cum);
	}
}

/* SHOW STATS' counters per database; times in seconds. */
static void render_stats(struct render *r)
{
	static const struct {
		const char *name, *help;
		int stat;
		double scale;
	} counters[] = {
	    {"pgshoal_server_assignments_total", "servers linked to clients", STAT_ASSIGN, 1},
	    {"pgshoal_transactions_total", "transactions (an autocommit statement is one)",
	     STAT_XACT, 1},
	    {"pgshoal_queries_total", "requests answered with ReadyForQuery", STAT_QUERY, 1},
	    {"pgshoal_received_bytes_total", "bytes from clients to servers", STAT_RECV, 1},
	    {"pgshoal_sent_bytes_total", "bytes from servers to clients", STAT_SENT, 1},
	    {"pgshoal_transaction_seconds_total", "time in transactions", STAT_XACT_TIME, 1e-6},
	    {"pgshoal_query_seconds_total", "time in queries", STAT_QUERY_TIME, 1e-6},
	    {"pgshoal_client_logins_total", "clients that logged in", STAT_LOGIN, 1},
	};
	/* on the heap: max_pools may be 65536, the master's stack is no place */
	int *first_of = calloc((size_t)r->npools + 1, sizeof(*first_of)), ndb = 0;
	const char **dbs = calloc((size_t)r->npools + 1, sizeof(*dbs));
	struct stat_sum *sums = calloc((size_t)r->npools + 1, sizeof(*sums)), old;
	char l[LABELS_LEN];

	if (!first_of || !dbs || !sums) {
		r->out->oom = true;
		goto done;
	}
	ndb = shm_view_dbs(&M.shm, r->npools, first_of);
	for (int k = 0; k < ndb; k++) {
		dbs[k] = M.shm.pools[first_of[k]].db;
		shm_stats_db_sum(&M.shm, dbs[k], r->npools, &sums[k], &old);
	}
	for (size_t c = 0; c < ARRAY_LEN(counters); c++) {
		family(r, counters[c].name, "counter", counters[c].help);
		for (int k = 0; k < ndb; k++) {
			label(l, sizeof(l), "database", dbs[k]);
			sample(r, counters[c].name, l,
			       (double)sums[k].v[counters[c].stat] * counters[c].scale);
		}
	}
	render_wait_histogram(r, dbs, ndb, sums);
done:
	free(first_of);
	free(dbs);
	free(sums);
}

/* ------------------------------------------------ DNS and failover */

static void render_targets(struct render *r)
{
	static const char *const names[] = {"pgshoal_target_resolved", "pgshoal_target_dns_failing",
	                                    "pgshoal_target_address_changes_total"};
	static const char *const helps[] = {
	    "1 once the database entry's host has addresses",
	    "1 while the last lookup of the host failed (the last good addresses stay in use)",
	    "times the entry's addresses changed (the first resolution included)"};
	char l[LABELS_LEN + 128], db[LABELS_LEN / 2], host[LABELS_LEN / 2];

	for (int k = 0; k < 3; k++) {
		family(r, names[k], k == 2 ? "counter" : "gauge", helps[k]);
		for (int i = 0; i < M.cfg.ndbs; i++) {
			const struct shm_target *t = &M.shm.targets[i];
			label(db, sizeof(db), "database", M.cfg.dbs[i].name);
			label(host, sizeof(host), "host", M.cfg.dbs[i].host);
			snprintf(l, sizeof(l), "%s,%s", db, host);
			sample(r, names[k], l,
			       k == 0   ? (double)t->ok
			       : k == 1 ? (double)master_dns_failing(i)
			                : (double)t->addr_gen);
		}
	}
	/* the master writes the targets: it reads them without the seqlock */
	family(r, "pgshoal_target_address", "gauge",
	       "the entry's server addresses in order; 1 for the one new connections go to "
	       "(current host)");
	for (int i = 0; i < M.cfg.ndbs; i++) {
		const struct shm_target *t = &M.shm.targets[i];
		unsigned cur = t->naddr ? atomic_load_explicit(&t->prefer, memory_order_relaxed) %
		                              (unsigned)t->naddr
		                        : 0;
		for (int a = 0; t->ok && a < t->naddr; a++) {
			char addr[128], text[160];
			int port = sockaddr_describe(&t->addr[a], addr, sizeof(addr));
			if (port)
				snprintf(text, sizeof(text), "%s%s%s:%d",
				         strchr(addr, ':') ? "[" : "", addr,
				         strchr(addr, ':') ? "]" : "", port);
			else
				master_describe_target(i, a, text,
				                       sizeof(text)); /* a unix socket's path */
			label(db, sizeof(db), "database", M.cfg.dbs[i].name);
			label(host, sizeof(host), "address", text);
			snprintf(l, sizeof(l), "%s,%s", db, host);
			sample(r, "pgshoal_target_address", l, (unsigned)a == cur);
		}
	}
}

/* ------------------------------------------------------------ workers */

static void render_workers(struct render *r)
{
	uint32_t nw = M.shm.hdr->nworkers;
	int leased[nw], nslots = shm_slot_count(&M.shm);
	char l[64];

	memset(leased, 0, sizeof(leased));
	for (int i = 0; i < nslots; i++) {
		const struct shm_slot *sl = shm_slot(&M.shm, i);
		int owner = atomic_load_explicit(&sl->owner, memory_order_relaxed);
		if (atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_ACTIVE &&
		    owner >= 0 && owner < (int)nw)
			leased[owner]++;
	}
	family(r, "pgshoal_worker_pid", "gauge", "the worker's process id (0 while it is down)");
	for (uint32_t w = 0; w < nw; w++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", w);
		sample(r, "pgshoal_worker_pid", l,
		       atomic_load_explicit(&M.shm.workers[w].pid, memory_order_relaxed));
	}
	family(r, "pgshoal_worker_clients", "gauge", "client connections the worker holds");
	for (uint32_t w = 0; w < nw; w++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", w);
		sample(r, "pgshoal_worker_clients", l,
		       atomic_load_explicit(&M.shm.workers[w].nclients, memory_order_relaxed));
	}
	family(r, "pgshoal_worker_servers", "gauge", "server connections the worker has leased");
	for (uint32_t w = 0; w < nw; w++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", w);
		sample(r, "pgshoal_worker_servers", l, leased[w]);
	}
	family(r, "pgshoal_worker_respawns_total", "counter",
	       "times the worker was started again after dying");
	for (uint32_t w = 0; w < nw; w++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", w);
		sample(r, "pgshoal_worker_respawns_total", l,
		       atomic_load_explicit(&M.shm.workers[w].respawns, memory_order_relaxed));
	}
	family(r, "pgshoal_worker_loops_total", "counter",
	       "the worker's event loop turns (published each second)");
	for (uint32_t w = 0; w < nw; w++) {
		snprintf(l, sizeof(l), "worker=\"%u\"", w);
		sample(r, "pgshoal_worker_loops_total", l,
		       (double)atomic_load_explicit(&M.shm.workers[w].loops, memory_order_relaxed));
	}
}

void master_metrics_render(struct obuf *out)
{
	struct render r = {.out = out};

	r.v = calloc(M.shm.hdr->max_pools, sizeof(*r.v));
	r.pool_labels = calloc(M.shm.hdr->max_pools, sizeof(*r.pool_labels));
	if (!r.v || !r.pool_labels) {
		out->oom = true;
		goto done;
	}
	r.npools = shm_view_pools(&M.shm, &M.cfg, r.v, now_usec(), VIEW_TRYLOCK);
	for (int p = 0; p < r.npools; p++) {
		char db[LABELS_LEN / 2], user[LABELS_LEN / 2];
		label(db, sizeof(db), "database", M.shm.pools[p].db);
		label(user, sizeof(user), "user", M.shm.pools[p].user);
		snprintf(r.pool_labels[p], LABELS_LEN, "%s,%s", db, user);
	}
	render_process(&r);
	render_pools(&r);
	render_accounts(&r);
	render_stats(&r);
	render_targets(&r);
	render_workers(&r);
done:
	free(r.v);
	free(r.pool_labels);
}
