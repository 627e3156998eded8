/*
 * login.c — the messages a worker itself exchanges with a server: the login
 * (StartupMessage, cleartext/md5 password or SCRAM-SHA-256, ParameterStatus,
 * BackendKeyData)
 * and the queries whose replies pgshoal swallows (parameter SETs,
 * server_reset_query, connect_query; auth_query's rows go to auth_query.c). Runs in worker
 * processes, on slots the worker holds.
 */
#include "worker.h"
#include "io.h"
#include "proto.h"
#include "userlist.h"
#include "shm/password.h"
#include "shm/scram.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

struct login {
	char user[CFG_NAME_LEN];
	char password[CFG_PASSWORD_LEN];
	char startup[1024];
	size_t startup_len;
	char welcome[sizeof(((struct shm_pool *)0)->welcome)];
	uint32_t welcome_len;
	struct scram_client scram;
};

void login_free(struct server *sv)
{
	if (sv->login)
		OPENSSL_cleanse(sv->login, sizeof(*sv->login));
	free(sv->login);
	sv->login = NULL;
}

void login_begin(struct server *sv, const struct config_db *db, const char *user,
                 const char *dbname)
{
	struct pbuf b;
	struct login *l = calloc(1, sizeof(*l));

	if (!l) {
		server_fail(sv, "out of memory");
		return;
	}
	sv->login = l;
	strlcpy_s(l->user, user, sizeof(l->user));
	/* the database entry's password, else the auth_file's (cleartext or an
	 * md5 hash; a SCRAM verifier needs the pass-through keys) */
	if (db->password[0])
		strlcpy_s(l->password, db->password, sizeof(l->password));
	else if (userlist_password(user))
		strlcpy_s(l->password, userlist_password(user), sizeof(l->password));
	else /* an md5 hash a client logged in with after auth_query, if any */
		shm_pool_get_md5(W.shm, shm_slot(W.shm, sv->slot)->pool, l->password,
		                 sizeof(l->password));
	pb_init(&b, l->startup, sizeof(l->startup));
	pb_u32(&b, 0);
	pb_u32(&b, PROTO_V3);
	pb_str(&b, "user");
	pb_str(&b, user);
	pb_str(&b, "database");
	pb_str(&b, dbname);
	pb_u8(&b, 0);
	l->startup_len = b.len;
	l->startup[0] = (char)(b.len >> 24);
	l->startup[1] = (char)(b.len >> 16);
	l->startup[2] = (char)(b.len >> 8);
	l->startup[3] = (char)b.len;
}

static bool send_all(struct server *sv, const char *p, size_t n)
{
	/* login messages are small and the socket is fresh: one send suffices */
	return server_send(sv, p, n) == (ssize_t)n;
}

void login_send_startup(struct server *sv)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = sv};
	if (!sv->login || !send_all(sv, sv->login->startup, sv->login->startup_len)) {
		server_fail(sv, "could not send startup packet to server");
		return;
	}
	epoll_ctl(W.epfd, EPOLL_CTL_MOD, sv->fd, &ev);
	sv->events = EPOLLIN;
	server_set_state(sv, SV_LOGIN);
}

static int send_password(struct server *sv, const char *pw)
{
	char mem[CFG_PASSWORD_LEN + 16];
	struct pbuf b;
	size_t pos;
	pb_init(&b, mem, sizeof(mem));
	pos = pb_begin(&b, 'p');
	pb_str(&b, pw);
	pb_end(&b, pos);
	return !b.err && send_all(sv, b.p, b.len) ? ST_AGAIN : ST_ERROR;
}

static int login_error(struct server *sv, const char *why)
{
	server_fail(sv, why);
	return ST_ERROR;
}

/* SASLInitialResponse (mech != NULL) or SASLResponse. */
static int send_sasl(struct server *sv, const char *mech, const char *data, int len)
{
	char mem[SCRAM_MSG_MAX + 64];
	struct pbuf b;
	size_t pos;

	if (len < 0)
		return login_error(sv, "SCRAM exchange with the server failed");
	pb_init(&b, mem, sizeof(mem));
	pos = pb_begin(&b, 'p');
	if (mech) {
		pb_str(&b, mech);
		pb_u32(&b, (uint32_t)len);
	}
	pb_bytes(&b, data, (size_t)len);
	pb_end(&b, pos);
	return !b.err && send_all(sv, b.p, b.len) ? ST_AGAIN : ST_ERROR;
}

/* AuthenticationSASL: SCRAM-SHA-256 with the cleartext password, or with
 * the keys a client's SCRAM login left in the pool row (pass-through). */
static int scram_begin(struct server *sv, const char *body, uint32_t len)
{
	struct login *l = sv->login;
	bool offered = false;
	char nonce[32], out[SCRAM_MSG_MAX];

	for (uint32_t i = 4; i < len && body[i];) {
		const char *m = body + i;
		size_t n = strnlen(m, len - i);
		offered |= n == 13 && memcmp(m, "SCRAM-SHA-256", 13) == 0;
		i += (uint32_t)n + 1;
	}
	if (!offered)
		return login_error(sv, "server offered no SASL mechanism pgshoal supports");
	memset(&l->scram, 0, sizeof(l->scram));
	if (password_kind(l->password) != PASSWORD_CLEAR || !l->password[0]) {
		int pool = shm_slot(W.shm, sv->slot)->pool;
		l->scram.have_keys =
		    shm_pool_get_scram_keys(W.shm, pool, l->scram.client_key, l->scram.server_key);
		if (!l->scram.have_keys)
			return login_error(
			    sv, "server asked for SCRAM and pgshoal has no cleartext password (or "
			        "pass-through keys yet) for this user");
	}
	if (scram_random_nonce(nonce) < 0)
		return login_error(sv, "no random bytes");
	return send_sasl(sv, "SCRAM-SHA-256", out,
	                 scram_client_first(&l->scram, "", nonce, out, sizeof(out)));
}

/* AuthenticationXXX from the server. */
static int on_auth(struct server *sv, const char *body, uint32_t len)
{
	struct login *l = sv->login;
	uint32_t code = len >= 4 ? get_u32(body) : 99;
	enum password_kind kind = password_kind(l->password);
	char hash[PASSWORD_MD5_LEN + 1], out[SCRAM_MSG_MAX];

	switch (code) {
	case 0: return ST_AGAIN; /* AuthenticationOk */
	case 3:
		if (kind != PASSWORD_CLEAR)
			return login_error(
			    sv, "server asked for a cleartext password; pgshoal has only a hash");
		return send_password(sv, l->password);
	case 5:
		if (len < 8 || kind == PASSWORD_SCRAM)
			return login_error(
			    sv, "server asked for md5; pgshoal has only a SCRAM verifier");
		if (kind == PASSWORD_CLEAR)
			password_md5(l->password, l->user, hash);
		else
			strlcpy_s(hash, l->password,
			          sizeof(hash)); /* an md5 hash answers md5 as well */
		password_md5_salted(hash, (const uint8_t *)body + 4, out);
		return send_password(sv, out);
	case 10: return scram_begin(sv, body, len);
	case 11: /* SASLContinue: server-first-message */
		return send_sasl(sv, NULL, out,
		                 scram_client_final(&l->scram, l->password, body + 4, len - 4, out,
		                                    sizeof(out)));
	case 12: /* SASLFinal: the server proves it knows the verifier */
		if (scram_client_verify(&l->scram, body + 4, len - 4) != SCRAM_OK)
			return login_error(sv, "server's SCRAM signature is invalid");
		return ST_AGAIN;
	default:
		return login_error(
		    sv, "server asked for an authentication method pgshoal does not support");
	}
}

static void keep_param(struct server *sv, const char *msg, uint32_t total)
{
	struct login *l = sv->login;
	const char *name = msg + 5;
	const char *value = memchr(name, 0, total - 5);
	if (!value || !memchr(value + 1, 0, (size_t)(msg + total - value - 1)))
		return;
	params_apply_status(NULL, sv, name, value + 1);
	if (l->welcome_len + total <= sizeof(l->welcome)) {
		memcpy(l->welcome + l->welcome_len, msg, total);
		l->welcome_len += total;
	}
}

static void fail_with_server_error(struct server *sv, const char *body, uint32_t len)
{
	char msg[256] = "server login failed";
	for (uint32_t i = 0; i < len && body[i];) {
		const char *field = body + i + 1;
		size_t flen = strnlen(field, len - i - 1);
		if (body[i] == 'M')
			snprintf(msg, sizeof(msg), "%.*s", (int)flen, field);
		i += (uint32_t)flen + 2;
	}
	server_fail(sv, msg);
}

/* Read what is there; whole messages are handled, partial ones wait. */
static int read_messages(struct server *sv, int (*handle)(struct server *, const char *, uint32_t))
{
	ssize_t n;
	if (!buf_reserve(&sv->in))
		return ST_ERROR;
	buf_compact(&sv->in);
	if (!sv->in.data && !buf_reserve(&sv->in))
		return ST_ERROR;
	n = server_recv(sv, sv->in.data + sv->in.end, W.buf_size - sv->in.end);
	if (n <= 0)
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? ST_AGAIN : ST_ERROR;
	sv->in.end += (uint32_t)n;
	while (buf_len(&sv->in) >= 5) {
		const char *m = sv->in.data + sv->in.start;
		uint32_t total = get_u32(m + 1) + 1;
		int r;
		if (total < 5 || total > W.buf_size)
			return ST_ERROR;
		if (buf_len(&sv->in) < total)
			break;
		sv->in.start += total;
		r = handle(sv, m, total);
		if (r != ST_AGAIN)
			return r;
	}
	return ST_AGAIN;
}

static int login_message(struct server *sv, const char *m, uint32_t total)
{
	struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	switch (m[0]) {
	case 'R': return on_auth(sv, m + 5, total - 5);
	case 'S': keep_param(sv, m, total); return ST_AGAIN;
	case 'K':
		if (total >= 13) {
			sl->be_pid = (int32_t)get_u32(m + 5);
			sl->be_key = (int32_t)get_u32(m + 9);
		}
		return ST_AGAIN;
	case 'E': fail_with_server_error(sv, m + 5, total - 5); return ST_ERROR;
	case 'Z':
		shm_pool_set_welcome(W.shm, sl->pool, sv->login->welcome, sv->login->welcome_len);
		buf_release(&sv->in);
		return ST_DONE;
	default: return ST_AGAIN; /* NoticeResponse, NegotiateProtocolVersion */
	}
}

int login_on_data(struct server *sv)
{
	int r = read_messages(sv, login_message);
	if (r == ST_ERROR && sv->state != SV_NONE)
		server_fail(sv, "server closed the connection during login");
	return r;
}

static int sync_message(struct server *sv, const char *m, uint32_t total)
{
	switch (m[0]) {
	case 'E':
		sv->sync_failed = true;
		log_error(LOG_WARNING, 0, "S-%d: error from a pgshoal query: %.*s", sv->slot,
		          (int)(total - 5 > 200 ? 200 : total - 5), m + 5);
		return ST_AGAIN;
	case 'S':
		if (memchr(m + 5, 0, total - 5)) {
			const char *name = m + 5;
			params_apply_status(sv->client, sv, name, name + strlen(name) + 1);
		}
		return ST_AGAIN;
	case 'D':
		if (sv->after_sync == SYNC_THEN_AUTH_QUERY)
			auth_query_on_row(sv, m + 5, total - 5);
		return ST_AGAIN;
	case 'C':
		prepared_sync_tag(sv, m + 5,
		                  total - 5); /* a DISCARD ALL drops prepared statements */
		return ST_AGAIN;
	case 'Z':
		sv->tx = m[5];
		buf_release(&sv->in);
		return ST_DONE;
	default: return ST_AGAIN;
	}
}

int sync_on_data(struct server *sv)
{
	return read_messages(sv, sync_message);
}

int swallow_query(struct server *sv, const char *sql, int after)
{
	char mem[4096];
	struct pbuf b;
	pb_init(&b, mem, sizeof(mem));
	proto_query(&b, sql);
	if (b.err)
		return ST_ERROR;
	log_debug(DBG_PROTO, "S-%d: pgshoal query: %s", sv->slot, sql);
	return swallow_send(sv, b.p, b.len, after);
}

int swallow_send(struct server *sv, const char *msgs, size_t len, int after)
{
	if (!send_all(sv, msgs, len))
		return ST_ERROR;
	sv->after_sync = after;
	sv->sync_failed = false;
	server_set_state(sv, SV_SYNC);
	server_update_events(sv);
	return ST_OK;
}
