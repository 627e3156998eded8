/*
 * test_userlist.c — worker/userlist.c: PgBouncer's userlist.txt format
 * (quoting with doubled quotes, comments, blank lines, extra fields, CRLF),
 * bad lines skipped and counted, lookups of present and absent users.
 */
#include "unit.h"
#include "worker/userlist.h"

#include <string.h>

static int parse(const char *text, struct userlist *ul, char *err)
{
	return userlist_parse(text, strlen(text), ul, err, 128);
}

static void test_userlist_basic(void)
{
	struct userlist ul;
	char err[128];
	const char *text = ";; comment\n"
	                   "# another\n"
	                   "\n"
	                   "\"bob\" \"secret\"\n"
	                   "  \"alice\"\t\"md5aa\" \"extra field\"\r\n"
	                   "\"q\"\"uote\" \"pa\"\"ss\"\n"
	                   "\"empty\" \"\"\n"
	                   "\"last\" \"no newline\"";

	CU_ASSERT_EQUAL_FATAL(parse(text, &ul, err), 0);
	CU_ASSERT_EQUAL(ul.n, 5);
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "bob"), "secret");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "alice"), "md5aa");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "q\"uote"), "pa\"ss");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "empty"), "");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "last"), "no newline");
	CU_ASSERT_PTR_NULL(userlist_lookup(&ul, "nobody"));
	CU_ASSERT_PTR_NULL(userlist_lookup(&ul, "Bob"));
	userlist_free(&ul);
}

static void test_userlist_bad_lines(void)
{
	struct userlist ul;
	char err[128];
	const char *text = "\"ok\" \"pw\"\n"
	                   "bare words\n"            /* line 2: not quoted */
	                   "\"unterminated \"pw\"\n" /* line 3 */
	                   "\"nopw\"\n"              /* line 4 */
	                   "\"\" \"noname\"\n"       /* line 5 */
	                   "\"a\"\"b\"\n"            /* line 6: no blank between fields */
	                   "\"ok2\" \"pw2\"\n";

	CU_ASSERT_EQUAL_FATAL(parse(text, &ul, err), 5);
	CU_ASSERT_STRING_EQUAL(err, "line 2: expected \"user\" \"password\"");
	CU_ASSERT_EQUAL(ul.n, 2);
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "ok"), "pw");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "ok2"), "pw2");
	userlist_free(&ul);
}

static void test_userlist_many(void)
{
	struct userlist ul;
	char err[128], line[64];
	static char text[64 * 1000];
	size_t off = 0;

	for (int i = 999; i >= 0; i--) {
		int n = snprintf(line, sizeof(line), "\"user%d\" \"pw%d\"\n", i, i);
		memcpy(text + off, line, (size_t)n);
		off += (size_t)n;
	}
	CU_ASSERT_EQUAL_FATAL(userlist_parse(text, off, &ul, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ul.n, 1000);
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "user0"), "pw0");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "user500"), "pw500");
	CU_ASSERT_STRING_EQUAL(userlist_lookup(&ul, "user999"), "pw999");
	userlist_free(&ul);
}

void register_userlist(void)
{
	CU_pSuite s = CU_add_suite("userlist", NULL, NULL);
	ADD_TEST(s, test_userlist_basic);
	ADD_TEST(s, test_userlist_bad_lines);
	ADD_TEST(s, test_userlist_many);
}
