/*
 * admin_show.c — the admin console's SHOW commands. Every number is read
 * from shared memory, so the worker a session landed on answers for the
 * whole pooler: pools and slots from the pool table (each row read under its
 * lock, a few dozen instructions), clients from the shared client table
 * (read without locks: a row may change while it is read, which a report
 * tolerates), statistics summed over the workers' rows (shm/stats.h).
 * Column names, order and types are PgBouncer 1.25's (with
 * client_login_count from its master branch), so that tools which parse its
 * console work unchanged; pgshoal adds SHOW WORKERS and SHOW SLOTS.
 */
#include "admin.h"
#include "shm/ctl.h"
#include "shm/view.h"
#include "shm/stmt_registry.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define NAMES(...) ((const char *const[]){__VA_ARGS__})

static bool row_in_use(const struct shm_client *r)
{
	return atomic_load_explicit(&r->state, memory_order_acquire) == CROW_USED;
}

static uint64_t since(uint64_t now, uint64_t t)
{
	return t && now > t ? now - t : 0;
}

static bool idle_used(const struct shm_slot *sl, uint64_t now)
{
	return W.cfg->server_check_query[0] &&
	       since(now, sl->idle_since_usec) > (uint64_t)(W.cfg->server_check_delay * 1e6);
}

static void show_pools(struct admin *a)
{
	struct shm_pool_view v[W.shm->hdr->max_pools];
	uint64_t now = now_usec();
	int n = shm_view_pools(W.shm, W.cfg, v, now, VIEW_LOCK);

	admin_rowdesc(a, "ssiiiiiiiiiiiiiss",
	              NAMES("database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
	                    "cl_waiting_cancel_req", "sv_active", "sv_active_cancel",
	                    "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
	                    "maxwait", "maxwait_us", "pool_mode", "load_balance_hosts"));
	for (int p = 0; p < n; p++)
		admin_row(a, "ssiiiiiiiiiiiiiss", W.shm->pools[p].db, W.shm->pools[p].user,
		          v[p].cl_active + v[p].cl_idle, v[p].cl_waiting, 0, 0, v[p].sv_active, 0,
		          0, v[p].sv_idle, v[p].sv_used, v[p].sv_tested, v[p].sv_login,
		          (int)(v[p].maxwait / 1000000), (int)(v[p].maxwait % 1000000),
		          config_pool_mode_name(v[p].mode), (const char *)NULL);
	admin_complete(a, "SHOW");
}

/* ----------------------------------------------------------- statistics */

static void db_stats(const char *db, int n, struct stat_sum *cur, struct stat_sum *avg)
{
	struct stat_sum old;
	uint64_t t0 = atomic_load_explicit(&W.shm->hdr->stats_old_usec, memory_order_relaxed);

	shm_stats_db_sum(W.shm, db, n, cur, &old);
	stat_averages(cur, &old, since(now_usec(), t0), avg);
}

#define STAT_COLS(s)                                                                               \
	(s)->v[STAT_ASSIGN], (s)->v[STAT_XACT], (s)->v[STAT_QUERY], (s)->v[STAT_RECV],             \
	    (s)->v[STAT_SENT], (s)->v[STAT_XACT_TIME], (s)->v[STAT_QUERY_TIME],                    \
	    (s)->v[STAT_WAIT_TIME], (s)->v[STAT_CLIENT_PARSE], (s)->v[STAT_SERVER_PARSE],          \
	    (s)->v[STAT_BIND], (s)->v[STAT_LOGIN]

/* kind: 0 SHOW STATS, 1 STATS_TOTALS, 2 STATS_AVERAGES. SHOW STATS ends
 * with total_requests, PgBouncer < 1.8's name for total_query_count, which
 * consumers of that age still read (Debian 12's prometheus-pgbouncer-exporter
 * 1.7 stops with a KeyError without it); PgBouncer 1.25's columns come first
 * and in their order. */
static void show_stats(struct admin *a, int kind)
{
	static const char *const stats_names[] = {"database",
	                                          "total_server_assignment_count",
	                                          "total_xact_count",
	                                          "total_query_count",
	                                          "total_received",
	                                          "total_sent",
	                                          "total_xact_time",
	                                          "total_query_time",
	                                          "total_wait_time",
	                                          "total_client_parse_count",
	                                          "total_server_parse_count",
	                                          "total_bind_count",
	                                          "total_client_login_count",
	                                          "avg_server_assignment_count",
	                                          "avg_xact_count",
	                                          "avg_query_count",
	                                          "avg_recv",
	                                          "avg_sent",
	                                          "avg_xact_time",
	                                          "avg_query_time",
	                                          "avg_wait_time",
	                                          "avg_client_parse_count",
	                                          "avg_server_parse_count",
	                                          "avg_bind_count",
	                                          "avg_client_login_count",
	                                          "total_requests"};
	static const char *const totals_names[] = {"database",           "server_assignment_count",
	                                           "xact_count",         "query_count",
	                                           "bytes_received",     "bytes_sent",
	                                           "xact_time",          "query_time",
	                                           "wait_time",          "client_parse_count",
	                                           "server_parse_count", "bind_count",
	                                           "client_login_count"};
	static const char *const avg_names[] = {"database",
	                                        "server_assignment_count",
	                                        "xact_count",
	                                        "query_count",
	                                        "bytes_received",
	                                        "bytes_sent",
	                                        "xact_time",
	                                        "query_time",
	                                        "wait_time",
	                                        "avg_client_parse_count",
	                                        "avg_server_parse_count",
	                                        "avg_bind_count",
	                                        "avg_client_login_count"};
	const char *wide = "sNNNNNNNNNNNNNNNNNNNNNNNNN", *narrow = "sNNNNNNNNNNNN";
	int n = shm_pool_count(W.shm), first_of[W.shm->hdr->max_pools + 1];
	int ndb = shm_view_dbs(W.shm, n, first_of);
	struct stat_sum cur, avg, zero = {{0}};

	admin_rowdesc(a, kind ? narrow : wide,
	              kind == 0   ? stats_names
	              : kind == 1 ? totals_names
	                          : avg_names);
	for (int k = 0; k <= ndb; k++) {
		const char *db = k < ndb ? W.shm->pools[first_of[k]].db : W.cfg->admin_db;
		if (k < ndb)
			db_stats(db, n, &cur, &avg);
		else
			cur = avg = zero; /* the console's own row, as PgBouncer lists it */
		if (kind == 0)
			admin_row(a, wide, db, STAT_COLS(&cur), STAT_COLS(&avg), cur.v[STAT_QUERY]);
		else
			admin_row(a, narrow, db, STAT_COLS(kind == 1 ? &cur : &avg));
	}
	admin_complete(a, "SHOW");
}

static void show_totals(struct admin *a)
{
	static const char *const names[] = {"server_assignment_count",
	                                    "xact_count",
	                                    "query_count",
	                                    "client_bytes",
	                                    "server_bytes",
	                                    "xact_time",
	                                    "query_time",
	                                    "wait_time",
	                                    "ps_client_parse_count",
	                                    "ps_server_parse_count",
	                                    "ps_bind_count",
	                                    "client_login_count"};
	static const int keys[] = {STAT_ASSIGN,       STAT_XACT,      STAT_QUERY,
	                           STAT_RECV,         STAT_SENT,      STAT_XACT_TIME,
	                           STAT_QUERY_TIME,   STAT_WAIT_TIME, STAT_CLIENT_PARSE,
	                           STAT_SERVER_PARSE, STAT_BIND,      STAT_LOGIN};
	struct stat_sum cur, avg;
	char name[64];

	db_stats(NULL, shm_pool_count(W.shm), &cur, &avg);
	admin_rowdesc(a, "sN", NAMES("name", "value"));
	for (int pass = 0; pass < 2; pass++) {
		const struct stat_sum *s = pass ? &avg : &cur;
		for (size_t i = 0; i < ARRAY_LEN(names); i++) {
			snprintf(name, sizeof(name), "%s_%s", pass ? "avg" : "total", names[i]);
			admin_row(a, "sN", name, keys[i] < 0 ? (uint64_t)0 : s->v[keys[i]]);
		}
	}
	admin_complete(a, "SHOW");
}

/* ----------------------------------------------------- databases, users */

static int clients_where(const char *db, const char *user, bool admin_rows)
{
	int n = 0;
	for (int i = 0; i < shm_client_count(W.shm); i++) {
		const struct shm_client *r = shm_client(W.shm, i);
		if (!row_in_use(r) || (bool)r->is_admin != admin_rows)
			continue;
		if ((!db || strcmp(r->db, db) == 0) && (!user || strcmp(r->user, user) == 0))
			n++;
	}
	return n;
}

/* SHOW DATABASES ends with reserve_pool, PgBouncer < 1.24's name for
 * reserve_pool_size (for consumers of that age, as SHOW STATS'
 * total_requests). */
#define DATABASE_TYPES "ssissiiiissiiiiiii"

static void database_row(struct admin *a, const char *name, const struct config_db *db)
{
	int acct = shm_pool_db_account(W.shm, name, false);
	unsigned flags =
	    acct >= 0 ? atomic_load_explicit(&W.shm->accounts[acct].flags, memory_order_relaxed)
	              : 0;
	int conns = acct >= 0
	                ? atomic_load_explicit(&W.shm->accounts[acct].conns, memory_order_relaxed)
	                : 0;

	admin_row(a, DATABASE_TYPES, name, db->host, db->port, db->dbname[0] ? db->dbname : name,
	          db->user[0] ? db->user : NULL, config_pool_size(W.cfg, db),
	          config_min_pool_size(W.cfg, db), config_reserve_size(W.cfg, db),
	          (int)W.cfg->server_lifetime,
	          db->pool_mode == POOL_INHERIT ? NULL : config_pool_mode_name(db->pool_mode),
	          (const char *)NULL, config_max_db_connections(W.cfg, db), conns, 0,
	          clients_where(name, NULL, false), (flags & DB_F_PAUSED) ? 1 : 0,
	          (flags & DB_F_DISABLED) ? 1 : 0, config_reserve_size(W.cfg, db));
}

static void show_databases(struct admin *a)
{
	const struct config *cfg = W.cfg;
	int n = shm_pool_count(W.shm);

	admin_rowdesc(a, DATABASE_TYPES,
	              NAMES("name", "host", "port", "database", "force_user", "pool_size",
	                    "min_pool_size", "reserve_pool_size", "server_lifetime", "pool_mode",
	                    "load_balance_hosts", "max_connections", "current_connections",
	                    "max_client_connections", "current_client_connections", "paused",
	                    "disabled", "reserve_pool"));
	for (int i = 0; i < cfg->ndbs; i++)
		if (strcmp(cfg->dbs[i].name, "*") != 0)
			database_row(a, cfg->dbs[i].name, &cfg->dbs[i]);
	for (int p = 0; p < n; p++) { /* databases served by "*" */
		const char *name = W.shm->pools[p].db;
		const struct config_db *db = config_find_db(cfg, name);
		bool seen = false;
		for (int q = 0; q < p && !seen; q++)
			seen = strcmp(W.shm->pools[q].db, name) == 0;
		if (!seen && db && strcmp(db->name, name) != 0)
			database_row(a, name, db);
	}
	admin_row(a, DATABASE_TYPES, cfg->admin_db, (const char *)NULL, cfg->listen_port,
	          cfg->admin_db, "pgbouncer", 2, 0, 0, 0, "statement", (const char *)NULL, 0, 0, 0,
	          clients_where(NULL, NULL, true), 0, 0, 0);
	admin_complete(a, "SHOW");
}

static int user_conns(const char *name)
{
	struct shm_header *h = W.shm->hdr;
	for (uint32_t i = h->max_pools; i < 2 * h->max_pools; i++) {
		struct shm_account *acct = &W.shm->accounts[i];
		if (atomic_load_explicit(&acct->used, memory_order_acquire) &&
		    strcmp(acct->name, name) == 0)
			return atomic_load_explicit(&acct->conns, memory_order_relaxed);
	}
	return 0;
}

static void user_row(struct admin *a, const char *name)
{
	const struct config_user *u = config_find_user(W.cfg, name);
	const char *mode =
	    u && u->pool_mode != POOL_INHERIT ? config_pool_mode_name(u->pool_mode) : NULL;

	admin_row(a, "ssssiiii", name, "", "", mode, config_max_user_connections(W.cfg, name),
	          user_conns(name), 0, clients_where(NULL, name, false));
}

static void show_users(struct admin *a)
{
	int n = shm_pool_count(W.shm);

	admin_rowdesc(a, "ssssiiii",
	              NAMES("name", "pool_size", "reserve_pool_size", "pool_mode",
	                    "max_user_connections", "current_connections",
	                    "max_user_client_connections", "current_client_connections"));
	for (int i = 0; i < W.cfg->nusers; i++)
		user_row(a, W.cfg->users[i].name);
	for (int p = 0; p < n; p++) {
		const char *name = W.shm->pools[p].user;
		bool seen = config_find_user(W.cfg, name) != NULL;
		for (int q = 0; q < p && !seen; q++)
			seen = strcmp(W.shm->pools[q].user, name) == 0;
		if (!seen)
			user_row(a, name);
	}
	admin_complete(a, "SHOW");
}

/* ------------------------------------------------------ clients, servers */

static const char *const socket_types = "ssssssisiTTiiississii";
static const char *const socket_names[] = {"type",
                                           "user",
                                           "database",
                                           "replication",
                                           "state",
                                           "addr",
                                           "port",
                                           "local_addr",
                                           "local_port",
                                           "connect_time",
                                           "request_time",
                                           "wait",
                                           "wait_us",
                                           "close_needed",
                                           "ptr",
                                           "link",
                                           "remote_pid",
                                           "tls",
                                           "application_name",
                                           "prepared_statements",
                                           "id"};

static const char *client_state_label(int st)
{
	switch (st) {
	case CL_ACTIVE: return "active";
	case CL_IDLE:
	case CL_ADMIN: return "idle";
	case CL_WAITING:
	case CL_LOGIN_WAIT: return "waiting";
	default: return NULL; /* logging in: not listed, as in PgBouncer */
	}
}

static void show_clients(struct admin *a)
{
	uint64_t now = now_usec();

	admin_rowdesc(a, socket_types, socket_names);
	for (int i = 0; i < shm_client_count(W.shm); i++) {
		const struct shm_client *r = shm_client(W.shm, i);
		int st = atomic_load_explicit(&r->cstate, memory_order_relaxed), slot;
		uint64_t t = atomic_load_explicit(&r->state_usec, memory_order_relaxed), wait;
		const char *label = client_state_label(st);
		char ptr[24], link[24] = "";
		if (!row_in_use(r) || !label)
			continue;
		slot = atomic_load_explicit(&r->slot, memory_order_relaxed);
		wait = strcmp(label, "waiting") == 0 ? since(now, t) : 0;
		snprintf(ptr, sizeof(ptr), "C-%d", i);
		if (slot >= 0)
			snprintf(link, sizeof(link), "S-%d", slot);
		admin_row(a, socket_types, "C", r->user, r->db, "none", label, r->addr,
		          (int)r->port, r->local_addr, (int)r->local_port, r->connect_usec,
		          admin_wall_of(t), (int)(wait / 1000000), (int)(wait % 1000000), 0, ptr,
		          link, 0, r->tls ? "TLS" : "", r->app_name,
		          atomic_load_explicit(&r->prepared, memory_order_relaxed), (int)r->id);
	}
	admin_complete(a, "SHOW");
}

static void slot_addr(const struct shm_slot *sl, char *addr, size_t len, int *port)
{
	*port = sockaddr_describe(&sl->addr, addr, len);
}

static void server_row(struct admin *a, int i, const char *state, uint64_t now)
{
	const struct shm_slot *sl = shm_slot(W.shm, i);
	const struct shm_pool *row = &W.shm->pools[sl->pool];
	int client = atomic_load_explicit(&sl->client, memory_order_relaxed), port;
	bool stale =
	    sl->recycle_gen != atomic_load_explicit(&row->recycle_gen, memory_order_relaxed);
	char addr[64] = "", ptr[24], link[24] = "", app[PARAM_VALUE_LEN];

	(void)now;
	slot_addr(sl, addr, sizeof(addr), &port);
	snprintf(ptr, sizeof(ptr), "S-%d", i);
	if (client >= 0)
		snprintf(link, sizeof(link), "C-%d", client);
	strlcpy_s(app, sl->params[PARAM_APPLICATION_NAME], sizeof(app));
	admin_row(a, socket_types, "S", row->user, row->db, "none", state, addr, port,
	          (const char *)NULL, 0, admin_wall_of(sl->created_usec),
	          admin_wall_of(sl->idle_since_usec), 0, 0, stale ? 1 : 0, ptr, link,
	          (int)sl->be_pid, sl->tls_owner >= 0 ? "TLS" : "", app, shm_stmt_count(W.shm, i),
	          i);
}

static void show_servers(struct admin *a)
{
	uint64_t now = now_usec();
	int n = shm_pool_count(W.shm);

	admin_rowdesc(a, socket_types, socket_names);
	for (int i = 0; i < n * (int)W.shm->hdr->slots_per_pool; i++) {
		const struct shm_slot *sl = shm_slot(W.shm, i);
		const char *state;
		switch (atomic_load_explicit(&sl->state, memory_order_relaxed)) {
		case SLOT_ACTIVE:
			state = atomic_load_explicit(&sl->client, memory_order_relaxed) >= 0
			            ? "active"
			            : "tested";
			break;
		case SLOT_IDLE: state = idle_used(sl, now) ? "used" : "idle"; break;
		case SLOT_CONNECTING: state = "new"; break;
		default: continue;
		}
		server_row(a, i, state, now);
	}
	admin_complete(a, "SHOW");
}

/* ------------------------------------------------------ config and state */

static void show_config(struct admin *a)
{
	const char *name;
	char value[CFG_QUERY_LEN + 8], def[CFG_QUERY_LEN + 8];

	admin_rowdesc(a, "ssss", NAMES("key", "value", "default", "changeable"));
	for (int i = 0; config_describe(W.cfg, i, &name, value, sizeof(value), def, sizeof(def));
	     i++)
		admin_row(a, "ssss", name, value, def, config_needs_restart(name) ? "no" : "yes");
	admin_complete(a, "SHOW");
}

static void show_lists(struct admin *a)
{
	int n = shm_pool_count(W.shm), first_of[W.shm->hdr->max_pools + 1], used_slots = 0,
	    users = 0;
	int nslots = shm_slot_count(W.shm), dbs = 0;
	struct shm_client_totals t;

	shm_view_client_totals(W.shm, &t);
	for (int i = 0; i < nslots; i++)
		used_slots += atomic_load_explicit(&shm_slot(W.shm, i)->state,
		                                   memory_order_relaxed) != SLOT_FREE;
	for (uint32_t i = W.shm->hdr->max_pools; i < 2 * W.shm->hdr->max_pools; i++)
		users += atomic_load_explicit(&W.shm->accounts[i].used, memory_order_relaxed);
	for (int i = 0; i < W.cfg->ndbs; i++)
		dbs += W.cfg->dbs[i].host[0] != '/';
	admin_rowdesc(a, "si", NAMES("list", "items"));
	admin_row(a, "si", "databases", shm_view_dbs(W.shm, n, first_of) + 1);
	admin_row(a, "si", "users", users);
	admin_row(a, "si", "peers", 0);
	admin_row(a, "si", "pools", n);
	admin_row(a, "si", "peer_pools", 0);
	admin_row(a, "si", "free_clients", shm_client_count(W.shm) - t.used);
	admin_row(a, "si", "used_clients", t.used);
	admin_row(a, "si", "login_clients", t.login);
	admin_row(a, "si", "free_servers", nslots - used_slots);
	admin_row(a, "si", "used_servers", used_slots);
	admin_row(a, "si", "dns_names", dbs);
	admin_row(a, "si", "dns_zones", 0);
	admin_row(a, "si", "dns_queries", 0);
	admin_row(a, "si", "dns_pending", 0);
	admin_complete(a, "SHOW");
}

/* The addresses the master published for a database entry (seqlock). */
static void target_addrs(int db, char *out, size_t len)
{
	const struct shm_target *t = &W.shm->targets[db];
	unsigned seq;

	do {
		size_t used = 0;
		seq = atomic_load_explicit(&t->seq, memory_order_acquire);
		out[0] = '\0';
		for (int i = 0; i < t->naddr && i < TARGET_MAX_ADDRS; i++) {
			struct shm_slot fake = {.addr = t->addr[i]};
			char one[64];
			int port;
			slot_addr(&fake, one, sizeof(one), &port);
			used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s:%d",
			                         i ? "," : "", one, port);
		}
		atomic_thread_fence(memory_order_acquire);
	} while ((seq & 1) || seq != atomic_load_explicit(&t->seq, memory_order_relaxed));
}

static void show_dns_hosts(struct admin *a)
{
	char addrs[512];

	admin_rowdesc(a, "sqs", NAMES("hostname", "ttl", "addrs"));
	for (int i = 0; i < W.cfg->ndbs; i++) {
		if (W.cfg->dbs[i].host[0] == '/')
			continue;
		target_addrs(i, addrs, sizeof(addrs));
		admin_row(a, "sqs", W.cfg->dbs[i].host, (uint64_t)W.cfg->dns_max_ttl, addrs);
	}
	admin_complete(a, "SHOW");
}

static void show_mem(struct admin *a)
{
	const struct shm_header *h = W.shm->hdr;
	int n = shm_pool_count(W.shm), nslots = shm_slot_count(W.shm), used_slots = 0,
	    used_clients = 0;

	for (int i = 0; i < nslots; i++)
		used_slots += atomic_load_explicit(&shm_slot(W.shm, i)->state,
		                                   memory_order_relaxed) != SLOT_FREE;
	for (int i = 0; i < shm_client_count(W.shm); i++)
		used_clients += row_in_use(shm_client(W.shm, i));
	admin_rowdesc(a, "siiii", NAMES("name", "size", "used", "free", "memtotal"));
	admin_row(a, "siiii", "shm_pools", (int)h->sizeof_pool, n, (int)h->max_pools - n,
	          (int)(h->sizeof_pool * h->max_pools));
	admin_row(a, "siiii", "shm_slots", (int)h->sizeof_slot, used_slots, nslots - used_slots,
	          (int)(h->sizeof_slot * (size_t)nslots));
	admin_row(a, "siiii", "shm_clients", (int)h->sizeof_client, used_clients,
	          shm_client_count(W.shm) - used_clients,
	          (int)(h->sizeof_client * (size_t)shm_client_count(W.shm)));
	admin_row(a, "siiii", "shm_stats", (int)sizeof(struct shm_stats),
	          (int)(h->nworkers * (uint32_t)n),
	          (int)(h->nworkers * (h->max_pools - (uint32_t)n)),
	          (int)(sizeof(struct shm_stats) * h->nworkers * h->max_pools));
	if (h->stmt_cap)
		admin_row(a, "siiii", "shm_prepared", (int)h->stmt_stride, used_slots,
		          nslots - used_slots, (int)(h->stmt_stride * (size_t)nslots));
	admin_row(a, "siiii", "shm_total", (int)h->total_size, 1, 0, (int)h->total_size);
	admin_row(a, "siiii", "worker_iobuf", (int)W.buf_size, 0, W.nbuf_pool,
	          (int)(W.buf_size * (uint32_t)W.nbuf_pool));
	admin_complete(a, "SHOW");
}

static void show_state(struct admin *a)
{
	bool paused = atomic_load_explicit(&W.shm->hdr->flags, memory_order_relaxed) & SHM_F_PAUSED;
	admin_rowdesc(a, "ss", NAMES("key", "value"));
	admin_row(a, "ss", "active", paused ? "no" : "yes");
	admin_row(a, "ss", "paused", paused ? "yes" : "no");
	admin_row(a, "ss", "suspended", "no");
	admin_complete(a, "SHOW");
}

/* ----------------------------------------------------- pgshoal's own */

static void show_workers(struct admin *a)
{
	int nslots = shm_slot_count(W.shm);

	admin_rowdesc(
	    a, "iiiiiqi",
	    NAMES("worker", "pid", "clients", "servers", "fds_cached", "loops", "respawns"));
	for (uint32_t w = 0; w < W.shm->hdr->nworkers; w++) {
		const struct shm_worker *sw = &W.shm->workers[w];
		int servers = 0;
		if (w >= (uint32_t)W.cfg->workers &&
		    atomic_load_explicit(&sw->pid, memory_order_relaxed) <= 0)
			continue; /* room for workers a reload may add (max_workers) */
		for (int i = 0; i < nslots; i++) {
			const struct shm_slot *sl = shm_slot(W.shm, i);
			servers +=
			    atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_ACTIVE &&
			    atomic_load_explicit(&sl->owner, memory_order_relaxed) == (int)w;
		}
		admin_row(a, "iiiiiqi", (int)w,
		          atomic_load_explicit(&sw->pid, memory_order_relaxed),
		          atomic_load_explicit(&sw->nclients, memory_order_relaxed), servers,
		          atomic_load_explicit(&sw->nfds, memory_order_relaxed),
		          (uint64_t)atomic_load_explicit(&sw->loops, memory_order_relaxed),
		          (int)atomic_load_explicit(&sw->respawns, memory_order_relaxed));
	}
	admin_complete(a, "SHOW");
}

static void show_slots(struct admin *a)
{
	struct shm_pool_view v[W.shm->hdr->max_pools];
	uint64_t now = now_usec();
	int n = shm_view_pools(W.shm, W.cfg, v, now, VIEW_LOCK);
	const char *types = "issssiiiiiiiiiiis";

	admin_rowdesc(a, types,
	              NAMES("pool", "database", "user", "pool_mode", "paused", "pool_size",
	                    "reserve_pool_size", "max_db_connections", "max_user_connections",
	                    "servers", "connecting", "idle", "waiting", "slots", "recycle_gen",
	                    "kill_gen", "last_error"));
	for (int p = 0; p < n; p++) {
		struct shm_pool *row = &W.shm->pools[p];
		char err[sizeof(row->last_error)];
		shm_pool_last_error(W.shm, p, err, sizeof(err));
		admin_row(a, types, p, row->db, row->user, config_pool_mode_name(v[p].mode),
		          shm_ctl_paused(W.shm, p) ? "yes" : "no", v[p].pool_size,
		          v[p].reserve_size, v[p].max_db, v[p].max_user, v[p].nservers,
		          v[p].nconnecting, v[p].nidle, v[p].nwaiting,
		          (int)W.shm->hdr->slots_per_pool,
		          (int)atomic_load_explicit(&row->recycle_gen, memory_order_relaxed),
		          (int)shm_ctl_kill_gen(W.shm, p), row->last_fail_usec ? err : NULL);
	}
	admin_complete(a, "SHOW");
}

/* ------------------------------------------------------------- the rest */

static void show_help(struct admin *a)
{
	admin_notice(a, "Console usage",
	             "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
	             "\tSHOW PEERS|PEER_POOLS\n"
	             "\tSHOW FDS|LISTS|MEM|STATE\n"
	             "\tSHOW DNS_HOSTS|DNS_ZONES\n"
	             "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
	             "\tSHOW WORKERS|SLOTS (pgshoal)\n"
	             "\tSET key = arg\n"
	             "\tRELOAD\n"
	             "\tPAUSE [<db>]\n"
	             "\tRESUME [<db>]\n"
	             "\tDISABLE <db>\n"
	             "\tENABLE <db>\n"
	             "\tRECONNECT [<db>]\n"
	             "\tKILL [<db>]\n"
	             "\tKILL_CLIENT <client_id>\n"
	             "\tSUSPEND (not supported)\n"
	             "\tSHUTDOWN\n"
	             "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
	             "\tWAIT_CLOSE [<db>]");
	admin_complete(a, "SHOW");
}

/* SHOW of the parameters drivers ask about: fixed answers (PgBouncer's). */
static bool show_fake(struct admin *a, const char *what)
{
	static const char *const fake[][2] = {
	    {"client_encoding", "UTF-8"},
	    {"default_transaction_isolation", "read committed"},
	    {"standard_conforming_strings", "on"},
	    {"datestyle", "ISO"},
	    {"timezone", "GMT"},
	    {"extra_float_digits", "2"},
	};
	for (size_t i = 0; i < ARRAY_LEN(fake); i++) {
		if (strcasecmp(what, fake[i][0]) != 0)
			continue;
		admin_rowdesc(a, "s", &fake[i][0]);
		admin_row(a, "s", fake[i][1]);
		admin_complete(a, "SHOW");
		return true;
	}
	return false;
}

static void show_dns_zones(struct admin *a)
{
	admin_rowdesc(a, "sqi", NAMES("zonename", "serial", "count"));
	admin_complete(a, "SHOW");
}

static void show_version(struct admin *a)
{
	admin_rowdesc(a, "s", NAMES("version"));
	admin_row(a, "s", "pgshoal " PGSHOAL_VERSION " (PgBouncer 1.25 console)");
	admin_complete(a, "SHOW");
}

static void show_peers(struct admin *a)
{
	admin_rowdesc(a, "isii", NAMES("peer_id", "host", "port", "pool_size"));
	admin_complete(a, "SHOW");
}

static void show_peer_pools(struct admin *a)
{
	admin_rowdesc(a, "iiiii",
	              NAMES("peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req",
	                    "sv_active_cancel", "sv_login"));
	admin_complete(a, "SHOW");
}

/* PgBouncer's online restart passes sockets here; pgshoal has none to pass
 * (its master holds them): an empty list, for admins only. */
static void show_fds(struct admin *a)
{
	if (!a->is_admin)
		return admin_fail(a, "42501", "admin access needed");
	admin_rowdesc(a, "issssiqisssssbb",
	              NAMES("fd", "task", "user", "database", "addr", "port", "cancel", "link",
	                    "client_encoding", "std_strings", "datestyle", "timezone", "password",
	                    "scram_client_key", "scram_server_key"));
	admin_complete(a, "SHOW");
}

static void show_stats_all(struct admin *a)
{
	show_stats(a, 0);
}
static void show_stats_totals(struct admin *a)
{
	show_stats(a, 1);
}
static void show_stats_averages(struct admin *a)
{
	show_stats(a, 2);
}

bool admin_show(struct client *c, const char *what)
{
	static const struct {
		const char *what;
		void (*show)(struct admin *a);
	} shows[] = {
	    {"help", show_help},
	    {"pools", show_pools},
	    {"stats", show_stats_all},
	    {"stats_totals", show_stats_totals},
	    {"stats_averages", show_stats_averages},
	    {"totals", show_totals},
	    {"databases", show_databases},
	    {"clients", show_clients},
	    {"servers", show_servers},
	    {"users", show_users},
	    {"config", show_config},
	    {"lists", show_lists},
	    {"dns_hosts", show_dns_hosts},
	    {"dns_zones", show_dns_zones},
	    {"mem", show_mem},
	    {"state", show_state},
	    {"version", show_version},
	    {"peers", show_peers},
	    {"peer_pools", show_peer_pools},
	    {"fds", show_fds},
	    {"workers", show_workers},
	    {"slots", show_slots},
	};

	for (size_t i = 0; i < ARRAY_LEN(shows); i++) {
		if (strcasecmp(what, shows[i].what) == 0) {
			shows[i].show(c->admin);
			return true;
		}
	}
	return show_fake(c->admin, what);
}
