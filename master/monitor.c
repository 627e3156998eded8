/*
 * monitor.c — following a pg_auto_failover formation from its monitor. For
 * each database entry with a monitor_conninfo (its own, or the global one
 * for an entry listing several hosts) the master keeps one libpq connection
 * to the monitor's pg_auto_failover database: connected without blocking
 * (PQconnectStartParams stepped on the master's 100 ms tick; a monitor host
 * NAME is resolved first with getaddrinfo_a, since libpq would resolve it
 * inside PQconnectPoll), then `LISTEN state`, then a query of the current
 * primary, repeated every server_check_period as a health check. Its socket
 * sits in the master's epoll, so a NOTIFY is handled when it arrives.
 *
 * When a node REPORTS wait_primary, primary or single (and its goal is not
 * to leave that role), the entry's host that is that node (same name,
 * case-insensitive, or same resolved address; same port) becomes the
 * target's preferred address (probe.c's master_target_prefer: log, recycle).
 * While the connection is up, probe.c does not probe the entry: the monitor
 * decides, and a probe could pick an old primary not fenced yet. When it is
 * lost (EOF, error, a query unanswered for server_connect_timeout) the loss
 * is logged once, probing resumes at once, and the master reconnects after
 * 1 s, doubling up to 30 s. A changed or removed monitor_conninfo (reload)
 * closes the connection; a new one opens at the next tick.
 */
#include "master.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* MON_LISTEN and later: connected (probing suspended) */
enum mon_state {
	MON_OFF,
	MON_BACKOFF,
	MON_RESOLVING,
	MON_CONNECTING,
	MON_LISTEN,
	MON_QUERY,
	MON_UP,
	MON_STATE_COUNT
};
static const char *const mon_state_names[MON_STATE_COUNT] = {
    "off", "backoff", "resolving", "connecting", "listen", "query", "up"};

struct monitor {
	enum mon_state state;
	PGconn *conn;
	bool polled;                     /* its socket is in the master's epoll */
	char conninfo[CFG_CONNINFO_LEN]; /* what the connection is made from */
	char db[CFG_NAME_LEN];           /* the database entry it serves */
	bool query_ok;                   /* the query in flight succeeded */
	bool was_up, lost;               /* lost: logged, until up again */
	bool warned;                     /* "no known primary among our hosts" logged */
	unsigned backoff_ms;
	uint64_t since;                /* entered this state, usec */
	uint64_t retry_at, next_query; /* usec */
	/* MON_RESOLVING: in flight, must not move */
	struct gaicb req;
	struct gaicb *list[1];
	struct addrinfo hints;
	char host[CFG_HOST_LEN];
	unsigned addr_next; /* which of its addresses to use: the next one after a failure */
};

static struct monitor mons[CFG_MAX_DBS];

#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 30000u
#define PRIMARY_QUERY                                                                              \
	"select nodename, nodehost, nodeport, reportedstate, goalstate from pgautofailover.node "  \
	"where reportedstate in ('primary', 'wait_primary', 'single') "                            \
	"and goalstate in ('primary', 'wait_primary', 'single', 'join_primary', "                  \
	"'apply_settings') "                                                                       \
	"order by reporttime desc"

static void set_state(int i, enum mon_state next)
{
	struct monitor *m = &mons[i];
	log_debug(DBG_STATE, "database \"%s\": monitor %s -> %s", m->db, mon_state_names[m->state],
	          mon_state_names[next]);
	m->state = next;
	m->since = now_usec();
}

static void close_conn(struct monitor *m)
{
	if (m->polled)
		master_epoll_del(PQsocket(m->conn));
	m->polled = false;
	if (m->conn)
		PQfinish(m->conn);
	m->conn = NULL;
}

/* The connection failed or broke: log once, probe instead, retry later. */
static void lose(int i, const char *why)
{
	struct monitor *m = &mons[i];
	char msg[256];

	snprintf(msg, sizeof(msg), "%s", why && why[0] ? why : "connection failed");
	msg[strcspn(msg, "\n")] = '\0';
	if (!m->lost)
		log_error(LOG_WARNING, 0,
		          "database \"%s\": %s: %s; probing the hosts, reconnecting in %u s", m->db,
		          m->was_up ? "monitor connection lost"
		                    : "could not connect to the monitor",
		          msg, m->backoff_ms / 1000);
	else
		log_debug(DBG_STATE, "database \"%s\": monitor: %s", m->db, msg);
	m->lost = true;
	m->addr_next++;
	close_conn(m);
	set_state(i, MON_BACKOFF);
	m->retry_at = now_usec() + (uint64_t)m->backoff_ms * 1000;
	m->backoff_ms = m->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : m->backoff_ms * 2;
	atomic_store(&M.shm.targets[i].probe_now, 1);
}

static void on_notice(void *arg, const char *message)
{
	const struct monitor *m = arg;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", message);
	msg[strcspn(msg, "\n")] = '\0';
	log_error(LOG_INFO, 0, "database \"%s\": monitor says: %s", m->db, msg);
}

/* A host of this conninfo that libpq would have to resolve (one name, no
 * hostaddr; the loader refuses a list of names): copied into m->host. */
static bool needs_lookup(struct monitor *m, const PQconninfoOption *opts)
{
	const char *host = NULL;
	unsigned char bin[16];

	for (const PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && o->val[0] && strcmp(o->keyword, "hostaddr") == 0)
			return false;
		if (o->val && strcmp(o->keyword, "host") == 0)
			host = o->val;
	}
	if (!host || !host[0] || host[0] == '/' || strchr(host, ',') ||
	    inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1)
		return false;
	strlcpy_s(m->host, host, sizeof(m->host));
	return true;
}

/* PQconnectStartParams with the conninfo's keywords, plus HOSTADDR when the
 * master resolved the host, and an application_name unless one is given. */
static void connect_start(int i, const PQconninfoOption *opts, const char *hostaddr)
{
	struct monitor *m = &mons[i];
	const char *keys[64], *vals[64];
	bool app = false;
	int k = 0;

	for (const PQconninfoOption *o = opts; o->keyword && k < 61; o++) {
		if (!o->val || (hostaddr && strcmp(o->keyword, "hostaddr") == 0))
			continue;
		app |= strcmp(o->keyword, "application_name") == 0;
		keys[k] = o->keyword, vals[k++] = o->val;
	}
	if (hostaddr)
		keys[k] = "hostaddr", vals[k++] = hostaddr;
	if (!app)
		keys[k] = "application_name", vals[k++] = "pgshoal monitor";
	keys[k] = NULL, vals[k] = NULL;
	m->conn = PQconnectStartParams(keys, vals, 0);
	if (!m->conn || PQstatus(m->conn) == CONNECTION_BAD) {
		lose(i, m->conn ? PQerrorMessage(m->conn) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(m->conn, on_notice, m);
	set_state(i, MON_CONNECTING);
}

/* Start (again): resolve the monitor's host name first if it has one. */
static void begin(int i)
{
	struct monitor *m = &mons[i];
	PQconninfoOption *opts = PQconninfoParse(m->conninfo, NULL);

	if (!opts) {
		lose(i, "invalid monitor_conninfo");
		return;
	}
	if (needs_lookup(m, opts)) {
		memset(&m->req, 0, sizeof(m->req));
		memset(&m->hints, 0, sizeof(m->hints));
		m->hints.ai_family = AF_UNSPEC;
		m->hints.ai_socktype = SOCK_STREAM;
		m->req.ar_name = m->host;
		m->req.ar_request = &m->hints;
		m->list[0] = &m->req;
		if (getaddrinfo_a(GAI_NOWAIT, m->list, 1, NULL) == 0)
			set_state(i, MON_RESOLVING);
		else
			lose(i, "getaddrinfo_a() failed");
	} else {
		connect_start(i, opts, NULL);
	}
	PQconninfoFree(opts);
}

/* The resolved address to try, as text: the first, or after failures the
 * next ones in turn (a name with an IPv6 and an IPv4 address, say). */
static void pick_address(struct monitor *m, char *out, size_t len)
{
	const struct addrinfo *ai = m->req.ar_result;
	const struct sockaddr *sa;
	const void *a;
	unsigned n = 0;

	for (const struct addrinfo *p = ai; p; p = p->ai_next)
		n++;
	for (unsigned k = m->addr_next % n; k > 0; k--)
		ai = ai->ai_next;
	sa = ai->ai_addr;
	a = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
	                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (!inet_ntop(sa->sa_family, a, out, (socklen_t)len))
		out[0] = '\0';
}

/* MON_RESOLVING: the lookup is never abandoned (the request must not move
 * while in flight); an entry changed meanwhile is dealt with afterwards. */
static void step_resolve(int i)
{
	struct monitor *m = &mons[i];
	int rc = gai_error(&m->req);
	char addr[INET6_ADDRSTRLEN] = "";
	PQconninfoOption *opts;

	if (rc == EAI_INPROGRESS)
		return;
	if (rc == 0 && m->req.ar_result)
		pick_address(m, addr, sizeof(addr));
	if (m->req.ar_result)
		freeaddrinfo(m->req.ar_result);
	m->req.ar_result = NULL;
	opts = addr[0] ? PQconninfoParse(m->conninfo, NULL) : NULL;
	if (opts)
		connect_start(i, opts, addr);
	else
		lose(i, rc ? gai_strerror(rc) : "no address");
	PQconninfoFree(opts);
}

static void send_query(int i, enum mon_state next, const char *sql)
{
	struct monitor *m = &mons[i];
	m->query_ok = false;
	if (!PQsendQuery(m->conn, sql)) {
		lose(i, PQerrorMessage(m->conn));
		return;
	}
	PQflush(m->conn);
	set_state(i, next);
}

static void step_connect(int i)
{
	struct monitor *m = &mons[i];
	switch (PQconnectPoll(m->conn)) {
	case PGRES_POLLING_OK:
		PQsetnonblocking(m->conn, 1);
		master_epoll_add_monitor(i, PQsocket(m->conn));
		m->polled = true;
		send_query(i, MON_LISTEN, "listen state");
		break;
	case PGRES_POLLING_FAILED: lose(i, PQerrorMessage(m->conn)); break;
	default:
		if (now_usec() - m->since > (uint64_t)(M.cfg.server_connect_timeout * 1e6))
			lose(i, "timeout expired");
		break;
	}
}

/* Which of the entry's hosts is HOST:PORT: its name in the host list, or
 * the address the master resolved it to; -1 if none. */
static int host_index(int i, const char *host, long port)
{
	const struct config_db *db = &M.cfg.dbs[i];
	const struct shm_target *t = &M.shm.targets[i];
	const char *p = db->host;
	char addr[128];

	if (port != db->port)
		return -1;
	for (int k = 0; *p && k < TARGET_MAX_ADDRS; k++) {
		size_t n = strcspn(p, ",");
		if (n == strlen(host) && strncasecmp(p, host, n) == 0)
			return k;
		p += n + (p[n] == ',');
	}
	for (int k = 0; t->ok && k < t->naddr; k++) {
		master_describe_target(i, k, addr, sizeof(addr));
		if (strcasecmp(addr, host) == 0)
			return k;
	}
	return -1;
}

/* A state the primary keeps (its goal is not to give the role up). */
static bool is_primary(const char *reported, const char *goal)
{
	static const char *const reported_ok[] = {"wait_primary", "primary", "single"};
	static const char *const goal_ok[] = {"wait_primary", "primary", "single", "join_primary",
	                                      "apply_settings"};
	bool r = false, g = !goal[0];
	for (size_t k = 0; k < ARRAY_LEN(reported_ok); k++)
		r |= strcmp(reported, reported_ok[k]) == 0;
	for (size_t k = 0; k < ARRAY_LEN(goal_ok); k++)
		g |= strcmp(goal, goal_ok[k]) == 0;
	return r && g;
}

/* Node NAME at HOST:PORT reports STATE: follow it if it is one of ours.
 * Returns whether it is. */
static bool follow(int i, const char *name, const char *host, long port, const char *state)
{
	int pick = host_index(i, host, port);
	char why[CFG_HOST_LEN + 2 * CFG_NAME_LEN];

	if (pick < 0)
		return false;
	snprintf(why, sizeof(why), "monitor: node %s (%s:%ld) reported %s", name, host, port,
	         state);
	master_target_prefer(i, pick, why);
	return true;
}

static void on_notify(int i, const char *payload)
{
	char type[16], name[CFG_NAME_LEN], host[CFG_HOST_LEN], state[32], goal[32] = "";
	long port;

	if (master_json_string(payload, "type", type, sizeof(type)) != ST_OK ||
	    strcmp(type, "state") != 0 ||
	    master_json_string(payload, "name", name, sizeof(name)) != ST_OK ||
	    master_json_string(payload, "host", host, sizeof(host)) != ST_OK ||
	    master_json_int(payload, "port", &port) != ST_OK ||
	    master_json_string(payload, "reportedState", state, sizeof(state)) != ST_OK) {
		log_error(LOG_WARNING, 0,
		          "database \"%s\": monitor: unreadable notification: %.200s", mons[i].db,
		          payload);
		return;
	}
	if (master_json_string(payload, "goalState", goal, sizeof(goal)) != ST_OK)
		goal[0] = '\0';
	log_debug(DBG_STATE, "database \"%s\": monitor: node %s (%s:%ld) %s -> %s", mons[i].db,
	          name, host, port, state, goal);
	if (is_primary(state, goal) && !follow(i, name, host, port, state))
		log_debug(DBG_STATE, "database \"%s\": monitor: node %s is not one of its hosts",
		          mons[i].db, name);
}

/* The monitor's primaries, newest first: follow the first that is ours. */
static void on_rows(int i, const PGresult *res)
{
	struct monitor *m = &mons[i];
	int n = PQntuples(res);

	if (PQnfields(res) != 5)
		return;
	for (int r = 0; r < n; r++)
		if (follow(i, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1),
		           atol(PQgetvalue(res, r, 2)), PQgetvalue(res, r, 3))) {
			m->warned = false;
			return;
		}
	if (n > 0 && !m->warned) /* none at all: a failover in progress */
		log_error(
		    LOG_WARNING, 0,
		    "database \"%s\": the monitor's primary %s:%s is none of its hosts \"%s\" "
		    "(port %d)",
		    m->db, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), M.cfg.dbs[i].host,
		    M.cfg.dbs[i].port);
	m->warned = n > 0;
}

/* A query finished: LISTEN leads to the first primary query; a primary
 * query leads to MON_UP. */
static void query_done(int i, const char *err)
{
	struct monitor *m = &mons[i];

	if (!m->query_ok) {
		lose(i, err[0] ? err : "query failed");
		return;
	}
	if (m->state == MON_LISTEN) {
		send_query(i, MON_QUERY, PRIMARY_QUERY);
		return;
	}
	if (!m->was_up || m->lost)
		log_error(LOG_INFO, 0,
		          "database \"%s\": following the pg_auto_failover monitor (LISTEN state); "
		          "probing suspended",
		          m->db);
	m->was_up = true;
	m->lost = false;
	m->backoff_ms = BACKOFF_MIN_MS;
	m->next_query = now_usec() + (uint64_t)(M.cfg.server_check_period * 1e6);
	set_state(i, MON_UP);
}

/* Read what arrived: results of the query in flight, then notifications. */
static void consume(int i)
{
	struct monitor *m = &mons[i];
	char err[256] = "";
	PGnotify *n;

	if (!PQconsumeInput(m->conn) || PQflush(m->conn) < 0) {
		lose(i, PQerrorMessage(m->conn));
		return;
	}
	while (m->state != MON_UP && !PQisBusy(m->conn)) {
		PGresult *res = PQgetResult(m->conn);
		if (!res) {
			query_done(i, err);
			break;
		}
		if (PQresultStatus(res) == PGRES_COMMAND_OK ||
		    PQresultStatus(res) == PGRES_TUPLES_OK)
			m->query_ok = true;
		else
			snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
		if (m->state == MON_QUERY && PQresultStatus(res) == PGRES_TUPLES_OK)
			on_rows(i, res);
		PQclear(res);
	}
	while (m->conn && (n = PQnotifies(m->conn))) {
		if (strcmp(n->relname, "state") == 0)
			on_notify(i, n->extra);
		PQfreemem(n);
	}
	if (m->conn && PQstatus(m->conn) == CONNECTION_BAD)
		lose(i, PQerrorMessage(m->conn));
}

/* The entry's wanted monitor against the connection's: close on a change. */
static const char *reconcile(int i)
{
	struct monitor *m = &mons[i];
	const struct config_db *db = i < M.cfg.ndbs ? &M.cfg.dbs[i] : NULL;
	const char *want = db ? config_monitor_conninfo(&M.cfg, db) : NULL;

	if (m->state == MON_OFF || m->state == MON_RESOLVING)
		return want;
	if (want && strcmp(want, m->conninfo) == 0 && strcmp(db->name, m->db) == 0)
		return want;
	log_error(LOG_INFO, 0,
	          "database \"%s\": monitor_conninfo %s: closing the monitor connection", m->db,
	          want ? "changed" : "removed");
	close_conn(m);
	set_state(i, MON_OFF);
	atomic_store(&M.shm.targets[i].probe_now, 1);
	return want;
}

static void tick_one(int i, uint64_t now)
{
	struct monitor *m = &mons[i];
	const char *want;

	if (m->state == MON_RESOLVING)
		step_resolve(i);
	want = reconcile(i);
	if (m->state == MON_OFF && want) {
		strlcpy_s(m->conninfo, want, sizeof(m->conninfo));
		strlcpy_s(m->db, M.cfg.dbs[i].name, sizeof(m->db));
		m->backoff_ms = BACKOFF_MIN_MS;
		m->was_up = m->lost = m->warned = false;
		begin(i);
	}
	switch (m->state) {
	case MON_OFF:
	case MON_RESOLVING: break;
	case MON_BACKOFF:
		if (now >= m->retry_at)
			begin(i);
		break;
	case MON_CONNECTING: step_connect(i); break;
	case MON_LISTEN:
	case MON_QUERY:
		if (now - m->since > (uint64_t)(M.cfg.server_connect_timeout * 1e6))
			lose(i, "the monitor did not answer within server_connect_timeout");
		else
			consume(i);
		break;
	case MON_UP:
		if (now >= m->next_query)
			send_query(i, MON_QUERY, PRIMARY_QUERY);
		else
			consume(i);
		break;
	default: log_error(LOG_CRIT, 0, "monitor: bad state %d", (int)m->state); abort();
	}
}

void master_monitor_tick(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < CFG_MAX_DBS; i++)
		tick_one(i, now);
}

/* The monitor socket of database entry I is readable (epoll). */
void master_monitor_on_event(int i)
{
	if (i >= 0 && i < CFG_MAX_DBS && mons[i].conn && mons[i].state >= MON_LISTEN)
		consume(i);
}

bool master_monitor_active(int i)
{
	return i >= 0 && i < CFG_MAX_DBS && mons[i].state >= MON_LISTEN;
}

/* In a new worker: drop the inherited monitor sockets without a word to the
 * monitor (PQfinish would end the master's session). */
void master_monitor_close_all_in_child(void)
{
	for (int i = 0; i < CFG_MAX_DBS; i++)
		if (mons[i].conn && PQsocket(mons[i].conn) >= 0)
			close(PQsocket(mons[i].conn));
}
