/*
 * auth.c — client authentication in the worker (auth_type): trust, any,
 * plain, md5, scram-sha-256 (and -PLUS over TLS), cert, and hba, which picks
 * one of those per connection (auth_hba.c). Passwords come from the
 * auth_file (userlist.c), else from auth_query (auth_query.c); SCRAM math
 * from shm/scram.c. Runs in worker processes; a client's exchange state
 * lives in c->auth only while it is in CL_AUTH (or waiting for its
 * auth_query), and client_login_timeout bounds it (client.c's tick).
 *
 * Invariants: a failure says only `28P01 password authentication failed
 * for user "…"` (an unknown user goes through the same exchange against a
 * mock secret); the log line says why. Secrets are compared with
 * CRYPTO_memcmp. A client that logs in with SCRAM against a verifier leaves
 * its ClientKey/ServerKey in the pool row for the server login
 * (pass-through, as PgBouncer >= 1.14); one that logs in with an md5 hash
 * from auth_query leaves the hash there.
 */
#include "worker.h"
#include "proto.h"
#include "userlist.h"
#include "shm/password.h"
#include "shm/scram.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_MSG_MAX 4096 /* a password or SASL message; PgBouncer's limit is lower */

struct auth {
	int want;        /* the auth_type in force for this client (hba resolved) */
	int method;      /* AUTH_PLAIN, AUTH_MD5 or AUTH_SCRAM: what is asked */
	int step;        /* SCRAM: 0 before SASLInitialResponse, 1 after */
	bool known;      /* the user is in the auth_file, or auth_query found it */
	bool queried;    /* auth_query was asked (its cache included) */
	bool from_query; /* stored came from auth_query */
	char stored[CFG_PASSWORD_LEN];
	uint8_t salt[4]; /* md5 challenge */
	struct scram_server scram;
};

static uint8_t mock_key[SCRAM_KEY_LEN];
static bool mock_key_set;

void auth_free(struct client *c)
{
	auth_query_abandon(c);
	OPENSSL_cleanse(c->auth, sizeof(*c->auth));
	free(c->auth);
	c->auth = NULL;
}

/* 'R' with a code and optional data. */
static void send_auth_request(struct client *c, uint32_t code, const void *data, size_t len)
{
	char mem[SCRAM_MSG_MAX + 64];
	struct pbuf b;
	size_t pos;

	pb_init(&b, mem, sizeof(mem));
	pos = pb_begin(&b, 'R');
	pb_u32(&b, code);
	if (len)
		pb_bytes(&b, data, len);
	pb_end(&b, pos);
	if (!b.err)
		client_write(c, b.p, b.len);
}

static void fail(struct client *c, const char *why)
{
	if (c->auth && c->auth->from_query)
		auth_query_forget(c); /* the password may have changed on the server */
	log_error(LOG_WARNING, 0, "C-%d: db=%s user=%s addr=%s authentication failed: %s", c->row,
	          c->db, c->user, c->addr, why);
	client_error_close(c, "28P01", "password authentication failed for user \"%s\"", c->user);
}

/* Pass-through only helps when the server login is the client's own user
 * without a password in the database entry. */
static bool passthrough(const struct client *c)
{
	const struct config_db *db = &W.cfg->dbs[c->db_index];
	return !db->user[0] && !db->password[0] && c->pool >= 0;
}

static void keep_scram_keys(struct client *c, const uint8_t *ck, const uint8_t *sk)
{
	if (passthrough(c))
		shm_pool_set_scram_keys(W.shm, c->pool, ck, sk);
}

static void succeed(struct client *c)
{
	struct auth *a = c->auth;
	if (a->from_query && password_kind(a->stored) == PASSWORD_MD5 && passthrough(c))
		shm_pool_set_md5(W.shm, c->pool, a->stored); /* for md5 server logins */
	auth_free(c);
	client_login_done(c);
}

static const char *unknown_user(const struct client *c)
{
	return c->auth->queried ? "user not in auth_file nor found by auth_query"
	                        : "user not in auth_file";
}

static bool scram_secret_for(struct client *c, struct scram_secret *sec)
{
	struct auth *a = c->auth;
	uint8_t salt[SCRAM_SALT_LEN];

	if (!a->known) {
		if (!mock_key_set && RAND_bytes(mock_key, sizeof(mock_key)) == 1)
			mock_key_set = true;
		scram_mock_secret(c->user, mock_key, sec);
		return true;
	}
	switch (password_kind(a->stored)) {
	case PASSWORD_SCRAM: return scram_parse_secret(a->stored, sec) == 0;
	case PASSWORD_CLEAR:
		return RAND_bytes(salt, sizeof(salt)) == 1 &&
		       scram_make_secret(a->stored, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS,
		                         sec) == 0;
	default: return false; /* an md5 hash cannot answer SCRAM */
	}
}

static int start_scram(struct client *c)
{
	static const char mechs[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
	struct auth *a = c->auth;
	bool plus = false;

	a->method = AUTH_SCRAM;
	if (!scram_secret_for(c, &a->scram.secret)) {
		fail(c, "the stored password cannot be used for SCRAM (an md5 hash?)");
		return ST_ERROR;
	}
	if (c->tls) {
		a->scram.cb_len = tls_endpoint_hash(c->tls, a->scram.cb_data);
		plus = a->scram.cb_len > 0;
	}
	a->scram.plus_offered = plus;
	if (plus)
		send_auth_request(c, 10, mechs, sizeof(mechs)); /* both names and the final "" */
	else
		send_auth_request(c, 10, mechs + 19, sizeof(mechs) - 19);
	return ST_AGAIN;
}

static bool cert_ok(struct client *c)
{
	char cn[CFG_NAME_LEN];
	if (!c->tls || tls_peer_cn(c->tls, cn, sizeof(cn)) < 0) {
		log_error(
		    LOG_WARNING, 0,
		    "C-%d: db=%s user=%s addr=%s cert authentication failed: no valid certificate",
		    c->row, c->db, c->user, c->addr);
		return false;
	}
	if (strcmp(cn, c->user) != 0) {
		log_error(LOG_WARNING, 0,
		          "C-%d: db=%s user=%s addr=%s cert authentication failed: CN \"%s\"",
		          c->row, c->db, c->user, c->addr, cn);
		return false;
	}
	return true;
}

/* The user's password is known (or known to be missing): ask for it. */
static int start_exchange(struct client *c)
{
	struct auth *a = c->auth;

	if (a->want == AUTH_SCRAM ||
	    (a->want == AUTH_MD5 && password_kind(a->stored) == PASSWORD_SCRAM))
		return start_scram(c); /* md5 with a verifier: upgraded, as PgBouncer does */
	if (a->want == AUTH_MD5) {
		a->method = AUTH_MD5;
		if (RAND_bytes(a->salt, sizeof(a->salt)) != 1) {
			client_close(c, "no random bytes");
			return ST_ERROR;
		}
		send_auth_request(c, 5, a->salt, sizeof(a->salt));
		return ST_AGAIN;
	}
	a->method = AUTH_PLAIN;
	send_auth_request(c, 3, NULL, 0);
	return ST_AGAIN;
}

void auth_lookup_done(struct client *c, const char *stored)
{
	struct auth *a = c->auth;

	a->queried = true;
	if (stored) {
		a->known = a->from_query = true;
		strlcpy_s(a->stored, stored, sizeof(a->stored));
	}
	(void)start_exchange(c); /* a failure has closed the client */
}

/* A user that the auth file does not hold, with no auth_query to ask, under
 * a password method: the exchange is played out (nothing tells it apart from
 * a wrong password) and fails, so no pool is needed for it. */
bool auth_will_fail(const struct client *c)
{
	int method = W.cfg->auth_type;
	return (method == AUTH_PLAIN || method == AUTH_MD5 || method == AUTH_SCRAM) &&
	       !auth_query_applies(c) && !userlist_password(c->user);
}

int auth_begin(struct client *c)
{
	const struct config *cfg = W.cfg;
	int method = cfg->auth_type, r;
	const char *stored;
	struct auth *a;

	if (!c->tls && cfg->client_tls_sslmode >= TLS_REQUIRE && strcmp(c->addr, "unix") != 0) {
		client_error_close(c, "28000", "SSL required");
		return ST_ERROR;
	}
	if (method == AUTH_HBA && (method = auth_hba_method(c)) < 0)
		return ST_ERROR; /* rejected and closed */
	switch (method) {
	case AUTH_TRUST:
	case AUTH_ANY: return ST_OK;
	case AUTH_CERT:
		if (cert_ok(c))
			return ST_OK;
		client_error_close(c, "28000", "certificate authentication failed for user \"%s\"",
		                   c->user);
		return ST_ERROR;
	default: break;
	}
	a = c->auth = calloc(1, sizeof(*a));
	if (!a) {
		client_close(c, "out of memory");
		return ST_ERROR;
	}
	a->want = method;
	client_set_state(c, CL_AUTH);
	stored = userlist_password(c->user);
	a->known = stored != NULL;
	if (stored) {
		strlcpy_s(a->stored, stored, sizeof(a->stored));
	} else if ((r = auth_query_begin(c, a->stored, sizeof(a->stored))) != ST_DONE) {
		if (r != ST_OK)
			return r; /* ST_AGAIN: auth_lookup_done goes on; ST_ERROR: closed */
		a->known = a->queried = a->from_query = true; /* from the cache */
	}
	return start_exchange(c);
}

/* A cleartext password against whatever the auth_file holds. */
static bool plain_ok(struct client *c, const char *pw)
{
	struct auth *a = c->auth;
	char h[PASSWORD_MD5_LEN + 1];
	struct scram_secret stored, mine;
	uint8_t salted[SCRAM_KEY_LEN], ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	bool ok;

	switch (password_kind(a->stored)) {
	case PASSWORD_CLEAR: return a->stored[0] && password_equal(a->stored, pw);
	case PASSWORD_MD5: password_md5(pw, c->user, h); return password_equal(a->stored, h);
	default: break;
	}
	if (scram_parse_secret(a->stored, &stored) < 0 ||
	    scram_make_secret(pw, stored.salt, stored.salt_len, stored.iterations, &mine) < 0)
		return false;
	ok = CRYPTO_memcmp(stored.stored_key, mine.stored_key, SCRAM_KEY_LEN) == 0 &&
	     CRYPTO_memcmp(stored.server_key, mine.server_key, SCRAM_KEY_LEN) == 0;
	if (ok && scram_salted_password(pw, stored.salt, stored.salt_len, stored.iterations,
	                                salted) == 0) {
		scram_keys_from_salted(salted, ck, sk);
		keep_scram_keys(c, ck, sk);
	}
	OPENSSL_cleanse(salted, sizeof(salted));
	return ok;
}

static bool md5_ok(struct client *c, const char *answer)
{
	struct auth *a = c->auth;
	char h[PASSWORD_MD5_LEN + 1], want[PASSWORD_MD5_LEN + 1];

	switch (password_kind(a->stored)) {
	case PASSWORD_CLEAR: password_md5(a->stored, c->user, h); break;
	case PASSWORD_MD5: strlcpy_s(h, a->stored, sizeof(h)); break;
	default: return false;
	}
	password_md5_salted(h, a->salt, want);
	return a->stored[0] && password_equal(want, answer);
}

/* SASLInitialResponse: mechanism, int32 length, client-first-message. */
static int scram_initial(struct client *c, const char *body, uint32_t len)
{
	struct auth *a = c->auth;
	const char *mech = body, *z = memchr(body, 0, len);
	char nonce[32], out[SCRAM_MSG_MAX];
	uint32_t dlen;
	bool plus;

	if (!z || (uint32_t)(z + 5 - body) > len)
		return SCRAM_MALFORMED;
	dlen = get_u32(z + 1);
	if (dlen != len - (uint32_t)(z + 5 - body))
		return SCRAM_MALFORMED;
	if (strcmp(mech, "SCRAM-SHA-256") == 0)
		plus = false;
	else if (strcmp(mech, "SCRAM-SHA-256-PLUS") == 0 && a->scram.plus_offered)
		plus = true;
	else
		return SCRAM_MALFORMED;
	if (scram_random_nonce(nonce) < 0 ||
	    scram_server_first(&a->scram, plus, z + 5, dlen, nonce, out, sizeof(out)) != SCRAM_OK)
		return SCRAM_MALFORMED;
	send_auth_request(c, 11, out, strlen(out));
	a->step = 1;
	return SCRAM_OK;
}

static int scram_response(struct client *c, const char *body, uint32_t len)
{
	struct auth *a = c->auth;
	char out[SCRAM_MSG_MAX];
	int r = scram_server_final(&a->scram, body, len, out, sizeof(out));

	if (r != SCRAM_OK)
		return r;
	if (!a->known)
		return SCRAM_BAD_PROOF; /* cannot happen: the mock secret never matches */
	if (password_kind(a->stored) == PASSWORD_SCRAM)
		keep_scram_keys(c, a->scram.client_key, a->scram.secret.server_key);
	send_auth_request(c, 12, out, strlen(out));
	return SCRAM_OK;
}

/* One whole 'p' message. */
static void on_message(struct client *c, const char *body, uint32_t len)
{
	struct auth *a = c->auth;
	int r, step;

	switch (a->method) {
	case AUTH_PLAIN:
	case AUTH_MD5:
		if (len == 0 || body[len - 1] != '\0' || strlen(body) != len - 1)
			return client_error_close(c, "08P01", "invalid password packet");
		if (!a->known)
			return fail(c, unknown_user(c));
		if (a->method == AUTH_PLAIN ? !plain_ok(c, body) : !md5_ok(c, body))
			return fail(c, "wrong password");
		return succeed(c);
	default:
		step = a->step;
		r = step == 0 ? scram_initial(c, body, len) : scram_response(c, body, len);
		if (r == SCRAM_MALFORMED)
			return client_error_close(c, "08P01", "malformed SCRAM message");
		if (r == SCRAM_BAD_PROOF)
			return fail(c, a->known ? "wrong password or channel binding"
			                        : unknown_user(c));
		if (step == 1)
			return succeed(c);
	}
}

/* CL_AUTH: whole PasswordMessage/SASL messages from c->in. */
void auth_on_data(struct client *c)
{
	while (!c->closing && c->auth && buf_len(&c->in) >= 5) {
		const char *m = c->in.data + c->in.start;
		uint32_t total = get_u32(m + 1) + 1;
		if (m[0] != 'p')
			return client_error_close(
			    c, "08P01", "expected password response, got message type %d", m[0]);
		if (total < 5 || total > AUTH_MSG_MAX)
			return client_error_close(c, "08P01", "invalid password packet size");
		if (buf_len(&c->in) < total)
			break;
		c->in.start += total;
		c->in.scan = c->in.start;
		on_message(c, m + 5, total - 5);
	}
	if (!c->closing)
		buf_compact(&c->in);
}
