/*
 * test_config.c — shm/config.c: defaults, a full file, conninfo, every
 * validation error with its exact "FILE:LINE: message", and the per-database
 * and per-user resolution helpers. Each test writes its file with mkstemp
 * under /tmp and removes it before returning.
 */
#include "unit.h"
#include "shm/config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct config cfg;
static char err[512];
static char tmp_path[64];

/* Write TEXT to a fresh temporary file and load it; the file is removed
 * again, its name kept in tmp_path for the expected messages. */
static int load_text(const char *text)
{
	int fd, rc;
	size_t len = strlen(text);

	strcpy(tmp_path, "/tmp/pgshoal-test-cfg-XXXXXX");
	fd = mkstemp(tmp_path);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
		perror("mkstemp/write");
		abort();
	}
	close(fd);
	memset(err, 0, sizeof(err));
	rc = config_load(tmp_path, &cfg, err, sizeof(err));
	unlink(tmp_path);
	return rc;
}

static void check_ok(const char *text, int line)
{
	int rc = load_text(text);

	if (rc != 0)
		fprintf(stderr, "\n  test line %d: unexpected error: %s\n", line, err);
	CU_ASSERT_EQUAL(rc, 0);
}
#define LOAD_OK(text) check_ok(text, __LINE__)

/* The load must fail with exactly "TMPFILE:LINE: MSG" (LINE 0: "TMPFILE: MSG"). */
static void check_error(const char *text, int file_line, const char *msg, int line)
{
	char want[512];
	int rc = load_text(text);

	if (file_line)
		snprintf(want, sizeof(want), "%s:%d: %s", tmp_path, file_line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", tmp_path, msg);
	CU_ASSERT_EQUAL(rc, -1);
	if (strcmp(err, want) != 0)
		fprintf(stderr, "\n  test line %d:\n   want: %s\n    got: %s\n", line, want, err);
	CU_ASSERT_STRING_EQUAL(err, want);
}
#define LOAD_ERR(text, file_line, msg) check_error(text, file_line, msg, __LINE__)

static void test_config_defaults(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	config_defaults(&cfg);
	CU_ASSERT_STRING_EQUAL(cfg.listen_addr, "127.0.0.1");
	CU_ASSERT_EQUAL(cfg.listen_port, 6432);
	CU_ASSERT_STRING_EQUAL(cfg.unix_socket_dir, "/tmp");
	CU_ASSERT_EQUAL(cfg.listen_backlog, 128);
	CU_ASSERT_EQUAL(cfg.workers, ncpu > 128 ? 128 : ncpu < 1 ? 1 : ncpu);
	CU_ASSERT_EQUAL(cfg.pool_mode, POOL_SESSION);
	CU_ASSERT_EQUAL(cfg.max_client_conn, 100);
	CU_ASSERT_EQUAL(cfg.default_pool_size, 20);
	CU_ASSERT_EQUAL(cfg.min_pool_size, 0);
	CU_ASSERT_EQUAL(cfg.reserve_pool_size, 0);
	CU_ASSERT_DOUBLE_EQUAL(cfg.reserve_pool_timeout, 5, 1e-9);
	CU_ASSERT_EQUAL(cfg.max_db_connections, 0);
	CU_ASSERT_EQUAL(cfg.max_user_connections, 0);
	CU_ASSERT_EQUAL(cfg.max_pools, 64);
	CU_ASSERT_STRING_EQUAL(cfg.server_reset_query, "DISCARD ALL");
	CU_ASSERT_FALSE(cfg.server_reset_query_always);
	CU_ASSERT_STRING_EQUAL(cfg.server_check_query, "select 1");
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_check_delay, 30, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_idle_timeout, 600, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_lifetime, 3600, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_connect_timeout, 15, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_login_retry, 15, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_timeout, 0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_wait_timeout, 120, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.client_idle_timeout, 0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.client_login_timeout, 60, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.idle_transaction_timeout, 0, 1e-9);
	CU_ASSERT_STRING_EQUAL(cfg.logfile, "");
	CU_ASSERT_STRING_EQUAL(cfg.pidfile, "");
	CU_ASSERT_TRUE(cfg.log_connections);
	CU_ASSERT_TRUE(cfg.log_disconnections);
	CU_ASSERT_TRUE(cfg.log_pooler_errors);
	CU_ASSERT_EQUAL(cfg.verbose, 0);
	CU_ASSERT_EQUAL(cfg.pkt_buf, 8192);
	CU_ASSERT_TRUE(cfg.tcp_keepalive);
	CU_ASSERT_EQUAL(cfg.max_packet_size, INT_MAX);
	CU_ASSERT_EQUAL(cfg.ndbs, 0);
	CU_ASSERT_EQUAL(cfg.nusers, 0);
}

/* An empty file (comments only) yields exactly the defaults. */
static void test_config_empty_file_is_defaults(void)
{
	struct config want;

	config_defaults(&want);
	LOAD_OK("# nothing here\n");
	CU_ASSERT_EQUAL(cfg.listen_port, want.listen_port);
	CU_ASSERT_EQUAL(cfg.workers, want.workers);
	CU_ASSERT_STRING_EQUAL(cfg.path, tmp_path);
	memset(cfg.path, 0, sizeof(cfg.path));
	memset(want.path, 0, sizeof(want.path));
	CU_ASSERT_EQUAL(memcmp(&cfg, &want, sizeof(want)), 0);
}

static const char full_file[] =
    "listen_addr = \"*\";\n"
    "listen_port = 7432;\n"
    "unix_socket_dir = \"/run/pgshoal\";\n"
    "listen_backlog = 1024;\n"
    "workers = 3;\n"
    "pool_mode = \"transaction\";\n"
    "max_client_conn = 5000;\n"
    "default_pool_size = 30;\n"
    "min_pool_size = 2;\n"
    "reserve_pool_size = 4;\n"
    "reserve_pool_timeout = 2.5;\n"
    "max_db_connections = 100;\n"
    "max_user_connections = 50;\n"
    "max_pools = 256;\n"
    "server_reset_query = \"RESET ALL\";\n"
    "server_reset_query_always = true;\n"
    "server_check_query = \"\";\n"
    "server_check_delay = 10;\n"
    "server_idle_timeout = 60.5;\n"
    "server_lifetime = 1800;\n"
    "server_connect_timeout = 3;\n"
    "server_login_retry = 1;\n"
    "query_timeout = 30;\n"
    "query_wait_timeout = 0.25;\n"
    "client_idle_timeout = 900;\n"
    "client_login_timeout = 10;\n"
    "idle_transaction_timeout = 20;\n"
    "logfile = \"/var/log/pgshoal.log\";\n"
    "pidfile = \"/run/pgshoal.pid\";\n"
    "log_connections = false;\n"
    "log_disconnections = 0;\n"
    "log_pooler_errors = false;\n"
    "verbose = 2;\n"
    "pkt_buf = 16384;\n"
    "tcp_keepalive = false;\n"
    "max_packet_size = 1048576;\n"
    "databases = (\n"
    "  { name = \"app\"; host = \"/tmp\"; port = 5433; dbname = \"app_prod\";\n"
    "    user = \"owner\"; password = \"s3cret\"; pool_size = 10; min_pool_size = 1;\n"
    "    reserve_pool_size = 3; pool_mode = \"statement\"; max_db_connections = 12;\n"
    "    connect_query = \"SET search_path = app\"; application_name = \"shoal\"; },\n"
    "  { name = \"*\"; host = \"db.example.com\"; }\n"
    ");\n"
    "users = (\n"
    "  { name = \"web\"; pool_mode = \"session\"; max_user_connections = 7; },\n"
    "  { name = \"batch\"; }\n"
    ");\n";

static void check_full_globals(void)
{
	CU_ASSERT_STRING_EQUAL(cfg.listen_addr, "*");
	CU_ASSERT_EQUAL(cfg.listen_port, 7432);
	CU_ASSERT_STRING_EQUAL(cfg.unix_socket_dir, "/run/pgshoal");
	CU_ASSERT_EQUAL(cfg.listen_backlog, 1024);
	CU_ASSERT_EQUAL(cfg.workers, 3);
	CU_ASSERT_EQUAL(cfg.pool_mode, POOL_TRANSACTION);
	CU_ASSERT_EQUAL(cfg.max_client_conn, 5000);
	CU_ASSERT_EQUAL(cfg.default_pool_size, 30);
	CU_ASSERT_EQUAL(cfg.min_pool_size, 2);
	CU_ASSERT_EQUAL(cfg.reserve_pool_size, 4);
	CU_ASSERT_DOUBLE_EQUAL(cfg.reserve_pool_timeout, 2.5, 1e-9);
	CU_ASSERT_EQUAL(cfg.max_db_connections, 100);
	CU_ASSERT_EQUAL(cfg.max_user_connections, 50);
	CU_ASSERT_EQUAL(cfg.max_pools, 256);
	CU_ASSERT_STRING_EQUAL(cfg.server_reset_query, "RESET ALL");
	CU_ASSERT_TRUE(cfg.server_reset_query_always);
	CU_ASSERT_STRING_EQUAL(cfg.server_check_query, "");
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_check_delay, 10, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_idle_timeout, 60.5, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_lifetime, 1800, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_connect_timeout, 3, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_login_retry, 1, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_timeout, 30, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_wait_timeout, 0.25, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.client_idle_timeout, 900, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.client_login_timeout, 10, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.idle_transaction_timeout, 20, 1e-9);
	CU_ASSERT_STRING_EQUAL(cfg.logfile, "/var/log/pgshoal.log");
	CU_ASSERT_STRING_EQUAL(cfg.pidfile, "/run/pgshoal.pid");
	CU_ASSERT_FALSE(cfg.log_connections);
	CU_ASSERT_FALSE(cfg.log_disconnections);
	CU_ASSERT_FALSE(cfg.log_pooler_errors);
	CU_ASSERT_EQUAL(cfg.verbose, 2);
	CU_ASSERT_EQUAL(cfg.pkt_buf, 16384);
	CU_ASSERT_FALSE(cfg.tcp_keepalive);
	CU_ASSERT_EQUAL(cfg.max_packet_size, 1048576);
}

static void check_full_lists(void)
{
	const struct config_db *d = &cfg.dbs[0];

	CU_ASSERT_EQUAL_FATAL(cfg.ndbs, 2);
	CU_ASSERT_STRING_EQUAL(d->name, "app");
	CU_ASSERT_STRING_EQUAL(d->host, "/tmp");
	CU_ASSERT_EQUAL(d->port, 5433);
	CU_ASSERT_STRING_EQUAL(d->dbname, "app_prod");
	CU_ASSERT_STRING_EQUAL(d->user, "owner");
	CU_ASSERT_STRING_EQUAL(d->password, "s3cret");
	CU_ASSERT_EQUAL(d->pool_size, 10);
	CU_ASSERT_EQUAL(d->min_pool_size, 1);
	CU_ASSERT_EQUAL(d->reserve_pool_size, 3);
	CU_ASSERT_EQUAL(d->pool_mode, POOL_STATEMENT);
	CU_ASSERT_EQUAL(d->max_db_connections, 12);
	CU_ASSERT_STRING_EQUAL(d->connect_query, "SET search_path = app");
	CU_ASSERT_STRING_EQUAL(d->application_name, "shoal");
	d = &cfg.dbs[1];
	CU_ASSERT_STRING_EQUAL(d->name, "*");
	CU_ASSERT_STRING_EQUAL(d->host, "db.example.com");
	CU_ASSERT_EQUAL(d->port, 5432);
	CU_ASSERT_STRING_EQUAL(d->dbname, "");
	CU_ASSERT_EQUAL(d->pool_size, -1);
	CU_ASSERT_EQUAL(d->pool_mode, POOL_INHERIT);
	CU_ASSERT_EQUAL_FATAL(cfg.nusers, 2);
	CU_ASSERT_STRING_EQUAL(cfg.users[0].name, "web");
	CU_ASSERT_EQUAL(cfg.users[0].pool_mode, POOL_SESSION);
	CU_ASSERT_EQUAL(cfg.users[0].max_user_connections, 7);
	CU_ASSERT_STRING_EQUAL(cfg.users[1].name, "batch");
	CU_ASSERT_EQUAL(cfg.users[1].pool_mode, POOL_INHERIT);
	CU_ASSERT_EQUAL(cfg.users[1].max_user_connections, -1);
}

static void test_config_full_file(void)
{
	LOAD_OK(full_file);
	check_full_globals();
	check_full_lists();
}

/* Time settings take int or float seconds; booleans take true/false or 1/0;
 * 64-bit integer literals are fine when in range. */
static void test_config_number_forms(void)
{
	LOAD_OK("query_timeout = 7;\nclient_idle_timeout = 0.5;\nserver_lifetime = 10L;\n"
	        "tcp_keepalive = 0;\nlog_connections = 1;\nserver_reset_query_always = true;\n"
	        "max_client_conn = 2000L;\n");
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_timeout, 7, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.client_idle_timeout, 0.5, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_lifetime, 10, 1e-9);
	CU_ASSERT_FALSE(cfg.tcp_keepalive);
	CU_ASSERT_TRUE(cfg.log_connections);
	CU_ASSERT_TRUE(cfg.server_reset_query_always);
	CU_ASSERT_EQUAL(cfg.max_client_conn, 2000);
}

static void test_config_workers_zero_is_auto(void)
{
	struct config want;

	config_defaults(&want);
	LOAD_OK("workers = 0;\n");
	CU_ASSERT_EQUAL(cfg.workers, want.workers);
	CU_ASSERT(cfg.workers >= 1 && cfg.workers <= 128);
	LOAD_OK("workers = 128;\n");
	CU_ASSERT_EQUAL(cfg.workers, 128);
}

static void test_config_conninfo(void)
{
	const struct config_db *d;

	LOAD_OK("databases = (\n"
	        "  { name = \"*\";\n"
	        "    conninfo = \"host=127.0.0.1 port=5433 dbname=x user=y password='p w' "
	        "application_name=w\";\n"
	        "    pool_size = 4; }\n"
	        ");\n");
	CU_ASSERT_EQUAL_FATAL(cfg.ndbs, 1);
	d = &cfg.dbs[0];
	CU_ASSERT_STRING_EQUAL(d->host, "127.0.0.1");
	CU_ASSERT_EQUAL(d->port, 5433);
	CU_ASSERT_STRING_EQUAL(d->dbname, "x");
	CU_ASSERT_STRING_EQUAL(d->user, "y");
	CU_ASSERT_STRING_EQUAL(d->password, "p w");
	CU_ASSERT_STRING_EQUAL(d->application_name, "w");
	CU_ASSERT_EQUAL(d->pool_size, 4);
}

/* conninfo in URI form, mixed with explicit keys it does not repeat. */
static void test_config_conninfo_uri_and_mix(void)
{
	LOAD_OK("databases = ({ name = \"app\"; port = 6000; user = \"u\";\n"
	        "  conninfo = \"postgresql://db.example.com/appdb\"; });\n");
	CU_ASSERT_EQUAL_FATAL(cfg.ndbs, 1);
	CU_ASSERT_STRING_EQUAL(cfg.dbs[0].host, "db.example.com");
	CU_ASSERT_STRING_EQUAL(cfg.dbs[0].dbname, "appdb");
	CU_ASSERT_EQUAL(cfg.dbs[0].port, 6000);
	CU_ASSERT_STRING_EQUAL(cfg.dbs[0].user, "u");
}

static void test_config_conninfo_errors(void)
{
	LOAD_ERR("databases = (\n{ name = \"a\";\n  conninfo = \"host=h sslmode=require\"; }\n);\n",
	         3, "conninfo key \"sslmode\" is not supported");
	LOAD_ERR("databases = (\n{ name = \"a\"; host = \"h\";\n  conninfo = \"host=h2\"; }\n);\n",
	         3, "\"host\" is given both in conninfo and as a setting");
	/* the conflict is found whatever the order of the keys */
	LOAD_ERR("databases = (\n{ name = \"a\"; conninfo = \"port=1\";\n  port = 2; }\n);\n", 2,
	         "\"port\" is given both in conninfo and as a setting");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  conninfo = \"port=abc\"; }\n);\n", 3,
	         "conninfo port \"abc\" is not between 1 and 65535");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  conninfo = \"port=70000\"; }\n);\n", 3,
	         "conninfo port \"70000\" is not between 1 and 65535");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  conninfo = \"host\"; }\n);\n", 3,
	         "invalid conninfo: missing \"=\" after \"host\" in connection info string");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  conninfo = \"nosuchkey=1\"; }\n);\n", 3,
	         "invalid conninfo: invalid connection option \"nosuchkey\"");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  conninfo = 5; }\n);\n", 3,
	         "\"conninfo\" must be a string");
}

/* monitor_conninfo: per entry (wins) or global (multi-host entries that
 * follow the primary only); an entry's own needs a host list. */
static void test_config_monitor_conninfo(void)
{
	LOAD_OK("monitor_conninfo = \"host=10.0.0.9 dbname=pg_auto_failover\";\n"
	        "databases = ( { name = \"a\"; host = \"h1,h2\"; target_session_attrs = "
	        "\"read-write\"; },\n"
	        "  { name = \"b\"; host = \"h1\"; },\n"
	        "  { name = \"c\"; host = \"h1,h2\"; target_session_attrs = \"standby\"; },\n"
	        "  { name = \"d\"; conninfo = \"host=h1,h2\"; monitor_conninfo = \"host=/run/m "
	        "port=7\"; } );\n");
	CU_ASSERT_STRING_EQUAL(config_monitor_conninfo(&cfg, &cfg.dbs[0]),
	                       "host=10.0.0.9 dbname=pg_auto_failover");
	CU_ASSERT_PTR_NULL(
	    config_monitor_conninfo(&cfg, &cfg.dbs[1])); /* one host: nothing to pick */
	CU_ASSERT_PTR_NULL(config_monitor_conninfo(&cfg, &cfg.dbs[2])); /* follows a standby */
	CU_ASSERT_STRING_EQUAL(config_monitor_conninfo(&cfg, &cfg.dbs[3]), "host=/run/m port=7");
	/* a single monitor host name is fine (the master resolves it) */
	LOAD_OK("databases = ( { name = \"a\"; host = \"h1,h2\";\n  monitor_conninfo = "
	        "\"host=mon.lab\"; } );\n");
	CU_ASSERT_STRING_EQUAL(config_monitor_conninfo(&cfg, &cfg.dbs[0]), "host=mon.lab");
	LOAD_ERR(
	    "databases = (\n{ name = \"a\"; host = \"h1\";\n  monitor_conninfo = \"host=m\"; "
	    "}\n);\n",
	    3,
	    "monitor_conninfo needs a host list (host = \"a,b\"): the monitor picks one of them");
	LOAD_ERR("databases = (\n{ name = \"a\"; host = \"h1,h2\"; target_session_attrs = "
	         "\"read-only\";\n"
	         "  monitor_conninfo = \"host=m\"; }\n);\n",
	         3,
	         "monitor_conninfo follows the primary: target_session_attrs must be any, "
	         "read-write or primary");
	LOAD_ERR(
	    "databases = (\n{ name = \"a\"; host = \"h1,h2\";\n  monitor_conninfo = \"host\"; "
	    "}\n);\n",
	    3, "invalid monitor_conninfo: missing \"=\" after \"host\" in connection info string");
	LOAD_ERR("workers = 1;\nmonitor_conninfo = \"nosuchkey=1\";\n", 2,
	         "invalid monitor_conninfo: invalid connection option \"nosuchkey\"");
	LOAD_ERR("monitor_conninfo = \"host=m1,m2\";\n", 1,
	         "monitor_conninfo: several monitor hosts must be addresses (or use hostaddr)");
	LOAD_OK("monitor_conninfo = \"host=10.0.0.1,::1\";\n");
	LOAD_OK("monitor_conninfo = \"host=m1,m2 hostaddr=10.0.0.1,10.0.0.2\";\n");
}

static void test_config_missing_file(void)
{
	char want[256];

	CU_ASSERT_EQUAL(config_load("/nonexistent/pgshoal.conf", &cfg, err, sizeof(err)), -1);
	CU_ASSERT_STRING_EQUAL(err, "/nonexistent/pgshoal.conf: cannot open: No such file or "
	                            "directory");
	CU_ASSERT_EQUAL(config_load("/tmp", &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "/tmp: cannot open: %s", strerror(EISDIR));
	CU_ASSERT_STRING_EQUAL(err, want);
}

static void test_config_syntax_error(void)
{
	LOAD_ERR("listen_port = 6432;\n\nlisten_addr = ;\n", 3, "syntax error");
	LOAD_ERR("listen_port = 6432;\nlisten_port = 6433;\n", 2, "duplicate setting name");
}

static void test_config_unknown_setting(void)
{
	LOAD_ERR("listen_port = 6432;\n# typo below\npool_sise = 10;\n", 3,
	         "unknown setting \"pool_sise\"");
	LOAD_ERR("databases = (\n  { name = \"a\";\n    pool_sise = 1; }\n);\n", 3,
	         "unknown database setting \"pool_sise\"");
	LOAD_ERR("users = (\n  { name = \"u\";\n\n    max_db_connections = 1; }\n);\n", 4,
	         "unknown user setting \"max_db_connections\"");
}

static void test_config_wrong_type(void)
{
	LOAD_ERR("\nlisten_port = \"6432\";\n", 2, "\"listen_port\" must be an integer");
	LOAD_ERR("workers = 2.0;\n", 1, "\"workers\" must be an integer");
	LOAD_ERR("\n\nquery_timeout = \"30s\";\n", 3,
	         "\"query_timeout\" must be a number of seconds");
	LOAD_ERR("tcp_keepalive = \"yes\";\n", 1,
	         "\"tcp_keepalive\" must be a boolean (true, false, 1 or 0)");
	LOAD_ERR("log_connections = 2;\n", 1,
	         "\"log_connections\" must be a boolean (true, false, 1 or 0)");
	LOAD_ERR("listen_addr = 127;\n", 1, "\"listen_addr\" must be a string");
	LOAD_ERR("pool_mode = 1;\n", 1, "\"pool_mode\" must be a string");
	LOAD_ERR("databases = { name = \"a\"; };\n", 1,
	         "\"databases\" must be a list of groups: ( { ... }, { ... } )");
	LOAD_ERR("users = [\"a\"];\n", 1,
	         "\"users\" must be a list of groups: ( { ... }, { ... } )");
	/* libconfig dates a scalar list element by its lookahead token: the ',' */
	LOAD_ERR("databases = (\n  \"app\", \"b\"\n);\n", 2,
	         "each database entry must be a group: { name = \"...\"; ... }");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  port = \"5432\"; }\n);\n", 3,
	         "\"port\" must be an integer");
	LOAD_ERR("users = (\n{ name = \"u\";\n  max_user_connections = true; }\n);\n", 3,
	         "\"max_user_connections\" must be an integer");
}

static void test_config_out_of_range(void)
{
	LOAD_ERR("listen_port = 0;\n", 1, "\"listen_port\" must be between 1 and 65535");
	LOAD_ERR("\nlisten_port = 65536;\n", 2, "\"listen_port\" must be between 1 and 65535");
	LOAD_ERR("workers = 129;\n", 1, "\"workers\" must be between 0 and 128");
	LOAD_ERR("workers = -1;\n", 1, "\"workers\" must be between 0 and 128");
	LOAD_ERR("max_client_conn = 0;\n", 1, "\"max_client_conn\" must be between 1 and 1000000");
	LOAD_ERR("max_client_conn = 1000001;\n", 1,
	         "\"max_client_conn\" must be between 1 and 1000000");
	LOAD_ERR("pkt_buf = 1023;\n", 1, "\"pkt_buf\" must be between 1024 and 1048576");
	LOAD_ERR("pkt_buf = 1048577;\n", 1, "\"pkt_buf\" must be between 1024 and 1048576");
	LOAD_ERR("max_pools = 0;\n", 1, "\"max_pools\" must be between 1 and 65536");
	LOAD_ERR("max_pools = 65537;\n", 1, "\"max_pools\" must be between 1 and 65536");
	LOAD_ERR("default_pool_size = -1;\n", 1,
	         "\"default_pool_size\" must be between 0 and 10000");
	LOAD_ERR("max_db_connections = -1;\n", 1,
	         "\"max_db_connections\" must be between 0 and 2147483647");
	LOAD_ERR("max_packet_size = 3000000000L;\n", 1,
	         "\"max_packet_size\" must be between 1024 and 2147483647");
	LOAD_ERR("query_timeout = -0.5;\n", 1,
	         "\"query_timeout\" must be between 0 and 1e+09 seconds");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  pool_size = 10001; }\n);\n", 3,
	         "\"pool_size\" must be between 0 and 10000");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  port = 0; }\n);\n", 3,
	         "\"port\" must be between 1 and 65535");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  reserve_pool_size = -2; }\n);\n", 3,
	         "\"reserve_pool_size\" must be between 0 and 10000");
	LOAD_ERR("users = (\n{ name = \"u\";\n  max_user_connections = -1; }\n);\n", 3,
	         "\"max_user_connections\" must be between 0 and 2147483647");
}

static void test_config_bad_pool_mode(void)
{
	LOAD_ERR("\npool_mode = \"sesion\";\n", 2,
	         "unknown pool_mode \"sesion\" (session, transaction or statement)");
	LOAD_ERR("databases = (\n{ name = \"a\";\n  pool_mode = \"Transaction\"; }\n);\n", 3,
	         "unknown pool_mode \"Transaction\" (session, transaction or statement)");
	LOAD_ERR("users = (\n{ name = \"u\";\n  pool_mode = \"\"; }\n);\n", 3,
	         "unknown pool_mode \"\" (session, transaction or statement)");
}

static void test_config_entry_without_name(void)
{
	LOAD_ERR("databases = (\n  { name = \"a\"; },\n  { host = \"h\";\n    port = 5; }\n);\n", 3,
	         "database entry without \"name\"");
	LOAD_ERR("databases = (\n  { name = \"\"; }\n);\n", 2, "database entry without \"name\"");
	LOAD_ERR("users = (\n\n  { pool_mode = \"session\"; }\n);\n", 3,
	         "user entry without \"name\"");
}

static void test_config_duplicate_names(void)
{
	LOAD_ERR(
	    "databases = (\n  { name = \"a\"; },\n  { host = \"h\";\n    name = \"a\"; }\n);\n", 4,
	    "duplicate database \"a\"");
	LOAD_ERR("users = (\n  { name = \"u\"; },\n  { name = \"v\"; },\n  { name = \"u\"; }\n);\n",
	         4, "duplicate user \"u\"");
}

/* LIST_NAME = ( N one-line groups ), one per line starting on line 2. */
static char *make_list(const char *list_name, int n)
{
	size_t size = 64 + (size_t)n * 32;
	char *text = malloc(size);
	size_t len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	len = (size_t)snprintf(text, size, "%s = (\n", list_name);
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, size - len, "  { name = \"n%d\"; }%s\n", i,
		                        i + 1 < n ? "," : "");
	snprintf(text + len, size - len, ");\n");
	return text;
}

static void test_config_too_many_entries(void)
{
	char *text;

	text = make_list("databases", CFG_MAX_DBS);
	LOAD_OK(text);
	CU_ASSERT_EQUAL(cfg.ndbs, CFG_MAX_DBS);
	free(text);
	text = make_list("databases", CFG_MAX_DBS + 1);
	LOAD_ERR(text, CFG_MAX_DBS + 2, "too many database entries (max 64)");
	free(text);
	text = make_list("users", CFG_MAX_USERS + 1);
	LOAD_ERR(text, CFG_MAX_USERS + 2, "too many user entries (max 64)");
	free(text);
}

static void test_config_string_too_long(void)
{
	char text[1024], longname[CFG_NAME_LEN + 1];

	memset(longname, 'x', CFG_NAME_LEN);
	longname[CFG_NAME_LEN] = '\0';
	snprintf(text, sizeof(text), "databases = (\n{ name = \"%s\"; }\n);\n", longname);
	LOAD_ERR(text, 2, "\"name\" is too long (max 63 bytes)");
	longname[CFG_NAME_LEN - 1] = '\0'; /* 63 bytes fit */
	snprintf(text, sizeof(text), "users = (\n{ name = \"%s\"; }\n);\n", longname);
	LOAD_OK(text);
	snprintf(text, sizeof(text),
	         "databases = (\n{ name = \"a\";\n  conninfo = \"dbname=%sx\"; }\n);\n", longname);
	LOAD_ERR(text, 3, "\"dbname\" is too long (max 63 bytes)");
	snprintf(text, sizeof(text), "\nserver_reset_query = \"%0*d\";\n", CFG_QUERY_LEN, 0);
	LOAD_ERR(text, 2, "\"server_reset_query\" is too long (max 511 bytes)");
}

/* A failed load leaves the previous configuration untouched (reload). */
static void test_config_failed_load_keeps_previous(void)
{
	struct config before;

	LOAD_OK("listen_port = 7000;\ndatabases = ({ name = \"a\"; });\n");
	memcpy(&before, &cfg, sizeof(cfg));
	CU_ASSERT_EQUAL(
	    load_text("listen_port = 7001;\ndatabases = ({ name = \"b\"; });\nbad = 1;\n"), -1);
	CU_ASSERT_EQUAL(memcmp(&before, &cfg, sizeof(cfg)), 0);
}

static void test_config_default_host_is_unix_socket(void)
{
	LOAD_OK("databases = ({ name = \"a\"; }, { name = \"b\"; host = \"\"; });\n");
	CU_ASSERT_STRING_EQUAL(cfg.dbs[0].host, "/var/run/postgresql");
	CU_ASSERT_STRING_EQUAL(cfg.dbs[1].host, "/var/run/postgresql");
	CU_ASSERT_EQUAL(cfg.dbs[0].port, 5432);
}

static void test_config_override_resolution(void)
{
	const struct config_db *app, *other;

	LOAD_OK(
	    "pool_mode = \"transaction\"; default_pool_size = 25; reserve_pool_size = 2;\n"
	    "min_pool_size = 1; max_db_connections = 40; max_user_connections = 30;\n"
	    "databases = (\n"
	    "  { name = \"app\"; pool_mode = \"statement\"; pool_size = 5; reserve_pool_size = 0;\n"
	    "    min_pool_size = 3; max_db_connections = 0; },\n"
	    "  { name = \"other\"; }\n"
	    ");\n"
	    "users = ({ name = \"web\"; pool_mode = \"session\"; max_user_connections = 0; },\n"
	    "         { name = \"etl\"; });\n");
	app = config_find_db(&cfg, "app");
	other = config_find_db(&cfg, "other");
	CU_ASSERT_PTR_NOT_NULL_FATAL(app);
	CU_ASSERT_PTR_NOT_NULL_FATAL(other);
	/* pool_mode: user, then database, then global */
	CU_ASSERT_EQUAL(config_pool_mode(&cfg, app, "web"), POOL_SESSION);
	CU_ASSERT_EQUAL(config_pool_mode(&cfg, app, "etl"), POOL_STATEMENT);
	CU_ASSERT_EQUAL(config_pool_mode(&cfg, app, "nobody"), POOL_STATEMENT);
	CU_ASSERT_EQUAL(config_pool_mode(&cfg, other, "etl"), POOL_TRANSACTION);
	CU_ASSERT_EQUAL(config_pool_mode(&cfg, other, "web"), POOL_SESSION);
	CU_ASSERT_EQUAL(config_pool_mode(&cfg, NULL, NULL), POOL_TRANSACTION);
	/* sizes: the database's own value (0 included), else the global one */
	CU_ASSERT_EQUAL(config_pool_size(&cfg, app), 5);
	CU_ASSERT_EQUAL(config_pool_size(&cfg, other), 25);
	CU_ASSERT_EQUAL(config_reserve_size(&cfg, app), 0);
	CU_ASSERT_EQUAL(config_reserve_size(&cfg, other), 2);
	CU_ASSERT_EQUAL(config_min_pool_size(&cfg, app), 3);
	CU_ASSERT_EQUAL(config_min_pool_size(&cfg, other), 1);
	CU_ASSERT_EQUAL(config_max_db_connections(&cfg, app), 0);
	CU_ASSERT_EQUAL(config_max_db_connections(&cfg, other), 40);
	CU_ASSERT_EQUAL(config_max_db_connections(&cfg, NULL), 40);
	CU_ASSERT_EQUAL(config_max_user_connections(&cfg, "web"), 0);
	CU_ASSERT_EQUAL(config_max_user_connections(&cfg, "etl"), 30);
	CU_ASSERT_EQUAL(config_max_user_connections(&cfg, "nobody"), 30);
}

static void test_config_wildcard_fallback(void)
{
	/* "*" listed first still loses to an exact match listed later */
	LOAD_OK("databases = ({ name = \"*\"; host = \"fallback\"; },\n"
	        "             { name = \"app\"; host = \"exact\"; });\n"
	        "users = ({ name = \"web\"; });\n");
	CU_ASSERT_STRING_EQUAL(config_find_db(&cfg, "app")->host, "exact");
	CU_ASSERT_STRING_EQUAL(config_find_db(&cfg, "anything")->host, "fallback");
	CU_ASSERT_STRING_EQUAL(config_find_db(&cfg, "*")->host, "fallback");
	CU_ASSERT_PTR_NOT_NULL(config_find_user(&cfg, "web"));
	CU_ASSERT_PTR_NULL(config_find_user(&cfg, "other"));
	LOAD_OK("databases = ({ name = \"app\"; });\n");
	CU_ASSERT_PTR_NULL(config_find_db(&cfg, "anything"));
	CU_ASSERT_PTR_NOT_NULL(config_find_db(&cfg, "app"));
}

static void test_config_pool_mode_name(void)
{
	CU_ASSERT_STRING_EQUAL(config_pool_mode_name(POOL_SESSION), "session");
	CU_ASSERT_STRING_EQUAL(config_pool_mode_name(POOL_TRANSACTION), "transaction");
	CU_ASSERT_STRING_EQUAL(config_pool_mode_name(POOL_STATEMENT), "statement");
	CU_ASSERT_STRING_EQUAL(config_pool_mode_name(POOL_INHERIT), "inherit");
	CU_ASSERT_STRING_EQUAL(config_pool_mode_name(7), "unknown");
}

/* The shipped example loads cleanly (the runner starts in the repo root). */
static void test_config_example_file(void)
{
	int rc = config_load("etc/pgshoal.conf", &cfg, err, sizeof(err));

	if (rc != 0)
		fprintf(stderr, "\n  etc/pgshoal.conf: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT(cfg.ndbs >= 1);
	CU_ASSERT_PTR_NOT_NULL(config_find_db(&cfg, cfg.dbs[0].name));
}

/* SET key = value: the loader's parsing and checks, on a copy. */
static void test_config_set(void)
{
	char e[256];

	config_defaults(&cfg);
	CU_ASSERT_EQUAL(config_set(&cfg, "default_pool_size", "7", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_EQUAL(cfg.default_pool_size, 7);
	CU_ASSERT_EQUAL(config_set(&cfg, "query_wait_timeout", "2.5", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_wait_timeout, 2.5, 1e-9);
	CU_ASSERT_EQUAL(config_set(&cfg, "server_lifetime", "30", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_DOUBLE_EQUAL(cfg.server_lifetime, 30, 1e-9);
	CU_ASSERT_EQUAL(config_set(&cfg, "log_stats", "off", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_FALSE(cfg.log_stats);
	CU_ASSERT_EQUAL(config_set(&cfg, "log_stats", "1", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_TRUE(cfg.log_stats);
	CU_ASSERT_EQUAL(config_set(&cfg, "pool_mode", "statement", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_EQUAL(cfg.pool_mode, POOL_STATEMENT);
	CU_ASSERT_EQUAL(config_set(&cfg, "server_reset_query", "", e, sizeof(e)), CFG_SET_OK);
	CU_ASSERT_STRING_EQUAL(cfg.server_reset_query, "");
	/* refusals leave the configuration as it was, and say why */
	CU_ASSERT_EQUAL(config_set(&cfg, "nosuch", "1", e, sizeof(e)), CFG_SET_UNKNOWN);
	CU_ASSERT_STRING_EQUAL(e, "unrecognized configuration parameter \"nosuch\"");
	CU_ASSERT_EQUAL(config_set(&cfg, "max_workers", "2", e, sizeof(e)), CFG_SET_RESTART);
	CU_ASSERT_STRING_EQUAL(
	    e, "parameter \"max_workers\" cannot be changed without restarting pgshoal");
	CU_ASSERT_EQUAL(config_set(&cfg, "default_pool_size", "10001", e, sizeof(e)),
	                CFG_SET_INVALID);
	CU_ASSERT_STRING_EQUAL(e, "\"default_pool_size\" must be between 0 and 10000");
	CU_ASSERT_EQUAL(config_set(&cfg, "default_pool_size", "1.5", e, sizeof(e)),
	                CFG_SET_INVALID);
	CU_ASSERT_STRING_EQUAL(e, "\"default_pool_size\" must be an integer");
	CU_ASSERT_EQUAL(config_set(&cfg, "query_timeout", "soon", e, sizeof(e)), CFG_SET_INVALID);
	CU_ASSERT_EQUAL(config_set(&cfg, "query_timeout", "nan", e, sizeof(e)), CFG_SET_INVALID);
	CU_ASSERT_EQUAL(config_set(&cfg, "log_stats", "maybe", e, sizeof(e)), CFG_SET_INVALID);
	CU_ASSERT_EQUAL(config_set(&cfg, "pool_mode", "sometimes", e, sizeof(e)), CFG_SET_INVALID);
	CU_ASSERT_EQUAL(config_set(&cfg, "auth_type", "md5", e, sizeof(e)), CFG_SET_INVALID);
	CU_ASSERT_STRING_EQUAL(e, "auth_type \"md5\" needs auth_file");
	CU_ASSERT_EQUAL(cfg.default_pool_size, 7);
	CU_ASSERT_EQUAL(cfg.pool_mode, POOL_STATEMENT);
	CU_ASSERT_EQUAL(cfg.auth_type, AUTH_TRUST);
	CU_ASSERT_DOUBLE_EQUAL(cfg.query_timeout, 0, 1e-9);
}

static const char *noted[8];
static int nnoted;
static void note(const char *name, const char *old_value)
{
	(void)old_value;
	if (nnoted < 8)
		noted[nnoted++] = name;
}

/* A reload keeps restart-only settings, and names those the file changed. */
static void test_config_keep_restart(void)
{
	struct config old, next;

	config_defaults(&old);
	config_defaults(&next);
	next.listen_port = 7000;
	strcpy(next.metrics_listen, "127.0.0.1:9127");
	next.default_pool_size = 3;
	nnoted = 0;
	config_keep_restart(&old, &next, note);
	CU_ASSERT_EQUAL(next.listen_port, old.listen_port);
	CU_ASSERT_STRING_EQUAL(next.metrics_listen, "");
	CU_ASSERT_EQUAL(next.default_pool_size, 3);
	CU_ASSERT_EQUAL_FATAL(nnoted, 2);
	CU_ASSERT_STRING_EQUAL(noted[0], "listen_port");
	CU_ASSERT_STRING_EQUAL(noted[1], "metrics_listen");
	CU_ASSERT_TRUE(config_needs_restart("so_reuseport"));
	CU_ASSERT_FALSE(config_needs_restart("default_pool_size"));
}

static void test_config_metrics_listen(void)
{
	char host[64];
	int port;

	LOAD_OK("metrics_listen = \"127.0.0.1:9127\";\n");
	CU_ASSERT_STRING_EQUAL(cfg.metrics_listen, "127.0.0.1:9127");
	LOAD_ERR("\nmetrics_listen = \"9127\";\n", 2,
	         "\"metrics_listen\" must be \"host:port\", \"*:port\" or \"[v6 address]:port\"");
	LOAD_ERR("metrics_listen = \"::1:9127\";\n", 1,
	         "\"metrics_listen\" must be \"host:port\", \"*:port\" or \"[v6 address]:port\"");
	CU_ASSERT_EQUAL(config_split_hostport("[::1]:80", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT_EQUAL(port, 80);
	CU_ASSERT_EQUAL(config_split_hostport("*:9127", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "*");
	CU_ASSERT_EQUAL(config_split_hostport("h:0", host, sizeof(host), &port), -1);
	CU_ASSERT_EQUAL(config_split_hostport("h:65536", host, sizeof(host), &port), -1);
	CU_ASSERT_EQUAL(config_split_hostport("h:", host, sizeof(host), &port), -1);
	CU_ASSERT_EQUAL(config_split_hostport("h:12x", host, sizeof(host), &port), -1);
}

void register_config(void)
{
	CU_pSuite s = CU_add_suite("config", NULL, NULL);

	ADD_TEST(s, test_config_defaults);
	ADD_TEST(s, test_config_empty_file_is_defaults);
	ADD_TEST(s, test_config_full_file);
	ADD_TEST(s, test_config_number_forms);
	ADD_TEST(s, test_config_workers_zero_is_auto);
	ADD_TEST(s, test_config_conninfo);
	ADD_TEST(s, test_config_conninfo_uri_and_mix);
	ADD_TEST(s, test_config_conninfo_errors);
	ADD_TEST(s, test_config_monitor_conninfo);
	ADD_TEST(s, test_config_missing_file);
	ADD_TEST(s, test_config_syntax_error);
	ADD_TEST(s, test_config_unknown_setting);
	ADD_TEST(s, test_config_wrong_type);
	ADD_TEST(s, test_config_out_of_range);
	ADD_TEST(s, test_config_bad_pool_mode);
	ADD_TEST(s, test_config_entry_without_name);
	ADD_TEST(s, test_config_duplicate_names);
	ADD_TEST(s, test_config_too_many_entries);
	ADD_TEST(s, test_config_string_too_long);
	ADD_TEST(s, test_config_failed_load_keeps_previous);
	ADD_TEST(s, test_config_default_host_is_unix_socket);
	ADD_TEST(s, test_config_override_resolution);
	ADD_TEST(s, test_config_wildcard_fallback);
	ADD_TEST(s, test_config_pool_mode_name);
	ADD_TEST(s, test_config_example_file);
	ADD_TEST(s, test_config_set);
	ADD_TEST(s, test_config_keep_restart);
	ADD_TEST(s, test_config_metrics_listen);
}
