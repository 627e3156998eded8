/*
 * admin_ctl.c — the admin console's control commands, for admin_users
 * only. They act on the whole pooler through shared memory, whichever
 * worker runs them:
 *  - PAUSE / RESUME / KILL / DISABLE / ENABLE set switches (shm/ctl.h) that
 *    every worker reads where it leases, logs clients in, or ticks;
 *  - RECONNECT bumps the pools' recycle_gen: each server made before is
 *    closed at its next release (workers) or while idle (master janitor);
 *  - RELOAD and SHUTDOWN are the master's: they send it its signal;
 *  - SET key = value is the master's too: it travels on the broker socket
 *    (BR_SET), the master changes and publishes the configuration, and its
 *    answer (BR_SET_DONE) comes back here.
 * PAUSE, WAIT_CLOSE, KILL_CLIENT and SET answer when their condition holds;
 * the session is parked meanwhile and admin_wait_done() is polled each tick
 * (and when the master's answer to SET arrives).
 */
#include "admin.h"
#include "shm/broker_msg.h"
#include "shm/ctl.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KILL_CLIENT_TIMEOUT_USEC 5000000ull
#define SET_TIMEOUT_USEC         5000000ull

static bool matches(int pool, const char *db)
{
	return !db[0] || strcmp(W.shm->pools[pool].db, db) == 0;
}

static void syntax(struct client *c, const char *verb, const char *arg)
{
	admin_fail(c->admin, "42601", "invalid command '%s%s%s', use SHOW HELP;", verb,
	           arg[0] ? " " : "", arg);
}

/* A database the command may act on: one named in the configuration, or
 * one a "*" entry already serves (it has a pool). Errors are answered. */
static bool db_known(struct client *c, const char *db, const char *what)
{
	const struct config_db *cdb = config_find_db(W.cfg, db);
	int n = shm_pool_count(W.shm);

	if (admin_is_db(db)) {
		admin_fail(c->admin, "55000", "cannot %s admin db: %s", what, db);
		return false;
	}
	if (cdb && strcmp(cdb->name, db) == 0)
		return true;
	for (int p = 0; p < n; p++)
		if (strcmp(W.shm->pools[p].db, db) == 0)
			return true;
	admin_fail(c->admin, "3D000", "no such database: %s", db);
	return false;
}

/* The database's account, created for the flags if need be. */
static struct shm_account *db_account(struct client *c, const char *db, const char *what)
{
	int acct;
	if (!db_known(c, db, what))
		return NULL;
	acct = shm_pool_db_account(W.shm, db, true);
	if (acct < 0) {
		admin_fail(c->admin, "53400", "no room for the flags of database %s (max_pools)",
		           db);
		return NULL;
	}
	return &W.shm->accounts[acct];
}

static void recycle(const char *db)
{
	int n = shm_pool_count(W.shm);
	for (int p = 0; p < n; p++)
		if (matches(p, db))
			atomic_fetch_add_explicit(&W.shm->pools[p].recycle_gen, 1,
			                          memory_order_relaxed);
}

static void park(struct client *c, enum admin_wait what, const char *db)
{
	struct admin *a = c->admin;
	a->wait = what;
	a->wait_since = W.now;
	strlcpy_s(a->wait_db, db, sizeof(a->wait_db));
	if (admin_wait_done(c))
		a->wait = AW_NONE;
}

static void cmd_pause(struct client *c, const char *db)
{
	if (atomic_load(&W.shm->hdr->flags) & SHM_F_PAUSED)
		return admin_fail(c->admin, "55000", "already suspended/paused");
	if (!db[0]) {
		atomic_fetch_or(&W.shm->hdr->flags, SHM_F_PAUSED);
	} else {
		struct shm_account *acct = db_account(c, db, "pause");
		if (!acct)
			return;
		atomic_fetch_or(&acct->flags, DB_F_PAUSED);
	}
	park(c, AW_PAUSE, db);
}

static void cmd_resume(struct client *c, const char *db)
{
	if (!db[0]) {
		if (atomic_load(&W.shm->hdr->flags) & SHM_F_SHUTDOWN)
			return admin_fail(c->admin, "55000", "pooler is shutting down");
		if (!(atomic_fetch_and(&W.shm->hdr->flags, ~(unsigned)SHM_F_PAUSED) & SHM_F_PAUSED))
			return admin_fail(c->admin, "55000", "pooler is not paused/suspended");
	} else {
		int acct = shm_pool_db_account(W.shm, db, false);
		if (acct < 0 ||
		    !(atomic_fetch_and(&W.shm->accounts[acct].flags, ~(unsigned)DB_F_PAUSED) &
		      DB_F_PAUSED))
			return admin_fail(c->admin, "55000", "database %s is not paused", db);
	}
	/* paused clients retry at their worker's next tick (100 ms) */
	admin_complete(c->admin, "RESUME");
}

static void cmd_disable(struct client *c, const char *db)
{
	struct shm_account *acct;
	if (!db[0])
		return admin_fail(c->admin, "42601", "a database is required");
	if (!(acct = db_account(c, db, "disable")))
		return;
	atomic_fetch_or(&acct->flags, DB_F_DISABLED);
	admin_complete(c->admin, "DISABLE");
}

static void cmd_enable(struct client *c, const char *db)
{
	int acct;
	if (!db[0])
		return admin_fail(c->admin, "42601", "a database is required");
	if (!db_known(c, db, "enable"))
		return;
	acct = shm_pool_db_account(W.shm, db, false);
	if (acct >= 0)
		atomic_fetch_and(&W.shm->accounts[acct].flags, ~(unsigned)DB_F_DISABLED);
	admin_complete(c->admin, "ENABLE");
}

static void cmd_reconnect(struct client *c, const char *db)
{
	if (db[0] && !db_known(c, db, "reconnect"))
		return;
	recycle(db);
	admin_complete(c->admin, "RECONNECT");
}

/* KILL [db]: its clients close at their worker's next tick, its servers as
 * they are released or by the janitor; new clients wait for RESUME. */
static void cmd_kill(struct client *c, const char *db)
{
	if (atomic_load(&W.shm->hdr->flags) & SHM_F_PAUSED)
		return admin_fail(c->admin, "55000", "already suspended/paused");
	if (!db[0]) {
		atomic_fetch_or(&W.shm->hdr->flags, SHM_F_PAUSED);
		atomic_fetch_add(&W.shm->hdr->kill_gen, 1);
	} else {
		struct shm_account *acct = db_account(c, db, "kill");
		if (!acct)
			return;
		atomic_fetch_or(&acct->flags, DB_F_PAUSED);
		atomic_fetch_add(&acct->kill_gen, 1);
	}
	recycle(db);
	admin_complete(c->admin, "KILL");
}

static void cmd_kill_client(struct client *c, const char *arg)
{
	char *end;
	unsigned long long id;

	errno = 0;
	id = strtoull(arg, &end, 10);
	if (!arg[0] || *end || errno || id == 0)
		return admin_fail(c->admin, "22023", "invalid client id supplied");
	for (int i = 0; i < shm_client_count(W.shm); i++) {
		struct shm_client *r = shm_client(W.shm, i);
		if (atomic_load_explicit(&r->state, memory_order_acquire) != CROW_USED ||
		    r->id != id)
			continue;
		c->admin->wait_row = i;
		c->admin->wait_gen = atomic_load(&r->gen);
		atomic_store(&r->kill, 1);
		return park(c, AW_KILL_CLIENT, "");
	}
	admin_fail(c->admin, "55000", "client not found");
}

static void cmd_wait_close(struct client *c, const char *db)
{
	if (db[0] && !db_known(c, db, "wait in"))
		return;
	park(c, AW_WAIT_CLOSE, db);
}

static void signal_master(struct client *c, int sig, const char *tag)
{
	admin_complete(c->admin, tag);
	if (kill(W.shm->hdr->master_pid, sig) < 0)
		log_error(LOG_ERR, errno, "kill(master %d, %d) failed", (int)W.shm->hdr->master_pid,
		          sig);
}

static void cmd_reload(struct client *c, const char *arg)
{
	if (arg[0])
		return syntax(c, "RELOAD", arg);
	/* the master re-reads and validates the file; a bad file is logged and
	 * the configuration in force kept (its result is not known here) */
	signal_master(c, SIGHUP, "RELOAD");
}

static void cmd_shutdown(struct client *c, const char *arg)
{
	if (!arg[0])
		signal_master(c, SIGQUIT, "SHUTDOWN");
	else if (strcasecmp(arg, "WAIT_FOR_SERVERS") == 0)
		signal_master(c, SIGINT, "SHUTDOWN");
	else if (strcasecmp(arg, "WAIT_FOR_CLIENTS") == 0)
		signal_master(c, SIGTERM, "SHUTDOWN");
	else
		syntax(c, "SHUTDOWN", arg);
}

static void cmd_suspend(struct client *c, const char *arg)
{
	if (arg[0])
		return syntax(c, "SUSPEND", arg);
	admin_fail(c->admin, "0A000",
	           "SUSPEND is not supported: it exists for PgBouncer's online restart (-R), which "
	           "pgshoal does "
	           "not have; its master keeps the sockets across worker restarts");
}

bool admin_control(struct client *c, const char *verb, const char *arg)
{
	static const struct {
		const char *verb;
		void (*run)(struct client *c, const char *arg);
	} cmds[] = {
	    {"pause", cmd_pause},
	    {"resume", cmd_resume},
	    {"disable", cmd_disable},
	    {"enable", cmd_enable},
	    {"reconnect", cmd_reconnect},
	    {"kill", cmd_kill},
	    {"kill_client", cmd_kill_client},
	    {"wait_close", cmd_wait_close},
	    {"reload", cmd_reload},
	    {"shutdown", cmd_shutdown},
	    {"suspend", cmd_suspend},
	};

	for (size_t i = 0; i < ARRAY_LEN(cmds); i++) {
		if (strcasecmp(verb, cmds[i].verb) != 0)
			continue;
		if (!c->admin->is_admin) {
			admin_fail(c->admin, "42501", "admin access needed");
			return true;
		}
		log_error(LOG_INFO, 0, "C-%d: user=%s addr=%s admin command: %s%s%s", c->row,
		          c->user, c->addr, cmds[i].verb, arg[0] ? " " : "", arg);
		cmds[i].run(c, arg);
		return true;
	}
	return false;
}

void admin_set(struct client *c, const char *key, const char *value)
{
	static const char *const fake[] = {"client_encoding",
	                                   "default_transaction_isolation",
	                                   "standard_conforming_strings",
	                                   "datestyle",
	                                   "timezone",
	                                   "extra_float_digits"};
	struct broker_ctl req = {.head = {.type = BR_SET, .slot = c->row}};
	struct admin *a = c->admin;

	for (size_t i = 0; i < ARRAY_LEN(fake); i++) {
		if (strcasecmp(key, fake[i]) == 0) { /* drivers set these at connect */
			admin_notice(a, "SET ignored", NULL);
			return admin_complete(a, "SET");
		}
	}
	if (!a->is_admin)
		return admin_fail(a, "42501", "admin access needed");
	/* setting names are lowercase; PgBouncer takes them in any case */
	for (size_t i = 0; key[i] && i + 1 < sizeof(req.key); i++)
		req.key[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] - 'A' + 'a' : key[i]);
	strlcpy_s(req.text, value, sizeof(req.text));
	req.head.gen = atomic_load(&shm_client(W.shm, c->row)->gen);
	log_error(LOG_INFO, 0, "C-%d: user=%s addr=%s admin command: SET %s = '%s'", c->row,
	          c->user, c->addr, req.key, value);
	if (broker_send_ctl(W.broker_fd, &req) < 0)
		return admin_fail(a, "58000", "could not send SET to the master: %s",
		                  strerror(errno));
	a->set_answered = false;
	park(c, AW_SET, "");
}

/* The master's answer: to the session that asked, if it is still there and
 * still waiting (it may have timed out, or left and its row been reused). */
void admin_set_done(const struct broker_ctl *rep)
{
	int i = rep->head.slot - W.first_row;
	struct client *c;

	if (i < 0 || i >= W.nrows)
		return;
	c = &W.clients[i];
	if (c->state != CL_ADMIN || c->closing || !c->admin || c->admin->wait != AW_SET ||
	    atomic_load(&shm_client(W.shm, c->row)->gen) != rep->head.gen)
		return;
	c->admin->set_answered = true;
	c->admin->set_result = rep->result;
	c->admin->set_gen = rep->config_gen;
	strlcpy_s(c->admin->set_error, rep->text, sizeof(c->admin->set_error));
	admin_check_wait(c);
}

/* The answer to SET once the master's is in and, for a change, this
 * worker runs the configuration that carries it (so that a SHOW CONFIG
 * that follows in the session shows it). */
static bool set_done(struct admin *a)
{
	static const char *const sqlstate[] = {
	    [CFG_SET_UNKNOWN] = "42704", /* undefined_object, PostgreSQL's for an unknown GUC */
	    [CFG_SET_RESTART] = "55P02", /* cant_change_runtime_param */
	    [CFG_SET_INVALID] = "22023", /* invalid_parameter_value */
	};

	if (!a->set_answered) {
		if (W.now - a->wait_since < SET_TIMEOUT_USEC)
			return false;
		admin_fail(a, "57014", "the master did not answer SET in time");
		return true;
	}
	if (a->set_result == CFG_SET_OK) {
		if ((int32_t)(W.config_gen - a->set_gen) < 0 &&
		    W.now - a->wait_since < SET_TIMEOUT_USEC)
			return false;
		admin_complete(a, "SET");
		return true;
	}
	admin_fail(a,
	           a->set_result > CFG_SET_OK && a->set_result <= CFG_SET_INVALID
	               ? sqlstate[a->set_result]
	               : "XX000",
	           "%s", a->set_error);
	return true;
}

/* ------------------------------------------------------------- waiting */

/* Servers of matching pools that are in use or logging in. */
static int busy_servers(const char *db)
{
	int n = shm_pool_count(W.shm), busy = 0;
	for (int p = 0; p < n; p++) {
		struct shm_pool *row = &W.shm->pools[p];
		if (!matches(p, db))
			continue;
		shm_mutex_lock(&row->lock);
		busy += row->nservers - row->nidle;
		shm_mutex_unlock(&row->lock);
	}
	return busy;
}

/* Servers of matching pools made before their pool's last RECONNECT. */
static int stale_servers(const char *db)
{
	int n = shm_pool_count(W.shm), per = (int)W.shm->hdr->slots_per_pool, stale = 0;
	for (int p = 0; p < n; p++) {
		uint32_t gen =
		    atomic_load_explicit(&W.shm->pools[p].recycle_gen, memory_order_relaxed);
		if (!matches(p, db))
			continue;
		for (int i = p * per; i < (p + 1) * per; i++) {
			const struct shm_slot *sl = shm_slot(W.shm, i);
			stale +=
			    atomic_load_explicit(&sl->state, memory_order_relaxed) != SLOT_FREE &&
			    sl->recycle_gen != gen;
		}
	}
	return stale;
}

static bool still_paused(const char *db)
{
	int acct;
	if (!db[0])
		return atomic_load(&W.shm->hdr->flags) & SHM_F_PAUSED;
	acct = shm_pool_db_account(W.shm, db, false);
	return acct >= 0 && (atomic_load(&W.shm->accounts[acct].flags) & DB_F_PAUSED);
}

bool admin_wait_done(struct client *c)
{
	struct admin *a = c->admin;
	struct shm_client *r;

	switch (a->wait) {
	case AW_PAUSE:
		if (!still_paused(a->wait_db)) {
			admin_fail(a, "55000", "PAUSE was cancelled by RESUME");
			return true;
		}
		if (busy_servers(a->wait_db))
			return false;
		admin_complete(a, "PAUSE");
		return true;
	case AW_WAIT_CLOSE:
		if (stale_servers(a->wait_db))
			return false;
		admin_complete(a, "WAIT_CLOSE");
		return true;
	case AW_KILL_CLIENT:
		r = shm_client(W.shm, a->wait_row);
		if (atomic_load(&r->gen) == a->wait_gen && atomic_load(&r->state) == CROW_USED) {
			if (W.now - a->wait_since < KILL_CLIENT_TIMEOUT_USEC)
				return false;
			admin_fail(a, "57014", "the client's worker did not close it in time");
			return true;
		}
		admin_complete(a, "KILL_CLIENT");
		return true;
	case AW_SET: return set_done(a);
	case AW_NONE: return true;
	default: log_error(LOG_CRIT, 0, "bad admin wait %d", a->wait); abort();
	}
}
