/*
 * reload.c — graceful reload in the master (SIGHUP, admin RELOAD): read and
 * validate the file; on any error keep the running configuration. Settings
 * that size shared memory or the listening sockets need a restart: the new
 * value is logged and the old one kept. Everything else is published as a
 * new snapshot, which workers take at their next loop turn; pools whose
 * server (host, port, dbname, user, password) changed get a new recycle
 * generation, so their connections are replaced at release.
 */
#include "master.h"

#include <stdlib.h>
#include <string.h>

/* Put back a restart-only setting, saying so if the file changed it. */
#define KEEP_STR(f)                                                                                \
	do {                                                                                           \
		if (strcmp(old->f, next->f) != 0) {                                                        \
			log_error(LOG_WARNING, 0, "setting \"%s\" changed: it needs a restart, keeping \"%s\"", #f, \
			          old->f);                                                                     \
			memcpy(next->f, old->f, sizeof(next->f));                                              \
		}                                                                                          \
	} while (0)
#define KEEP_INT(f)                                                                                \
	do {                                                                                           \
		if (old->f != next->f) {                                                                   \
			log_error(LOG_WARNING, 0, "setting \"%s\" changed: it needs a restart, keeping %d", #f,  \
			          (int)old->f);                                                                \
			next->f = old->f;                                                                      \
		}                                                                                          \
	} while (0)

static void keep_restart_settings(const struct config *old, struct config *next)
{
	KEEP_STR(listen_addr);
	KEEP_INT(listen_port);
	KEEP_STR(unix_socket_dir);
	KEEP_INT(listen_backlog);
	KEEP_INT(max_client_conn);
	KEEP_INT(max_pools);
	KEEP_INT(max_prepared_statements);
	KEEP_INT(pkt_buf);
	KEEP_STR(pidfile);
	KEEP_STR(user);
	KEEP_INT(workers);
	KEEP_INT(so_reuseport);
}

static bool same_server(const struct config_db *a, const struct config_db *b)
{
	return strcmp(a->host, b->host) == 0 && a->port == b->port && strcmp(a->dbname, b->dbname) == 0 &&
	       strcmp(a->user, b->user) == 0 && strcmp(a->password, b->password) == 0;
}

/* Pools whose database entry now points elsewhere: recycle their servers. */
static void recycle_changed_pools(const struct config *old, const struct config *next)
{
	for (int p = 0; p < (int)M.shm.hdr->max_pools; p++) {
		struct shm_pool *row = &M.shm.pools[p];
		const struct config_db *a, *b;
		if (!atomic_load(&row->used))
			break;
		a = config_find_db(old, row->db);
		b = config_find_db(next, row->db);
		if (a && b && same_server(a, b))
			continue;
		atomic_fetch_add(&row->recycle_gen, 1);
		log_error(LOG_INFO, 0, "pool %s/%s: server settings changed, recycling its connections", row->db,
		          row->user);
	}
}

void master_reload(void)
{
	struct config *next = malloc(sizeof(*next));
	char err[512];

	if (!next)
		return;
	log_error(LOG_INFO, 0, "reloading \"%s\"", M.cfg.path);
	if (config_load(M.cfg.path, next, err, sizeof(err)) != 0) {
		log_error(LOG_ERR, 0, "%s", err);
		log_error(LOG_ERR, 0, "configuration not reloaded");
		free(next);
		return;
	}
	keep_restart_settings(&M.cfg, next);
	for (int i = 0; i < next->ndbs; i++) {
		const struct config_db *db = &next->dbs[i];
		int want = config_pool_size(next, db) + config_reserve_size(next, db);
		if (want > (int)M.shm.hdr->slots_per_pool)
			log_error(LOG_WARNING, 0, "database \"%s\": pool_size + reserve_pool_size = %d exceeds the %u "
			          "slots per pool sized at start: capped until a restart", db->name, want,
			          M.shm.hdr->slots_per_pool);
	}
	recycle_changed_pools(&M.cfg, next);
	memcpy(&M.cfg, next, sizeof(M.cfg));
	free(next);
	log_open(M.cfg.logfile, !M.daemon);
	master_dns_reload();
	shm_config_publish(&M.shm, &M.cfg);
	log_error(LOG_INFO, 0, "configuration reloaded (generation %u)", M.shm.hdr->config_gen);
}

/* The server of database entry `dbname` moved (DNS): recycle its pools. */
void master_recycle_db(const char *dbname)
{
	for (int p = 0; p < (int)M.shm.hdr->max_pools; p++) {
		struct shm_pool *row = &M.shm.pools[p];
		const struct config_db *db;
		if (!atomic_load(&row->used))
			break;
		db = config_find_db(&M.cfg, row->db);
		if (db && strcmp(db->name, dbname) == 0)
			atomic_fetch_add(&row->recycle_gen, 1);
	}
}
