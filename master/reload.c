/*
 * reload.c — graceful reload in the master (SIGHUP, admin RELOAD): read and
 * validate the file; on any error keep the running configuration. Settings
 * that size shared memory or the listening sockets need a restart
 * (config_needs_restart): the new value is logged and the old one kept.
 * Everything else is published as a new snapshot, which workers take at
 * their next loop turn; pools whose server (host, port, dbname, user,
 * password) changed get a new recycle generation, so their connections are
 * replaced at release. The file's values replace whatever the console's
 * SET changed (PgBouncer's rule); SET itself goes through
 * master_apply_config too (ctl.c). A changed server_tls_* setting recycles
 * every pool (no connection made under weaker TLS settings outlives it).
 */
#include "master.h"
#include "shm/pool.h"

#include <stdlib.h>
#include <string.h>

static unsigned reloads_ok, reloads_failed; /* for /metrics */

/* A restart-only setting the file changed: say so (its old value stays). */
static void note_restart(const char *name, const char *was)
{
	log_error(LOG_WARNING, 0, "setting \"%s\" changed: it needs a restart, keeping \"%s\"",
	          name, was);
}

static bool same_server(const struct config_db *a, const struct config_db *b)
{
	return strcmp(a->host, b->host) == 0 && a->port == b->port &&
	       strcmp(a->dbname, b->dbname) == 0 && strcmp(a->user, b->user) == 0 &&
	       strcmp(a->password, b->password) == 0;
}

static bool same_server_tls(const struct config *a, const struct config *b)
{
	return a->server_tls_sslmode == b->server_tls_sslmode &&
	       strcmp(a->server_tls_ca_file, b->server_tls_ca_file) == 0 &&
	       strcmp(a->server_tls_cert_file, b->server_tls_cert_file) == 0 &&
	       strcmp(a->server_tls_key_file, b->server_tls_key_file) == 0 &&
	       strcmp(a->server_tls_protocols, b->server_tls_protocols) == 0 &&
	       strcmp(a->server_tls_ciphers, b->server_tls_ciphers) == 0;
}

/* Pools whose database entry now points elsewhere: recycle their servers. */
static void recycle_changed_pools(const struct config *old, const struct config *next)
{
	bool tls_changed = !same_server_tls(old, next);

	for (int p = 0; p < (int)M.shm.hdr->max_pools; p++) {
		struct shm_pool *row = &M.shm.pools[p];
		const struct config_db *a, *b;
		if (!atomic_load(&row->used))
			break;
		a = config_find_db(old, row->db);
		b = config_find_db(next, row->db);
		if (a && b && same_server(a, b) && !tls_changed)
			continue;
		atomic_fetch_add(&row->recycle_gen, 1);
		log_error(LOG_INFO, 0,
		          "pool %s/%s: server settings changed, recycling its connections", row->db,
		          row->user);
	}
}

/* Put a validated configuration in force (a reload, or the console's SET):
 * recycle pools whose server moved, reopen the log, follow new host names,
 * and publish the snapshot that every worker takes at its next loop turn. */
void master_apply_config(const struct config *next)
{
	int before = M.cfg.workers;

	for (int i = 0; i < next->ndbs; i++) {
		const struct config_db *db = &next->dbs[i];
		int want = config_pool_size(next, db) + config_reserve_size(next, db);
		if (want > (int)M.shm.hdr->slots_per_pool)
			log_error(
			    LOG_WARNING, 0,
			    "database \"%s\": pool_size + reserve_pool_size = %d exceeds the %u "
			    "slots per pool sized at start: capped until a restart",
			    db->name, want, M.shm.hdr->slots_per_pool);
	}
	recycle_changed_pools(&M.cfg, next);
	if (next != &M.cfg)
		memcpy(&M.cfg, next, sizeof(M.cfg));
	log_open(M.cfg.logfile, !M.daemon);
	master_dns_reload();
	if (M.cfg.workers > master_worker_slots()) { /* the room made at start (max_workers) */
		log_error(LOG_WARNING, 0,
		          "workers = %d exceeds the %d shared memory was sized for at start "
		          "(max_workers): running %d until a restart",
		          M.cfg.workers, master_worker_slots(), master_worker_slots());
		M.cfg.workers = master_worker_slots();
	}
	shm_config_publish(&M.shm, &M.cfg);
	master_apply_workers(before);
}

void master_reload(void)
{
	struct config *next = malloc(sizeof(*next));
	char err[512];

	if (!next) {
		reloads_failed++;
		return;
	}
	log_error(LOG_INFO, 0, "reloading \"%s\"", M.cfg.path);
	if (config_load(M.cfg.path, next, err, sizeof(err)) != 0) {
		log_error(LOG_ERR, 0, "%s", err);
		log_error(LOG_ERR, 0, "configuration not reloaded");
		reloads_failed++;
		free(next);
		return;
	}
	config_keep_restart(&M.cfg, next, note_restart);
	master_apply_config(next);
	free(next);
	reloads_ok++;
	log_error(LOG_INFO, 0, "configuration reloaded (generation %u)", M.shm.hdr->config_gen);
}

void master_reload_counts(unsigned *ok, unsigned *failed)
{
	*ok = reloads_ok;
	*failed = reloads_failed;
}

/* The pool rows of database entry `dbname` from index p on: the first
 * one's index, or -1. */
static int next_pool_of(const char *dbname, int p)
{
	for (; p < (int)M.shm.hdr->max_pools; p++) {
		const struct shm_pool *row = &M.shm.pools[p];
		const struct config_db *db;
		if (!atomic_load(&row->used))
			return -1;
		db = config_find_db(&M.cfg, row->db);
		if (db && strcmp(db->name, dbname) == 0)
			return p;
	}
	return -1;
}

/* The server of database entry `dbname` moved (DNS, probe, monitor):
 * recycle its pools. */
void master_recycle_db(const char *dbname)
{
	for (int p = next_pool_of(dbname, 0); p >= 0; p = next_pool_of(dbname, p + 1))
		atomic_fetch_add(&M.shm.pools[p].recycle_gen, 1);
}

/* ... and end its pools' server_login_retry wait, so that waiting clients
 * connect to the new server now; false if a pool's lock was busy (the
 * master only tries it): call again. */
bool master_forget_failures(const char *dbname)
{
	bool done = true;
	for (int p = next_pool_of(dbname, 0); p >= 0; p = next_pool_of(dbname, p + 1))
		done &= shm_pool_forget_failure(&M.shm, p);
	return done;
}
