/*
 * scram.c — SCRAM-SHA-256 for both ends of an exchange (scram.h): verifier
 * parsing and making, key derivation, and the four message steps, as pure
 * functions over caller-owned state. Runs in workers (client auth, server
 * login) and in the master (--hash-password). Every comparison of a secret
 * or proof is constant-time (CRYPTO_memcmp).
 */
#include "scram.h"
#include "common.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t scram_b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64chars[v >> 18];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char ch)
{
	const char *p = ch ? strchr(b64chars, ch) : NULL;
	return p ? (int)(p - b64chars) : -1;
}

int scram_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
	size_t o = 0;
	if (n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			v[k] = b64_value(in[i + k]);
			if (in[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (v[k] < 0 || pad) {
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		for (int k = 0; k < 3 - pad; k++) {
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(w >> (16 - 8 * k));
		}
	}
	return (int)o;
}

static void sha256(const void *p, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int len = 0;
	if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL))
		memset(out, 0, SCRAM_KEY_LEN);
}

static void hmac(const uint8_t key[SCRAM_KEY_LEN], const void *msg, size_t n,
                 uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int len = 0;
	if (!HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, msg, n, out, &len))
		memset(out, 0, SCRAM_KEY_LEN);
}

int scram_salted_password(const char *password, const uint8_t *salt, int salt_len, int iterations,
                          uint8_t out[SCRAM_KEY_LEN])
{
	/* SASLprep is the identity for ASCII; PostgreSQL also falls back to the
	 * raw bytes when a password is not valid UTF-8 (see README). */
	return PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_len, iterations,
	                         EVP_sha256(), SCRAM_KEY_LEN, out)
	           ? 0
	           : -1;
}

void scram_keys_from_salted(const uint8_t salted[SCRAM_KEY_LEN], uint8_t client_key[SCRAM_KEY_LEN],
                            uint8_t server_key[SCRAM_KEY_LEN])
{
	hmac(salted, "Client Key", 10, client_key);
	hmac(salted, "Server Key", 10, server_key);
}

void scram_stored_key(const uint8_t client_key[SCRAM_KEY_LEN], uint8_t out[SCRAM_KEY_LEN])
{
	sha256(client_key, SCRAM_KEY_LEN, out);
}

/* Decode exactly want bytes of base64 from [p, end). */
static int b64_exact(const char *p, const char *end, uint8_t *out, int want)
{
	uint8_t tmp[SCRAM_MAX_SALT + 4];
	int n = end > p ? scram_b64_decode(p, (size_t)(end - p), tmp, sizeof(tmp)) : -1;
	if (n < 1 || (want > 0 && n != want) || n > SCRAM_MAX_SALT)
		return -1;
	memcpy(out, tmp, (size_t)n);
	return n;
}

int scram_parse_secret(const char *text, struct scram_secret *out)
{
	const char *p = text, *colon, *dollar, *colon2;
	char *end;
	long iter;

	memset(out, 0, sizeof(*out));
	if (strncmp(p, "SCRAM-SHA-256$", 14) != 0)
		return -1;
	p += 14;
	iter = strtol(p, &end, 10);
	if (end == p || *end != ':' || iter < 1 || iter > SCRAM_MAX_ITERATIONS)
		return -1;
	colon = end;
	dollar = strchr(colon, '$');
	colon2 = dollar ? strchr(dollar, ':') : NULL;
	if (!dollar || !colon2)
		return -1;
	out->iterations = (int)iter;
	out->salt_len = b64_exact(colon + 1, dollar, out->salt, 0);
	if (out->salt_len < 0 ||
	    b64_exact(dollar + 1, colon2, out->stored_key, SCRAM_KEY_LEN) < 0 ||
	    b64_exact(colon2 + 1, colon2 + 1 + strlen(colon2 + 1), out->server_key, SCRAM_KEY_LEN) <
	        0)
		return -1;
	return 0;
}

int scram_make_secret(const char *password, const uint8_t *salt, int salt_len, int iterations,
                      struct scram_secret *out)
{
	uint8_t salted[SCRAM_KEY_LEN], ck[SCRAM_KEY_LEN];

	if (salt_len < 1 || salt_len > SCRAM_MAX_SALT ||
	    scram_salted_password(password, salt, salt_len, iterations, salted) < 0)
		return -1;
	memset(out, 0, sizeof(*out));
	out->iterations = iterations;
	out->salt_len = salt_len;
	memcpy(out->salt, salt, (size_t)salt_len);
	scram_keys_from_salted(salted, ck, out->server_key);
	scram_stored_key(ck, out->stored_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ck, sizeof(ck));
	return 0;
}

int scram_format_secret(const struct scram_secret *s, char *out, size_t cap)
{
	char salt[SCRAM_MAX_SALT * 2], stored[64], server[64];
	int n;

	scram_b64_encode(s->salt, (size_t)s->salt_len, salt);
	scram_b64_encode(s->stored_key, SCRAM_KEY_LEN, stored);
	scram_b64_encode(s->server_key, SCRAM_KEY_LEN, server);
	n = snprintf(out, cap, "SCRAM-SHA-256$%d:%s$%s:%s", s->iterations, salt, stored, server);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

void scram_mock_secret(const char *user, const uint8_t key[SCRAM_KEY_LEN], struct scram_secret *out)
{
	uint8_t h[SCRAM_KEY_LEN];

	hmac(key, user, strlen(user), h);
	memset(out, 0, sizeof(*out));
	out->iterations = SCRAM_DEFAULT_ITERATIONS;
	out->salt_len = SCRAM_SALT_LEN;
	memcpy(out->salt, h, SCRAM_SALT_LEN);
	/* no ClientKey hashes to this: a proof can never match */
	hmac(key, "stored", 6, out->stored_key);
	hmac(key, "server", 6, out->server_key);
}

int scram_cert_endpoint_hash(void *x509, uint8_t out[SCRAM_CB_MAX])
{
	int md_nid = NID_undef;
	unsigned int n = 0;
	const EVP_MD *md;

	if (!x509 || !OBJ_find_sigid_algs(X509_get_signature_nid(x509), &md_nid, NULL))
		return -1;
	if (md_nid == NID_md5 || md_nid == NID_sha1)
		md_nid = NID_sha256;
	md = EVP_get_digestbynid(md_nid);
	if (!md || EVP_MD_get_size(md) > SCRAM_CB_MAX || !X509_digest(x509, md, out, &n))
		return -1;
	return (int)n;
}

int scram_random_nonce(char out[32])
{
	uint8_t raw[SCRAM_NONCE_RAW];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	scram_b64_encode(raw, sizeof(raw), out);
	return 0;
}

/* ---------------------------------------------------------------- helpers */

/* An attribute "X=value" at *p (value up to ',' or end): value span, and *p
 * moved past the ','. */
static bool attr(const char **p, const char *end, char name, const char **v, size_t *vlen)
{
	const char *s = *p, *comma;
	if (end - s < 2 || s[0] != name || s[1] != '=')
		return false;
	s += 2;
	comma = memchr(s, ',', (size_t)(end - s));
	*v = s;
	*vlen = comma ? (size_t)(comma - s) : (size_t)(end - s);
	*p = comma ? comma + 1 : end;
	return true;
}

static bool printable_nonce(const char *v, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e || v[i] == ',')
			return false;
	return true;
}

static int copy_span(char *dst, size_t cap, const char *p, size_t n)
{
	if (n >= cap)
		return -1;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
static int auth_message(char *out, size_t cap, const char *bare, const char *sfirst,
                        const char *cfinal, size_t cfinal_len)
{
	int n = snprintf(out, cap, "%s,%s,%.*s", bare, sfirst, (int)cfinal_len, cfinal);
	return n > 0 && (size_t)n < cap ? n : -1;
}

/* ------------------------------------------------------------ server side */

int scram_server_first(struct scram_server *s, bool plus, const char *msg, size_t len,
                       const char *server_nonce, char *out, size_t cap)
{
	const char *p = msg, *end = msg + len, *v;
	char salt[SCRAM_MAX_SALT * 2];
	size_t vlen;
	int n;

	if (len == 0 || len >= SCRAM_MSG_MAX || memchr(msg, 0, len))
		return SCRAM_MALFORMED;
	if (plus) {
		static const char cb[] = "p=tls-server-end-point,";
		if (!s->plus_offered || len < sizeof(cb) - 1 || memcmp(p, cb, sizeof(cb) - 1) != 0)
			return SCRAM_MALFORMED;
		p += sizeof(cb) - 1;
	} else if ((*p == 'n' || (*p == 'y' && !s->plus_offered)) && len > 1 && p[1] == ',') {
		/* 'y' while we offered -PLUS: the client was downgraded (RFC 5802 §6) */
		p += 2;
	} else {
		return SCRAM_MALFORMED;
	}
	if (p >= end || *p != ',') /* an authzid: PostgreSQL does not support it either */
		return SCRAM_MALFORMED;
	p++;
	s->plus = plus;
	if (copy_span(s->gs2_header, sizeof(s->gs2_header), msg, (size_t)(p - msg)) < 0 ||
	    copy_span(s->client_first_bare, sizeof(s->client_first_bare), p, (size_t)(end - p)) < 0)
		return SCRAM_MALFORMED;
	if (!attr(&p, end, 'n', &v, &vlen) || !attr(&p, end, 'r', &v, &vlen) ||
	    !printable_nonce(v, vlen))
		return SCRAM_MALFORMED; /* m= (mandatory extension) lands here too */
	n = snprintf(s->nonce, sizeof(s->nonce), "%.*s%s", (int)vlen, v, server_nonce);
	if (n < 0 || (size_t)n >= sizeof(s->nonce))
		return SCRAM_MALFORMED;
	scram_b64_encode(s->secret.salt, (size_t)s->secret.salt_len, salt);
	n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%d", s->nonce, salt,
	             s->secret.iterations);
	if (n < 0 || (size_t)n >= sizeof(s->server_first) || (size_t)n >= cap)
		return SCRAM_MALFORMED;
	memcpy(out, s->server_first, (size_t)n + 1);
	return SCRAM_OK;
}

/* c= must be base64(gs2 header [+ our certificate hash]). */
static bool cbind_ok(const struct scram_server *s, const char *v, size_t vlen)
{
	uint8_t input[sizeof(s->gs2_header) + SCRAM_CB_MAX];
	char want[sizeof(input) * 2];
	size_t hl = strlen(s->gs2_header), n = hl;

	memcpy(input, s->gs2_header, hl);
	if (s->plus) {
		memcpy(input + hl, s->cb_data, (size_t)s->cb_len);
		n += (size_t)s->cb_len;
	}
	n = scram_b64_encode(input, n, want);
	return n == vlen && CRYPTO_memcmp(want, v, n) == 0;
}

int scram_server_final(struct scram_server *s, const char *msg, size_t len, char *out, size_t cap)
{
	char amsg[3 * SCRAM_MSG_MAX];
	uint8_t proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN],
	    ssig[SCRAM_KEY_LEN];
	const char *p = msg, *end = msg + len, *v, *pp = NULL;
	size_t vlen;
	int an;
	bool cb;

	if (len == 0 || len >= SCRAM_MSG_MAX || memchr(msg, 0, len) || cap < 50)
		return SCRAM_MALFORMED;
	for (const char *q = msg; q + 3 <= end; q++) /* the proof is the last attribute */
		if (memcmp(q, ",p=", 3) == 0)
			pp = q;
	if (!pp || !attr(&p, pp, 'c', &v, &vlen))
		return SCRAM_MALFORMED;
	cb = cbind_ok(s, v, vlen);
	if (!attr(&p, pp, 'r', &v, &vlen) || vlen != strlen(s->nonce) ||
	    memcmp(v, s->nonce, vlen) != 0)
		return SCRAM_MALFORMED;
	if (b64_exact(pp + 3, end, proof, SCRAM_KEY_LEN) < 0)
		return SCRAM_MALFORMED;
	an = auth_message(amsg, sizeof(amsg), s->client_first_bare, s->server_first, msg,
	                  (size_t)(pp - msg));
	if (an < 0)
		return SCRAM_MALFORMED;
	hmac(s->secret.stored_key, amsg, (size_t)an, sig);
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		s->client_key[i] = proof[i] ^ sig[i];
	scram_stored_key(s->client_key, stored);
	if (!cb || CRYPTO_memcmp(stored, s->secret.stored_key, SCRAM_KEY_LEN) != 0) {
		OPENSSL_cleanse(s->client_key, SCRAM_KEY_LEN);
		return SCRAM_BAD_PROOF;
	}
	hmac(s->secret.server_key, amsg, (size_t)an, ssig);
	memcpy(out, "v=", 2);
	scram_b64_encode(ssig, SCRAM_KEY_LEN, out + 2);
	return SCRAM_OK;
}

/* ------------------------------------------------------------ client side */

int scram_client_first(struct scram_client *c, const char *user, const char *nonce, char *out,
                       size_t cap)
{
	char name[3 * 64 + 1];
	size_t k = 0;
	int n;

	for (const char *u = user; *u && k + 4 < sizeof(name); u++) { /* RFC 5802 saslname */
		if (*u == ',' || *u == '=') {
			memcpy(name + k, *u == ',' ? "=2C" : "=3D", 3);
			k += 3;
		} else {
			name[k++] = *u;
		}
	}
	name[k] = '\0';
	strlcpy_s(c->nonce, nonce, sizeof(c->nonce));
	n = snprintf(c->client_first_bare, sizeof(c->client_first_bare), "n=%s,r=%s", name,
	             c->nonce);
	if (n < 0 || (size_t)n >= sizeof(c->client_first_bare))
		return -1;
	n = snprintf(out, cap, "n,,%s", c->client_first_bare);
	return n > 0 && (size_t)n < cap ? n : -1;
}

int scram_client_final(struct scram_client *c, const char *password, const char *msg, size_t len,
                       char *out, size_t cap)
{
	char sfirst[SCRAM_MSG_MAX], amsg[3 * SCRAM_MSG_MAX], wp[SCRAM_MSG_MAX];
	uint8_t salt[SCRAM_MAX_SALT], salted[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN],
	    sig[SCRAM_KEY_LEN];
	uint8_t proof[SCRAM_KEY_LEN];
	const char *p = msg, *end = msg + len, *nonce, *sv, *iv;
	size_t nlen, slen, ilen;
	char ibuf[16], pb[64];
	int salt_len, iter, an, wn;

	if (len >= sizeof(sfirst) || memchr(msg, 0, len) || !attr(&p, end, 'r', &nonce, &nlen) ||
	    !attr(&p, end, 's', &sv, &slen) || !attr(&p, end, 'i', &iv, &ilen))
		return -1;
	if (nlen <= strlen(c->nonce) || memcmp(nonce, c->nonce, strlen(c->nonce)) != 0 ||
	    !printable_nonce(nonce, nlen))
		return -1;
	salt_len = b64_exact(sv, sv + slen, salt, 0);
	if (salt_len < 0 || copy_span(ibuf, sizeof(ibuf), iv, ilen) < 0)
		return -1;
	iter = atoi(ibuf);
	if (iter < 1 || iter > SCRAM_MAX_ITERATIONS)
		return -1;
	if (!c->have_keys) {
		if (!password || scram_salted_password(password, salt, salt_len, iter, salted) < 0)
			return -1;
		scram_keys_from_salted(salted, c->client_key, c->server_key);
		OPENSSL_cleanse(salted, sizeof(salted));
		c->have_keys = true;
	}
	memcpy(sfirst, msg, len);
	sfirst[len] = '\0';
	wn = snprintf(wp, sizeof(wp), "c=biws,r=%.*s", (int)nlen, nonce);
	an = wn > 0 && (size_t)wn < sizeof(wp)
	         ? auth_message(amsg, sizeof(amsg), c->client_first_bare, sfirst, wp, (size_t)wn)
	         : -1;
	if (an < 0)
		return -1;
	scram_stored_key(c->client_key, stored);
	hmac(stored, amsg, (size_t)an, sig);
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = c->client_key[i] ^ sig[i];
	hmac(c->server_key, amsg, (size_t)an, c->server_signature);
	scram_b64_encode(proof, SCRAM_KEY_LEN, pb);
	wn = snprintf(out, cap, "%s,p=%s", wp, pb);
	return wn > 0 && (size_t)wn < cap ? wn : -1;
}

int scram_client_verify(const struct scram_client *c, const char *msg, size_t len)
{
	const char *p = msg, *v;
	uint8_t sig[SCRAM_KEY_LEN];
	size_t vlen;

	if (!attr(&p, msg + len, 'v', &v, &vlen) || b64_exact(v, v + vlen, sig, SCRAM_KEY_LEN) < 0)
		return SCRAM_MALFORMED;
	return CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) == 0 ? SCRAM_OK
	                                                                   : SCRAM_BAD_PROOF;
}
