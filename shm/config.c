/*
 * config.c — loads and validates the libconfig file into struct config.
 * Runs in the master (at start and on every reload) and in the unit tests;
 * workers only ever read the snapshot the master publishes.
 *
 * Invariants: config_load() either fills *out with a complete, validated
 * configuration or leaves it untouched and explains why in err as
 * "FILE:LINE: message". Every scalar is described once, in a table
 * {name, type, offset, size, min, max}, for the global settings and for the
 * keys of a database or user group alike, so adding a setting is one line.
 * Setting names and defaults follow PgBouncer.
 */
#include "config.h"
#include "common.h"
#include "hba.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A database entry without "host" (or with host = "") connects through the
 * unix socket in this directory. PgBouncer falls back to its own
 * unix_socket_dir instead; we use the Debian/Ubuntu PostgreSQL socket
 * directory, which is where a packaged local server listens.
 */
#define CFG_DEFAULT_SERVER_SOCKET_DIR "/var/run/postgresql"
#define CFG_DEFAULT_SERVER_PORT       5432
#define CFG_MAX_POOL_SIZE             10000
#define CFG_MAX_SECONDS               1e9 /* ~31 years; keeps seconds * 1e6 well inside uint64 */

enum opt_type { OPT_INT, OPT_TIME, OPT_BOOL, OPT_STR, OPT_MODE, OPT_ENUM };

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;  /* offset of the field in its struct */
	size_t size; /* sizeof the field: bounds OPT_STR */
	double min, max;
	const char *const *names; /* OPT_ENUM: the accepted words, NULL-terminated */
};

/* One line per initialiser; clang-format would split each over four. */
/* clang-format off */
#define FIELD(st, f) .off = offsetof(struct st, f), .size = sizeof(((struct st *)0)->f)
#define O_INT(st, f, lo, hi) {.name = #f, .type = OPT_INT, FIELD(st, f), .min = lo, .max = hi}
#define O_TIME(st, f) {.name = #f, .type = OPT_TIME, FIELD(st, f), .max = CFG_MAX_SECONDS}
#define O_BOOL(st, f) {.name = #f, .type = OPT_BOOL, FIELD(st, f), .max = 1}
#define O_STR(st, f)  {.name = #f, .type = OPT_STR, FIELD(st, f)}
#define O_MODE(st, f) {.name = #f, .type = OPT_MODE, FIELD(st, f)}
#define O_ENUM(st, f, words) {.name = #f, .type = OPT_ENUM, FIELD(st, f), .names = words}
/* clang-format on */

const char *const config_auth_type_names[] = {"trust",         "any",  "plain", "md5",
                                              "scram-sha-256", "cert", "hba",   NULL};
const char *const config_target_attrs_names[] = {
    "any", "read-write", "primary", "read-only", "standby", "prefer-standby", NULL};
const char *const config_tls_mode_names[] = {"disable",   "allow",       "prefer", "require",
                                             "verify-ca", "verify-full", NULL};

static const struct opt global_opts[] = {
    O_STR(config, listen_addr),
    O_INT(config, listen_port, 1, 65535),
    O_STR(config, unix_socket_dir),
    O_INT(config, listen_backlog, 1, 65535),
    O_INT(config, workers, 0, CFG_MAX_WORKERS),
    O_INT(config, max_workers, 0, CFG_MAX_WORKERS),
    O_MODE(config, pool_mode),
    O_INT(config, max_client_conn, 1, 1000000),
    O_INT(config, default_pool_size, 0, CFG_MAX_POOL_SIZE),
    O_INT(config, min_pool_size, 0, CFG_MAX_POOL_SIZE),
    O_INT(config, reserve_pool_size, 0, CFG_MAX_POOL_SIZE),
    O_TIME(config, reserve_pool_timeout),
    O_INT(config, max_db_connections, 0, INT_MAX),
    O_INT(config, max_user_connections, 0, INT_MAX),
    O_INT(config, max_pools, 1, 65536),
    O_INT(config, max_prepared_statements, 0, 10000),
    O_STR(config, server_reset_query),
    O_BOOL(config, server_reset_query_always),
    O_STR(config, server_check_query),
    O_TIME(config, server_check_delay),
    O_TIME(config, server_idle_timeout),
    O_TIME(config, server_lifetime),
    O_TIME(config, server_connect_timeout),
    O_TIME(config, server_login_retry),
    O_TIME(config, query_timeout),
    O_TIME(config, query_wait_timeout),
    O_TIME(config, client_idle_timeout),
    O_TIME(config, client_login_timeout),
    O_TIME(config, idle_transaction_timeout),
    O_STR(config, logfile),
    O_STR(config, pidfile),
    O_BOOL(config, log_connections),
    O_BOOL(config, log_disconnections),
    O_BOOL(config, log_pooler_errors),
    O_INT(config, verbose, 0, 2),
    O_INT(config, pkt_buf, 1024, 1048576),
    O_BOOL(config, tcp_keepalive),
    O_BOOL(config, so_reuseport),
    O_INT(config, max_packet_size, 1024, INT_MAX),
    O_STR(config, admin_db),
    O_INT(config, stats_period, 1, 86400),
    O_BOOL(config, log_stats),
    O_STR(config, metrics_listen),
    O_ENUM(config, auth_type, config_auth_type_names),
    O_STR(config, auth_file),
    O_STR(config, auth_hba_file),
    O_STR(config, auth_user),
    O_STR(config, auth_query),
    O_STR(config, auth_dbname),
    O_STR(config, admin_users),
    O_STR(config, stats_users),
    O_ENUM(config, client_tls_sslmode, config_tls_mode_names),
    O_STR(config, client_tls_key_file),
    O_STR(config, client_tls_cert_file),
    O_STR(config, client_tls_ca_file),
    O_STR(config, client_tls_protocols),
    O_STR(config, client_tls_ciphers),
    O_STR(config, client_tls13_ciphers),
    O_ENUM(config, server_tls_sslmode, config_tls_mode_names),
    O_STR(config, server_tls_key_file),
    O_STR(config, server_tls_cert_file),
    O_STR(config, server_tls_ca_file),
    O_STR(config, server_tls_protocols),
    O_STR(config, server_tls_ciphers),
    O_TIME(config, dns_max_ttl),
    O_TIME(config, dns_nxdomain_ttl),
    O_TIME(config, server_check_period),
    O_STR(config, monitor_conninfo),
    O_TIME(config, shutdown_wait_timeout),
    O_BOOL(config, syslog),
    O_STR(config, syslog_ident),
    O_STR(config, syslog_facility),
    O_STR(config, user),
};

/* The order matters only for conninfo: see conninfo_map. */
static const struct opt db_opts[] = {
    O_STR(config_db, name),
    O_STR(config_db, host),
    O_INT(config_db, port, 1, 65535),
    O_STR(config_db, dbname),
    O_STR(config_db, user),
    O_STR(config_db, password),
    O_INT(config_db, pool_size, 0, CFG_MAX_POOL_SIZE),
    O_INT(config_db, min_pool_size, 0, CFG_MAX_POOL_SIZE),
    O_INT(config_db, reserve_pool_size, 0, CFG_MAX_POOL_SIZE),
    O_MODE(config_db, pool_mode),
    O_INT(config_db, max_db_connections, 0, INT_MAX),
    O_STR(config_db, connect_query),
    O_STR(config_db, application_name),
    O_ENUM(config_db, target_session_attrs, config_target_attrs_names),
    O_STR(config_db, auth_user),
    O_STR(config_db, auth_dbname),
    O_STR(config_db, monitor_conninfo),
};
_Static_assert(ARRAY_LEN(db_opts) <= 32, "db keys are tracked in a 32-bit mask");

static const struct opt user_opts[] = {
    O_STR(config_user, name),
    O_MODE(config_user, pool_mode),
    O_INT(config_user, max_user_connections, 0, INT_MAX),
};

/* conninfo keywords we honour; each names a db_opts entry of the same name. */
static const char *const conninfo_keys[] = {
    "host", "port", "dbname", "user", "password", "application_name", "target_session_attrs",
};

static const char *const pool_mode_names[] = {"session", "transaction", "statement"};

/* workers = 0 (or absent): one per online CPU, within 1..CFG_MAX_WORKERS. */
static int auto_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > CFG_MAX_WORKERS ? CFG_MAX_WORKERS : (int)n;
}

struct loader {
	const char *file; /* the top-level file, for messages without a setting */
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int fail(struct loader *ld, const config_setting_t *s,
                                                      const char *fmt, ...)
{
	const char *file = ld->file;
	size_t n = 0;
	va_list ap;
	int r;

	if (!ld->err || !ld->errlen)
		return -1;
	if (s && config_setting_source_file(s))
		file = config_setting_source_file(s);
	if (s && config_setting_source_line(s))
		r = snprintf(ld->err, ld->errlen, "%s:%u: ", file, config_setting_source_line(s));
	else if (file)
		r = snprintf(ld->err, ld->errlen, "%s: ", file);
	else /* config_set: the value came from the admin console, not a file */
		r = 0;
	if (r > 0)
		n = (size_t)r < ld->errlen ? (size_t)r : ld->errlen - 1;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

static const struct opt *find_opt(const struct opt *opts, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

static int set_int(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	long long v;

	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return fail(ld, s, "\"%s\" must be an integer", o->name);
	v = config_setting_get_int64(s);
	if (v < (long long)o->min || v > (long long)o->max)
		return fail(ld, s, "\"%s\" must be between %lld and %lld", o->name,
		            (long long)o->min, (long long)o->max);
	*(int *)((char *)base + o->off) = (int)v;
	return 0;
}

static int set_time(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	double v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: v = (double)config_setting_get_int64(s); break;
	case CONFIG_TYPE_FLOAT: v = config_setting_get_float(s); break;
	default: return fail(ld, s, "\"%s\" must be a number of seconds", o->name);
	}
	if (!(v >= o->min && v <= o->max)) /* also rejects NaN */
		return fail(ld, s, "\"%s\" must be between %g and %g seconds", o->name, o->min,
		            o->max);
	*(double *)((char *)base + o->off) = v;
	return 0;
}

static int set_bool(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	long long v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_BOOL: v = config_setting_get_bool(s); break;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: v = config_setting_get_int64(s); break;
	default: v = -1; break;
	}
	if (v != 0 && v != 1)
		return fail(ld, s, "\"%s\" must be a boolean (true, false, 1 or 0)", o->name);
	*(bool *)((char *)base + o->off) = v == 1;
	return 0;
}

static int copy_str(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s,
                    const char *v)
{
	if (strlen(v) >= o->size)
		return fail(ld, s, "\"%s\" is too long (max %zu bytes)", o->name, o->size - 1);
	memcpy((char *)base + o->off, v, strlen(v) + 1);
	return 0;
}

static int set_str(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "\"%s\" must be a string", o->name);
	return copy_str(ld, o, base, s, config_setting_get_string(s));
}

static int set_mode(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "\"%s\" must be a string", o->name);
	v = config_setting_get_string(s);
	for (size_t i = 0; i < ARRAY_LEN(pool_mode_names); i++) {
		if (strcmp(v, pool_mode_names[i]) == 0) {
			*(int *)((char *)base + o->off) = (int)i;
			return 0;
		}
	}
	return fail(ld, s, "unknown %s \"%s\" (session, transaction or statement)", o->name, v);
}

static int set_enum(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	const char *v;
	char words[256] = "";

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "\"%s\" must be a string", o->name);
	v = config_setting_get_string(s);
	for (int i = 0; o->names[i]; i++) {
		if (strcmp(v, o->names[i]) == 0) {
			*(int *)((char *)base + o->off) = i;
			return 0;
		}
		snprintf(words + strlen(words), sizeof(words) - strlen(words), "%s%s",
		         i ? ", " : "", o->names[i]);
	}
	return fail(ld, s, "unknown %s \"%s\" (%s)", o->name, v, words);
}

static int set_opt(struct loader *ld, const struct opt *o, void *base, const config_setting_t *s)
{
	switch (o->type) {
	case OPT_INT: return set_int(ld, o, base, s);
	case OPT_TIME: return set_time(ld, o, base, s);
	case OPT_BOOL: return set_bool(ld, o, base, s);
	case OPT_STR: return set_str(ld, o, base, s);
	case OPT_MODE: return set_mode(ld, o, base, s);
	case OPT_ENUM: return set_enum(ld, o, base, s);
	default: abort();
	}
}

/* The conninfo key K of setting S, after checking it is one we honour and not
 * also given as its own setting (bit i of explicit = db_opts[i] was set). */
static const struct opt *conninfo_opt(struct loader *ld, const config_setting_t *s, const char *k,
                                      uint32_t explicit)
{
	const struct opt *o = NULL;

	for (size_t i = 0; i < ARRAY_LEN(conninfo_keys); i++)
		if (strcmp(k, conninfo_keys[i]) == 0)
			o = find_opt(db_opts, ARRAY_LEN(db_opts), k);
	if (!o) {
		fail(ld, s, "conninfo key \"%s\" is not supported", k);
		return NULL;
	}
	if (explicit & (1u << (o - db_opts))) {
		fail(ld, s, "\"%s\" is given both in conninfo and as a setting", k);
		return NULL;
	}
	return o;
}

static int set_conninfo_val(struct loader *ld, const struct opt *o, struct config_db *db,
                            const config_setting_t *s, const char *v)
{
	char *end;
	long port;

	if (o->type == OPT_STR)
		return copy_str(ld, o, db, s, v);
	if (o->type == OPT_ENUM) {
		for (int i = 0; o->names[i]; i++)
			if (strcmp(v, o->names[i]) == 0) {
				*(int *)((char *)db + o->off) = i;
				return 0;
			}
		return fail(ld, s, "unknown conninfo %s \"%s\"", o->name, v);
	}
	errno = 0;
	port = strtol(v, &end, 10);
	if (errno || end == v || *end || port < 1 || port > 65535)
		return fail(ld, s, "conninfo port \"%s\" is not between 1 and 65535", v);
	db->port = (int)port;
	return 0;
}

/* PQconninfoParse, or NULL after failing with "invalid NAME: why". */
static PQconninfoOption *parse_conninfo(struct loader *ld, const config_setting_t *s,
                                        const char *name, const char *text)
{
	char *msg = NULL;
	PQconninfoOption *opts = PQconninfoParse(text, &msg);

	if (!opts) {
		if (msg)
			msg[strcspn(msg, "\n")] = '\0';
		fail(ld, s, "invalid %s: %s", name, msg ? msg : "out of memory");
		PQfreemem(msg);
	}
	return opts;
}

static int apply_conninfo(struct loader *ld, struct config_db *db, const config_setting_t *s,
                          uint32_t explicit)
{
	PQconninfoOption *opts;
	int rc = 0;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "\"conninfo\" must be a string");
	opts = parse_conninfo(ld, s, "conninfo", config_setting_get_string(s));
	if (!opts)
		return -1;
	for (PQconninfoOption *c = opts; c->keyword && rc == 0; c++) {
		const struct opt *o;

		if (!c->val)
			continue;
		o = conninfo_opt(ld, s, c->keyword, explicit);
		rc = o ? set_conninfo_val(ld, o, db, s, c->val) : -1;
	}
	PQconninfoFree(opts);
	return rc;
}

static bool is_address(const char *h, size_t n)
{
	char buf[64];
	unsigned char bin[16];

	if (n >= sizeof(buf))
		return false;
	snprintf(buf, sizeof(buf), "%.*s", (int)n, h);
	return buf[0] == '/' || inet_pton(AF_INET, buf, bin) == 1 ||
	       inet_pton(AF_INET6, buf, bin) == 1;
}

/* A monitor conninfo must parse; libpq would resolve a host name inside the
 * master's loop, so the master resolves one itself (master/monitor.c), and a
 * list of monitor hosts must be given as addresses. */
static int check_monitor_conninfo(struct loader *ld, const config_setting_t *s,
                                  const char *conninfo)
{
	PQconninfoOption *opts;
	const char *host = NULL, *hostaddr = NULL;
	int rc = 0;

	if (!conninfo[0])
		return 0;
	opts = parse_conninfo(ld, s, "monitor_conninfo", conninfo);
	if (!opts)
		return -1;
	for (PQconninfoOption *c = opts; c->keyword; c++) {
		if (c->val && strcmp(c->keyword, "host") == 0)
			host = c->val;
		if (c->val && c->val[0] && strcmp(c->keyword, "hostaddr") == 0)
			hostaddr = c->val;
	}
	for (const char *h = host; h && strchr(host, ',') && !hostaddr && *h && rc == 0;) {
		size_t n = strcspn(h, ",");
		if (!is_address(h, n))
			rc = fail(ld, s,
			          "monitor_conninfo: several monitor hosts must be addresses (or "
			          "use hostaddr)");
		h += n + (h[n] == ',');
	}
	PQconninfoFree(opts);
	return rc;
}

/* An entry's own monitor_conninfo: the monitor picks one of several hosts,
 * the primary. */
static int check_db_monitor(struct loader *ld, const struct config_db *db,
                            const config_setting_t *g)
{
	const config_setting_t *s = config_setting_get_member(g, "monitor_conninfo");
	int tsa = db->target_session_attrs;

	if (!db->monitor_conninfo[0])
		return 0;
	if (!strchr(db->host, ','))
		return fail(
		    ld, s,
		    "monitor_conninfo needs a host list (host = \"a,b\"): the monitor picks one of "
		    "them");
	if (tsa != TSA_ANY && tsa != TSA_READ_WRITE && tsa != TSA_PRIMARY)
		return fail(
		    ld, s,
		    "monitor_conninfo follows the primary: target_session_attrs must be any, "
		    "read-write or primary");
	return check_monitor_conninfo(ld, s, db->monitor_conninfo);
}

static void db_defaults(struct config_db *db)
{
	memset(db, 0, sizeof(*db));
	db->port = CFG_DEFAULT_SERVER_PORT;
	db->pool_size = -1;
	db->min_pool_size = -1;
	db->reserve_pool_size = -1;
	db->pool_mode = POOL_INHERIT;
	db->max_db_connections = -1;
}

/* Fill *db from group G: explicit keys first, then conninfo, so that the
 * conflict check does not depend on the order of the keys in the file. */
static int load_db_keys(struct loader *ld, struct config_db *db, const config_setting_t *g)
{
	const config_setting_t *conninfo = NULL;
	uint32_t explicit = 0;

	db_defaults(db);
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct opt *o = find_opt(db_opts, ARRAY_LEN(db_opts), name);

		if (strcmp(name, "conninfo") == 0) {
			conninfo = s;
			continue;
		}
		if (!o)
			return fail(ld, s, "unknown database setting \"%s\"", name);
		if (set_opt(ld, o, db, s) < 0)
			return -1;
		explicit |= 1u << (o - db_opts);
	}
	if (conninfo && apply_conninfo(ld, db, conninfo, explicit) < 0)
		return -1;
	if (!db->host[0])
		strlcpy_s(db->host, CFG_DEFAULT_SERVER_SOCKET_DIR, sizeof(db->host));
	return 0;
}

/* The line to blame for a duplicate name: the "name" key, else the group. */
static const config_setting_t *name_setting(const config_setting_t *g)
{
	const config_setting_t *s = config_setting_get_member(g, "name");
	return s ? s : g;
}

static int check_entry(struct loader *ld, const config_setting_t *g, const char *what, int n,
                       int max)
{
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return fail(ld, g, "each %s entry must be a group: { name = \"...\"; ... }", what);
	if (n >= max)
		return fail(ld, g, "too many %s entries (max %d)", what, max);
	return 0;
}

static int check_list(struct loader *ld, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return fail(ld, s, "\"%s\" must be a list of groups: ( { ... }, { ... } )",
		            config_setting_name(s));
	return 0;
}

static int load_dbs(struct loader *ld, struct config *cfg, const config_setting_t *list)
{
	if (check_list(ld, list) < 0)
		return -1;
	cfg->ndbs = 0;
	for (int i = 0; i < config_setting_length(list); i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct config_db *db = &cfg->dbs[cfg->ndbs];

		if (check_entry(ld, g, "database", cfg->ndbs, CFG_MAX_DBS) < 0)
			return -1;
		if (load_db_keys(ld, db, g) < 0 || check_db_monitor(ld, db, g) < 0)
			return -1;
		if (!db->name[0])
			return fail(ld, g, "database entry without \"name\"");
		for (int j = 0; j < cfg->ndbs; j++)
			if (strcmp(cfg->dbs[j].name, db->name) == 0)
				return fail(ld, name_setting(g), "duplicate database \"%s\"",
				            db->name);
		cfg->ndbs++;
	}
	return 0;
}

static int load_user_keys(struct loader *ld, struct config_user *u, const config_setting_t *g)
{
	memset(u, 0, sizeof(*u));
	u->pool_mode = POOL_INHERIT;
	u->max_user_connections = -1;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct opt *o = find_opt(user_opts, ARRAY_LEN(user_opts), name);

		if (!o)
			return fail(ld, s, "unknown user setting \"%s\"", name);
		if (set_opt(ld, o, u, s) < 0)
			return -1;
	}
	return 0;
}

static int load_users(struct loader *ld, struct config *cfg, const config_setting_t *list)
{
	if (check_list(ld, list) < 0)
		return -1;
	cfg->nusers = 0;
	for (int i = 0; i < config_setting_length(list); i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct config_user *u = &cfg->users[cfg->nusers];

		if (check_entry(ld, g, "user", cfg->nusers, CFG_MAX_USERS) < 0)
			return -1;
		if (load_user_keys(ld, u, g) < 0)
			return -1;
		if (!u->name[0])
			return fail(ld, g, "user entry without \"name\"");
		for (int j = 0; j < cfg->nusers; j++)
			if (strcmp(cfg->users[j].name, u->name) == 0)
				return fail(ld, name_setting(g), "duplicate user \"%s\"", u->name);
		cfg->nusers++;
	}
	return 0;
}

static int load_root(struct loader *ld, struct config *cfg, const config_setting_t *root)
{
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct opt *o = find_opt(global_opts, ARRAY_LEN(global_opts), name);
		int rc;

		if (strcmp(name, "databases") == 0)
			rc = load_dbs(ld, cfg, s);
		else if (strcmp(name, "users") == 0)
			rc = load_users(ld, cfg, s);
		else if (o)
			rc = set_opt(ld, o, cfg, s);
		else
			rc = fail(ld, s, "unknown setting \"%s\"", name);
		if (rc < 0)
			return -1;
	}
	if (cfg->workers == 0)
		cfg->workers = auto_workers();
	if (cfg->max_workers < cfg->workers) /* it is a floor for the room, never a cut */
		cfg->max_workers = cfg->workers;
	return check_monitor_conninfo(ld, config_setting_get_member(root, "monitor_conninfo"),
	                              cfg->monitor_conninfo);
}

static int check_readable(struct loader *ld)
{
	FILE *f = fopen(ld->file, "r");
	struct stat st;
	int e = 0;

	if (!f)
		e = errno;
	else if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode))
		e = EISDIR; /* fopen(3) opens a directory; reading it fails later */
	if (f)
		fclose(f);
	if (e)
		return fail(ld, NULL, "cannot open: %s", strerror(e));
	return 0;
}

/* libconfig's own syntax errors, located in the file (maybe an @include) it
 * names. @include paths are libconfig's: relative ones resolve against the
 * current directory (libconfig 1.5's include_dir would also be prefixed to
 * absolute ones, so it is left unset). */
static int parse_file(struct loader *ld, config_t *lc)
{
	const char *file;

	if (config_read_file(lc, ld->file))
		return 0;
	if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
		return fail(ld, NULL, "cannot read: %s", strerror(errno ? errno : EIO));
	file = config_error_file(lc) ? config_error_file(lc) : ld->file;
	if (ld->err && ld->errlen)
		snprintf(ld->err, ld->errlen, "%s:%d: %s", file, config_error_line(lc),
		         config_error_text(lc));
	return -1;
}

/* Remember an absolute path so that a reload after chdir("/") still finds
 * the file; fall back to the name as given. */
static int set_path(struct loader *ld, struct config *cfg)
{
	char *abs = realpath(ld->file, NULL);
	const char *p = abs ? abs : ld->file;
	int rc = 0;

	if (strlen(p) >= sizeof(cfg->path))
		rc = fail(ld, NULL, "path is too long (max %zu bytes)", sizeof(cfg->path) - 1);
	else
		strlcpy_s(cfg->path, p, sizeof(cfg->path));
	free(abs);
	return rc;
}

/* The setting to blame for a message; none when the value did not come
 * from a file (config_set). */
static const config_setting_t *member(const config_setting_t *root, const char *name)
{
	return root ? config_setting_get_member(root, name) : NULL;
}

/* auth_type hba: the file must parse now, so that a bad one is refused
 * (with its own FILE:LINE) and the running configuration kept; its text
 * goes into the snapshot for the workers. */
static int check_hba(struct loader *ld, struct config *cfg, const config_setting_t *root)
{
	const config_setting_t *at = member(root, "auth_type");
	const config_setting_t *file = member(root, "auth_hba_file");
	size_t len = 0;
	char *text;
	struct hba h;
	int rc = 0;

	if (!cfg->auth_hba_file[0])
		return fail(ld, at, "auth_type \"hba\" needs auth_hba_file");
	text = read_text_file(cfg->auth_hba_file, &len);
	if (!text)
		return fail(ld, file, "cannot read auth_hba_file \"%s\": %s", cfg->auth_hba_file,
		            strerror(errno));
	if (len >= sizeof(cfg->auth_hba_text))
		rc = fail(ld, file, "auth_hba_file \"%s\" is too large (max %zu bytes)",
		          cfg->auth_hba_file, sizeof(cfg->auth_hba_text) - 1);
	else if (hba_parse(text, len, cfg->auth_hba_file, &h, ld->err, ld->errlen) < 0)
		rc = -1;
	else
		memcpy(cfg->auth_hba_text, text, len + 1);
	if (rc == 0)
		hba_free(&h);
	free(text);
	return rc;
}

/* auth_dbname (global or per database) names a database entry. */
static int check_auth_dbname(struct loader *ld, const struct config *cfg,
                             const config_setting_t *root)
{
	const config_setting_t *dbs = member(root, "databases");

	if (cfg->auth_dbname[0] && !config_find_db(cfg, cfg->auth_dbname))
		return fail(ld, member(root, "auth_dbname"),
		            "auth_dbname \"%s\" is not a database entry", cfg->auth_dbname);
	for (int i = 0; i < cfg->ndbs; i++)
		if (cfg->dbs[i].auth_dbname[0] && !config_find_db(cfg, cfg->dbs[i].auth_dbname))
			return fail(ld, dbs ? config_setting_get_elem(dbs, (unsigned)i) : NULL,
			            "auth_dbname \"%s\" is not a database entry",
			            cfg->dbs[i].auth_dbname);
	return 0;
}

/* metrics_listen: "" (off), or "host:port" as config_split_hostport takes it. */
static int check_metrics_listen(struct loader *ld, const struct config *cfg,
                                const config_setting_t *root)
{
	char host[CFG_HOST_LEN];
	int port;

	if (cfg->metrics_listen[0] &&
	    config_split_hostport(cfg->metrics_listen, host, sizeof(host), &port) != 0)
		return fail(ld, member(root, "metrics_listen"),
		            "\"metrics_listen\" must be \"host:port\", \"*:port\" or \"[v6 "
		            "address]:port\"");
	return 0;
}

/* Settings that only make sense together (blamed on the first one's line). */
static int check_auth_tls(struct loader *ld, struct config *cfg, const config_setting_t *root)
{
	const config_setting_t *at = member(root, "auth_type");
	const config_setting_t *ct = member(root, "client_tls_sslmode");
	int a = cfg->auth_type;

	if (a == AUTH_HBA && check_hba(ld, cfg, root) < 0)
		return -1;
	if (check_auth_dbname(ld, cfg, root) < 0)
		return -1;
	if ((a == AUTH_PLAIN || a == AUTH_MD5 || a == AUTH_SCRAM) && !cfg->auth_file[0])
		return fail(ld, at, "auth_type \"%s\" needs auth_file", config_auth_type_names[a]);
	if (a == AUTH_CERT && cfg->client_tls_sslmode < TLS_VERIFY_CA)
		return fail(ld, at,
		            "auth_type \"cert\" needs client_tls_sslmode verify-ca or verify-full");
	if (cfg->client_tls_sslmode != TLS_DISABLE &&
	    (!cfg->client_tls_key_file[0] || !cfg->client_tls_cert_file[0]))
		return fail(
		    ld, ct,
		    "client_tls_sslmode needs client_tls_key_file and client_tls_cert_file");
	if (cfg->client_tls_sslmode >= TLS_VERIFY_CA && !cfg->client_tls_ca_file[0])
		return fail(ld, ct, "client_tls_sslmode \"%s\" needs client_tls_ca_file",
		            config_tls_mode_names[cfg->client_tls_sslmode]);
	if (cfg->server_tls_sslmode >= TLS_VERIFY_CA && !cfg->server_tls_ca_file[0])
		return fail(ld, member(root, "server_tls_sslmode"),
		            "server_tls_sslmode \"%s\" needs server_tls_ca_file",
		            config_tls_mode_names[cfg->server_tls_sslmode]);
	return 0;
}

int config_load(const char *file, struct config *out, char *err, size_t errlen)
{
	struct loader ld = {file, err, errlen};
	struct config *cfg;
	config_t lc;
	int rc = -1;

	if (err && errlen)
		err[0] = '\0';
	if (check_readable(&ld) < 0)
		return -1;
	/* Build in a scratch copy: a failed reload must leave *out as it was. */
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return fail(&ld, NULL, "out of memory");
	config_defaults(cfg);
	config_init(&lc);
	if (set_path(&ld, cfg) == 0 && parse_file(&ld, &lc) == 0 &&
	    load_root(&ld, cfg, config_root_setting(&lc)) == 0 &&
	    check_auth_tls(&ld, cfg, config_root_setting(&lc)) == 0 &&
	    check_metrics_listen(&ld, cfg, config_root_setting(&lc)) == 0) {
		memcpy(out, cfg, sizeof(*cfg));
		rc = 0;
	}
	config_destroy(&lc);
	free(cfg);
	return rc;
}

/* Timeouts and server-side queries, in seconds, as PgBouncer ships them. */
static void defaults_server(struct config *c)
{
	strlcpy_s(c->server_reset_query, "DISCARD ALL", sizeof(c->server_reset_query));
	c->server_reset_query_always = false;
	strlcpy_s(c->server_check_query, "select 1", sizeof(c->server_check_query));
	c->server_check_delay = 30;
	c->server_idle_timeout = 600;
	c->server_lifetime = 3600;
	c->server_connect_timeout = 15;
	c->server_login_retry = 15;
	c->dns_max_ttl = 60;
	c->dns_nxdomain_ttl = 15;
	c->server_check_period = 10;
	c->shutdown_wait_timeout = 60;
	strlcpy_s(c->syslog_ident, "pgshoal", sizeof(c->syslog_ident));
	strlcpy_s(c->syslog_facility, "daemon", sizeof(c->syslog_facility));
	c->query_timeout = 0;
	c->query_wait_timeout = 120;
	c->client_idle_timeout = 0;
	c->client_login_timeout = 60;
	c->idle_transaction_timeout = 0;
	c->reserve_pool_timeout = 5;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	strlcpy_s(c->listen_addr, "127.0.0.1", sizeof(c->listen_addr));
	c->listen_port = 6432;
	strlcpy_s(c->unix_socket_dir, "/tmp", sizeof(c->unix_socket_dir));
	c->listen_backlog = 128;
	c->workers = auto_workers();
	c->max_workers = c->workers;
	c->pool_mode = POOL_SESSION;
	c->max_client_conn = 100;
	c->default_pool_size = 20;
	c->min_pool_size = 0;
	c->reserve_pool_size = 0;
	c->max_db_connections = 0;
	c->max_user_connections = 0;
	c->max_pools = 64;
	c->max_prepared_statements = 200;
	defaults_server(c);
	c->log_connections = true;
	c->log_disconnections = true;
	c->log_pooler_errors = true;
	c->verbose = 0;
	c->pkt_buf = 8192;
	c->tcp_keepalive = true;
	c->so_reuseport = true;
	c->max_packet_size = INT_MAX;
	strlcpy_s(c->admin_db, "pgshoal", sizeof(c->admin_db));
	c->stats_period = 60;
	c->log_stats = true;
	c->auth_type = AUTH_TRUST;
	/* PgBouncer >= 1.24.1's: an expired or NOLOGIN role has no password */
	strlcpy_s(c->auth_query,
	          "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END "
	          "FROM pg_authid WHERE rolname=$1 AND rolcanlogin",
	          sizeof(c->auth_query));
	c->client_tls_sslmode = TLS_DISABLE;
	c->server_tls_sslmode = TLS_DISABLE;
	strlcpy_s(c->client_tls_protocols, "secure", sizeof(c->client_tls_protocols));
	strlcpy_s(c->client_tls_ciphers, "default", sizeof(c->client_tls_ciphers));
	strlcpy_s(c->server_tls_protocols, "secure", sizeof(c->server_tls_protocols));
	strlcpy_s(c->server_tls_ciphers, "default", sizeof(c->server_tls_ciphers));
}

const struct config_db *config_find_db(const struct config *cfg, const char *name)
{
	const struct config_db *fallback = NULL;

	for (int i = 0; i < cfg->ndbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
		if (strcmp(cfg->dbs[i].name, "*") == 0)
			fallback = &cfg->dbs[i];
	}
	return fallback;
}

const struct config_user *config_find_user(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->nusers; i++)
		if (strcmp(cfg->users[i].name, name) == 0)
			return &cfg->users[i];
	return NULL;
}

/* PgBouncer's precedence: the user's pool_mode, then the database's, then
 * the global one. */
int config_pool_mode(const struct config *cfg, const struct config_db *db, const char *user)
{
	const struct config_user *u = user ? config_find_user(cfg, user) : NULL;

	if (u && u->pool_mode != POOL_INHERIT)
		return u->pool_mode;
	if (db && db->pool_mode != POOL_INHERIT)
		return db->pool_mode;
	return cfg->pool_mode;
}

int config_pool_size(const struct config *cfg, const struct config_db *db)
{
	return db && db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size;
}

int config_reserve_size(const struct config *cfg, const struct config_db *db)
{
	return db && db->reserve_pool_size >= 0 ? db->reserve_pool_size : cfg->reserve_pool_size;
}

int config_min_pool_size(const struct config *cfg, const struct config_db *db)
{
	return db && db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size;
}

int config_max_db_connections(const struct config *cfg, const struct config_db *db)
{
	return db && db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections;
}

const char *config_monitor_conninfo(const struct config *cfg, const struct config_db *db)
{
	int tsa = db->target_session_attrs;

	if (db->monitor_conninfo[0])
		return db->monitor_conninfo;
	if (cfg->monitor_conninfo[0] && strchr(db->host, ',') &&
	    (tsa == TSA_ANY || tsa == TSA_READ_WRITE || tsa == TSA_PRIMARY))
		return cfg->monitor_conninfo;
	return NULL;
}

int config_max_user_connections(const struct config *cfg, const char *user)
{
	const struct config_user *u = user ? config_find_user(cfg, user) : NULL;

	return u && u->max_user_connections >= 0 ? u->max_user_connections
	                                         : cfg->max_user_connections;
}

const char *config_pool_mode_name(int mode)
{
	if (mode == POOL_INHERIT)
		return "inherit";
	if (mode >= 0 && (size_t)mode < ARRAY_LEN(pool_mode_names))
		return pool_mode_names[mode];
	return "unknown";
}

static void format_opt(const struct opt *o, const void *base, char *out, size_t len)
{
	const char *p = (const char *)base + o->off;

	switch (o->type) {
	case OPT_INT: snprintf(out, len, "%d", *(const int *)p); break;
	case OPT_TIME: snprintf(out, len, "%g", *(const double *)p); break;
	case OPT_BOOL: snprintf(out, len, "%d", *(const bool *)p ? 1 : 0); break;
	case OPT_STR: snprintf(out, len, "%s", p); break;
	case OPT_MODE: snprintf(out, len, "%s", config_pool_mode_name(*(const int *)p)); break;
	case OPT_ENUM: {
		int v = *(const int *)p, n = 0;
		while (o->names[n])
			n++;
		snprintf(out, len, "%s", v >= 0 && v < n ? o->names[v] : "?");
		break;
	}
	default: abort();
	}
}

bool config_describe(const struct config *cfg, int i, const char **name, char *value, size_t vlen,
                     char *defval, size_t dlen)
{
	static struct config defaults;
	static bool have_defaults;

	if (i < 0 || (size_t)i >= ARRAY_LEN(global_opts))
		return false;
	if (!have_defaults) {
		config_defaults(&defaults);
		have_defaults = true;
	}
	*name = global_opts[i].name;
	format_opt(&global_opts[i], cfg, value, vlen);
	format_opt(&global_opts[i], &defaults, defval, dlen);
	return true;
}

/* ------------------------------------------------ run time: SET, reload */

/* What sizes shared memory or the sockets, or is done once at start:
 * changing it needs a restart (a reload keeps the old value, SET refuses). */
static const char *const restart_opts[] = {
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "listen_backlog",
    "max_client_conn",
    "max_pools",
    "pkt_buf",
    "pidfile",
    "user",
    "max_workers",
    "so_reuseport",
    "metrics_listen",
    "max_prepared_statements",
};

bool config_needs_restart(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(restart_opts); i++)
		if (strcmp(name, restart_opts[i]) == 0)
			return true;
	return false;
}

void config_keep_restart(const struct config *old, struct config *next,
                         void (*note)(const char *name, const char *old_value))
{
	for (size_t i = 0; i < ARRAY_LEN(restart_opts); i++) {
		const struct opt *o =
		    find_opt(global_opts, ARRAY_LEN(global_opts), restart_opts[i]);
		char *to = (char *)next + o->off;
		const char *from = (const char *)old + o->off;
		char was[CFG_HOST_LEN];

		/* a string's bytes past its NUL are left-overs of other values */
		if (o->type == OPT_STR ? strcmp(to, from) == 0 : memcmp(to, from, o->size) == 0)
			continue;
		format_opt(o, old, was, sizeof(was));
		if (note)
			note(o->name, was);
		memcpy(to, from, o->size);
	}
}

/* A boolean word as the console may write it: 1, 0, or -1 if it is none. */
static int bool_word(const char *v)
{
	static const char *const words[][2] = {{"true", "false"}, {"on", "off"}, {"yes", "no"}};

	for (size_t k = 0; k < ARRAY_LEN(words); k++)
		for (int b = 0; b < 2; b++)
			if (strcasecmp(v, words[k][b]) == 0)
				return !b;
	return -1;
}

/* The console's text as the libconfig value the loader would have read: a
 * number or a boolean when it reads as one, else a string (so that a wrong
 * type gets the loader's own message). NULL: out of memory. */
static config_setting_t *setting_of(config_setting_t *root, const struct opt *o, const char *v)
{
	config_setting_t *s;
	char *end;
	long long i;
	double d;
	bool is_int, is_num;

	errno = 0;
	i = strtoll(v, &end, 10);
	is_int = *v && !*end && !errno;
	d = strtod(v, &end);
	is_num = *v && !*end;
	if ((o->type == OPT_INT || o->type == OPT_TIME || o->type == OPT_BOOL) && is_int) {
		s = config_setting_add(root, o->name, CONFIG_TYPE_INT64);
		return s && config_setting_set_int64(s, i) ? s : NULL;
	}
	if (o->type == OPT_TIME && is_num) {
		s = config_setting_add(root, o->name, CONFIG_TYPE_FLOAT);
		return s && config_setting_set_float(s, d) ? s : NULL;
	}
	if (o->type == OPT_BOOL && bool_word(v) >= 0) {
		s = config_setting_add(root, o->name, CONFIG_TYPE_BOOL);
		return s && config_setting_set_bool(s, bool_word(v)) ? s : NULL;
	}
	s = config_setting_add(root, o->name, CONFIG_TYPE_STRING);
	return s && config_setting_set_string(s, v) ? s : NULL;
}

int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
	struct loader ld = {NULL, err, errlen};
	const struct opt *o = find_opt(global_opts, ARRAY_LEN(global_opts), key);
	struct config *next;
	config_setting_t *s;
	config_t lc;
	int rc = CFG_SET_INVALID;

	if (err && errlen)
		err[0] = '\0';
	if (!o) {
		fail(&ld, NULL, "unrecognized configuration parameter \"%s\"", key);
		return CFG_SET_UNKNOWN;
	}
	if (config_needs_restart(key)) {
		fail(&ld, NULL, "parameter \"%s\" cannot be changed without restarting pgshoal",
		     key);
		return CFG_SET_RESTART;
	}
	next = malloc(sizeof(*next));
	if (!next) {
		fail(&ld, NULL, "out of memory");
		return CFG_SET_INVALID;
	}
	memcpy(next, cfg, sizeof(*next));
	config_init(&lc);
	s = setting_of(config_root_setting(&lc), o, value);
	if (!s)
		fail(&ld, NULL, "out of memory");
	else if (set_opt(&ld, o, next, s) == 0 && check_auth_tls(&ld, next, NULL) == 0) {
		memcpy(cfg, next, sizeof(*cfg));
		rc = CFG_SET_OK;
	}
	config_destroy(&lc);
	free(next);
	return rc;
}

int config_split_hostport(const char *spec, char *host, size_t hlen, int *port)
{
	const char *colon = strrchr(spec, ':'), *h = spec;
	size_t n;
	char *end;
	long p;

	if (!colon)
		return -1;
	n = (size_t)(colon - spec);
	if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') /* [v6]:port */
		h = spec + 1, n -= 2;
	else if (memchr(spec, ':', n)) /* a bare v6 address would be ambiguous */
		return -1;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (n >= hlen || errno || end == colon + 1 || *end || p < 1 || p > 65535)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (int)p;
	return 0;
}
