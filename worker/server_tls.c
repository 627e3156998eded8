/*
 * server_tls.c — TLS on server connections (server_tls_sslmode) and the
 * slot affinity it brings. Runs in worker processes.
 *
 * Opening: after connect, the worker sends SSLRequest (never over a unix
 * socket, which PostgreSQL answers 'N' anyway); on 'S' it runs the OpenSSL
 * handshake (tls.c) driven by epoll in state SV_TLS, then logs in through
 * it; on 'N' it logs in in the clear under allow/prefer and fails under
 * require/verify-ca/verify-full. allow is PgBouncer's allow: TLS is asked
 * for first, as prefer (libpq's allow tries the clear first and TLS only
 * after a refused login, which would cost a pooler a failed login per
 * connection against hostssl servers).
 *
 * Affinity: the OpenSSL state lives in the worker that did the handshake,
 * so a TLS slot is that worker's alone (shm_slot.tls_owner): only it leases
 * it (shm/pool.c), the master's fd broker never holds or hands out its
 * socket (fdcache.c, master/broker.c), and the slot dies with the worker
 * (shm/repair.c). Pool limits stay global: when another worker's client
 * needs the room, the owner closes the slot and the room goes to that
 * worker, which opens a connection of its own (HANDOFF_OPEN) —
 *  - at a release, when another worker's client has waited long enough
 *    longer and that worker holds fewer connections (RELEASE_MOVED),
 *  - an idle slot claimed by a waiting worker (LEASE_EVICT, shm_pool_evict:
 *    HANDOFF_CLOSE to the owner, who closes it here),
 *  - any close of a TLS slot (server_tls_grow: for the worker whose client
 *    has waited longest).
 * The owner also closes its idle TLS slots past server_idle_timeout,
 * server_lifetime or a recycle (the master's janitor cannot: it has no TLS
 * state), and drops TLS state whose slot was freed behind its back.
 */
#include "worker.h"
#include "io.h"
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The name the server is known by, for SNI and verify-full: the configured
 * host this connection went to (with several hosts, the one whose address
 * it is), else the address itself. */
static void server_name(const struct shm_slot *sl, char *out, size_t cap)
{
	const struct config_db *db = config_find_db(W.cfg, W.shm->pools[sl->pool].db);
	const struct shm_target *t = db ? &W.shm->targets[db - W.cfg->dbs] : NULL;
	const char *p = db && db->host[0] ? db->host : "";
	int nhosts = 1, want = 0;

	for (const char *q = p; *q; q++)
		nhosts += *q == ',';
	if (t && nhosts > 1 && t->naddr == nhosts) /* the target holds one address per host */
		for (want = 0; want < t->naddr; want++)
			if (t->len[want] == sl->addrlen &&
			    memcmp(&t->addr[want], &sl->addr, sl->addrlen) == 0)
				break;
	if (!p[0] || (nhosts > 1 && (!t || t->naddr != nhosts || want == nhosts))) {
		sockaddr_describe(&sl->addr, out, cap);
		return;
	}
	for (int i = 0; i < want; i++)
		p += strcspn(p, ",") + 1;
	snprintf(out, cap, "%.*s", (int)strcspn(p, ","), p);
}

bool server_tls_start(struct server *sv)
{
	const struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	char request[8];
	struct pbuf b;

	if (W.cfg->server_tls_sslmode == TLS_DISABLE || sl->addr.ss_family == AF_UNIX)
		return false;
	pb_init(&b, request, sizeof(request));
	pb_u32(&b, sizeof(request));
	pb_u32(&b, PROTO_SSL);
	if (send(sv->fd, b.p, b.len, MSG_NOSIGNAL) != (ssize_t)b.len) {
		server_fail(sv, "could not send SSLRequest to server");
		return true;
	}
	server_set_state(sv, SV_TLS);
	worker_update_events(sv->fd, &sv->events, EPOLLIN, sv);
	return true;
}

/* A step of the handshake; once done, the slot is this worker's (from its
 * publication on, only this worker leases it): log in through TLS. */
static void handshake_step(struct server *sv)
{
	char err[300];
	int r = tls_server_handshake(sv, err, sizeof(err));

	if (r == ST_AGAIN)
		return;
	if (r == ST_ERROR) {
		server_fail(sv, err);
		return;
	}
	shm_slot(W.shm, sv->slot)->tls_owner = W.index;
	login_send_startup(sv);
}

/* The server's one-byte answer to SSLRequest. */
static void on_answer(struct server *sv)
{
	struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	char answer, extra, name[CFG_HOST_LEN], err[300];
	ssize_t n = recv(sv->fd, &answer, 1, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		server_fail(sv, "server closed the connection in answer to SSLRequest");
		return;
	}
	if (answer == 'N') {
		if (W.cfg->server_tls_sslmode >= TLS_REQUIRE) {
			server_fail(
			    sv, "server does not support SSL, but server_tls_sslmode requires it");
			return;
		}
		login_send_startup(sv); /* allow, prefer: in the clear */
		return;
	}
	if (answer != 'S') {
		snprintf(err, sizeof(err), "received invalid response to SSL negotiation: %c",
		         answer);
		server_fail(sv, err);
		return;
	}
	/* bytes behind the 'S' came in the clear: never hand them to TLS
	 * (CVE-2021-23222) */
	if (recv(sv->fd, &extra, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
		server_fail(sv, "received unencrypted data after SSL response");
		return;
	}
	server_name(sl, name, sizeof(name));
	if (tls_server_begin(sv, name, err, sizeof(err)) != ST_OK) {
		server_fail(sv, err);
		return;
	}
	handshake_step(sv);
}

void server_tls_on_event(struct server *sv)
{
	if (!sv->tls)
		on_answer(sv);
	else
		handshake_step(sv);
}

void server_tls_drop(struct server *sv, bool terminate)
{
	if (sv->tls && terminate)
		(void)!server_send(sv, "X\0\0\0\4", 5);
	if (sv->tls)
		tls_close(&sv->tls); /* close_notify: the server reads a clean end */
	if (sv->fd >= 0)
		shutdown(sv->fd, SHUT_RDWR);
	fdcache_forget(sv);
}

/* Tell `worker` to open the slot reserved for it (HANDOFF_OPEN). */
static void send_open(int slot, int worker)
{
	struct shm_handoff h = {
	    .client = HANDOFF_OPEN,
	    .slot = slot,
	    .slot_gen = atomic_load_explicit(&shm_slot(W.shm, slot)->gen, memory_order_acquire)};
	if (worker == W.index) {
		server_connect(slot, NULL);
		return;
	}
	if (!shm_inbox_push(W.shm, worker, &h))
		log_error(LOG_ERR, 0, "inbox of worker %d full", worker);
	shm_worker_wake(W.shm, worker);
}

void server_tls_grow(int pool)
{
	int slot, worker;
	if (shm_pool_grow_for_waiter(W.shm, pool, &slot, &worker) == ST_OK)
		send_open(slot, worker);
}

void server_tls_ask_close(int slot)
{
	struct shm_slot *sl = shm_slot(W.shm, slot);
	struct shm_handoff h = {.client = HANDOFF_CLOSE,
	                        .slot = slot,
	                        .slot_gen = atomic_load_explicit(&sl->gen, memory_order_acquire)};
	int owner = atomic_load_explicit(&sl->owner, memory_order_relaxed);

	if (owner < 0 || owner == W.index) /* freed meanwhile (its owner died) */
		return;
	log_debug(DBG_POOL, "S-%d: asking worker %d to close its idle TLS connection", slot, owner);
	if (!shm_inbox_push(W.shm, owner, &h))
		log_error(LOG_ERR, 0, "inbox of worker %d full", owner);
	shm_worker_wake(W.shm, owner);
}

bool server_tls_evict(int pool)
{
	int slot;
	if (W.cfg->server_tls_sslmode == TLS_DISABLE ||
	    shm_pool_evict(W.shm, pool, W.index, W.now, &slot) != ST_OK)
		return false;
	server_tls_ask_close(slot);
	return true;
}

/* Another worker claimed one of our idle TLS slots (HANDOFF_CLOSE). */
void server_tls_on_close_request(const struct shm_handoff *h)
{
	struct shm_slot *sl = shm_slot(W.shm, h->slot);
	struct server *sv = &W.servers[h->slot];

	if (atomic_load_explicit(&sl->gen, memory_order_acquire) != h->slot_gen ||
	    atomic_load_explicit(&sl->owner, memory_order_relaxed) != W.index ||
	    atomic_load_explicit(&sl->client, memory_order_relaxed) != SLOT_CLIENT_EVICTING ||
	    sv->state != SV_NONE)
		return;
	sv->gen = h->slot_gen;
	server_set_state(sv, SV_SYNC); /* logged in: Terminate first */
	server_close(sv, "idle TLS server connection given up for another worker's client");
}

static bool past(uint64_t since, double seconds)
{
	return seconds > 0 && W.now > since && W.now - since > (uint64_t)(seconds * 1e6);
}

/* Each tick, for a server with TLS state here that no client of ours holds. */
void server_tls_tick(struct server *sv)
{
	struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	uint32_t gen = atomic_load_explicit(&sl->gen, memory_order_acquire);
	const struct shm_pool *row = &W.shm->pools[sl->pool];

	if (sv->state != SV_NONE)
		return;
	if (gen != sv->gen) { /* freed behind our back: nobody else can end it */
		log_debug(DBG_POOL, "S-%d: dropping the TLS state of a freed slot", sv->slot);
		server_tls_drop(sv, true);
		return;
	}
	if (atomic_load_explicit(&sl->state, memory_order_relaxed) != SLOT_IDLE)
		return;
	if (!past(sl->idle_since_usec, W.cfg->server_idle_timeout) &&
	    !past(sl->created_usec, W.cfg->server_lifetime) &&
	    sl->recycle_gen == atomic_load_explicit(&row->recycle_gen, memory_order_relaxed))
		return;
	if (!shm_pool_claim_idle(W.shm, sv->slot, gen, W.index))
		return;
	server_set_state(sv, SV_SYNC);
	server_close(
	    sv,
	    "idle TLS server connection past server_idle_timeout, server_lifetime or a recycle");
}

/* Before the worker exits: end its TLS connections cleanly (nobody else
 * can); the slots themselves are freed by the master's repair. */
void server_tls_close_all(void)
{
	for (int i = 0; i < W.nslots; i++)
		if (W.servers[i].tls)
			server_tls_drop(&W.servers[i], W.servers[i].state != SV_TLS &&
			                                   W.servers[i].state != SV_LOGIN);
}
