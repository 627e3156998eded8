/*
 * config.h — the validated configuration. A fixed-size plain struct (no
 * pointers) so that the master can publish it as a snapshot in shared memory
 * and every process reads the same bytes. Loaded from a libconfig file by
 * config_load(); all times are in seconds (double), as in PgBouncer.
 */
#ifndef PGSHOAL_CONFIG_H
#define PGSHOAL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CFG_NAME_LEN     64
#define CFG_HOST_LEN     256
#define CFG_PATH_LEN     256
#define CFG_QUERY_LEN    512
#define CFG_PASSWORD_LEN 256
#define CFG_CONNINFO_LEN 512
#define CFG_MAX_DBS      64
#define CFG_MAX_USERS    64
#define CFG_HBA_TEXT_LEN 32768
#define CFG_MAX_WORKERS  128

enum pool_mode {
	POOL_INHERIT = -1, /* per-db / per-user entry: use the global pool_mode */
	POOL_SESSION = 0,
	POOL_TRANSACTION = 1,
	POOL_STATEMENT = 2,
};

enum auth_type { AUTH_TRUST, AUTH_ANY, AUTH_PLAIN, AUTH_MD5, AUTH_SCRAM, AUTH_CERT, AUTH_HBA };
enum tls_mode { TLS_DISABLE, TLS_ALLOW, TLS_PREFER, TLS_REQUIRE, TLS_VERIFY_CA, TLS_VERIFY_FULL };
extern const char *const config_auth_type_names[]; /* by enum auth_type */
extern const char *const config_tls_mode_names[];  /* by enum tls_mode */
/* libpq's target_session_attrs values, for a database with several hosts */
enum target_attrs {
	TSA_ANY,
	TSA_READ_WRITE,
	TSA_PRIMARY,
	TSA_READ_ONLY,
	TSA_STANDBY,
	TSA_PREFER_STANDBY
};
extern const char *const config_target_attrs_names[]; /* by enum target_attrs */

struct config_db {
	char name[CFG_NAME_LEN];         /* "*" = fallback for any database */
	char host[CFG_HOST_LEN];         /* name, address, or unix socket directory ("/...") */
	int port;                        /* default 5432 */
	char dbname[CFG_NAME_LEN];       /* server database; "" = same as name (client's for "*") */
	char user[CFG_NAME_LEN];         /* forced server user; "" = client's user */
	char password[CFG_PASSWORD_LEN]; /* server password; "" = none */
	int pool_size;                   /* -1 = default_pool_size */
	int min_pool_size;               /* -1 = global min_pool_size */
	int reserve_pool_size;           /* -1 = global reserve_pool_size */
	int pool_mode;                   /* enum pool_mode, POOL_INHERIT = global */
	int max_db_connections;          /* -1 = global; 0 = unlimited */
	char connect_query[CFG_QUERY_LEN];   /* run once on each new server connection */
	char application_name[CFG_NAME_LEN]; /* from conninfo, optional */
	int target_session_attrs;            /* enum target_attrs: which of several hosts to use */
	char auth_user[CFG_NAME_LEN];        /* auth_query's login for this database; "" = global */
	char auth_dbname[CFG_NAME_LEN];      /* database entry auth_query runs in; "" = global */
	char monitor_conninfo[CFG_CONNINFO_LEN]; /* pg_auto_failover monitor; "" = the global one */
};

struct config_user {
	char name[CFG_NAME_LEN];
	int pool_mode;            /* POOL_INHERIT = use the database's / global */
	int max_user_connections; /* -1 = global; 0 = unlimited */
};

struct config {
	char path[CFG_PATH_LEN]; /* the file this was loaded from */

	/* listening */
	char listen_addr[CFG_HOST_LEN];     /* "" = no TCP; "*" = all; default "127.0.0.1" */
	int listen_port;                    /* default 6432 */
	char unix_socket_dir[CFG_PATH_LEN]; /* "" = no unix socket; default "/tmp" */
	int listen_backlog;                 /* default 128 */

	/* processes */
	int workers; /* default: number of CPUs (0 in the file = auto); reload forks or drains */
	int max_workers; /* restart-only: how many workers shared memory is sized for;
	                  * default number of CPUs; never below workers */

	/* pooling */
	int pool_mode;               /* default session (PgBouncer's default) */
	int max_client_conn;         /* default 100 */
	int default_pool_size;       /* default 20 */
	int min_pool_size;           /* default 0 */
	int reserve_pool_size;       /* default 0 */
	double reserve_pool_timeout; /* default 5 */
	int max_db_connections;      /* default 0 = unlimited */
	int max_user_connections;    /* default 0 = unlimited */
	int max_pools;               /* pool table rows: (database, user) pairs; default 64 */
	int max_prepared_statements; /* per server connection, transaction/statement mode; default
	                                200, 0 = off */

	char server_reset_query[CFG_QUERY_LEN]; /* default "DISCARD ALL" */
	bool server_reset_query_always;         /* default false */
	char server_check_query[CFG_QUERY_LEN]; /* default "select 1"; "" disables */
	double server_check_delay;              /* default 30 */
	double server_idle_timeout;             /* default 600 */
	double server_lifetime;                 /* default 3600 */
	double server_connect_timeout;          /* default 15 */
	double server_login_retry;              /* default 15 */

	double query_timeout;            /* default 0 = off */
	double query_wait_timeout;       /* default 120 */
	double client_idle_timeout;      /* default 0 = off */
	double client_login_timeout;     /* default 60 */
	double idle_transaction_timeout; /* default 0 = off */

	/* logging and files */
	char logfile[CFG_PATH_LEN]; /* "" = stderr only */
	char pidfile[CFG_PATH_LEN]; /* "" = none */
	bool log_connections;       /* default true */
	bool log_disconnections;    /* default true */
	bool log_pooler_errors;     /* default true */
	int verbose;                /* default 0; 1 = state debug, 2 = all debug */

	/* master: DNS, shutdown, daemon */
	double dns_max_ttl;         /* default 60: re-resolve server host names this often */
	double dns_nxdomain_ttl;    /* default 15: retry a failed lookup this soon */
	double server_check_period; /* default 10: probe multi-host databases this often */
	char monitor_conninfo[CFG_CONNINFO_LEN]; /* pg_auto_failover monitor for multi-host entries
	                                          */
	double shutdown_wait_timeout;       /* default 60: SIGTERM waits this long for clients */
	bool syslog;                        /* default false */
	char syslog_ident[CFG_NAME_LEN];    /* default "pgshoal" */
	char syslog_facility[CFG_NAME_LEN]; /* default "daemon" */
	char user[CFG_NAME_LEN]; /* drop root privileges to this user after binding; "" = stay */

	/* admin console and statistics */
	char admin_db[CFG_NAME_LEN]; /* default "pgshoal"; "pgbouncer" also reaches it */
	int stats_period;            /* seconds, default 60: averages and the stats log line */
	bool log_stats;              /* default true */
	char metrics_listen[CFG_HOST_LEN]; /* "host:port" of the master's HTTP /metrics and /health;
	                                      "" = off */

	/* network */
	int pkt_buf;         /* per-connection I/O buffer, bytes; default 8192, 1024..1048576 */
	bool tcp_keepalive;  /* default true */
	bool so_reuseport;   /* default true: a TCP listening socket per worker (SO_REUSEPORT) */
	int max_packet_size; /* largest message accepted from a client; default 2147483647
	                        (PgBouncer's) */

	/* authentication (worker/auth.c) */
	int auth_type;                    /* enum auth_type; default trust */
	char auth_file[CFG_PATH_LEN];     /* PgBouncer's userlist.txt format */
	char auth_hba_file[CFG_PATH_LEN]; /* auth_type hba: a pg_hba.conf subset (shm/hba.c) */
	/* that file's text as config_load read and checked it: workers parse
	 * this copy, so every process applies the rules that were validated
	 * (a file broken after a refused reload changes nothing) */
	char auth_hba_text[CFG_HBA_TEXT_LEN];
	/* users not in auth_file: their password hash from the server
	 * (worker/auth_query.c), through the pool of (auth_dbname or the
	 * client's database, auth_user); "" auth_user = off */
	char auth_user[CFG_NAME_LEN];
	char auth_query[CFG_QUERY_LEN]; /* default PgBouncer's pg_authid query, $1 = user */
	char auth_dbname[CFG_NAME_LEN];
	char admin_users[CFG_QUERY_LEN]; /* comma-separated; the admin console (worker/admin.c) */
	char stats_users[CFG_QUERY_LEN];

	/* TLS (worker/tls.c); files are read by each worker, again after a reload */
	int client_tls_sslmode; /* enum tls_mode; default disable */
	char client_tls_key_file[CFG_PATH_LEN], client_tls_cert_file[CFG_PATH_LEN];
	char client_tls_ca_file[CFG_PATH_LEN];
	char client_tls_protocols[CFG_NAME_LEN];  /* default "secure" (TLSv1.2 and 1.3) */
	char client_tls_ciphers[CFG_QUERY_LEN];   /* default "default" (OpenSSL's) */
	char client_tls13_ciphers[CFG_QUERY_LEN]; /* "" = OpenSSL's */
	int server_tls_sslmode;                   /* enum tls_mode; default disable */
	char server_tls_key_file[CFG_PATH_LEN], server_tls_cert_file[CFG_PATH_LEN];
	char server_tls_ca_file[CFG_PATH_LEN];
	char server_tls_protocols[CFG_NAME_LEN];
	char server_tls_ciphers[CFG_QUERY_LEN];

	int ndbs;
	struct config_db dbs[CFG_MAX_DBS];
	int nusers;
	struct config_user users[CFG_MAX_USERS];
};

/*
 * Load and validate FILE into *out (defaults first, then the file).
 * On error returns -1 and writes "FILE:LINE: message" (or "FILE: message"
 * when no line applies) into err. Unknown settings, wrong types and
 * out-of-range values are errors.
 */
int config_load(const char *file, struct config *out, char *err, size_t errlen);

/* Defaults alone (no file). */
void config_defaults(struct config *out);

/* Find the database entry for a client's database name: exact match first,
 * then "*"; NULL if none. */
const struct config_db *config_find_db(const struct config *cfg, const char *name);
const struct config_user *config_find_user(const struct config *cfg, const char *name);

/* Effective settings for a (db, user) pair, resolving -1 / POOL_INHERIT. */
int config_pool_mode(const struct config *cfg, const struct config_db *db, const char *user);
int config_pool_size(const struct config *cfg, const struct config_db *db);
int config_reserve_size(const struct config *cfg, const struct config_db *db);
int config_min_pool_size(const struct config *cfg, const struct config_db *db);
int config_max_db_connections(const struct config *cfg, const struct config_db *db);
int config_max_user_connections(const struct config *cfg, const char *user);
/* The pg_auto_failover monitor of an entry: its own monitor_conninfo, else
 * the global one for an entry listing several hosts that follows the
 * primary (target_session_attrs any, read-write or primary); NULL if none. */
const char *config_monitor_conninfo(const struct config *cfg, const struct config_db *db);

const char *config_pool_mode_name(int mode);

/* SHOW CONFIG: the i-th global setting's name, with its value in cfg and
 * its default formatted as text; false past the last one. */
bool config_describe(const struct config *cfg, int i, const char **name, char *value, size_t vlen,
                     char *defval, size_t dlen);

/* The settings a reload cannot change (restart-only): SET refuses them and
 * config_keep_restart puts their old values back into next, calling note
 * (may be NULL) with each one that differed. */
bool config_needs_restart(const char *name);
void config_keep_restart(const struct config *old, struct config *next,
                         void (*note)(const char *name, const char *old_value));

/* The admin console's SET key = value on a copy of the configuration in
 * force: the value is parsed and checked as the loader does for the file
 * (same types, ranges, words and cross-checks); cfg changes only on
 * CFG_SET_OK. err gets PostgreSQL-style wording without a file name. */
enum config_set_result { CFG_SET_OK, CFG_SET_UNKNOWN, CFG_SET_RESTART, CFG_SET_INVALID };
int config_set(struct config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* "host:port", "*:port" or "[v6]:port" (metrics_listen); 0 or -1. */
int config_split_hostport(const char *spec, char *host, size_t hlen, int *port);

#endif
