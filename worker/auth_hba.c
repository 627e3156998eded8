/*
 * auth_hba.c — auth_type hba in a worker: its own parsed copy of the
 * auth_hba_file rules, parsed from the text the master read and checked
 * (published with the configuration, so a file edited or broken since
 * changes nothing until a reload accepts it), again at each new
 * configuration generation; and the method the first matching record gives
 * a client. Runs in worker processes. No record, or a `reject` record,
 * closes the client with 28000 in PostgreSQL's words.
 */
#include "worker.h"
#include "shm/hba.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static struct hba current;
static uint32_t current_gen;
static bool current_loaded;

static const struct hba *rules(void)
{
	const char *text = W.cfg->auth_hba_text;
	struct hba next;
	char err[512];

	if (current_loaded && current_gen == W.config_gen)
		return &current;
	current_loaded = true;
	current_gen = W.config_gen;
	if (hba_parse(text, strlen(text), W.cfg->auth_hba_file, &next, err, sizeof(err)) < 0) {
		/* cannot happen: the master parsed the same text */
		log_error(LOG_ERR, 0, "%s (keeping the previous auth_hba_file rules)", err);
		return &current;
	}
	hba_free(&current);
	current = next;
	return &current;
}

static int auth_type_of(int hba_method)
{
	switch (hba_method) {
	case HBA_TRUST: return AUTH_TRUST;
	case HBA_MD5: return AUTH_MD5;
	case HBA_SCRAM: return AUTH_SCRAM;
	case HBA_PASSWORD: return AUTH_PLAIN;
	case HBA_CERT: return AUTH_CERT;
	default: log_error(LOG_CRIT, 0, "hba method %d has no auth_type", hba_method); abort();
	}
}

int auth_hba_method(struct client *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct hba_conn conn = {.tls = c->tls != NULL, .db = c->db, .user = c->user};
	const struct hba_rule *r;
	char host[64] = "[local]"; /* PostgreSQL's name for a unix socket client */

	if (getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0) {
		log_error(LOG_WARNING, errno, "getpeername() failed");
		client_close(c, "getpeername() failed");
		return -1;
	}
	conn.local = ss.ss_family == AF_UNIX;
	conn.addr = (const struct sockaddr *)&ss;
	r = hba_match(rules(), &conn);
	if (r && r->method != HBA_REJECT) {
		log_debug(DBG_STATE, "C-%d: auth_hba_file line %d: %s", c->row, r->line,
		          hba_method_names[r->method]);
		return auth_type_of(r->method);
	}
	if (!conn.local)
		sockaddr_describe(&ss, host, sizeof(host));
	if (r)
		log_error(LOG_WARNING, 0,
		          "C-%d: db=%s user=%s addr=%s rejected by auth_hba_file line %d", c->row,
		          c->db, c->user, c->addr, r->line);
	else
		log_error(LOG_WARNING, 0, "C-%d: db=%s user=%s addr=%s no auth_hba_file entry%s",
		          c->row, c->db, c->user, c->addr, conn.tls ? " (TLS)" : "");
	client_error_close(c, "28000", "%s for host \"%s\", user \"%s\", database \"%s\"",
	                   r ? "pg_hba.conf rejects connection" : "no pg_hba.conf entry", host,
	                   c->user, c->db);
	return -1;
}
