/*
 * dns.c — where each database entry's server is. The master resolves every
 * host and publishes the address in the shared target table; workers never
 * call the resolver. A host starting with '/' is a unix socket directory.
 * This first version resolves at start (before the workers exist, so a
 * blocking getaddrinfo cannot stall anyone); periodic non-blocking
 * re-resolution comes with the master issue.
 */
#include "master.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static int resolve_one(const struct config_db *db, struct sockaddr_storage *out, socklen_t *len)
{
	const char *host = db->host[0] ? db->host : "/var/run/postgresql";
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	char port[16];
	int rc;

	if (host[0] == '/') {
		struct sockaddr_un *sun = (struct sockaddr_un *)out;
		memset(sun, 0, sizeof(*sun));
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%.90s/.s.PGSQL.%d", host, db->port);
		*len = sizeof(*sun);
		return ST_OK;
	}
	snprintf(port, sizeof(port), "%d", db->port);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		log_error(LOG_WARNING, 0, "could not resolve host \"%s\": %s", host, gai_strerror(rc));
		return ST_ERROR;
	}
	memcpy(out, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return ST_OK;
}

int master_dns_resolve_all(const struct config *cfg, struct shm *shm)
{
	int failed = 0;
	for (int i = 0; i < cfg->ndbs; i++) {
		struct sockaddr_storage sa;
		socklen_t len;
		if (resolve_one(&cfg->dbs[i], &sa, &len) == ST_OK)
			shm_target_write(shm, i, (struct sockaddr *)&sa, len);
		else
			failed++;
	}
	return failed ? ST_ERROR : ST_OK;
}
