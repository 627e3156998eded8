/*
 * probe.c — following the primary without DNS tricks. For a database entry
 * that lists several hosts with a target_session_attrs other than "any",
 * the master connects to each host with libpq (non-blocking, stepped on its
 * 100 ms tick, never waited on), asks pg_is_in_recovery() and
 * transaction_read_only, and publishes the first host that matches as the
 * target's preferred address. When the choice changes, the database's pools
 * are recycled (idle connections now, leased ones at release). Probes run
 * every server_check_period, and at once when a worker reports a failed
 * connect. While a pg_auto_failover monitor connection is up for the entry
 * (monitor.c), probing is suspended: the monitor decides.
 */
#include "master.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

enum probe_state { PR_IDLE, PR_CONNECTING, PR_QUERY, PR_DONE };

struct probe {
	PGconn *conn;
	enum probe_state state;
	bool ok, recovery, read_only;
};

struct probe_set {
	struct probe p[TARGET_MAX_ADDRS];
	int n;
	bool running, warned;
	uint64_t started, next;
};

static struct probe_set sets[CFG_MAX_DBS];
static bool forget_pending[CFG_MAX_DBS]; /* a pool lock was busy at a switch: again */

#define PROBE_TIMEOUT_USEC 5000000ull

static bool matches(int attrs, const struct probe *p, bool standby_only)
{
	if (!p->ok)
		return false;
	switch (attrs) {
	case TSA_READ_WRITE: return !p->read_only;
	case TSA_PRIMARY: return !p->recovery;
	case TSA_READ_ONLY: return p->read_only;
	case TSA_STANDBY: return p->recovery;
	case TSA_PREFER_STANDBY: return !standby_only || p->recovery;
	default: return true;
	}
}

/* A pool of this database entry to log in as (its server database and
 * user: the entry's forced ones, else the pool's own). NULL if none yet. */
static const struct shm_pool *probe_pool(const struct config_db *db)
{
	for (int p = 0; p < (int)M.shm.hdr->max_pools; p++) {
		const struct shm_pool *row = &M.shm.pools[p];
		if (!atomic_load(&row->used))
			break;
		if (config_find_db(&M.cfg, row->db) == db)
			return row;
	}
	return NULL;
}

static void start_one(struct probe *p, const struct config_db *db, const struct shm_pool *pool,
                      int db_index, int i)
{
	struct sockaddr_storage *sa = &M.shm.targets[db_index].addr[i];
	char addr[128], port[16];
	const char *keys[8], *vals[8];
	int k = 0;

	master_describe_target(db_index, i, addr, sizeof(addr));
	if (sa->ss_family == AF_UNIX) { /* ".../.s.PGSQL.port": libpq wants the directory */
		char *dot = strrchr(addr, '/');
		if (dot)
			*dot = '\0';
		keys[k] = "host", vals[k++] = addr;
	} else {
		keys[k] = "hostaddr", vals[k++] = addr;
	}
	snprintf(port, sizeof(port), "%d", db->port);
	keys[k] = "port", vals[k++] = port;
	keys[k] = "dbname", vals[k++] = db->dbname[0] ? db->dbname : pool->db;
	keys[k] = "user", vals[k++] = db->user[0] ? db->user : pool->user;
	if (db->password[0])
		keys[k] = "password", vals[k++] = db->password;
	keys[k] = "application_name", vals[k++] = "pgshoal probe";
	keys[k] = NULL, vals[k] = NULL;
	memset(p, 0, sizeof(*p));
	p->conn = PQconnectStartParams(keys, vals, 0);
	p->state = p->conn && PQstatus(p->conn) != CONNECTION_BAD ? PR_CONNECTING : PR_DONE;
}

static void step_one(struct probe *p)
{
	PGresult *res;
	switch (p->state) {
	case PR_CONNECTING:
		switch (PQconnectPoll(p->conn)) {
		case PGRES_POLLING_OK:
			p->state =
			    PQsendQuery(p->conn, "select pg_is_in_recovery(), "
			                         "current_setting('transaction_read_only')::bool")
			        ? PR_QUERY
			        : PR_DONE;
			break;
		case PGRES_POLLING_FAILED: p->state = PR_DONE; break;
		default: break;
		}
		break;
	case PR_QUERY:
		if (!PQconsumeInput(p->conn)) {
			p->state = PR_DONE;
			break;
		}
		if (PQisBusy(p->conn))
			break;
		while ((res = PQgetResult(p->conn))) {
			if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
				p->ok = true;
				p->recovery = PQgetvalue(res, 0, 0)[0] == 't';
				p->read_only = PQgetvalue(res, 0, 1)[0] == 't';
			}
			PQclear(res);
		}
		p->state = PR_DONE;
		break;
	default: break;
	}
}

static void finish_set(struct probe_set *set)
{
	for (int i = 0; i < set->n; i++) {
		if (set->p[i].conn)
			PQfinish(set->p[i].conn);
		set->p[i].conn = NULL;
		set->p[i].state = PR_IDLE;
	}
	set->running = false;
}

/* All probes answered (or timed out): publish the first matching host. */
static void decide(int db_index, const struct config_db *db, struct probe_set *set)
{
	int pick = -1;
	char why[64];

	for (int pass = 0; pass < 2 && pick < 0; pass++)
		for (int i = 0; i < set->n && pick < 0; i++)
			if (matches(db->target_session_attrs, &set->p[i], pass == 0))
				pick = i;
	if (pick < 0) {
		if (!set->warned)
			log_error(LOG_WARNING, 0,
			          "database \"%s\": no host matches target_session_attrs=%s",
			          db->name, config_target_attrs_names[db->target_session_attrs]);
		set->warned = true;
		return;
	}
	set->warned = false;
	snprintf(why, sizeof(why), "probe (target_session_attrs=%s)",
	         config_target_attrs_names[db->target_session_attrs]);
	master_target_prefer(db_index, pick, why);
}

/* Publish address PICK as database DB_INDEX's server (probe.c and
 * monitor.c): log why and recycle its pools (idle connections closed now,
 * leased ones at release); false if it already was. */
bool master_target_prefer(int db_index, int pick, const char *why)
{
	struct shm_target *t = &M.shm.targets[db_index];
	const char *name = M.cfg.dbs[db_index].name;
	char addr[128];

	if (!t->ok || pick < 0 || pick >= t->naddr ||
	    (int)(atomic_load(&t->prefer) % (unsigned)t->naddr) == pick)
		return false;
	atomic_store(&t->prefer, (unsigned)pick);
	master_describe_target(db_index, pick, addr, sizeof(addr));
	log_error(LOG_INFO, 0, "database \"%s\": %s: now using host %s", name, why, addr);
	master_recycle_db(name);
	forget_pending[db_index] = !master_forget_failures(name);
	master_broker_janitor(); /* close the idle connections to the old host now, not within a
	                            second */
	return true;
}

static void tick_db(int i, uint64_t now)
{
	const struct config_db *db = &M.cfg.dbs[i];
	struct shm_target *t = &M.shm.targets[i];
	struct probe_set *set = &sets[i];
	const struct shm_pool *pool;
	bool all_done = true;

	if (master_monitor_active(i)) { /* the monitor decides; a probe might pick an old primary */
		if (set->running)
			finish_set(set);
		atomic_store(&t->probe_now, 0);
		return;
	}
	if (!set->running) {
		bool asked = atomic_exchange(&t->probe_now, 0);
		if (db->target_session_attrs == TSA_ANY || !t->ok || t->naddr < 2 ||
		    (!asked && now < set->next))
			return;
		pool = probe_pool(db);
		if (!pool)
			return;
		set->n = t->naddr;
		for (int k = 0; k < set->n; k++)
			start_one(&set->p[k], db, pool, i, k);
		set->running = true;
		set->started = now;
		set->next = now + (uint64_t)(M.cfg.server_check_period * 1e6);
	}
	for (int k = 0; k < set->n; k++) {
		step_one(&set->p[k]);
		all_done &= set->p[k].state == PR_DONE;
	}
	if (!all_done && now - set->started < PROBE_TIMEOUT_USEC)
		return;
	decide(i, db, set);
	finish_set(set);
}

void master_probe_tick(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < M.cfg.ndbs; i++) {
		if (forget_pending[i])
			forget_pending[i] = !master_forget_failures(M.cfg.dbs[i].name);
		tick_db(i, now);
	}
}
