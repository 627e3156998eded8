/*
 * dns.c — where each database entry's server is. The master resolves every
 * host name and publishes the addresses in the shared target table; workers
 * never call the resolver. At start the lookups block (no worker exists
 * yet); afterwards they run through glibc's getaddrinfo_a (GAI_NOWAIT,
 * polled on the master's 100 ms tick), so the master's loop never waits.
 * Names are re-resolved every dns_max_ttl seconds; a failed lookup keeps the
 * last good addresses (retried after dns_nxdomain_ttl) and is logged once.
 * When a name's addresses change, the pools of that database entry get a new
 * recycle generation: idle connections are closed by the janitor, leased
 * ones at release. A host starting with '/' is a unix socket directory.
 */
#include "master.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

struct dns_entry {
	struct gaicb req;      /* in flight while busy: must not move or be reused */
	struct addrinfo hints;
	char host[CFG_HOST_LEN];
	char port[16];
	bool busy;
	bool failing;          /* the last lookup failed (logged once) */
	uint64_t started, next; /* usec */
};

static struct dns_entry entries[CFG_MAX_DBS];

static const char *server_host(const struct config_db *db)
{
	return db->host[0] ? db->host : "/var/run/postgresql";
}

static void describe(const struct sockaddr_storage *sa, char *out, size_t len)
{
	const void *a = sa->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
	                                         : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (!inet_ntop(sa->ss_family, a, out, (socklen_t)len))
		strlcpy_s(out, "?", len);
}

static void describe_target(int db, char *out, size_t len)
{
	struct shm_target *t = &M.shm.targets[db];
	out[0] = '\0';
	if (!t->ok)
		return;
	for (int i = 0; i < t->naddr; i++) {
		size_t n;
		if (i)
			strlcpy_s(out + strlen(out), ",", len - strlen(out));
		n = strlen(out);
		describe(&t->addr[i], out + n, len - n);
	}
}

static void publish_unix(int db, const struct config_db *cdb)
{
	struct sockaddr_storage ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
	socklen_t len = sizeof(*sun);

	memset(&ss, 0, sizeof(ss));
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof(sun->sun_path), "%.90s/.s.PGSQL.%d", server_host(cdb), cdb->port);
	shm_target_write(&M.shm, db, cdb->name, &ss, &len, 1);
}

/* Publish a lookup's answer; on a change of a known name, recycle. */
static void publish_result(int db, const struct config_db *cdb, struct addrinfo *res)
{
	struct sockaddr_storage addrs[TARGET_MAX_ADDRS];
	socklen_t lens[TARGET_MAX_ADDRS];
	char before[256], after[256];
	bool known = M.shm.targets[db].ok && strcmp(M.shm.targets[db].name, cdb->name) == 0;
	int n = 0;

	for (struct addrinfo *ai = res; ai && n < TARGET_MAX_ADDRS; ai = ai->ai_next) {
		memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
		lens[n++] = ai->ai_addrlen;
	}
	describe_target(db, before, sizeof(before));
	if (!shm_target_write(&M.shm, db, cdb->name, addrs, lens, n) || !known)
		return;
	describe_target(db, after, sizeof(after));
	log_error(LOG_INFO, 0, "host \"%s\": %s -> %s", cdb->host, before, after);
	master_recycle_db(cdb->name);
}

static void start_lookup(int db, const struct config_db *cdb, uint64_t now)
{
	struct dns_entry *e = &entries[db];
	struct gaicb *list[1] = {&e->req};

	strlcpy_s(e->host, cdb->host, sizeof(e->host));
	snprintf(e->port, sizeof(e->port), "%d", cdb->port);
	memset(&e->hints, 0, sizeof(e->hints));
	e->hints.ai_family = AF_UNSPEC;
	e->hints.ai_socktype = SOCK_STREAM;
	memset(&e->req, 0, sizeof(e->req));
	e->req.ar_name = e->host;
	e->req.ar_service = e->port;
	e->req.ar_request = &e->hints;
	if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0) {
		e->next = now + (uint64_t)(M.cfg.dns_nxdomain_ttl * 1e6);
		return;
	}
	e->busy = true;
	e->started = now;
}

static void finish_lookup(int db, uint64_t now)
{
	struct dns_entry *e = &entries[db];
	const struct config_db *cdb = db < M.cfg.ndbs ? &M.cfg.dbs[db] : NULL;
	int rc = gai_error(&e->req);

	if (rc == EAI_INPROGRESS)
		return;
	e->busy = false;
	if (rc == 0 && cdb && strcmp(cdb->host, e->host) == 0) {
		publish_result(db, cdb, e->req.ar_result);
		if (e->failing)
			log_error(LOG_INFO, 0, "host \"%s\" resolves again", e->host);
		e->failing = false;
		e->next = now + (uint64_t)(M.cfg.dns_max_ttl * 1e6);
	} else if (rc != 0) {
		if (!e->failing)
			log_error(LOG_WARNING, 0, "could not resolve host \"%s\": %s (keeping the last addresses)",
			          e->host, gai_strerror(rc));
		e->failing = true;
		e->next = now + (uint64_t)(M.cfg.dns_nxdomain_ttl * 1e6);
	} else {
		e->next = now; /* the entry changed meanwhile: look up the new name */
	}
	if (e->req.ar_result)
		freeaddrinfo(e->req.ar_result);
	e->req.ar_result = NULL;
}

/* On the master's tick: collect finished lookups, start due ones. */
void master_dns_tick(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < M.cfg.ndbs; i++) {
		const struct config_db *cdb = &M.cfg.dbs[i];
		if (entries[i].busy)
			finish_lookup(i, now);
		if (entries[i].busy || server_host(cdb)[0] == '/' || now < entries[i].next)
			continue;
		start_lookup(i, cdb, now);
	}
}

/* At start, before the workers exist: blocking lookups are fine here. */
int master_dns_resolve_all(const struct config *cfg, struct shm *shm)
{
	int failed = 0;
	(void)shm;
	for (int i = 0; i < cfg->ndbs; i++) {
		const struct config_db *cdb = &cfg->dbs[i];
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		struct addrinfo *res;
		char port[16];
		int rc;
		if (server_host(cdb)[0] == '/') {
			publish_unix(i, cdb);
			continue;
		}
		snprintf(port, sizeof(port), "%d", cdb->port);
		rc = getaddrinfo(cdb->host, port, &hints, &res);
		if (rc != 0) {
			log_error(LOG_WARNING, 0, "could not resolve host \"%s\": %s", cdb->host, gai_strerror(rc));
			entries[i].failing = true;
			failed++;
			continue;
		}
		publish_result(i, cdb, res);
		freeaddrinfo(res);
		entries[i].next = now_usec() + (uint64_t)(cfg->dns_max_ttl * 1e6);
	}
	return failed ? ST_ERROR : ST_OK;
}

/* After a reload: entries whose database now names another host (or that
 * moved to another index) are looked up at once; unix sockets published. */
void master_dns_reload(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < M.cfg.ndbs; i++) {
		const struct config_db *cdb = &M.cfg.dbs[i];
		struct shm_target *t = &M.shm.targets[i];
		if (server_host(cdb)[0] == '/') {
			publish_unix(i, cdb);
			continue;
		}
		if (strcmp(t->name, cdb->name) != 0 || strcmp(entries[i].host, cdb->host) != 0 ||
		    strcmp(entries[i].port, "") == 0)
			entries[i].next = now;
	}
	for (int i = M.cfg.ndbs; i < CFG_MAX_DBS; i++)
		if (M.shm.targets[i].ok)
			shm_target_clear(&M.shm, i);
	master_dns_tick();
}
