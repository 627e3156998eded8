/*
 * test_json.c — master/json.c, the member reader for pg_auto_failover's
 * NOTIFY state payload: the real payload's fields, escapes, members in any
 * order and of other types, and malformed or oversized input read as "not
 * found" without running past the text.
 */
#include "unit.h"
#include "master/master.h"

#include <stdlib.h>
#include <string.h>

/* As the monitor builds it (src/monitor/notifications.c). */
static const char *const PAYLOAD = "{\"type\": \"state\", \"formation\": \"default\", \"groupId\": "
                                   "0, \"nodeId\": 2, \"name\": \"node_2\", "
                                   "\"host\": \"127.0.0.3\", \"port\": 5432, \"reportedState\": "
                                   "\"wait_primary\", \"goalState\": \"primary\", "
                                   "\"health\":\"good\"}";

static void test_json_notify_payload(void)
{
	char s[64];
	long v = -1;

	CU_ASSERT_EQUAL(master_json_string(PAYLOAD, "type", s, sizeof(s)), ST_OK);
	CU_ASSERT_STRING_EQUAL(s, "state");
	CU_ASSERT_EQUAL(master_json_string(PAYLOAD, "host", s, sizeof(s)), ST_OK);
	CU_ASSERT_STRING_EQUAL(s, "127.0.0.3");
	CU_ASSERT_EQUAL(master_json_string(PAYLOAD, "reportedState", s, sizeof(s)), ST_OK);
	CU_ASSERT_STRING_EQUAL(s, "wait_primary");
	CU_ASSERT_EQUAL(master_json_string(PAYLOAD, "health", s, sizeof(s)),
	                ST_OK); /* last, no space */
	CU_ASSERT_STRING_EQUAL(s, "good");
	CU_ASSERT_EQUAL(master_json_int(PAYLOAD, "port", &v), ST_OK);
	CU_ASSERT_EQUAL(v, 5432);
	CU_ASSERT_EQUAL(master_json_int(PAYLOAD, "groupId", &v), ST_OK);
	CU_ASSERT_EQUAL(v, 0);
}

static void test_json_types_and_absence(void)
{
	char s[16];
	long v = 7;

	CU_ASSERT_EQUAL(master_json_string(PAYLOAD, "missing", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string(PAYLOAD, "port", s, sizeof(s)),
	                ST_ERROR);                                       /* an integer */
	CU_ASSERT_EQUAL(master_json_int(PAYLOAD, "host", &v), ST_ERROR); /* a string */
	CU_ASSERT_EQUAL(v, 7);
	/* a key's name inside a value is not a member */
	CU_ASSERT_EQUAL(master_json_string("{\"a\": \"host\", \"b\": 1}", "host", s, sizeof(s)),
	                ST_ERROR);
	/* nested values are skipped, members after them found */
	CU_ASSERT_EQUAL(
	    master_json_int("{\"x\": {\"port\": 1, \"y\": [1, \"]\", {}]}, \"port\": -42}", "port",
	                    &v),
	    ST_OK);
	CU_ASSERT_EQUAL(v, -42);
	CU_ASSERT_EQUAL(master_json_int("{\"ok\": true, \"n\": null, \"port\": 5}", "port", &v),
	                ST_OK);
	CU_ASSERT_EQUAL(v, 5);
	CU_ASSERT_EQUAL(master_json_int("{\"port\": 1.5}", "port", &v), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_int("{\"port\": 99999999999999999999999}", "port", &v),
	                ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("  {  \"k\"  :  \"v\"  }  ", "k", s, sizeof(s)), ST_OK);
	CU_ASSERT_STRING_EQUAL(s, "v");
}

static void test_json_escapes(void)
{
	char s[32];

	CU_ASSERT_EQUAL(master_json_string("{\"h\\u006fst\": \"a\\\"b\\\\c\\/d\\u0041\"}", "host",
	                                   s, sizeof(s)),
	                ST_OK);
	CU_ASSERT_STRING_EQUAL(s, "a\"b\\c/dA");
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"\\u00e9\"}", "k", s, sizeof(s)), ST_OK);
	CU_ASSERT_STRING_EQUAL(s, "?");
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"\\x\"}", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"\\u12\"}", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"\\u0000\"}", "k", s, sizeof(s)), ST_ERROR);
}

static void test_json_malformed_and_bounds(void)
{
	char s[8], *big;
	long v;
	size_t n = 10000;

	CU_ASSERT_EQUAL(master_json_string("", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("[\"k\", \"v\"]", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("{\"k\" \"v\"}", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"v", "k", s, sizeof(s)),
	                ST_ERROR); /* unterminated */
	CU_ASSERT_EQUAL(master_json_string("{\"a\": \"v", "k", s, sizeof(s)),
	                ST_ERROR); /* inside a skip */
	CU_ASSERT_EQUAL(master_json_string("{\"a\": 1 \"k\": \"v\"}", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_int("{\"k\": ", "k", &v), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_int("{\"k\": 12", "k", &v), ST_ERROR);
	/* too long for OUT: refused, not truncated */
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"12345678\"}", "k", s, sizeof(s)), ST_ERROR);
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"1234567\"}", "k", s, sizeof(s)), ST_OK);
	/* control characters are not allowed raw in a string */
	CU_ASSERT_EQUAL(master_json_string("{\"k\": \"a\nb\"}", "k", s, sizeof(s)), ST_ERROR);
	/* nesting deeper than the bound */
	CU_ASSERT_EQUAL(
	    master_json_int("{\"a\": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]], \"k\": 1}", "k", &v),
	    ST_ERROR);
	/* longer than a NOTIFY payload can be: not read at all */
	big = malloc(n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, ' ', n);
	memcpy(big, "{\"k\": 1,", 8);
	memcpy(big + n - 9, "\"z\": 2 }", 8);
	big[n] = '\0';
	CU_ASSERT_EQUAL(master_json_int(big, "k", &v), ST_ERROR);
	free(big);
}

void register_json(void)
{
	CU_pSuite s = CU_add_suite("json", NULL, NULL);
	ADD_TEST(s, test_json_notify_payload);
	ADD_TEST(s, test_json_types_and_absence);
	ADD_TEST(s, test_json_escapes);
	ADD_TEST(s, test_json_malformed_and_bounds);
}
