/*
 * test_scram.c — shm/scram.c and shm/password.c: RFC 7677's SCRAM-SHA-256
 * example on both ends, client against server with random nonces, channel
 * binding, wrong passwords and mock secrets, verifier round trips and bad
 * verifiers, base64 edge cases, PostgreSQL's md5 hashing.
 */
#include "unit.h"
#include "shm/common.h"
#include "shm/password.h"
#include "shm/scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#define RFC_CFIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SFIRST                                                                                 \
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CFINAL                                                                                 \
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+"           \
	"Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static void rfc_secret(struct scram_secret *s)
{
	uint8_t salt[32];
	int n = scram_b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, sizeof(salt));
	CU_ASSERT_FATAL(n == 16);
	CU_ASSERT_FATAL(scram_make_secret("pencil", salt, n, 4096, s) == 0);
}

static void test_scram_rfc7677_server(void)
{
	struct scram_server s;
	char out[SCRAM_MSG_MAX];

	memset(&s, 0, sizeof(s));
	rfc_secret(&s.secret);
	CU_ASSERT_EQUAL(scram_server_first(&s, false, RFC_CFIRST, strlen(RFC_CFIRST), RFC_SNONCE,
	                                   out, sizeof(out)),
	                SCRAM_OK);
	CU_ASSERT_STRING_EQUAL(out, RFC_SFIRST);
	CU_ASSERT_EQUAL(scram_server_final(&s, RFC_CFINAL, strlen(RFC_CFINAL), out, sizeof(out)),
	                SCRAM_OK);
	CU_ASSERT_STRING_EQUAL(out, RFC_SFINAL);
}

static void test_scram_rfc7677_client(void)
{
	struct scram_client c;
	char out[SCRAM_MSG_MAX];

	memset(&c, 0, sizeof(c));
	CU_ASSERT(scram_client_first(&c, "user", "rOprNGfwEbeRWgbNEkqO", out, sizeof(out)) > 0);
	CU_ASSERT_STRING_EQUAL(out, RFC_CFIRST);
	CU_ASSERT(
	    scram_client_final(&c, "pencil", RFC_SFIRST, strlen(RFC_SFIRST), out, sizeof(out)) > 0);
	CU_ASSERT_STRING_EQUAL(out, RFC_CFINAL);
	CU_ASSERT_EQUAL(scram_client_verify(&c, RFC_SFINAL, strlen(RFC_SFINAL)), SCRAM_OK);
	CU_ASSERT_EQUAL(scram_client_verify(&c, "v=AAAA", 6), SCRAM_MALFORMED);
	CU_ASSERT_EQUAL(scram_client_verify(&c, "e=invalid-proof", 15), SCRAM_MALFORMED);
}

/* One whole exchange; returns the server's verdict. */
static int exchange(const struct scram_secret *sec, const char *password, bool plus, int cb_len,
                    uint8_t client_key[SCRAM_KEY_LEN])
{
	struct scram_server s;
	struct scram_client c;
	char m1[SCRAM_MSG_MAX], m2[SCRAM_MSG_MAX], m3[SCRAM_MSG_MAX], m4[SCRAM_MSG_MAX], nonce[32];
	int r;

	memset(&s, 0, sizeof(s));
	memset(&c, 0, sizeof(c));
	s.secret = *sec;
	s.plus_offered = plus;
	s.cb_len = cb_len;
	memset(s.cb_data, 0xab, sizeof(s.cb_data));
	CU_ASSERT_FATAL(scram_random_nonce(nonce) == 0);
	CU_ASSERT_FATAL(scram_client_first(&c, "", nonce, m1, sizeof(m1)) > 0);
	CU_ASSERT_FATAL(scram_random_nonce(nonce) == 0);
	CU_ASSERT_FATAL(scram_server_first(&s, false, m1, strlen(m1), nonce, m2, sizeof(m2)) ==
	                SCRAM_OK);
	CU_ASSERT_FATAL(scram_client_final(&c, password, m2, strlen(m2), m3, sizeof(m3)) > 0);
	r = scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4));
	if (r == SCRAM_OK) {
		CU_ASSERT_EQUAL(scram_client_verify(&c, m4, strlen(m4)), SCRAM_OK);
		if (client_key)
			memcpy(client_key, s.client_key, SCRAM_KEY_LEN);
	}
	return r;
}

static void test_scram_roundtrip(void)
{
	struct scram_secret sec, parsed;
	uint8_t salt[SCRAM_SALT_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	uint8_t ck[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	char text[256];

	CU_ASSERT_FATAL(scram_make_secret("s3cret,=x", salt, sizeof(salt), 4096, &sec) == 0);
	CU_ASSERT_EQUAL(exchange(&sec, "s3cret,=x", false, 0, ck), SCRAM_OK);
	scram_stored_key(ck, stored); /* the recovered ClientKey is the real one */
	CU_ASSERT(memcmp(stored, sec.stored_key, SCRAM_KEY_LEN) == 0);
	CU_ASSERT_EQUAL(exchange(&sec, "wrong", false, 0, NULL), SCRAM_BAD_PROOF);
	CU_ASSERT_EQUAL(exchange(&sec, "", false, 0, NULL), SCRAM_BAD_PROOF);
	CU_ASSERT_FATAL(scram_format_secret(&sec, text, sizeof(text)) == 0);
	CU_ASSERT_FATAL(scram_parse_secret(text, &parsed) == 0);
	CU_ASSERT(memcmp(&parsed, &sec, sizeof(sec)) == 0);
}

/* The client's ClientKey/ServerKey alone (pass-through) log in as well. */
static void test_scram_passthrough_keys(void)
{
	struct scram_secret sec;
	struct scram_server s;
	struct scram_client c, c2;
	uint8_t salt[SCRAM_SALT_LEN] = {9};
	char m1[SCRAM_MSG_MAX], m2[SCRAM_MSG_MAX], m3[SCRAM_MSG_MAX], m4[SCRAM_MSG_MAX];

	CU_ASSERT_FATAL(scram_make_secret("pw", salt, sizeof(salt), 4096, &sec) == 0);
	/* first login with the password gives the keys */
	memset(&c, 0, sizeof(c));
	memset(&s, 0, sizeof(s));
	s.secret = sec;
	CU_ASSERT_FATAL(scram_client_first(&c, "", "abc", m1, sizeof(m1)) > 0);
	CU_ASSERT_FATAL(scram_server_first(&s, false, m1, strlen(m1), "def", m2, sizeof(m2)) ==
	                SCRAM_OK);
	CU_ASSERT_FATAL(scram_client_final(&c, "pw", m2, strlen(m2), m3, sizeof(m3)) > 0);
	CU_ASSERT_FATAL(scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4)) == SCRAM_OK);
	/* second login: no password, the server's keys */
	memset(&c2, 0, sizeof(c2));
	c2.have_keys = true;
	memcpy(c2.client_key, s.client_key, SCRAM_KEY_LEN);
	memcpy(c2.server_key, sec.server_key, SCRAM_KEY_LEN);
	memset(&s, 0, sizeof(s));
	s.secret = sec;
	CU_ASSERT_FATAL(scram_client_first(&c2, "", "xyz", m1, sizeof(m1)) > 0);
	CU_ASSERT_FATAL(scram_server_first(&s, false, m1, strlen(m1), "uvw", m2, sizeof(m2)) ==
	                SCRAM_OK);
	CU_ASSERT_FATAL(scram_client_final(&c2, NULL, m2, strlen(m2), m3, sizeof(m3)) > 0);
	CU_ASSERT_EQUAL(scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4)), SCRAM_OK);
	CU_ASSERT_EQUAL(scram_client_verify(&c2, m4, strlen(m4)), SCRAM_OK);
}

/* A client-final for server state s with binding bytes cb (cb_len) and the
 * password's real proof. */
static void plus_final(const struct scram_server *s, const char *gs2, const uint8_t *cb, int cb_len,
                       const char *password, char *out, size_t cap)
{
	uint8_t cbin[128], salted[SCRAM_KEY_LEN], ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	char cb64[200], wp[400], amsg[2000], p64[64];
	unsigned int n = 0;
	size_t hl = strlen(gs2);

	memcpy(cbin, gs2, hl);
	memcpy(cbin + hl, cb, (size_t)cb_len);
	scram_b64_encode(cbin, hl + (size_t)cb_len, cb64);
	snprintf(wp, sizeof(wp), "c=%s,r=%s", cb64, s->nonce);
	snprintf(amsg, sizeof(amsg), "%s,%s,%s", s->client_first_bare, s->server_first, wp);
	CU_ASSERT_FATAL(scram_salted_password(password, s->secret.salt, s->secret.salt_len,
	                                      s->secret.iterations, salted) == 0);
	scram_keys_from_salted(salted, ck, sk);
	scram_stored_key(ck, stored);
	HMAC(EVP_sha256(), stored, SCRAM_KEY_LEN, (const uint8_t *)amsg, strlen(amsg), sig, &n);
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = ck[i] ^ sig[i];
	scram_b64_encode(proof, SCRAM_KEY_LEN, p64);
	snprintf(out, cap, "%s,p=%s", wp, p64);
}

/* tls-server-end-point: c= carries the gs2 header and our certificate hash. */
static void test_scram_channel_binding(void)
{
	struct scram_secret sec;
	struct scram_server s;
	uint8_t salt[4] = {1, 2, 3, 4}, cb[32], other[32];
	char m2[SCRAM_MSG_MAX], m3[SCRAM_MSG_MAX], m4[SCRAM_MSG_MAX];
	const char *first = "p=tls-server-end-point,,n=,r=cnonce";

	CU_ASSERT_FATAL(scram_make_secret("pw", salt, 4, 4096, &sec) == 0);
	memset(cb, 0x5a, sizeof(cb));
	memset(other, 0x5b, sizeof(other));
	for (int round = 0; round < 3; round++) {
		memset(&s, 0, sizeof(s));
		s.secret = sec;
		s.plus_offered = true;
		s.cb_len = 32;
		memcpy(s.cb_data, cb, 32);
		/* 'y' while we offered -PLUS is a downgrade; 'p' without -PLUS a mismatch */
		CU_ASSERT_EQUAL(scram_server_first(&s, false, "y,,n=,r=a", 9, "b", m2, sizeof(m2)),
		                SCRAM_MALFORMED);
		CU_ASSERT_EQUAL(
		    scram_server_first(&s, false, first, strlen(first), "b", m2, sizeof(m2)),
		    SCRAM_MALFORMED);
		CU_ASSERT_FATAL(scram_server_first(&s, true, first, strlen(first), "snonce", m2,
		                                   sizeof(m2)) == SCRAM_OK);
		plus_final(&s, "p=tls-server-end-point,,", round == 1 ? other : cb, 32,
		           round == 2 ? "no" : "pw", m3, sizeof(m3));
		/* right binding + password; another certificate's hash; wrong password */
		CU_ASSERT_EQUAL(scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4)),
		                round == 0 ? SCRAM_OK : SCRAM_BAD_PROOF);
	}
	/* without TLS, 'y' is fine */
	memset(&s, 0, sizeof(s));
	s.secret = sec;
	CU_ASSERT_EQUAL(scram_server_first(&s, false, "y,,n=,r=a", 9, "b", m2, sizeof(m2)),
	                SCRAM_OK);
}

static void test_scram_mock_secret(void)
{
	struct scram_secret a, b;
	uint8_t key[SCRAM_KEY_LEN] = {7};

	scram_mock_secret("nobody", key, &a);
	scram_mock_secret("nobody", key, &b);
	CU_ASSERT(memcmp(&a, &b, sizeof(a)) == 0); /* stable salt for one name */
	scram_mock_secret("other", key, &b);
	CU_ASSERT(memcmp(a.salt, b.salt, SCRAM_SALT_LEN) != 0);
	CU_ASSERT_EQUAL(exchange(&a, "", false, 0, NULL), SCRAM_BAD_PROOF);
	CU_ASSERT_EQUAL(exchange(&a, "nobody", false, 0, NULL), SCRAM_BAD_PROOF);
}

static void test_scram_bad_secrets(void)
{
	struct scram_secret s;
	CU_ASSERT_EQUAL(scram_parse_secret("md5abc", &s), -1);
	CU_ASSERT_EQUAL(scram_parse_secret("SCRAM-SHA-256$", &s), -1);
	CU_ASSERT_EQUAL(scram_parse_secret("SCRAM-SHA-256$0:AAAA$AAAA:AAAA", &s), -1);
	CU_ASSERT_EQUAL(scram_parse_secret("SCRAM-SHA-256$4096:AAAA$AAAA:AAAA", &s),
	                -1); /* short keys */
	CU_ASSERT_EQUAL(scram_parse_secret("SCRAM-SHA-256$4096:!!!!$"
	                                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
	                                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	                                   &s),
	                -1);
	CU_ASSERT_EQUAL(scram_parse_secret("SCRAM-SHA-256$4096:AAAA$"
	                                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
	                                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	                                   &s),
	                0);
	CU_ASSERT_EQUAL(s.salt_len, 3);
}

static void test_scram_malformed_messages(void)
{
	struct scram_server s;
	char out[SCRAM_MSG_MAX];
	const char *bad[] = {"",      "x,,n=,r=a", "n,a=bob,n=,r=a", "n,,m=ext,n=,r=a", "n,,n=,r=",
	                     "n,,n=", "n",         "n,,r=abc"};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		memset(&s, 0, sizeof(s));
		rfc_secret(&s.secret);
		CU_ASSERT_EQUAL(
		    scram_server_first(&s, false, bad[i], strlen(bad[i]), "x", out, sizeof(out)),
		    SCRAM_MALFORMED);
	}
	memset(&s, 0, sizeof(s));
	rfc_secret(&s.secret);
	CU_ASSERT_FATAL(scram_server_first(&s, false, RFC_CFIRST, strlen(RFC_CFIRST), RFC_SNONCE,
	                                   out, sizeof(out)) == SCRAM_OK);
	CU_ASSERT_EQUAL(scram_server_final(&s, "c=biws,r=wrong,p=AAAA", 21, out, sizeof(out)),
	                SCRAM_MALFORMED);
	CU_ASSERT_EQUAL(scram_server_final(&s, "c=biws", 6, out, sizeof(out)), SCRAM_MALFORMED);
}

static void test_scram_base64(void)
{
	uint8_t out[8];
	char enc[16];
	CU_ASSERT_EQUAL(scram_b64_encode((const uint8_t *)"ab", 2, enc), 4);
	CU_ASSERT_STRING_EQUAL(enc, "YWI=");
	CU_ASSERT_EQUAL(scram_b64_decode("YWI=", 4, out, sizeof(out)), 2);
	CU_ASSERT_EQUAL(scram_b64_decode("YW=I", 4, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(scram_b64_decode("YWI", 3, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(scram_b64_decode("YWJj", 4, out, 2), -1); /* no room */
}

static void test_password_md5(void)
{
	char h[PASSWORD_MD5_LEN + 1], r[PASSWORD_MD5_LEN + 1];
	const uint8_t salt[4] = {1, 2, 3, 4};

	password_md5("pencil", "user", h);
	CU_ASSERT_STRING_EQUAL(h, "md520c46e3762c864548e296b33c3406aa9");
	password_md5_salted(h, salt, r);
	CU_ASSERT_STRING_EQUAL(r, "md54376eb6913b38f9aaff38dc7cf19ca76");
	CU_ASSERT_EQUAL(password_kind(h), PASSWORD_MD5);
	CU_ASSERT_EQUAL(password_kind("md5notahash"), PASSWORD_CLEAR);
	CU_ASSERT_EQUAL(password_kind("SCRAM-SHA-256$4096:x"), PASSWORD_SCRAM);
	CU_ASSERT(password_equal("abc", "abc"));
	CU_ASSERT(!password_equal("abc", "abd"));
	CU_ASSERT(!password_equal("abc", "abcd"));
}

void register_scram(void)
{
	CU_pSuite s = CU_add_suite("scram", NULL, NULL);
	ADD_TEST(s, test_scram_rfc7677_server);
	ADD_TEST(s, test_scram_rfc7677_client);
	ADD_TEST(s, test_scram_roundtrip);
	ADD_TEST(s, test_scram_passthrough_keys);
	ADD_TEST(s, test_scram_channel_binding);
	ADD_TEST(s, test_scram_mock_secret);
	ADD_TEST(s, test_scram_bad_secrets);
	ADD_TEST(s, test_scram_malformed_messages);
	ADD_TEST(s, test_scram_base64);
	ADD_TEST(s, test_password_md5);
}
