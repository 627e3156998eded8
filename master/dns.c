/*
 * dns.c — where each database entry's server is. The master resolves every
 * host name and publishes the addresses in the shared target table; workers
 * never call the resolver. At start the lookups block (no worker exists
 * yet); afterwards they run through glibc's getaddrinfo_a (GAI_NOWAIT,
 * polled on the master's 100 ms tick), so the master's loop never waits.
 * Names are re-resolved every dns_max_ttl seconds; a failed lookup keeps the
 * last good addresses (retried after dns_nxdomain_ttl) and is logged once.
 * When the addresses change, the pools of that database entry get a new
 * recycle generation: idle connections are closed by the janitor, leased
 * ones at release.
 *
 * `host` may list several hosts ("a,b,c"): the target then holds the first
 * address of each, in order (probe.c picks the one that matches
 * target_session_attrs); a single host keeps all its addresses, tried in
 * order on connect failures. A host starting with '/' is a unix socket
 * directory.
 */
#include "master.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

struct dns_entry {
	/* in flight while busy: none of these may move or be reused */
	struct gaicb req[TARGET_MAX_ADDRS];
	struct gaicb *list[TARGET_MAX_ADDRS];
	struct addrinfo hints;
	char hosts[TARGET_MAX_ADDRS][CFG_HOST_LEN];
	char port[16];
	int nhosts;
	char spec[CFG_HOST_LEN]; /* the host setting these were made from */
	bool busy;
	bool failing;  /* the last lookup failed (logged once) */
	uint64_t next; /* usec */
};

static struct dns_entry entries[CFG_MAX_DBS];

static const char *server_host(const struct config_db *db)
{
	return db->host[0] ? db->host : "/var/run/postgresql";
}

/* Split "a,b,c" into the entry's host list. */
static void split_hosts(struct dns_entry *e, const struct config_db *db)
{
	const char *p = server_host(db);
	e->nhosts = 0;
	while (*p && e->nhosts < TARGET_MAX_ADDRS) {
		size_t n = strcspn(p, ",");
		snprintf(e->hosts[e->nhosts++], CFG_HOST_LEN, "%.*s", (int)n, p);
		p += n + (p[n] == ',');
	}
	strlcpy_s(e->spec, server_host(db), sizeof(e->spec));
	snprintf(e->port, sizeof(e->port), "%d", db->port);
}

static void describe(const struct sockaddr_storage *sa, char *out, size_t len)
{
	const void *a = sa->ss_family == AF_INET
	                    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
	                    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (sa->ss_family == AF_UNIX)
		strlcpy_s(out, ((const struct sockaddr_un *)sa)->sun_path, len);
	else if (!inet_ntop(sa->ss_family, a, out, (socklen_t)len))
		strlcpy_s(out, "?", len);
}

void master_describe_target(int db, int i, char *out, size_t len)
{
	describe(&M.shm.targets[db].addr[i], out, len);
}

bool master_dns_failing(int db)
{
	return entries[db].failing;
}

static void describe_target(int db, char *out, size_t len)
{
	struct shm_target *t = &M.shm.targets[db];
	out[0] = '\0';
	for (int i = 0; t->ok && i < t->naddr; i++) {
		size_t n;
		if (i)
			strlcpy_s(out + strlen(out), ",", len - strlen(out));
		n = strlen(out);
		describe(&t->addr[i], out + n, len - n);
	}
}

static socklen_t unix_addr(const char *dir, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)ss;
	memset(ss, 0, sizeof(*ss));
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof(sun->sun_path), "%.90s/.s.PGSQL.%d", dir, port);
	return sizeof(*sun);
}

/* Collect the addresses: results[i] answers hosts[i] (NULL: unix socket). */
static int gather(const struct dns_entry *e, int port, struct addrinfo *const *results,
                  struct sockaddr_storage *addrs, socklen_t *lens)
{
	int n = 0;
	for (int h = 0; h < e->nhosts && n < TARGET_MAX_ADDRS; h++) {
		if (e->hosts[h][0] == '/') {
			lens[n] = unix_addr(e->hosts[h], port, &addrs[n]);
			n++;
			continue;
		}
		for (struct addrinfo *ai = results[h]; ai && n < TARGET_MAX_ADDRS;
		     ai = ai->ai_next) {
			memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
			lens[n++] = ai->ai_addrlen;
			if (e->nhosts > 1)
				break; /* several hosts: the first address of each */
		}
	}
	return n;
}

/* Publish an answer; on a change of a known entry, log and recycle. */
static void publish(int db, const struct config_db *cdb, struct addrinfo *const *results)
{
	struct sockaddr_storage addrs[TARGET_MAX_ADDRS];
	socklen_t lens[TARGET_MAX_ADDRS];
	char before[512], after[512];
	bool known = M.shm.targets[db].ok && strcmp(M.shm.targets[db].name, cdb->name) == 0;
	int n = gather(&entries[db], cdb->port, results, addrs, lens);

	describe_target(db, before, sizeof(before));
	if (n == 0 || !shm_target_write(&M.shm, db, cdb->name, addrs, lens, n) || !known)
		return;
	describe_target(db, after, sizeof(after));
	log_error(LOG_INFO, 0, "host \"%s\": %s -> %s", cdb->host, before, after);
	master_recycle_db(cdb->name);
}

static bool needs_lookup(const struct dns_entry *e)
{
	for (int h = 0; h < e->nhosts; h++)
		if (e->hosts[h][0] != '/')
			return true;
	return false;
}

static void start_lookup(int db, const struct config_db *cdb, uint64_t now)
{
	struct dns_entry *e = &entries[db];
	int n = 0;

	split_hosts(e, cdb);
	memset(&e->hints, 0, sizeof(e->hints));
	e->hints.ai_family = AF_UNSPEC;
	e->hints.ai_socktype = SOCK_STREAM;
	memset(e->req, 0, sizeof(e->req));
	for (int h = 0; h < e->nhosts; h++) {
		if (e->hosts[h][0] == '/')
			continue;
		e->req[h].ar_name = e->hosts[h];
		e->req[h].ar_service = e->port;
		e->req[h].ar_request = &e->hints;
		e->list[n++] = &e->req[h];
	}
	if (getaddrinfo_a(GAI_NOWAIT, e->list, n, NULL) != 0) {
		e->next = now + (uint64_t)(M.cfg.dns_nxdomain_ttl * 1e6);
		return;
	}
	e->busy = true;
}

static void free_results(struct dns_entry *e)
{
	for (int h = 0; h < e->nhosts; h++) {
		if (e->req[h].ar_result)
			freeaddrinfo(e->req[h].ar_result);
		e->req[h].ar_result = NULL;
	}
}

static void finish_lookup(int db, uint64_t now)
{
	struct dns_entry *e = &entries[db];
	const struct config_db *cdb = db < M.cfg.ndbs ? &M.cfg.dbs[db] : NULL;
	struct addrinfo *results[TARGET_MAX_ADDRS] = {NULL};
	int rc = 0;

	for (int h = 0; h < e->nhosts; h++) {
		int r = e->hosts[h][0] == '/' ? 0 : gai_error(&e->req[h]);
		if (r == EAI_INPROGRESS)
			return;
		if (r != 0 && rc == 0)
			rc = r;
		results[h] = e->req[h].ar_result;
	}
	e->busy = false;
	if (!cdb || strcmp(server_host(cdb), e->spec) != 0) {
		e->next = now; /* the entry changed meanwhile: look up the new name */
	} else if (rc == 0) {
		publish(db, cdb, results);
		if (e->failing)
			log_error(LOG_INFO, 0, "host \"%s\" resolves again", e->spec);
		e->failing = false;
		e->next = now + (uint64_t)(M.cfg.dns_max_ttl * 1e6);
	} else {
		if (!e->failing)
			log_error(LOG_WARNING, 0,
			          "could not resolve host \"%s\": %s (keeping the last addresses)",
			          e->spec, gai_strerror(rc));
		e->failing = true;
		e->next = now + (uint64_t)(M.cfg.dns_nxdomain_ttl * 1e6);
	}
	free_results(e);
}

/* On the master's tick: collect finished lookups, start due ones. */
void master_dns_tick(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < M.cfg.ndbs; i++) {
		struct dns_entry *e = &entries[i];
		if (e->busy)
			finish_lookup(i, now);
		if (e->busy || now < e->next)
			continue;
		split_hosts(e, &M.cfg.dbs[i]);
		if (!needs_lookup(e)) {
			publish(i, &M.cfg.dbs[i], (struct addrinfo *[TARGET_MAX_ADDRS]){NULL});
			e->next = UINT64_MAX; /* unix sockets only: nothing to re-resolve */
			continue;
		}
		start_lookup(i, &M.cfg.dbs[i], now);
	}
}

/* At start, before the workers exist: blocking lookups are fine here. */
int master_dns_resolve_all(const struct config *cfg, struct shm *shm)
{
	int failed = 0;
	(void)shm;
	for (int i = 0; i < cfg->ndbs; i++) {
		struct dns_entry *e = &entries[i];
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		struct addrinfo *results[TARGET_MAX_ADDRS] = {NULL};
		int rc = 0;

		split_hosts(e, &cfg->dbs[i]);
		for (int h = 0; h < e->nhosts && rc == 0; h++)
			if (e->hosts[h][0] != '/')
				rc = getaddrinfo(e->hosts[h], e->port, &hints, &results[h]);
		if (rc == 0)
			publish(i, &cfg->dbs[i], results);
		else
			log_error(LOG_WARNING, 0, "could not resolve host \"%s\": %s", e->spec,
			          gai_strerror(rc));
		for (int h = 0; h < e->nhosts; h++)
			if (results[h])
				freeaddrinfo(results[h]);
		e->failing = rc != 0;
		failed += rc != 0;
		e->next =
		    needs_lookup(e) ? now_usec() + (uint64_t)(cfg->dns_max_ttl * 1e6) : UINT64_MAX;
		if (rc != 0)
			e->next = now_usec() + (uint64_t)(cfg->dns_nxdomain_ttl * 1e6);
	}
	return failed ? ST_ERROR : ST_OK;
}

/* After a reload: entries whose host setting changed (or that moved to
 * another index) are looked up at once; stale rows are cleared. */
void master_dns_reload(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < M.cfg.ndbs; i++) {
		const struct config_db *cdb = &M.cfg.dbs[i];
		char port[16];
		snprintf(port, sizeof(port), "%d", cdb->port);
		if (strcmp(M.shm.targets[i].name, cdb->name) != 0 ||
		    strcmp(entries[i].spec, server_host(cdb)) != 0 ||
		    strcmp(entries[i].port, port) != 0)
			entries[i].next = now;
	}
	for (int i = M.cfg.ndbs; i < CFG_MAX_DBS; i++)
		if (M.shm.targets[i].ok)
			shm_target_clear(&M.shm, i);
	master_dns_tick();
}
