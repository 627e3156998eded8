/*
 * tls.c — TLS with OpenSSL 3 for client connections (pgshoal is the TLS
 * server), the OpenSSL side of server connections (pgshoal is the TLS
 * client; the protocol around it is server_tls.c) and the bytes of io.h's
 * wrappers. Runs in worker processes; each worker builds its own SSL_CTXs
 * from the configuration at first use and again after a reload (a new
 * configuration generation), so new certificates apply to new connections
 * while established ones keep the context they started with (SSL objects
 * hold a reference).
 *
 * Invariants: a handshake never blocks the loop (SSL_do_handshake driven by
 * epoll, CL_TLS); bytes OpenSSL decrypted but we did not take yet are
 * invisible to epoll, so a connection with SSL_has_pending() after a read is
 * remembered and read again at the end of the loop turn (tls_run_pending).
 * A plain connection never reaches this file (io.h tests one pointer).
 */
#include "io.h"
#include "shm/scram.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

/* A context built from the configuration, again after each reload
 * (cached_ctx). */
struct ctx_cache {
	SSL_CTX *ctx;
	uint32_t gen;
	bool tried;
};
static struct ctx_cache accept_cache;  /* for clients: we are the TLS server */
static struct ctx_cache connect_cache; /* for servers: we are the TLS client */

static void **pending; /* clients/servers with bytes inside OpenSSL */
static int npending, pending_cap;

/* The first queued OpenSSL error, for logs. */
static const char *ssl_error(void)
{
	static char msg[256];
	unsigned long e = ERR_get_error();
	if (!e)
		return "no OpenSSL error (connection closed?)";
	ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return msg;
}

/* "secure" (TLSv1.2 and 1.3), "all"/"legacy" (1.0 up), or a list of
 * tlsv1.0 .. tlsv1.3 (PgBouncer's client_tls_protocols words). */
static int set_protocols(SSL_CTX *ctx, const char *spec)
{
	static const struct {
		const char *name;
		int v;
	} words[] = {
	    {"tlsv1.0", TLS1_VERSION},   {"tlsv1", TLS1_VERSION},     {"tlsv1.1", TLS1_1_VERSION},
	    {"tlsv1.2", TLS1_2_VERSION}, {"tlsv1.3", TLS1_3_VERSION},
	};
	int lo = INT_MAX, hi = 0;
	char buf[CFG_NAME_LEN], *save = NULL;

	if (!spec[0] || strcmp(spec, "secure") == 0)
		return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ? 0 : -1;
	if (strcmp(spec, "all") == 0 || strcmp(spec, "legacy") == 0)
		return SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION) ? 0 : -1;
	strlcpy_s(buf, spec, sizeof(buf));
	for (char *w = strtok_r(buf, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
		size_t i;
		for (i = 0; i < ARRAY_LEN(words) && strcasecmp(w, words[i].name) != 0; i++)
			;
		if (i == ARRAY_LEN(words))
			return -1;
		lo = words[i].v < lo ? words[i].v : lo;
		hi = words[i].v > hi ? words[i].v : hi;
	}
	return hi && SSL_CTX_set_min_proto_version(ctx, lo) &&
	               SSL_CTX_set_max_proto_version(ctx, hi)
	           ? 0
	           : -1;
}

static int set_ciphers(SSL_CTX *ctx, const char *list, const char *tls13)
{
	if (list[0] && strcmp(list, "default") != 0) {
		const char *l = strcmp(list, "secure") == 0 || strcmp(list, "normal") == 0 ||
		                        strcmp(list, "fast") == 0
		                    ? "HIGH:!aNULL:!MD5:!3DES"
		                    : list;
		if (!SSL_CTX_set_cipher_list(ctx, l))
			return -1;
	}
	return !tls13[0] || SSL_CTX_set_ciphersuites(ctx, tls13) ? 0 : -1;
}

/* Options every context gets: no renegotiation or compression, partial
 * writes from a buffer that may move between retries, EOF without
 * close_notify read as EOF. */
static void common_options(SSL_CTX *ctx)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	                             SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* Protocols and ciphers of one side ("client" or "server" settings);
 * -1 with *what naming the setting that failed. */
static int set_versions(SSL_CTX *ctx, const char *side, const char *protocols, const char *ciphers,
                        const char *tls13, char *what, size_t cap)
{
	snprintf(what, cap, "%s_tls_protocols", side);
	if (set_protocols(ctx, protocols) < 0)
		return -1;
	snprintf(what, cap, "%s_tls_ciphers", side);
	return set_ciphers(ctx, ciphers, tls13);
}

static int setup_accept_ctx(SSL_CTX *ctx, const struct config *cfg, char *what, size_t cap)
{
	if (set_versions(ctx, "client", cfg->client_tls_protocols, cfg->client_tls_ciphers,
	                 cfg->client_tls13_ciphers, what, cap) < 0)
		return -1;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	snprintf(what, cap, "client_tls_cert_file");
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->client_tls_cert_file) != 1)
		return -1;
	snprintf(what, cap, "client_tls_key_file");
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->client_tls_key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		return -1;
	if (cfg->client_tls_ca_file[0]) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
		snprintf(what, cap, "client_tls_ca_file");
		if (!names ||
		    SSL_CTX_load_verify_locations(ctx, cfg->client_tls_ca_file, NULL) != 1) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			return -1;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		/* verify-ca/-full: a client certificate is required; below, one
		 * that is offered must be valid (cert auth reads its CN) */
		SSL_CTX_set_verify(ctx,
		                   SSL_VERIFY_PEER | (cfg->client_tls_sslmode >= TLS_VERIFY_CA
		                                          ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
		                                          : 0),
		                   NULL);
	}
	return 0;
}

/* For servers: protocols, ciphers, our certificate for the server's cert
 * auth (optional), and at verify-ca/-full the CA the server's must chain
 * to (allow/prefer/require check nothing, as in libpq and PgBouncer). */
static int setup_connect_ctx(SSL_CTX *ctx, const struct config *cfg, char *what, size_t cap)
{
	if (set_versions(ctx, "server", cfg->server_tls_protocols, cfg->server_tls_ciphers, "",
	                 what, cap) < 0)
		return -1;
	snprintf(what, cap, "server_tls_cert_file");
	if (cfg->server_tls_cert_file[0] &&
	    SSL_CTX_use_certificate_chain_file(ctx, cfg->server_tls_cert_file) != 1)
		return -1;
	snprintf(what, cap, "server_tls_key_file");
	if (cfg->server_tls_key_file[0] &&
	    (SSL_CTX_use_PrivateKey_file(ctx, cfg->server_tls_key_file, SSL_FILETYPE_PEM) != 1 ||
	     SSL_CTX_check_private_key(ctx) != 1))
		return -1;
	snprintf(what, cap, "server_tls_ca_file");
	if (cfg->server_tls_ca_file[0] &&
	    SSL_CTX_load_verify_locations(ctx, cfg->server_tls_ca_file, NULL) != 1)
		return -1;
	SSL_CTX_set_verify(
	    ctx, cfg->server_tls_sslmode >= TLS_VERIFY_CA ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
	    NULL);
	return 0;
}

/* This worker's context for one side, built from the configuration at first
 * use and again after each reload; a failed rebuild keeps the previous one. */
static SSL_CTX *cached_ctx(struct ctx_cache *c, const SSL_METHOD *method, const char *side,
                           int (*setup)(SSL_CTX *, const struct config *, char *, size_t))
{
	char what[64] = "SSL_CTX_new";
	SSL_CTX *ctx;

	if (c->tried && c->gen == W.config_gen)
		return c->ctx;
	c->tried = true;
	c->gen = W.config_gen;
	ctx = SSL_CTX_new(method);
	if (ctx)
		common_options(ctx);
	if (!ctx || setup(ctx, W.cfg, what, sizeof(what)) < 0) {
		log_error(LOG_ERR, 0, "%s TLS setup failed (%s): %s", side, what, ssl_error());
		SSL_CTX_free(ctx);
		return c->ctx;
	}
	SSL_CTX_free(c->ctx);
	c->ctx = ctx;
	return ctx;
}

/* ------------------------------------------------------- pending reads */

static void pending_add(void *conn)
{
	if (!conn)
		return;
	for (int i = 0; i < npending; i++)
		if (pending[i] == conn)
			return;
	if (npending == pending_cap) {
		int cap = pending_cap ? pending_cap * 2 : 64;
		void **p = realloc(pending, sizeof(*p) * (size_t)cap);
		if (!p)
			return; /* the next epoll event for the socket will read it */
		pending = p;
		pending_cap = cap;
	}
	pending[npending++] = conn;
}

/* A connection still waiting on bytes inside OpenSSL: its SSL* and its
 * current epoll interest (NULL when gone). */
static SSL *pending_ssl(void *conn, uint32_t *events)
{
	if (*(int *)conn == EV_CLIENT) {
		struct client *c = conn;
		*events = c->events;
		return !c->closing && c->state != CL_FREE ? c->tls : NULL;
	}
	struct server *sv = conn;
	*events = sv->events;
	return sv->fd >= 0 && sv->state != SV_NONE ? sv->tls : NULL;
}

int tls_run_pending(void)
{
	int n = npending, runnable = 0;
	void *batch[256];

	if (n == 0)
		return 0;
	if (n > (int)ARRAY_LEN(batch))
		n = (int)ARRAY_LEN(batch);
	memcpy(batch, pending, sizeof(void *) * (size_t)n);
	memmove(pending, pending + n, sizeof(void *) * (size_t)(npending - n));
	npending -= n;
	for (int i = 0; i < n; i++) {
		uint32_t ev;
		SSL *ssl = pending_ssl(batch[i], &ev);
		if (!ssl || !SSL_has_pending(ssl))
			continue;
		if (!(ev & EPOLLIN)) { /* its buffer is full: later */
			pending_add(batch[i]);
			continue;
		}
		if (*(int *)batch[i] == EV_CLIENT)
			client_on_event(batch[i], EPOLLIN);
		else
			server_on_event(batch[i], EPOLLIN);
	}
	for (int i = 0; i < npending; i++) {
		uint32_t ev;
		if (pending_ssl(pending[i], &ev) && (ev & EPOLLIN))
			runnable++;
	}
	return runnable;
}

/* ---------------------------------------------------------------- I/O */

ssize_t tls_recv(void *tls, void *buf, size_t n)
{
	SSL *ssl = tls;
	int r;

	ERR_clear_error();
	r = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0) {
		if (SSL_has_pending(ssl))
			pending_add(SSL_get_app_data(ssl));
		return r;
	}
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: errno = EAGAIN; return -1;
	case SSL_ERROR_ZERO_RETURN: return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			return 0;
		return -1;
	default:
		log_debug(DBG_PROTO, "SSL_read failed: %s", ssl_error());
		errno = EPROTO;
		return -1;
	}
}

ssize_t tls_send(void *tls, const void *buf, size_t n)
{
	SSL *ssl = tls;
	int r;

	if (n == 0)
		return 0;
	ERR_clear_error();
	r = SSL_write(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: errno = EAGAIN; return -1;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			errno = EPIPE;
		return -1;
	default:
		log_debug(DBG_PROTO, "SSL_write failed: %s", ssl_error());
		errno = EPROTO;
		return -1;
	}
}

void tls_close(void **tls)
{
	SSL *ssl = *tls;
	if (SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		SSL_shutdown(ssl); /* one close_notify, never waiting for the peer's */
	}
	SSL_free(ssl);
	ERR_clear_error();
	*tls = NULL;
}

/* ------------------------------------------------------------ clients */

bool tls_client_begin(struct client *c)
{
	SSL_CTX *ctx =
	    W.cfg->client_tls_sslmode == TLS_DISABLE
	        ? NULL
	        : cached_ctx(&accept_cache, TLS_server_method(), "client", setup_accept_ctx);
	SSL *ssl;

	if (!ctx || c->tls) {
		client_write(c, "N", 1);
		return true;
	}
	if (buf_len(&c->in) > 0) { /* bytes after SSLRequest: PostgreSQL refuses them too */
		client_error_close(c, "08P01", "received unencrypted data after SSL request");
		return false;
	}
	ssl = SSL_new(ctx);
	if (!ssl || !SSL_set_fd(ssl, c->fd)) {
		SSL_free(ssl);
		client_write(c, "N", 1);
		return true;
	}
	SSL_set_accept_state(ssl);
	SSL_set_app_data(ssl, c);
	if (send(c->fd, "S", 1, MSG_NOSIGNAL) != 1) { /* in clear, before c->tls is set */
		SSL_free(ssl);
		client_close(c, "client write failed");
		return false;
	}
	c->tls = ssl;
	client_set_state(c, CL_TLS);
	return false;
}

/* One step of a handshake driven by epoll: ST_OK when done (logged as
 * `who`), ST_AGAIN with the connection's interest set, ST_ERROR. */
static int handshake_step(SSL *ssl, int fd, uint32_t *events, void *conn, const char *who, int id)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		log_debug(DBG_PROTO, "%s-%d: TLS %s %s", who, id, SSL_get_version(ssl),
		          SSL_get_cipher_name(ssl));
		return ST_OK;
	}
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ: worker_update_events(fd, events, EPOLLIN, conn); return ST_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		worker_update_events(fd, events, EPOLLOUT, conn);
		return ST_AGAIN;
	default: return ST_ERROR;
	}
}

void tls_client_handshake(struct client *c)
{
	char why[300];
	int r = handshake_step(c->tls, c->fd, &c->events, c, "C", c->row);

	if (r == ST_AGAIN)
		return;
	if (r == ST_OK) {
		client_set_state(c, CL_LOGIN);
		client_update_events(c);
		if (SSL_has_pending(c->tls)) /* the startup packet came with the Finished */
			pending_add(c);
		return;
	}
	snprintf(why, sizeof(why), "TLS handshake failed: %s", ssl_error());
	if (W.cfg->log_pooler_errors)
		log_error(LOG_WARNING, 0, "C-%d: addr=%s %s", c->row, c->addr, why);
	client_close(c, why);
}

int tls_peer_cn(void *tls, char *out, size_t cap)
{
	X509 *x = SSL_get0_peer_certificate(tls);
	int n;

	if (!x || SSL_get_verify_result(tls) != X509_V_OK)
		return -1;
	n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap);
	if (n <= 0 || (size_t)n != strlen(out)) /* an embedded NUL */
		return -1;
	return n;
}

int tls_endpoint_hash(void *tls, uint8_t *out)
{
	return scram_cert_endpoint_hash(SSL_get_certificate(tls), out);
}

/* ------------------------------------------------------------ servers */

static bool is_ip_literal(const char *host)
{
	unsigned char a[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int tls_server_begin(struct server *sv, const char *host, char *err, size_t errlen)
{
	SSL_CTX *ctx = cached_ctx(&connect_cache, TLS_client_method(), "server", setup_connect_ctx);
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	bool ip = is_ip_literal(host);

	if (!ssl || !SSL_set_fd(ssl, sv->fd))
		goto fail;
	SSL_set_connect_state(ssl);
	SSL_set_app_data(ssl, sv);
	if (!ip && host[0] && !SSL_set_tlsext_host_name(ssl, host)) /* SNI, as libpq */
		goto fail;
	if (W.cfg->server_tls_sslmode == TLS_VERIFY_FULL) {
		/* the name (or address) configured for the server, against the
		 * certificate's subjectAltName (CN when there is none) */
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
		       : !SSL_set1_host(ssl, host))
			goto fail;
	}
	sv->tls = ssl;
	return ST_OK;
fail:
	snprintf(err, errlen, "server TLS setup failed: %s", ctx ? ssl_error() : "see the log");
	SSL_free(ssl);
	return ST_ERROR;
}

int tls_server_handshake(struct server *sv, char *err, size_t errlen)
{
	SSL *ssl = sv->tls;
	int r = handshake_step(ssl, sv->fd, &sv->events, sv, "S", sv->slot);
	long verify;

	if (r != ST_ERROR)
		return r;
	verify =
	    SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		char *ip = X509_VERIFY_PARAM_get1_ip_asc(vp);
		const char *host = X509_VERIFY_PARAM_get0_host(vp, 0);
		const char *name = ip ? ip : (host ? host : "?");
		snprintf(err, errlen, "server certificate verification failed: %s (%s \"%s\")",
		         X509_verify_cert_error_string(verify), "the certificate does not name",
		         name);
		OPENSSL_free(ip);
		ERR_clear_error();
	} else if (verify != X509_V_OK) {
		snprintf(err, errlen, "server certificate verification failed: %s",
		         X509_verify_cert_error_string(verify));
		ERR_clear_error();
	} else {
		snprintf(err, errlen, "TLS handshake with the server failed: %s", ssl_error());
	}
	return ST_ERROR;
}
