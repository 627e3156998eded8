/*
 * server.c — the server connections a worker holds: opening them (a slot the
 * pool reserved for it), starting a lease (parameter SETs), the
 * server-to-client direction of the forwarding with the transaction-boundary
 * check, and giving them back to the shared pool. Runs in worker processes.
 * A worker touches a server socket only while the slot is its own (owner and
 * generation in shared memory); registrations left from earlier leases are
 * dropped on their first event. TLS to the server, and the affinity of TLS
 * slots to the worker that opened them, are server_tls.c's.
 */
#include "worker.h"
#include "io.h"
#include "proto.h"
#include "shm/broker_msg.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const server_state_names[SV_STATE_COUNT] = {
    "none", "connecting", "login", "wait_fd", "sync", "active", "tls",
};

void server_set_state(struct server *sv, enum server_state st)
{
	log_debug(DBG_STATE, "S-%d: %s -> %s", sv->slot, server_state_names[sv->state],
	          server_state_names[st]);
	sv->state = st;
	sv->since = W.now;
}

void server_update_events(struct server *sv)
{
	uint32_t want = 0;
	struct client *c = sv->client;

	if (sv->fd < 0 || !sv->registered)
		return;
	switch (sv->state) {
	case SV_CONNECTING: want = EPOLLOUT; break;
	case SV_TLS: return; /* the handshake says what it waits for */
	case SV_LOGIN:
	case SV_SYNC: want = EPOLLIN; break;
	case SV_ACTIVE:
		/* read more only when every complete message read has gone to the
		 * client (a partial header may wait at the front of the buffer) */
		if (!sv->in.data || (sv->in.scan == sv->in.start && (!c || buf_len(&c->out) == 0)))
			want = EPOLLIN;
		if (c &&
		    prepared_wants_write(c)) /* c->in has bytes for us (or, rewritten, c->ps) */
			want |= EPOLLOUT;
		break;
	default: want = EPOLLIN; break;
	}
	worker_update_events(sv->fd, &sv->events, want, sv);
}

/* The stream state of one connection: a connection that died in the middle
 * of a message (a half-skipped body in sc) or while waiting to be released
 * must not hand either to the next connection this worker runs on the slot
 * (a stale sc.left would misframe its replies). */
static void reset_stream(struct server *sv)
{
	memset(&sv->sc, 0, sizeof(sv->sc));
	sv->release_pending = false;
}

/* Deliver a handoff to its worker: ours directly, another's via its inbox. */
static void deliver(const struct shm_handoff *h, int to_worker)
{
	if (to_worker == W.index) {
		client_on_handoff(h);
		return;
	}
	if (!shm_inbox_push(W.shm, to_worker, h))
		log_error(LOG_ERR, 0, "inbox of worker %d full", to_worker);
	shm_worker_wake(W.shm, to_worker);
}

/* After a release or a new connection: deliver, or (a TLS slot whose room
 * moved to another worker) close the connection first, then tell that
 * worker to open its own. */
static void after_release(int slot, int r, const struct shm_handoff *h, int to)
{
	if (r == RELEASE_MOVED) {
		log_debug(DBG_POOL, "S-%d: its room goes to worker %d, whose client waited longer",
		          slot, to);
		server_tls_drop(&W.servers[slot], true);
		if (h->slot < 0)
			return;
	}
	if (r != RELEASE_IDLE)
		deliver(h, to);
}

/* Put a slot we hold (or that was handed to a departed client) back. */
void server_release_unheld(int slot)
{
	struct shm_handoff h;
	int to, r = shm_pool_release(W.shm, slot, W.now, &h, &to);
	after_release(slot, r, &h, to);
}

static void unlink_client(struct server *sv)
{
	struct client *c = sv->client;
	if (!c)
		return;
	c->server = NULL;
	sv->client = NULL;
	atomic_store_explicit(&shm_client(W.shm, c->row)->slot, -1, memory_order_release);
	if (!c->closing && c->state == CL_ACTIVE)
		client_set_state(c, CL_IDLE);
}

/* Bytes read from the server but not yet sent move to the client's buffer,
 * so the server can go back to the pool before a slow client reads them. */
static void move_leftover(struct server *sv)
{
	struct client *c = sv->client;
	if (!sv->in.data)
		return;
	if (c && !c->closing && buf_len(&sv->in) > 0 && buf_len(&c->out) == 0) {
		buf_release(&c->out);
		c->out = sv->in;
		c->out.scan = c->out.end;
		sv->in.data = NULL;
		sv->in.start = sv->in.end = sv->in.scan = 0;
		return;
	}
	buf_release(&sv->in);
}

/* server_reset_query runs when a session ends, or at every release with
 * server_reset_query_always (PgBouncer's rule). */
static bool wants_reset(const struct client *c)
{
	if (!W.cfg->server_reset_query[0])
		return false;
	if (W.cfg->server_reset_query_always)
		return true;
	return c && c->closing && c->mode == POOL_SESSION;
}

/* The slot is still the one this worker holds: its generation, owner and
 * state. A holder that hands a slot back (release, or a finished login)
 * after it changed hands would give a second client the next user's
 * server; never expected, so it is logged as a bug and the hand-back
 * skipped. */
static bool holds_slot(const struct server *sv, int state, const char *what)
{
	const struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	uint32_t gen = atomic_load_explicit(&sl->gen, memory_order_acquire);
	int owner = atomic_load_explicit(&sl->owner, memory_order_relaxed);
	int st = atomic_load_explicit(&sl->state, memory_order_relaxed);

	if (gen == sv->gen && owner == W.index && st == state)
		return true;
	log_error(LOG_CRIT, 0,
	          "S-%d: BUG: %s at gen %u, but the slot is at gen %u, owner %d, state %d",
	          sv->slot, what, sv->gen, gen, owner, st);
	return false;
}

/* A connection made before its pool's recycle_gen moved (reload, DNS
 * change, RECONNECT) is closed at release instead of reused. */
static bool must_recycle(const struct server *sv)
{
	const struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	return sl->recycle_gen !=
	       atomic_load_explicit(&W.shm->pools[sl->pool].recycle_gen, memory_order_relaxed);
}

void server_release(struct server *sv)
{
	struct client *c = sv->client;
	bool reset = wants_reset(c);

	if (must_recycle(sv)) {
		move_leftover(sv);
		unlink_client(sv);
		server_close(sv, "server connection is being recycled");
		if (c && !c->closing) {
			client_update_events(c);
			if (c->in.scan > c->in.start)
				client_request_server(c);
		}
		return;
	}

	move_leftover(sv);
	unlink_client(sv);
	if (c && !c->closing) {
		client_update_events(c);
		if (c->in.scan > c->in.start)
			client_request_server(c);
	}
	if (reset) {
		if (swallow_query(sv, W.cfg->server_reset_query, SYNC_THEN_RELEASE) != ST_OK)
			server_close(sv, "reset query failed");
		return;
	}
	server_set_state(sv, SV_NONE);
	if (!holds_slot(sv, SLOT_ACTIVE, "released"))
		return;
	server_release_unheld(sv->slot);
}

/* Tell the master to drop its copy, and free the slot in the pool. */
void server_close(struct server *sv, const char *reason)
{
	struct broker_msg m = {.type = BR_CLOSE, .slot = sv->slot, .gen = sv->gen};
	int pool = shm_slot(W.shm, sv->slot)->pool;
	bool tls = sv->tls != NULL;
	int newslot;

	log_debug(DBG_POOL, "S-%d: closing: %s", sv->slot, reason);
	if (tls) {
		server_tls_drop(sv, sv->state == SV_ACTIVE || sv->state == SV_SYNC);
	} else if (sv->fd >= 0) {
		if (sv->state == SV_ACTIVE || sv->state == SV_SYNC)
			(void)!send(sv->fd, "X\0\0\0\4", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
		shutdown(sv->fd, SHUT_RDWR);
		fdcache_forget(sv);
		broker_send(W.broker_fd, &m, -1);
	}
	login_free(sv);
	buf_release(&sv->in);
	reset_stream(sv);
	unlink_client(sv);
	server_set_state(sv, SV_NONE);
	shm_pool_slot_free(W.shm, sv->slot, sv->gen, W.now, false, NULL);
	if (tls)
		server_tls_grow(pool); /* a TLS connection serves its worker only */
	else if (shm_pool_grow(W.shm, pool, W.index, false, &newslot) == ST_OK)
		server_connect(newslot, NULL);
}

void server_fail(struct server *sv, const char *err)
{
	int pool = shm_slot(W.shm, sv->slot)->pool;
	struct shm_handoff h;
	int to;

	log_error(LOG_WARNING, 0, "S-%d: db=%s user=%s server login failed: %s", sv->slot,
	          W.shm->pools[pool].db, W.shm->pools[pool].user, err);
	if (sv->fd >= 0) {
		fdcache_forget(sv);
	}
	login_free(sv);
	buf_release(&sv->in);
	reset_stream(sv);
	server_set_state(sv, SV_NONE);
	shm_pool_slot_free(W.shm, sv->slot, sv->gen, W.now, true, err);
	while (shm_pool_pop_failed_waiter(W.shm, pool, &h, &to))
		deliver(&h, to);
}

/* Waiting clients want more servers: within pool_size, or from the reserve
 * pool once they have waited reserve_pool_timeout. */
void server_grow(int pool, bool use_reserve)
{
	int slot;
	if (shm_pool_grow(W.shm, pool, W.index, false, &slot) == ST_OK) {
		server_connect(slot, NULL);
	} else if (server_tls_evict(pool)) {
		/* another worker closes an idle TLS connection: the room comes here */
	} else if (use_reserve && shm_pool_grow(W.shm, pool, W.index, true, &slot) == ST_OK) {
		log_error(LOG_INFO, 0, "pool %s/%s: taking a connection from the reserve pool",
		          W.shm->pools[pool].db, W.shm->pools[pool].user);
		server_connect(slot, NULL);
	}
}

/* A new connection logged in (and ran connect_query): into the pool. */
void server_publish(struct server *sv)
{
	struct shm_handoff h;
	int to, r;
	if (!holds_slot(sv, SLOT_CONNECTING, "published")) {
		shutdown(sv->fd, SHUT_RDWR);
		fdcache_forget(sv);
		login_free(sv);
		buf_release(&sv->in);
		server_set_state(sv, SV_NONE);
		return;
	}
	fdcache_deposit(sv);
	server_set_state(sv, SV_NONE);
	r = shm_pool_connected(W.shm, sv->slot, W.now, &h, &to);
	after_release(sv->slot, r, &h, to);
}

static int open_socket(const struct sockaddr_storage *sa, socklen_t len)
{
	int one = 1;
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (sa->ss_family != AF_UNIX) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (W.cfg->tcp_keepalive)
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	if (connect(fd, (const struct sockaddr *)sa, len) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* A connect failed: with target_session_attrs the master's probe decides
 * where to go next (ask it now); otherwise try the next address next time. */
static void target_failed(const struct config_db *db)
{
	int i = (int)(db - W.cfg->dbs);
	if (db->target_session_attrs != TSA_ANY)
		atomic_store_explicit(&W.shm->targets[i].probe_now, 1, memory_order_relaxed);
	else
		shm_target_next(W.shm, i);
}

static void register_server(struct server *sv, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = sv};
	if (epoll_ctl(W.epfd, sv->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, sv->fd, &ev) == 0) {
		sv->registered = true;
		sv->events = events;
	} else {
		log_error(LOG_ERR, errno, "epoll_ctl(server %d) failed", sv->slot);
	}
}

/* Open the reserved slot's connection: its database entry says where. */
void server_connect(int slot, struct client *for_client)
{
	struct server *sv = &W.servers[slot];
	struct shm_slot *sl = shm_slot(W.shm, slot);
	struct shm_pool *pool = &W.shm->pools[sl->pool];
	const struct config_db *db = config_find_db(W.cfg, pool->db);
	char err[160];

	(void)for_client;
	if (sv->state != SV_NONE || sv->client)
		log_error(LOG_CRIT, 0, "S-%d: BUG: connecting while in state %s with C-%d", slot,
		          server_state_names[sv->state], sv->client ? sv->client->row : -1);
	fdcache_forget(sv); /* an older generation's copy */
	sv->gen = atomic_load_explicit(&sl->gen, memory_order_acquire);
	sl->recycle_gen = atomic_load_explicit(&pool->recycle_gen, memory_order_acquire);
	sv->client = NULL;
	sv->tx = 'I';
	reset_stream(sv);
	server_set_state(sv, SV_CONNECTING);
	if (!db ||
	    !shm_target_read(W.shm, (int)(db - W.cfg->dbs), db->name, &sl->addr, &sl->addrlen)) {
		server_fail(sv, "server address not resolved");
		return;
	}
	sv->fd = open_socket(&sl->addr, sl->addrlen);
	if (sv->fd < 0) {
		target_failed(db);
		snprintf(err, sizeof(err), "could not connect to server: %s", strerror(errno));
		server_fail(sv, err);
		return;
	}
	register_server(sv, EPOLLOUT);
	login_begin(sv, db, db->user[0] ? db->user : pool->user,
	            db->dbname[0] ? db->dbname : pool->db);
}

/* A connection idle longer than server_check_delay is tested before use
 * (PgBouncer's server_check_query). */
static bool needs_check(const struct server *sv)
{
	uint64_t idle = shm_slot(W.shm, sv->slot)->idle_since_usec;
	return W.cfg->server_check_query[0] && W.now > idle &&
	       W.now - idle > (uint64_t)(W.cfg->server_check_delay * 1e6);
}

/* Lease begins (the socket is ours): bring its parameters in line with the
 * client's, then forward. */
void server_start(struct server *sv)
{
	struct client *c = sv->client;
	char sql[2048];
	int n;

	if (!sv->registered)
		register_server(sv, EPOLLIN);
	sv->tx = 'I';
	sv->xact_start = 0;
	reset_stream(sv); /* a lease starts at a message boundary */
	if (!sv->checked && needs_check(sv)) {
		sv->checked = true;
		if (swallow_query(sv, W.cfg->server_check_query, SYNC_THEN_START) == ST_OK)
			return;
		server_close(sv, "server_check_query could not be sent");
		client_request_server(c);
		return;
	}
	sv->checked = false;
	if (auth_query_start(sv))
		return; /* leased only to look a password up (auth_query.c) */
	if (c->state == CL_LOGIN_WAIT)
		client_send_welcome(c);
	n = params_build_sync(c, sv, sql, sizeof(sql));
	if (n >= 0)
		n += prepared_lease_sql(c, sv, sql + n, sizeof(sql) - (size_t)n);
	if (n > 0) {
		if (swallow_query(sv, sql, SYNC_THEN_FORWARD) != ST_OK) {
			server_close(sv, "parameter sync failed");
			client_request_server(c);
		}
		return;
	}
	server_set_state(sv, SV_ACTIVE);
	sv->since = 0;
	if (c->in.scan > c->in.start)
		client_flush_to_server(c);
	else if (c->mode != POOL_SESSION)
		server_release(sv); /* nothing to run (e.g. a login that only wanted parameters) */
	else
		server_update_events(sv);
}

/* Only a slot this worker holds, at the generation it knows, is its own. */
bool server_event_is_mine(struct server *sv)
{
	struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	return sv->state != SV_NONE &&
	       atomic_load_explicit(&sl->gen, memory_order_acquire) == sv->gen &&
	       atomic_load_explicit(&sl->owner, memory_order_relaxed) == W.index;
}

/* Release condition: ReadyForQuery 'I' with nothing outstanding either way. */
static bool at_boundary(struct server *sv)
{
	struct client *c = sv->client;
	return c->mode != POOL_SESSION && sv->tx == 'I' && c->pending == 0 && !c->unsynced &&
	       c->sc.left == 0 && c->in.scan == c->in.start;
}

/* Statistics (shm/stats.h): a ReadyForQuery the client asked for ends a
 * query; one with status 'I' also ends the transaction its first request
 * began. A pipelined request's time starts when the previous one ended. */
static void on_ready_for_query(struct server *sv, char status)
{
	struct client *c = sv->client;
	struct shm_stats *st = worker_stats(c->pool);

	sv->tx = status;
	if (sv->since) {
		shm_stat_add(st, STAT_QUERY, 1);
		shm_stat_add(st, STAT_QUERY_TIME, W.now - sv->since);
	}
	if (status == 'I' && sv->xact_start) {
		shm_stat_add(st, STAT_XACT, 1);
		shm_stat_add(st, STAT_XACT_TIME, W.now - sv->xact_start);
		sv->xact_start = 0;
	}
	if (c->pending > 0)
		c->pending--;
	sv->since = c->pending == 0 ? 0 : W.now;
}

static void on_param_status(struct server *sv, const char *body, uint32_t len)
{
	const char *name = body, *value;
	const char *z = memchr(body, 0, len);
	if (!z || !memchr(z + 1, 0, len - (uint32_t)(z + 1 - body)))
		return;
	value = z + 1;
	params_apply_status(sv->client, sv, name, value);
}

/*
 * Walk the server's messages: bodies are skipped except for ReadyForQuery
 * and ParameterStatus, which must be whole in the buffer. Returns ST_DONE
 * when a transaction boundary was reached (scan stops right after it),
 * ST_ERROR on a broken stream.
 */
static int scan_server(struct server *sv)
{
	struct buf *b = &sv->in;
	while (b->scan < b->end) {
		char type;
		uint32_t total;
		int r;
		if (sv->sc.left) {
			uint32_t adv =
			    b->end - b->scan < sv->sc.left ? b->end - b->scan : sv->sc.left;
			b->scan += adv;
			sv->sc.left -= adv;
			continue;
		}
		r = proto_header(b->data + b->scan, b->end - b->scan, &type, &total, 0x7fffffff);
		if (r <= 0)
			return r < 0 ? ST_ERROR : ST_OK;
		if (sv->client->pos.on) { /* prepared statements: may answer, swallow or wait */
			r = prepared_on_reply(sv, type, total);
			if (r == PS_WAIT)
				return ST_OK;
			if (r == PS_DROPPED)
				continue;
		}
		if (type == 'Z' || type == 'S') {
			if (total > W.buf_size)
				return ST_ERROR;
			if (b->end - b->scan < total)
				return ST_OK; /* wait for the whole message */
			if (type == 'Z')
				on_ready_for_query(sv, b->data[b->scan + 5]);
			else
				on_param_status(sv, b->data + b->scan + 5, total - 5);
			b->scan += total;
			if (type == 'Z' && at_boundary(sv))
				return ST_DONE;
			continue;
		}
		b->scan += 5;
		sv->sc.left = total - 5;
	}
	if (sv->client->pos.on)
		prepared_reply_idle(sv);
	return ST_OK;
}

static void server_scan(struct server *sv);

/* Send the scanned bytes to the client; the rest waits for EPOLLOUT. */
void server_flush_to_client(struct server *sv)
{
	struct client *c = sv->client;
	struct buf *b = &sv->in;

	if (!c || sv->state != SV_ACTIVE)
		return;
	if (b->data && b->scan > b->start && buf_len(&c->out) == 0) {
		ssize_t n = client_send(c, b->data + b->start, b->scan - b->start);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			client_close(c, "client write failed");
			return;
		}
		if (n > 0)
			b->start += (uint32_t)n;
		buf_compact(b);
	}
	if (c->ps && prepared_unblock(sv)) /* a local answer waited for room */
		return server_scan(sv);
	/* At a boundary with nothing unscanned: the server can go back now; its
	 * unsent bytes move to the client if the client has room for them. */
	if (sv->release_pending && (!b->data || b->scan == b->end) &&
	    (buf_len(b) == 0 || buf_len(&c->out) == 0)) {
		sv->release_pending = false;
		server_release(sv);
		return;
	}
	server_update_events(sv);
	client_update_events(c);
}

static void server_read(struct server *sv)
{
	struct client *c = sv->client;
	ssize_t n;
	uint32_t room;

	if (!buf_reserve(&sv->in))
		return;
	buf_compact(&sv->in);
	if (!sv->in.data && !buf_reserve(&sv->in))
		return;
	room = c->ps ? prepared_read_room(sv) : W.buf_size - sv->in.end;
	if (room == 0)
		return;
	n = server_recv(sv, sv->in.data + sv->in.end, room);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		server_close(sv, "server closed the connection");
		client_error_close(c, "08006", "server closed the connection unexpectedly");
		return;
	}
	sv->in.end += (uint32_t)n;
	shm_stat_add(worker_stats(c->pool), STAT_SENT, (uint64_t)n);
	server_scan(sv);
}

/* Walk what was read, then pass it on (and release at a boundary). */
static void server_scan(struct server *sv)
{
	struct client *c = sv->client;
	int r = scan_server(sv);
	if (r == ST_ERROR) {
		server_close(sv, "invalid message from server");
		client_error_close(c, "08P01", "invalid message from server");
		return;
	}
	if (c->mode == POOL_STATEMENT && sv->tx != 'I' && c->pending == 0) {
		server_flush_to_client(sv);
		server_close(sv, "transaction in statement mode");
		client_error_close(c, "08P01",
		                   "long transactions not allowed in statement pooling mode");
		return;
	}
	if (r == ST_DONE)
		sv->release_pending = true;
	server_flush_to_client(sv);
}

static void connect_done(struct server *sv)
{
	int err = 0;
	socklen_t len = sizeof(err);
	char msg[160];

	if (getsockopt(sv->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		const struct config_db *db =
		    config_find_db(W.cfg, W.shm->pools[shm_slot(W.shm, sv->slot)->pool].db);
		if (db)
			target_failed(db);
		snprintf(msg, sizeof(msg), "could not connect to server: %s", strerror(err));
		server_fail(sv, msg);
		return;
	}
	if (!server_tls_start(sv))
		login_send_startup(sv);
}

static void login_read(struct server *sv)
{
	int r = login_on_data(sv);
	if (r == ST_AGAIN)
		return;
	if (r == ST_ERROR)
		return; /* login_on_data failed the slot */
	login_free(sv);
	if (config_find_db(W.cfg, W.shm->pools[shm_slot(W.shm, sv->slot)->pool].db)
	        ->connect_query[0]) {
		const char *q =
		    config_find_db(W.cfg, W.shm->pools[shm_slot(W.shm, sv->slot)->pool].db)
		        ->connect_query;
		if (swallow_query(sv, q, SYNC_THEN_PUBLISH) == ST_OK)
			return;
		server_fail(sv, "connect_query could not be sent");
		return;
	}
	server_publish(sv);
}

static void sync_read(struct server *sv)
{
	struct client *c = sv->client;
	int r = sync_on_data(sv);
	if (r == ST_AGAIN)
		return;
	if (r == ST_ERROR) {
		server_close(sv, "server failed during a pgshoal query");
		if (c)
			client_error_close(c, "08006", "server connection failed");
		return;
	}
	switch (sv->after_sync) {
	case SYNC_THEN_PUBLISH:
		if (sv->sync_failed)
			server_fail(sv, "connect_query failed");
		else
			server_publish(sv);
		break;
	case SYNC_THEN_RELEASE:
		if (sv->sync_failed)
			server_close(sv, "server_reset_query failed");
		else
			server_release(sv);
		break;
	case SYNC_THEN_START: /* server_check_query done */
		if (sv->sync_failed) {
			sv->checked = false;
			server_close(sv, "server_check_query failed");
			if (c)
				client_request_server(c);
		} else if (c) {
			server_start(sv);
		} else {
			server_release(sv);
		}
		break;
	case SYNC_THEN_AUTH_QUERY: auth_query_done(sv); break;
	default: /* parameters are in line: forward the client's request */
		if (sv->sync_failed) {
			server_release(sv);
			client_error_close(c, "22023",
			                   "could not apply client parameters on the server");
			return;
		}
		server_set_state(sv, SV_ACTIVE);
		sv->since = 0;
		client_flush_to_server(c);
		break;
	}
}

/* An event on a socket this worker does not hold now: a registration left
 * from an earlier lease. An idle server that speaks unasked has closed or
 * errored: take it out of the pool. Anything else: drop the registration. */
static void foreign_event(struct server *sv, uint32_t events)
{
	uint32_t gen = W.local_gen[sv->slot];
	char byte;

	/* the event may be for bytes the slot's holder has read since and then
	 * released the slot: only bytes still there make an idle server suspect */
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == EPOLLIN &&
	    recv(sv->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK))
		events &= ~(uint32_t)EPOLLIN;
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && gen &&
	    shm_pool_claim_idle(W.shm, sv->slot, gen, W.index)) {
		sv->gen = gen;
		server_set_state(sv, SV_SYNC);
		server_close(sv, "idle server connection closed or sent data");
		return;
	}
	worker_unregister(sv->fd);
	sv->registered = false;
	sv->events = 0;
}

void server_on_event(struct server *sv, uint32_t events)
{
	if (!server_event_is_mine(sv)) {
		if (sv->state == SV_NONE && sv->fd >= 0)
			foreign_event(sv, events);
		return;
	}
	switch (sv->state) {
	case SV_CONNECTING: connect_done(sv); break;
	case SV_TLS: server_tls_on_event(sv); break;
	case SV_LOGIN: login_read(sv); break;
	case SV_SYNC: sync_read(sv); break;
	case SV_WAIT_FD: break;
	case SV_ACTIVE:
		if ((events & EPOLLOUT) && sv->client)
			client_flush_to_server(sv->client);
		if (sv->state == SV_ACTIVE && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			server_read(sv);
		break;
	default: log_error(LOG_CRIT, 0, "S-%d: event in state %d", sv->slot, sv->state); abort();
	}
}

void server_client_gone(struct server *sv)
{
	struct client *c = sv->client;
	bool clean = c->pending == 0 && !c->unsynced && c->sc.left == 0 && sv->tx == 'I' &&
	             (!sv->in.data || sv->in.scan == sv->in.end) && sv->sc.left == 0;

	switch (sv->state) {
	case SV_WAIT_FD: /* the socket has not come yet: just pass the slot on */
		unlink_client(sv);
		server_set_state(sv, SV_NONE);
		server_release_unheld(sv->slot);
		break;
	case SV_SYNC: /* finish the SETs, then back to the pool */
		unlink_client(sv);
		sv->after_sync = SYNC_THEN_RELEASE;
		break;
	case SV_ACTIVE:
		if (clean)
			server_release(sv);
		else
			server_close(sv, "client disconnected with a request or transaction open");
		break;
	default: unlink_client(sv); break;
	}
}

static bool past(uint64_t since, double seconds)
{
	return seconds > 0 && since && W.now - since > (uint64_t)(seconds * 1e6);
}

void server_tick(uint64_t now)
{
	(void)now;
	for (int i = 0; i < W.nslots; i++) {
		struct server *sv = &W.servers[i];
		struct client *c = sv->client;
		if (sv->tls)
			server_tls_tick(sv);
		if ((sv->state == SV_CONNECTING || sv->state == SV_TLS || sv->state == SV_LOGIN) &&
		    past(sv->since, W.cfg->server_connect_timeout)) {
			server_fail(sv, "server_connect_timeout");
		} else if (sv->state == SV_WAIT_FD &&
		           past(sv->since, W.cfg->server_connect_timeout)) {
			/* the master never answered: give the slot up, find another */
			log_error(LOG_WARNING, 0, "S-%d: no socket from the master in time",
			          sv->slot);
			server_set_state(sv, SV_ACTIVE);
			server_close(sv, "no socket from the master");
			if (c && !c->closing)
				client_request_server(c);
		} else if (sv->state == SV_ACTIVE && c && c->pending > 0 &&
		           past(sv->since, W.cfg->query_timeout)) {
			server_close(sv, "query_timeout");
			client_error_close(c, "57014", "query_timeout");
		}
	}
}
