/*
 * test_proto.c — worker/proto.c: message framing (proto_header on partial,
 * complete, impossible and concatenated input), startup-packet parsing
 * (v3 parameters and every malformed layout, SSL/GSSENC/Cancel requests,
 * protocol 2.0), the bounded pbuf writer, and ErrorResponse round trips.
 */
#include "unit.h"
#include "worker/proto.h"

#include <stdio.h>
#include <string.h>

/* Startup packet: length, CODE, then BODY of BODYLEN bytes (NULs inside). */
static uint32_t make_startup(char *out, size_t cap, uint32_t code, const char *body, size_t bodylen)
{
	struct pbuf b;

	pb_init(&b, out, cap);
	pb_u32(&b, (uint32_t)(8 + bodylen));
	pb_u32(&b, code);
	pb_bytes(&b, body, bodylen);
	CU_ASSERT_FATAL(b.err == 0);
	return (uint32_t)b.len;
}

/* sizeof of a string literal minus its implicit final NUL: the body bytes. */
#define BODY(lit) lit, sizeof(lit) - 1

static void test_proto_header_partial(void)
{
	const char msg[] = {'Q', 0, 0, 0, 9, 's', 'e', 'l', ' ', 0};
	uint32_t total = 0;
	char type = 0;

	for (size_t n = 0; n < 5; n++)
		CU_ASSERT_EQUAL(proto_header(msg, n, &type, &total, 1000), 0);
	CU_ASSERT_EQUAL(proto_header(msg, 5, &type, &total, 1000), 1);
	CU_ASSERT_EQUAL(type, 'Q');
	CU_ASSERT_EQUAL(total, 10);
	CU_ASSERT_EQUAL(proto_header(msg, sizeof(msg), &type, &total, 1000), 1);
	CU_ASSERT_EQUAL(total, sizeof(msg));
}

static void test_proto_header_bad_length(void)
{
	char msg[5] = {'D', 0, 0, 0, 0};
	uint32_t total;
	char type;

	for (int len = 0; len < 4; len++) {
		msg[4] = (char)len;
		CU_ASSERT_EQUAL(proto_header(msg, sizeof(msg), &type, &total, 1000), -1);
	}
	msg[4] = 4; /* an empty body is fine */
	CU_ASSERT_EQUAL(proto_header(msg, sizeof(msg), &type, &total, 1000), 1);
	CU_ASSERT_EQUAL(total, 5);
	/* max is inclusive */
	msg[3] = 0x03, msg[4] = (char)0xe8; /* 1000 */
	CU_ASSERT_EQUAL(proto_header(msg, sizeof(msg), &type, &total, 1000), 1);
	CU_ASSERT_EQUAL(total, 1001);
	msg[4] = (char)0xe9; /* 1001 */
	CU_ASSERT_EQUAL(proto_header(msg, sizeof(msg), &type, &total, 1000), -1);
	/* a length with the top bit set is not a negative number */
	msg[1] = (char)0x80;
	CU_ASSERT_EQUAL(proto_header(msg, sizeof(msg), &type, &total, 0x7fffffff), -1);
}

/* Several messages in one buffer are walked one by one. */
static void test_proto_concatenated_messages(void)
{
	char buf[256];
	struct pbuf b;
	const char want_type[] = {'R', 'S', 'K', 'Z', 'Q'};
	const uint32_t want_total[] = {9, 1 + 4 + 16 + 5, 13, 6, 1 + 4 + 9};
	size_t off = 0;
	int i = 0;

	pb_init(&b, buf, sizeof(buf));
	proto_auth_ok(&b);
	proto_param_status(&b, "client_encoding", "UTF8");
	proto_backend_key(&b, 0x00100005, (int32_t)0xdeadbeef);
	proto_ready(&b, 'I');
	proto_query(&b, "select 1");
	CU_ASSERT_FATAL(b.err == 0);

	while (off < b.len) {
		char type;
		uint32_t total;
		CU_ASSERT_FATAL(i < 5);
		CU_ASSERT_EQUAL_FATAL(proto_header(buf + off, b.len - off, &type, &total, 1 << 20),
		                      1);
		CU_ASSERT_EQUAL(type, want_type[i]);
		CU_ASSERT_EQUAL(total, want_total[i]);
		CU_ASSERT_FATAL(off + total <= b.len);
		switch (type) {
		case 'R': CU_ASSERT_EQUAL(get_u32(buf + off + 5), 0); break;
		case 'S':
			CU_ASSERT_STRING_EQUAL(buf + off + 5, "client_encoding");
			CU_ASSERT_STRING_EQUAL(buf + off + 5 + 16, "UTF8");
			break;
		case 'K':
			CU_ASSERT_EQUAL(get_u32(buf + off + 5), 0x00100005);
			CU_ASSERT_EQUAL(get_u32(buf + off + 9), 0xdeadbeef);
			break;
		case 'Z': CU_ASSERT_EQUAL(buf[off + 5], 'I'); break;
		case 'Q': CU_ASSERT_STRING_EQUAL(buf + off + 5, "select 1"); break;
		default: CU_FAIL("unexpected message type");
		}
		off += total;
		i++;
	}
	CU_ASSERT_EQUAL(i, 5);
	CU_ASSERT_EQUAL(off, b.len);
	/* A tail cut inside the next header asks for more bytes. */
	CU_ASSERT_EQUAL(proto_header(buf + b.len - 14, 3, &(char){0}, &(uint32_t){0}, 1 << 20), 0);
}

static void test_proto_startup_v3(void)
{
	char pkt[256];
	struct startup st;
	const char *why = NULL;
	uint32_t len = make_startup(pkt, sizeof(pkt), PROTO_V3,
	                            BODY("user\0bob\0database\0app\0options\0\0\0"));

	CU_ASSERT_EQUAL(proto_parse_startup(pkt, len, &st, &why), 0);
	CU_ASSERT_EQUAL(st.code, PROTO_V3);
	CU_ASSERT_EQUAL(st.nparams, 3);
	CU_ASSERT_STRING_EQUAL(startup_get(&st, "user"), "bob");
	CU_ASSERT_STRING_EQUAL(startup_get(&st, "database"), "app");
	CU_ASSERT_STRING_EQUAL(startup_get(&st, "options"), ""); /* empty value */
	CU_ASSERT_PTR_NULL(startup_get(&st, "application_name"));
	/* the values point into the packet */
	CU_ASSERT(st.values[0] > pkt && st.values[0] < pkt + len);

	/* no parameters at all: just the terminator */
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY("\0"));
	CU_ASSERT_EQUAL(proto_parse_startup(pkt, len, &st, &why), 0);
	CU_ASSERT_EQUAL(st.nparams, 0);
}

static void expect_bad_startup(const char *pkt, uint32_t len, const char *want, int line)
{
	struct startup st;
	const char *why = NULL;
	int rc = proto_parse_startup(pkt, len, &st, &why);

	if (rc != -1 || !why || (want && strcmp(why, want) != 0))
		fprintf(stderr, "\n  test line %d: rc %d why \"%s\"\n", line, rc,
		        why ? why : "(null)");
	CU_ASSERT_EQUAL(rc, -1);
	CU_ASSERT_PTR_NOT_NULL(why);
	if (want && why)
		CU_ASSERT_STRING_EQUAL(why, want);
}
#define BAD_STARTUP(pkt, len, want) expect_bad_startup(pkt, len, want, __LINE__)

static void test_proto_startup_malformed(void)
{
	static const char layout[] =
	    "invalid startup packet layout: expected terminator as last byte";
	char pkt[256];
	uint32_t len;

	/* the terminator is missing */
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY("user\0bob\0"));
	BAD_STARTUP(pkt, len, layout);
	/* a value runs off the end */
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY("user\0bob"));
	BAD_STARTUP(pkt, len, layout);
	/* an odd number of strings: a name without its value */
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY("user\0bob\0database\0"));
	BAD_STARTUP(pkt, len, layout);
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY("user\0bob\0database\0\0"));
	BAD_STARTUP(pkt, len, layout);
	/* bytes after the terminator */
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY("user\0bob\0\0x"));
	BAD_STARTUP(pkt, len, layout);
	/* nothing after the code */
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, BODY(""));
	BAD_STARTUP(pkt, len, layout);
	/* shorter than a code */
	BAD_STARTUP(pkt, 7, "invalid length of startup packet");
	BAD_STARTUP(pkt, 0, "invalid length of startup packet");
}

static void test_proto_startup_too_many_params(void)
{
	char body[1024], pkt[1100];
	size_t n = 0;
	uint32_t len;

	/* one more than allowed of "pN" = "" */
	for (int i = 0; i < STARTUP_MAX_PARAMS + 1; i++) {
		n += (size_t)snprintf(body + n, sizeof(body) - n, "p%d", i) + 1;
		body[n++] = 0;
	}
	body[n++] = 0;
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, body, n);
	BAD_STARTUP(pkt, len, "too many parameters in startup packet");
}

static void test_proto_startup_size_limit(void)
{
	static char body[MAX_STARTUP_PACKET + 16], pkt[MAX_STARTUP_PACKET + 32];
	struct startup st;
	const char *why = NULL;
	size_t vlen = MAX_STARTUP_PACKET - 8 - 5 - 1 - 1; /* "user\0" value "\0" "\0" */
	uint32_t len;

	memcpy(body, "user", 5);
	memset(body + 5, 'x', vlen);
	body[5 + vlen] = 0;
	body[6 + vlen] = 0;
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, body, 7 + vlen);
	CU_ASSERT_EQUAL(len, MAX_STARTUP_PACKET);
	CU_ASSERT_EQUAL(proto_parse_startup(pkt, len, &st, &why), 0);
	CU_ASSERT_EQUAL(strlen(startup_get(&st, "user")), vlen);

	/* one byte more is refused before its body is looked at */
	memset(body + 5, 'x', vlen + 1);
	body[6 + vlen] = 0;
	body[7 + vlen] = 0;
	len = make_startup(pkt, sizeof(pkt), PROTO_V3, body, 8 + vlen);
	CU_ASSERT_EQUAL(len, MAX_STARTUP_PACKET + 1);
	BAD_STARTUP(pkt, len, "invalid length of startup packet");
}

static void test_proto_startup_requests(void)
{
	char pkt[64];
	struct startup st;
	const char *why = NULL;
	uint32_t len;

	len = make_startup(pkt, sizeof(pkt), PROTO_SSL, BODY(""));
	CU_ASSERT_EQUAL(proto_parse_startup(pkt, len, &st, &why), 0);
	CU_ASSERT_EQUAL(st.code, PROTO_SSL);
	CU_ASSERT_EQUAL(st.nparams, 0);
	len = make_startup(pkt, sizeof(pkt), PROTO_SSL, BODY("\0\0\0\0"));
	BAD_STARTUP(pkt, len, "invalid length of startup packet");

	len = make_startup(pkt, sizeof(pkt), PROTO_GSSENC, BODY(""));
	CU_ASSERT_EQUAL(proto_parse_startup(pkt, len, &st, &why), 0);
	CU_ASSERT_EQUAL(st.code, PROTO_GSSENC);
	len = make_startup(pkt, sizeof(pkt), PROTO_GSSENC, BODY("x"));
	BAD_STARTUP(pkt, len, "invalid length of startup packet");

	/* CancelRequest: pid and key, the key's top bit set */
	len =
	    make_startup(pkt, sizeof(pkt), PROTO_CANCEL, BODY("\x00\x20\x00\x07\xde\xad\xbe\xef"));
	CU_ASSERT_EQUAL(len, 16);
	CU_ASSERT_EQUAL(proto_parse_startup(pkt, len, &st, &why), 0);
	CU_ASSERT_EQUAL(st.code, PROTO_CANCEL);
	CU_ASSERT_EQUAL(st.cancel_pid, 0x00200007);
	CU_ASSERT_EQUAL(st.cancel_key, (int32_t)0xdeadbeef);
	len = make_startup(pkt, sizeof(pkt), PROTO_CANCEL, BODY("\0\0\0\1"));
	BAD_STARTUP(pkt, len, "invalid length of cancel request");
	len = make_startup(pkt, sizeof(pkt), PROTO_CANCEL, BODY("\0\0\0\1\0\0\0\2\0"));
	BAD_STARTUP(pkt, len, "invalid length of cancel request");
}

static void test_proto_startup_old_protocol(void)
{
	char pkt[64];
	uint32_t len;

	len = make_startup(pkt, sizeof(pkt), 2u << 16, BODY("user\0bob\0\0"));
	BAD_STARTUP(pkt, len, "unsupported frontend protocol");
	len = make_startup(pkt, sizeof(pkt), 4u << 16, BODY("user\0bob\0\0"));
	BAD_STARTUP(pkt, len, "unsupported frontend protocol");
	len = make_startup(pkt, sizeof(pkt), 0, BODY("\0"));
	BAD_STARTUP(pkt, len, "unsupported frontend protocol");
}

static void test_proto_pbuf_overflow(void)
{
	char mem[16];
	struct pbuf b;

	memset(mem, '#', sizeof(mem));
	pb_init(&b, mem, 8);
	pb_u32(&b, 0x01020304);
	pb_u16(&b, 0x0506);
	pb_u8(&b, 7);
	CU_ASSERT_EQUAL(b.err, 0);
	CU_ASSERT_EQUAL(b.len, 7);
	pb_u8(&b, 8); /* exactly full */
	CU_ASSERT_EQUAL(b.err, 0);
	CU_ASSERT_EQUAL(b.len, 8);
	CU_ASSERT_EQUAL(memcmp(mem, "\1\2\3\4\5\6\7\10", 8), 0);
	pb_u8(&b, 9);
	CU_ASSERT_EQUAL(b.err, 1);
	CU_ASSERT_EQUAL(b.len, 8);
	CU_ASSERT_EQUAL(mem[8], '#');

	/* a string that does not fit writes nothing, and nothing after it
	 * does either, even what would fit */
	pb_init(&b, mem, 8);
	pb_u8(&b, 'a');
	pb_str(&b, "too long!");
	CU_ASSERT_EQUAL(b.err, 1);
	CU_ASSERT_EQUAL(b.len, 1);
	pb_u8(&b, 'b');
	CU_ASSERT_EQUAL(b.len, 1);
	CU_ASSERT_EQUAL(mem[1], '\2');

	/* a message cut short: pb_end leaves the buffer alone */
	memset(mem, '#', sizeof(mem));
	pb_init(&b, mem, 8);
	proto_query(&b, "select 1");
	CU_ASSERT_EQUAL(b.err, 1);
	CU_ASSERT_EQUAL(memcmp(mem, "Q\0\0\0\0###", 8), 0);
	CU_ASSERT_EQUAL(mem[8], '#');
}

/* An ErrorResponse built by proto_error parses back field by field. */
static void check_error_roundtrip(const char *sev, const char *code, const char *msg)
{
	char buf[512];
	struct pbuf b;
	const char *got[256] = {0};
	size_t off;
	uint32_t total;
	char type;

	pb_init(&b, buf, sizeof(buf));
	proto_error(&b, sev, code, msg);
	CU_ASSERT_FATAL(b.err == 0);
	CU_ASSERT_EQUAL(b.len,
	                1 + 4 + 3 * 2 + 2 * strlen(sev) + strlen(code) + 2 + strlen(msg) + 1);
	CU_ASSERT_EQUAL_FATAL(proto_header(buf, b.len, &type, &total, 8192), 1);
	CU_ASSERT_EQUAL(type, 'E');
	CU_ASSERT_EQUAL(total, b.len);
	CU_ASSERT_EQUAL(buf[b.len - 1], 0); /* the closing field code */
	for (off = 5; off < b.len && buf[off];) {
		unsigned char f = (unsigned char)buf[off++];
		const char *z = memchr(buf + off, 0, b.len - off);
		CU_ASSERT_FATAL(z != NULL);
		got[f] = buf + off;
		off = (size_t)(z - buf) + 1;
	}
	CU_ASSERT_EQUAL(off, b.len - 1);
	CU_ASSERT_FATAL(got['S'] && got['V'] && got['C'] && got['M']);
	CU_ASSERT_STRING_EQUAL(got['S'], sev);
	CU_ASSERT_STRING_EQUAL(got['V'], sev);
	CU_ASSERT_STRING_EQUAL(got['C'], code);
	CU_ASSERT_STRING_EQUAL(got['M'], msg);
}

static void test_proto_error_roundtrip(void)
{
	check_error_roundtrip("FATAL", "08P01", "invalid startup packet layout");
	check_error_roundtrip("ERROR", "53300", "no more connections allowed (max_client_conn)");
	check_error_roundtrip("FATAL", "28000", "");
}

void register_proto(void)
{
	CU_pSuite s = CU_add_suite("proto", NULL, NULL);

	ADD_TEST(s, test_proto_header_partial);
	ADD_TEST(s, test_proto_header_bad_length);
	ADD_TEST(s, test_proto_concatenated_messages);
	ADD_TEST(s, test_proto_startup_v3);
	ADD_TEST(s, test_proto_startup_malformed);
	ADD_TEST(s, test_proto_startup_too_many_params);
	ADD_TEST(s, test_proto_startup_size_limit);
	ADD_TEST(s, test_proto_startup_requests);
	ADD_TEST(s, test_proto_startup_old_protocol);
	ADD_TEST(s, test_proto_pbuf_overflow);
	ADD_TEST(s, test_proto_error_roundtrip);
}
