/*
 * test_hba.c — shm/hba.c: parsing the pg_hba.conf subset (records, lists,
 * quoting, continuation lines, CIDR and address + mask, every error with
 * its line number) and matching (first match wins; local/host/hostssl/
 * hostnossl; IPv4 and IPv6 ranges; database and user lists, all,
 * sameuser, replication).
 */
#include "unit.h"
#include "shm/hba.h"
#include "shm/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *text, struct hba *h, char *err)
{
	return hba_parse(text, strlen(text), "hba.conf", h, err, 256);
}

/* TEXT must parse (or the test stops here). */
static void parse_ok(const char *text, struct hba *h)
{
	char err[256];
	int rc = parse(text, h, err);

	if (rc != 0)
		printf("\nunexpected error: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
}

/* A connection from ADDR (NULL = unix socket). */
static const struct hba_rule *match(const struct hba *h, const char *addr, bool tls, const char *db,
                                    const char *user)
{
	static struct sockaddr_storage ss;
	struct hba_conn c = {.local = addr == NULL, .tls = tls, .db = db, .user = user};

	memset(&ss, 0, sizeof(ss));
	if (addr && strchr(addr, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		CU_ASSERT_EQUAL_FATAL(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
	} else if (addr) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		CU_ASSERT_EQUAL_FATAL(inet_pton(AF_INET, addr, &in->sin_addr), 1);
	}
	c.addr = (const struct sockaddr *)&ss;
	return hba_match(h, &c);
}

/* The line of the rule that matches, 0 for none. */
static int line_of(const struct hba *h, const char *addr, bool tls, const char *db,
                   const char *user)
{
	const struct hba_rule *r = match(h, addr, tls, db, user);
	return r ? r->line : 0;
}

/* Connections and the line of the record each must meet (0: none). */
struct conn_case {
	const char *addr; /* NULL: unix socket */
	bool tls;
	const char *db, *user;
	int line;
};

static void check_cases(const char *rules, const struct conn_case *cases, size_t n)
{
	struct hba h;

	parse_ok(rules, &h);
	for (size_t i = 0; i < n; i++) {
		const struct conn_case *k = &cases[i];
		int got = line_of(&h, k->addr, k->tls, k->db, k->user);
		if (got != k->line)
			printf("\n%s tls=%d db=%s user=%s: line %d, want %d\n",
			       k->addr ? k->addr : "local", k->tls, k->db, k->user, got, k->line);
		CU_ASSERT_EQUAL(got, k->line);
	}
	hba_free(&h);
}
#define CHECK_CASES(rules, cases) check_cases(rules, cases, sizeof(cases) / sizeof(cases[0]))

static void test_hba_parse_good(void)
{
	struct hba h;
	char err[256];
	const char *text = "# TYPE DATABASE USER ADDRESS METHOD\n"
	                   "\n"
	                   "local   all       postgres                 trust\n"
	                   "host    app,other web,  batch 10.0.0.0/8   scram-sha-256 # comment\n"
	                   "hostssl all       all   ::1/128            cert\n"
	                   "hostnossl \"all\" \"web user\" 192.168.1.0 255.255.255.0 md5\r\n"
	                   "host    sameuser  all   \\\n"
	                   "        all                                password\n"
	                   "host    all       all   0.0.0.0/0          reject";

	CU_ASSERT_EQUAL_FATAL(parse(text, &h, err), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_EQUAL_FATAL(h.nrules, 6);
	CU_ASSERT_EQUAL(h.rules[0].line, 3);
	CU_ASSERT_EQUAL(h.rules[0].type, HBA_LOCAL);
	CU_ASSERT_EQUAL(h.rules[0].method, HBA_TRUST);
	CU_ASSERT_EQUAL(h.rules[1].ndb, 2);
	CU_ASSERT_EQUAL(h.rules[1].nuser, 2); /* a blank after the comma is allowed */
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[1].user_first + 1].name, "batch");
	CU_ASSERT_EQUAL(h.rules[1].family, AF_INET);
	CU_ASSERT_EQUAL(h.rules[1].method, HBA_SCRAM);
	CU_ASSERT_EQUAL(h.rules[2].family, AF_INET6);
	CU_ASSERT_EQUAL(h.rules[2].method, HBA_CERT);
	CU_ASSERT_EQUAL(h.rules[3].type, HBA_HOSTNOSSL);
	CU_ASSERT_EQUAL(h.items[h.rules[3].db_first].kind, HBA_NAME); /* quoted: a name */
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[3].user_first].name, "web user");
	CU_ASSERT_EQUAL(h.rules[3].mask[3], 0);
	CU_ASSERT_EQUAL(h.rules[3].mask[2], 0xff);
	CU_ASSERT_EQUAL(h.rules[4].line, 7); /* continued on line 8 */
	CU_ASSERT_EQUAL(h.rules[4].family, 0);
	CU_ASSERT_EQUAL(h.rules[4].method, HBA_PASSWORD);
	CU_ASSERT_EQUAL(h.items[h.rules[4].db_first].kind, HBA_SAMEUSER);
	CU_ASSERT_EQUAL(h.rules[5].line, 9);
	CU_ASSERT_EQUAL(h.rules[5].method, HBA_REJECT);
	hba_free(&h);
}

static void test_hba_parse_quoting(void)
{
	struct hba h;
	const char *text = "local \"a,b\",c \"sameuser\",x\"y z\" trust\n"
	                   "local \"all\" \"+grp\" trust\n"
	                   "local \"@file\" all trust\n";

	parse_ok(text, &h);
	CU_ASSERT_EQUAL_FATAL(h.nrules, 3);
	CU_ASSERT_EQUAL(h.rules[0].ndb, 2);
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[0].db_first].name, "a,b");
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[0].db_first + 1].name, "c");
	CU_ASSERT_EQUAL(h.items[h.rules[0].user_first].kind, HBA_NAME);
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[0].user_first].name, "sameuser");
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[0].user_first + 1].name, "xy z");
	CU_ASSERT_EQUAL(h.items[h.rules[1].db_first].kind, HBA_NAME);
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[1].user_first].name, "+grp");
	CU_ASSERT_STRING_EQUAL(h.items[h.rules[2].db_first].name, "@file");
	/* quoted names are matched as names */
	CU_ASSERT_EQUAL(line_of(&h, NULL, false, "a,b", "sameuser"), 1);
	CU_ASSERT_EQUAL(line_of(&h, NULL, false, "a", "sameuser"), 0);
	CU_ASSERT_EQUAL(line_of(&h, NULL, false, "all", "+grp"), 2);
	CU_ASSERT_EQUAL(line_of(&h, NULL, false, "other", "+grp"), 0);
	hba_free(&h);
}

static void test_hba_parse_errors(void)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
	    {"local all all trust\nlocal all all peer\n",
	     "hba.conf:2: authentication method \"peer\" is not supported"},
	    {"\n\nhosts all all all trust\n", "hba.conf:3: invalid connection type \"hosts\""},
	    {"hostgssenc all all all trust\n", "hba.conf:1: \"hostgssenc\" is not supported"},
	    {"local all\n", "hba.conf:1: end of line before user"},
	    {"local all all\n", "hba.conf:1: end of line before authentication method"},
	    {"host all all trust\n",
	     "hba.conf:1: invalid IP address \"trust\" (host names are not supported)"},
	    {"host all all 10.0.0.1\n", "hba.conf:1: end of line before IP mask"},
	    {"host all all 10.0.0.0/33 md5\n",
	     "hba.conf:1: invalid CIDR mask in address \"10.0.0.0/33\""},
	    {"host all all ::1/129 md5\n", "hba.conf:1: invalid CIDR mask in address \"::1/129\""},
	    {"host all all 10.0.0.0/x md5\n",
	     "hba.conf:1: invalid CIDR mask in address \"10.0.0.0/x\""},
	    {"host all all 10.0.0.0 ffff::0 md5\n",
	     "hba.conf:1: invalid IP mask \"ffff::0\" (or a CIDR mask missing in \"10.0.0.0\")"},
	    {"host all all db.example.com md5\n",
	     "hba.conf:1: invalid IP address \"db.example.com\" (host names are not supported)"},
	    {"host all all samenet md5\n", "hba.conf:1: \"samenet\" is not supported"},
	    {"local all +admins md5\n",
	     "hba.conf:1: group membership (\"+role\") is not supported"},
	    {"local @dbs all md5\n", "hba.conf:1: \"@file\" inclusion is not supported"},
	    {"local all @users md5\n", "hba.conf:1: \"@file\" inclusion is not supported"},
	    {"local samerole all md5\n", "hba.conf:1: \"samerole\" is not supported"},
	    {"local all all md5 clientcert=verify-full\n",
	     "hba.conf:1: authentication options (\"clientcert=verify-full\") are not supported"},
	    {"local \"all all md5\n", "hba.conf:1: unterminated quoted string"},
	    {"local a,,b all md5\n", "hba.conf:1: empty database name"},
	    {"local a, all\n", "hba.conf:1: end of line before user"},
	    {"local all \"\" md5\n", "hba.conf:1: empty user name"},
	    {"local,host all all md5\n", "hba.conf:1: connection type cannot be a list"},
	    {"host all all 10.0.0.0/8,::1/128 md5\n", "hba.conf:1: IP address cannot be a list"},
	    {"local all all cert\n",
	     "hba.conf:1: cert authentication is only supported on hostssl records"},
	    {"# ok\nlocal all all trust \\\n  extra\nlocal x\n",
	     "hba.conf:2: authentication options (\"extra\") are not supported"},
	    {"local all all trust\n\\\n\\\nlocal x\n", "hba.conf:2: end of line before user"},
	    {"local all aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
	     "md5\n",
	     "hba.conf:1: token too long (max 63 bytes)"},
	};
	struct hba h;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(cases[i].text, &h, err);
		CU_ASSERT_EQUAL(rc, -1);
		if (strcmp(err, cases[i].err) != 0)
			printf("\ncase %zu: got \"%s\", want \"%s\"\n", i, err, cases[i].err);
		CU_ASSERT_STRING_EQUAL(err, cases[i].err);
		CU_ASSERT_EQUAL(h.nrules, 0);
		CU_ASSERT_PTR_NULL(h.rules);
	}
}

static void test_hba_match_types(void)
{
	static const struct conn_case cases[] = {
	    {NULL, false, "db", "u", 1},
	    {"127.0.0.1", true, "db", "ssl_u", 2},
	    {"127.0.0.1", false, "db", "ssl_u", 3}, /* reject */
	    {"127.0.0.1", false, "db", "u", 4},
	    {"127.0.0.1", true, "db", "u", 5}, /* host: TLS or not */
	    {"10.1.1.1", true, "db", "u", 0},  /* no entry */
	    {"10.1.1.1", true, "db", "ssl_u", 2},
	};
	static const struct conn_case no_local[] = {{NULL, false, "db", "u", 0},
	                                            {"::1", false, "db", "u", 1}};
	struct hba h;

	CHECK_CASES("local     all all              trust\n"
	            "hostssl   all ssl_u 0.0.0.0/0  scram-sha-256\n"
	            "hostnossl all ssl_u 0.0.0.0/0  reject\n"
	            "hostnossl all all   127.0.0.1/32 md5\n"
	            "host      all all   127.0.0.1/32 password\n",
	            cases);
	/* no local record: a unix socket client has no entry */
	CHECK_CASES("host all all all trust\n", no_local);
	/* an empty file rejects everyone */
	parse_ok("# nothing\n", &h);
	CU_ASSERT_EQUAL(h.nrules, 0);
	CU_ASSERT_PTR_NULL(match(&h, NULL, false, "db", "u"));
	hba_free(&h);
	/* the record itself says reject */
	parse_ok("host all all all reject\n", &h);
	CU_ASSERT_EQUAL(match(&h, "10.0.0.1", false, "db", "u")->method, HBA_REJECT);
	hba_free(&h);
}

static void test_hba_match_address(void)
{
	static const struct conn_case cases[] = {
	    {"192.168.10.1", false, "d", "u", 1},
	    {"192.168.10.255", false, "d", "u", 1},
	    {"192.168.11.1", false, "d", "u", 7},
	    {"10.1.2.3", false, "d", "u", 2},
	    {"10.1.2.4", false, "d", "u", 0},
	    {"172.31.255.255", false, "d", "u", 3},
	    {"172.32.0.0", false, "d", "u", 0},
	    {"2001:db8:ffff::1", false, "d", "u", 4},
	    {"2001:db9::1", false, "d", "u", 0},
	    {"::1", false, "d", "u", 5},
	    {"::2", false, "d", "u", 0},
	    {"fe80:1::5", false, "d", "u", 0},
	    {"fe80::5", false, "d", "u", 6},
	    /* an IPv4 record does not match an IPv4-mapped IPv6 client (PostgreSQL's rule) */
	    {"::ffff:10.1.2.3", false, "d", "u", 0},
	};
	static const struct conn_case any[] = {{"8.8.8.8", false, "d", "u", 1},
	                                       {"2a00::1", false, "d", "u", 2}};

	CHECK_CASES("host all all 192.168.10.0/24        trust\n"
	            "host all all 10.1.2.3/32            md5\n"
	            "host all all 172.16.0.0 255.240.0.0 password\n"
	            "host all all 2001:db8::/32          scram-sha-256\n"
	            "host all all ::1/128                md5\n"
	            "host all all fe80::1 ffff:ffff::    trust\n"
	            "host all all 192.168.10.77/16       reject\n", /* host bits ignored */
	            cases);
	CHECK_CASES("host all all 0.0.0.0/0 trust\nhost all all ::/0 md5\n", any);
}

static void test_hba_match_lists(void)
{
	static const struct conn_case cases[] = {
	    {NULL, false, "alice", "alice", 1},
	    {NULL, false, "app", "web", 2},
	    {NULL, false, "reports", "batch", 2},
	    {NULL, false, "app", "admin", 4},
	    {NULL, false, "reports", "alice", 5},
	    {NULL, false, "replication", "alice", 0}, /* a keyword, not a name */
	    {NULL, false, "App", "web", 0},           /* case matters */
	    {NULL, false, "other", "web", 0},
	};

	CHECK_CASES("local sameuser    all          trust\n"
	            "local app,reports web,batch  md5\n"
	            "local replication all          trust\n"
	            "local all         admin        scram-sha-256\n"
	            "local reports     all          reject\n",
	            cases);
}

/* Write TEXT to a new temporary file; its name into path (char[64]). */
static void write_tmp(char *path, const char *text)
{
	int fd;

	strcpy(path, "/tmp/pgshoal-hba-XXXXXX");
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* A configuration TEXT that must fail with "FILE:LINE: MSG". */
static void config_error(const char *text, int line, const char *msg)
{
	static struct config cfg;
	char conf[64], err[512], want[512];

	write_tmp(conf, text);
	CU_ASSERT_EQUAL(config_load(conf, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:%d: %s", conf, line, msg);
	CU_ASSERT_STRING_EQUAL(err, want);
	unlink(conf);
}

/* shm/config.c validates auth_hba_file (and auth_dbname) at load, so that a
 * reload with a bad file keeps the running configuration. */
static void test_hba_config(void)
{
	static struct config cfg;
	char hba[64], conf[64], text[512], err[512], want[512];
	FILE *f;

	write_tmp(hba, "local all all trust\nhost all all 10.0.0.0/33 md5\n");
	snprintf(text, sizeof(text), "auth_type = \"hba\";\nauth_hba_file = \"%s\";\n", hba);
	write_tmp(conf, text);
	CU_ASSERT_EQUAL(config_load(conf, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: invalid CIDR mask in address \"10.0.0.0/33\"", hba);
	CU_ASSERT_STRING_EQUAL(err, want);
	f = fopen(hba, "w"); /* fixed: the same configuration loads */
	CU_ASSERT_FATAL(f != NULL);
	fputs("local all all trust\n", f);
	fclose(f);
	CU_ASSERT_EQUAL(config_load(conf, &cfg, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(cfg.auth_type, AUTH_HBA);
	CU_ASSERT_STRING_EQUAL(cfg.auth_hba_text, "local all all trust\n"); /* for the workers */
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(cfg.auth_query, "FROM pg_authid WHERE rolname=$1 AND rolcanlogin"));
	unlink(hba);
	CU_ASSERT_EQUAL(config_load(conf, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
	         "%s:2: cannot read auth_hba_file \"%s\": No such file or directory", conf, hba);
	CU_ASSERT_STRING_EQUAL(err, want);
	unlink(conf);

	config_error("auth_type = \"hba\";\n", 1, "auth_type \"hba\" needs auth_hba_file");
	config_error("auth_user = \"au\";\nauth_dbname = \"authdb\";\ndatabases = ( { name = "
	             "\"app\"; } );\n",
	             2, "auth_dbname \"authdb\" is not a database entry");
	config_error(
	    "databases = ( { name = \"app\"; },\n  { name = \"b\"; auth_dbname = \"nope\"; } );\n",
	    2, "auth_dbname \"nope\" is not a database entry");

	write_tmp(conf, "auth_user = \"au\";\nauth_query = \"select u, p from t where u = $1\";\n"
	                "databases = ( { name = \"app\"; },\n"
	                "  { name = \"b\"; auth_user = \"bu\"; auth_dbname = \"app\"; } );\n");
	CU_ASSERT_EQUAL(config_load(conf, &cfg, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(cfg.auth_user, "au");
	CU_ASSERT_STRING_EQUAL(cfg.auth_query, "select u, p from t where u = $1");
	CU_ASSERT_STRING_EQUAL(cfg.dbs[1].auth_user, "bu");
	CU_ASSERT_STRING_EQUAL(cfg.dbs[1].auth_dbname, "app");
	unlink(conf);
}

void register_hba(void)
{
	CU_pSuite s = CU_add_suite("hba", NULL, NULL);
	ADD_TEST(s, test_hba_parse_good);
	ADD_TEST(s, test_hba_parse_quoting);
	ADD_TEST(s, test_hba_parse_errors);
	ADD_TEST(s, test_hba_match_types);
	ADD_TEST(s, test_hba_match_address);
	ADD_TEST(s, test_hba_match_lists);
	ADD_TEST(s, test_hba_config);
}
