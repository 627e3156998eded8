/*
 * client.c — a worker's client connections: accept, the startup phase
 * (SSL/GSS refusal, cancel requests, startup parameters, limits), asking the
 * shared pool for a server, and the client-to-server direction of the
 * forwarding. Runs in worker processes only; each client lives in exactly
 * one worker, its row of the shared client table written only by it.
 */
#include "worker.h"
#include "io.h"
#include "proto.h"
#include "shm/ctl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *const client_state_names[CL_STATE_COUNT] = {
    "free", "login", "auth", "login_wait", "idle", "waiting", "active", "tls", "admin",
};

const char *client_state_name(enum client_state st)
{
	return st < CL_STATE_COUNT ? client_state_names[st] : "?";
}

void client_set_state(struct client *c, enum client_state st)
{
	log_debug(DBG_STATE, "C-%d: %s -> %s", c->row, client_state_name(c->state),
	          client_state_name(st));
	c->state = st;
	c->state_since = W.now;
	/* for SHOW CLIENTS / SHOW POOLS in any worker */
	atomic_store_explicit(&shm_client(W.shm, c->row)->cstate, (int)st, memory_order_relaxed);
	atomic_store_explicit(&shm_client(W.shm, c->row)->state_usec, W.now, memory_order_relaxed);
}

static struct shm_client *row_of(struct client *c)
{
	return shm_client(W.shm, c->row);
}

/* What the client fd should wait for now. */
void client_update_events(struct client *c)
{
	uint32_t want = 0;
	if (c->closing)
		return;
	if (c->admin && c->state != CL_AUTH) /* the console's once logged in */
		return admin_update_events(c);
	if (buf_len(&c->out) > 0 ||
	    (c->server && c->server->in.data && buf_len(&c->server->in) > 0 &&
	     c->server->state == SV_ACTIVE && c->server->in.scan > c->server->in.start))
		want |= EPOLLOUT;
	/* Read more only while the bytes already read can move on. */
	if (!c->in.data || c->in.end < W.buf_size || c->in.start > 0)
		want |= EPOLLIN;
	worker_update_events(c->fd, &c->events, want, c);
}

/* Write pgshoal's own bytes to the client, keeping order with what is queued. */
void client_write(struct client *c, const char *p, size_t n)
{
	ssize_t w = 0;
	if (buf_len(&c->out) == 0) {
		w = client_send(c, p, n);
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return; /* the read side will notice the broken connection */
			w = 0;
		}
	}
	if ((size_t)w == n)
		return;
	if (!buf_reserve(&c->out))
		return;
	buf_compact(&c->out);
	if (!c->out.data && !buf_reserve(&c->out))
		return;
	if (n - (size_t)w > W.buf_size - c->out.end)
		return; /* cannot happen for pgshoal's small messages */
	memcpy(c->out.data + c->out.end, p + w, n - (size_t)w);
	c->out.end += (uint32_t)(n - (size_t)w);
	c->out.scan = c->out.end;
	client_update_events(c);
}

static void send_error(struct client *c, const char *severity, const char *sqlstate,
                       const char *msg)
{
	char mem[1024];
	struct pbuf b;
	pb_init(&b, mem, sizeof(mem));
	proto_error(&b, severity, sqlstate, msg);
	if (!b.err)
		client_write(c, b.p, b.len);
}

void client_error_close(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_error(c, "FATAL", sqlstate, msg);
	if (W.cfg->log_pooler_errors)
		log_error(LOG_WARNING, 0, "C-%d: db=%s user=%s addr=%s pooler error: %s", c->row,
		          c->db, c->user, c->addr, msg);
	client_close(c, msg);
}

static void describe_peer(struct client *c, const struct sockaddr_storage *sa)
{
	char host[48]; /* an IPv6 address fits in 46 */
	int port = sockaddr_describe(sa, host, sizeof(host));
	if (port)
		snprintf(c->addr, sizeof(c->addr), "%s:%d", host, port);
	else
		strlcpy_s(c->addr, host, sizeof(c->addr));
}

static struct client *take_row(void)
{
	for (int i = 0; i < W.nrows; i++) {
		struct client *c = &W.clients[i];
		if (c->state == CL_FREE && !c->in_free_list)
			return c;
	}
	return NULL;
}

static void set_socket_options(int fd, const struct sockaddr_storage *sa)
{
	int one = 1;
	if (sa->ss_family == AF_UNIX)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (W.cfg->tcp_keepalive)
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static void start_client(int fd, const struct sockaddr_storage *sa)
{
	struct client *c = take_row();
	struct epoll_event ev = {.events = EPOLLIN};
	uint32_t key;

	if (!c) { /* every row of this worker in use: far past max_client_conn */
		close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->kind = EV_CLIENT;
	c->fd = fd;
	c->row = W.first_row + (int)(c - W.clients);
	c->pool = -1;
	c->events = EPOLLIN;
	c->last_io = W.now;
	describe_peer(c, sa);
	set_socket_options(fd, sa);
	if (getrandom(&key, sizeof(key), GRND_NONBLOCK) != sizeof(key))
		key = (uint32_t)random();
	row_of(c)->cancel_key = key;
	row_of(c)->pool = -1;
	row_of(c)->connect_usec = wall_usec();
	atomic_store_explicit(&row_of(c)->slot, -1, memory_order_relaxed);
	admin_note_client(c, sa);
	atomic_store_explicit(&row_of(c)->state, CROW_USED, memory_order_release);
	client_set_state(c, CL_LOGIN);
	W.nclients++;
	atomic_fetch_add(&W.shm->workers[W.index].nclients, 1);
	ev.data.ptr = c;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error(LOG_ERR, errno, "epoll_ctl(ADD) failed");
		client_close(c, "epoll failure");
	}
}

void client_accept(int listen_fd)
{
	(void)listen_fd;
	for (int i = 0; i < W.nlisten; i++) {
		for (int k = 0; k < 32 && !W.draining; k++) {
			struct sockaddr_storage sa;
			socklen_t len = sizeof(sa);
			int fd = accept4(W.listen_fds[i], (struct sockaddr *)&sa, &len,
			                 SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK &&
				    errno != ECONNABORTED)
					log_error(LOG_WARNING, errno, "accept4() failed");
				break;
			}
			atomic_fetch_add(&W.shm->hdr->clients_total, 1);
			start_client(fd, &sa);
		}
	}
}

/* Startup parameters that pgshoal keeps for the client and replays with SET. */
static void take_startup_params(struct client *c, const struct startup *st)
{
	for (int i = 0; i < st->nparams; i++) {
		int p = shm_param_lookup(st->names[i]);
		if (p >= 0)
			strlcpy_s(c->params[p], st->values[i], PARAM_VALUE_LEN);
	}
}

/* Protocol 3.x with x > 0, or _pq_ options: say what we speak. */
static void negotiate_version(struct client *c, const struct startup *st)
{
	char mem[1024];
	struct pbuf b;
	size_t pos;
	int nopts = 0;

	for (int i = 0; i < st->nparams; i++)
		nopts += strncmp(st->names[i], "_pq_.", 5) == 0;
	if ((st->code & 0xffff) == 0 && nopts == 0)
		return;
	pb_init(&b, mem, sizeof(mem));
	pos = pb_begin(&b, 'v');
	pb_u32(&b, PROTO_V3);
	pb_u32(&b, (uint32_t)nopts);
	for (int i = 0; i < st->nparams; i++)
		if (strncmp(st->names[i], "_pq_.", 5) == 0)
			pb_str(&b, st->names[i]);
	pb_end(&b, pos);
	if (!b.err)
		client_write(c, b.p, b.len);
}

struct pool_limits client_pool_limits(const struct config_db *db, const char *user)
{
	struct pool_limits lim = {
	    .pool_size = config_pool_size(W.cfg, db),
	    .reserve_size = config_reserve_size(W.cfg, db),
	    .max_db_conns = config_max_db_connections(W.cfg, db),
	    .max_user_conns = config_max_user_connections(W.cfg, user),
	    .mode = config_pool_mode(W.cfg, db, user),
	    .login_retry_usec = (uint64_t)(W.cfg->server_login_retry * 1e6),
	};
	return lim;
}

static void login_client(struct client *c, const struct startup *st)
{
	const char *user = startup_get(st, "user");
	const char *db = startup_get(st, "database");
	const struct config_db *cdb;
	struct pool_limits lim;

	if (!user || !*user)
		return client_error_close(c, "28000",
		                          "no PostgreSQL user name specified in startup packet");
	if (!db || !*db)
		db = user;
	strlcpy_s(c->user, user, sizeof(c->user));
	strlcpy_s(c->db, db, sizeof(c->db));
	admin_note_login(c, startup_get(st, "application_name"));
	if (atomic_load(&W.shm->hdr->clients_total) > W.cfg->max_client_conn)
		return client_error_close(c, "53300",
		                          "no more connections allowed (max_client_conn)");
	if (startup_get(st, "replication"))
		return client_error_close(c, "08P01", "replication connections are not supported");
	if (admin_is_db(db)) { /* the admin console: no pool, no server */
		if (admin_begin(c) == ST_OK && auth_begin(c) == ST_OK)
			client_login_done(c);
		return;
	}
	cdb = config_find_db(W.cfg, db);
	if (!cdb)
		return client_error_close(c, "3D000", "database \"%s\" does not exist", db);
	c->db_index = (int)(cdb - W.cfg->dbs);
	if (cdb->user[0])
		user = cdb->user;
	lim = client_pool_limits(cdb, user);
	c->mode = lim.mode;
	prepared_login(c);
	if (!auth_will_fail(c)) { /* a stranger gets no pool row: max_pools is not for floods */
		c->pool = shm_pool_find(W.shm, db, user, &lim);
		if (c->pool < 0)
			return client_error_close(c, "53300",
			                          "no more pools available (max_pools)");
		row_of(c)->pool = c->pool;
		if (shm_ctl_disabled(W.shm, c->pool))
			return client_error_close(
			    c, "55000",
			    "database \"%s\" is not currently accepting connections (DISABLE)", db);
		c->kill_gen = shm_ctl_kill_gen(W.shm, c->pool);
	}
	take_startup_params(c, st);
	negotiate_version(c, st);
	if (W.cfg->log_connections)
		log_error(LOG_INFO, 0, "C-%d: db=%s user=%s addr=%s login attempt: mode=%s", c->row,
		          c->db, c->user, c->addr, config_pool_mode_name(c->mode));
	if (auth_begin(c) == ST_OK)
		client_login_done(c);
}

/* Authenticated: welcome the client (from the pool's saved parameters, or
 * after a server login when the pool has none yet). */
void client_login_done(struct client *c)
{
	if (c->admin)
		return admin_login_done(c);
	shm_stat_add(worker_stats(c->pool), STAT_LOGIN, 1);
	client_send_welcome(c);
}

/* Handle one whole startup-phase packet; false when the client is done. */
static bool handle_startup_packet(struct client *c, const char *pkt, uint32_t len)
{
	struct startup st;
	const char *why;

	if (proto_parse_startup(pkt, len, &st, &why) < 0) {
		client_error_close(c, "08P01", "%s", why);
		return false;
	}
	switch (st.code) {
	case PROTO_SSL: return tls_client_begin(c); /* 'S' and a handshake, or 'N' */
	case PROTO_GSSENC: client_write(c, "N", 1); return true;
	case PROTO_CANCEL:
		cancel_forward(st.cancel_pid, st.cancel_key);
		client_close(c, NULL);
		return false;
	default: login_client(c, &st); return false;
	}
}

/* CL_LOGIN: consume startup packets from the input buffer. */
static void read_startup(struct client *c)
{
	while (c->state == CL_LOGIN && !c->closing && buf_len(&c->in) >= 4) {
		const char *p = c->in.data + c->in.start;
		uint32_t len = get_u32(p);
		if (len < 8 || len > MAX_STARTUP_PACKET) {
			client_error_close(c, "08P01", "invalid length of startup packet");
			return;
		}
		if (buf_len(&c->in) < len)
			break;
		c->in.start += len;
		c->in.scan = c->in.start;
		if (!handle_startup_packet(c, p, len))
			break;
	}
	if (!c->closing)
		buf_compact(&c->in);
}

/* Rewrite the pool's saved ParameterStatus set with the client's own values,
 * and learn the server defaults for the parameters the client did not set. */
static void welcome_params(struct client *c, struct pbuf *b, const char *blob, uint32_t len)
{
	bool sent[PARAM_COUNT] = {false};
	uint32_t off = 0;

	while (off + 5 <= len) {
		uint32_t total = get_u32(blob + off + 1) + 1;
		const char *name = blob + off + 5;
		const char *value = name + strlen(name) + 1;
		int p = shm_param_lookup(name);
		if (total < 7 || off + total > len)
			break;
		if (p >= 0 && c->params[p][0] == '\0' && p != PARAM_APPLICATION_NAME)
			strlcpy_s(c->params[p], value, PARAM_VALUE_LEN);
		if (p >= 0)
			sent[p] = true;
		proto_param_status(b, name, p >= 0 ? c->params[p] : value);
		off += total;
	}
	for (int p = 0; p < PARAM_COUNT; p++)
		if (!sent[p] && c->params[p][0])
			proto_param_status(b, shm_param_names[p], c->params[p]);
}

void client_send_welcome(struct client *c)
{
	char blob[sizeof(((struct shm_pool *)0)->welcome)];
	char mem[4096];
	struct pbuf b;
	uint32_t len = shm_pool_get_welcome(W.shm, c->pool, blob, sizeof(blob));

	if (len == 0) { /* no server seen yet: learn its parameters first */
		client_set_state(c, CL_LOGIN_WAIT);
		client_request_server(c);
		return;
	}
	pb_init(&b, mem, sizeof(mem));
	proto_auth_ok(&b);
	welcome_params(c, &b, blob, len);
	proto_backend_key(&b, shm_fake_pid(W.shm, c->row), (int32_t)row_of(c)->cancel_key);
	proto_ready(&b, 'I');
	client_write(c, b.p, b.len);
	if (c->state == CL_LOGIN || c->state == CL_AUTH || c->state == CL_LOGIN_WAIT)
		client_set_state(c, c->server ? CL_ACTIVE : CL_IDLE);
}

/*
 * Walk the headers of what the client sent: count the requests that will be
 * answered by ReadyForQuery, note extended-protocol messages not yet closed
 * by Sync, and stop at Terminate. Bodies are skipped, never copied.
 */
static int scan_client(struct client *c)
{
	struct buf *b = &c->in;
	while (b->scan < b->end) {
		char type;
		uint32_t total;
		int r;
		if (c->sc.left) {
			uint32_t adv =
			    b->end - b->scan < c->sc.left ? b->end - b->scan : c->sc.left;
			b->scan += adv;
			c->sc.left -= adv;
			continue;
		}
		r = proto_header(b->data + b->scan, b->end - b->scan, &type, &total,
		                 (uint32_t)W.cfg->max_packet_size);
		if (r == 0)
			break;
		if (r < 0)
			return ST_ERROR;
		if (c->pos.on &&
		    !c->ps) { /* prepared statements: counted, until the first named one */
			r = prepared_scan(c, type, total);
			if (r == ST_AGAIN)
				break;
			if (r == ST_ERROR)
				return ST_ERROR;
		}
		switch (type) {
		case 'X': b->end = b->scan; return ST_DONE;
		case 'Q':
		case 'F':
			c->pending++;
			c->unsynced = false;
			break;
		case 'S':
			c->pending++;
			c->unsynced = false;
			break;
		case 'P':
		case 'B':
		case 'D':
		case 'E':
		case 'C':
		case 'H': c->unsynced = true; break;
		case 'd':
		case 'c':
		case 'f': break;
		default: return ST_ERROR;
		}
		b->scan += 5;
		c->sc.left = total - 5;
	}
	return ST_OK;
}

void client_flush_to_server(struct client *c)
{
	struct server *sv = c->server;
	struct buf *b = &c->in;
	ssize_t n;

	if (!sv || sv->state != SV_ACTIVE)
		return;
	if (c->ps && !(b = prepared_output(c))) /* rewritten for this server's names */
		return;
	if (!b->data)
		return;
	if (b->scan > b->start) {
		/* the server was at a boundary, kept only until the client takes the
		 * last reply's bytes: a new request keeps it leased (released now,
		 * that request's reply would reach the slot's next holder) */
		sv->release_pending = false;
		n = server_send(sv, b->data + b->start, b->scan - b->start);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			server_close(sv, "write to server failed");
			client_error_close(c, "08006", "server connection failed");
			return;
		}
		if (n > 0) {
			b->start += (uint32_t)n;
			shm_stat_add(worker_stats(c->pool), STAT_RECV, (uint64_t)n);
			if (sv->state == SV_ACTIVE && c->pending && !sv->since) {
				sv->since =
				    W.now; /* a request starts (query_time, query_timeout) */
				if (!sv->xact_start)
					sv->xact_start = W.now;
			}
		}
	}
	buf_compact(b);
	server_flush_to_client(sv); /* refreshes both sides' events */
	client_update_events(c);
}

static void client_read(struct client *c)
{
	ssize_t n;
	int r;

	if (!buf_reserve(&c->in))
		return client_close(c, "out of memory");
	if (c->in.end == W.buf_size)
		buf_compact(&c->in);
	if (c->in.end == W.buf_size) {
		client_update_events(c);
		return;
	}
	n = client_recv(c, c->in.data + c->in.end, W.buf_size - c->in.end);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		return client_close(c, n == 0 ? "client closed connection" : "client read failed");
	}
	c->in.end += (uint32_t)n;
	c->last_io = W.now;
	if (c->state == CL_LOGIN)
		return read_startup(c);
	if (c->state == CL_AUTH)
		return auth_on_data(c);
	r = scan_client(c);
	if (r == ST_ERROR)
		return client_error_close(c, "08P01", "invalid message from client");
	if (r == ST_DONE)
		return client_close(c, "client sent Terminate");
	if (c->server)
		client_flush_to_server(c);
	else if (c->state == CL_IDLE && c->in.scan > c->in.start)
		client_request_server(c);
	client_update_events(c);
}

static void client_flush_out(struct client *c)
{
	struct buf *b = &c->out;
	if (buf_len(b) > 0) {
		ssize_t n = client_send(c, b->data + b->start, buf_len(b));
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return client_close(c, "client write failed");
		if (n > 0)
			b->start += (uint32_t)n;
		buf_compact(b);
	}
	if (c->server && buf_len(b) == 0)
		server_flush_to_client(c->server);
	client_update_events(c);
}

void client_on_event(struct client *c, uint32_t events)
{
	if (c->closing)
		return;
	if (c->state == CL_TLS)
		return tls_client_handshake(c);
	if (c->admin && c->state != CL_AUTH) /* its password exchange is auth.c's */
		return admin_on_event(c, events);
	if (events & EPOLLOUT)
		client_flush_out(c);
	if (!c->closing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		client_read(c);
}

static void fail_waiting_client(struct client *c)
{
	char err[256];
	shm_pool_last_error(W.shm, c->pool, err, sizeof(err));
	client_error_close(
	    c, "08P01", "server login has been failing, try again later (server_login_retry): %s",
	    err);
}

void client_request_server(struct client *c)
{
	int slot, r;

	if (shm_ctl_paused(W.shm, c->pool)) { /* PAUSE/KILL: wait unqueued; client_tick retries */
		c->paused = true;
		if (c->state != CL_LOGIN_WAIT)
			client_set_state(c, CL_WAITING);
		return;
	}
	r = shm_pool_lease(W.shm, c->pool, c->row, W.now, W.local_gen, &slot);

	switch (r) {
	case LEASE_GOT: client_attach(c, &W.servers[slot]); break;
	case LEASE_CONNECT:
	case LEASE_EVICT: /* another worker's idle TLS slot is closed for the room */
		if (r == LEASE_CONNECT)
			server_connect(slot, c);
		else
			server_tls_ask_close(slot);
		/* fall through */
	case LEASE_QUEUED:
		if (c->state != CL_LOGIN_WAIT)
			client_set_state(c, CL_WAITING);
		break;
	case LEASE_FAILED: fail_waiting_client(c); break;
	default: log_error(LOG_CRIT, 0, "bad lease result %d", r); abort();
	}
}

/* The slot was leased to c: link them, fetch the socket if needed, start. */
void client_attach(struct client *c, struct server *sv)
{
	uint32_t gen = atomic_load_explicit(&shm_slot(W.shm, sv->slot)->gen, memory_order_acquire);

	if (sv->client ||
	    sv->state != SV_NONE) /* the pool handed out a slot this worker still uses */
		log_error(LOG_CRIT, 0,
		          "S-%d: BUG: leased to C-%d while in state %d with C-%d (gen %u, held %u)",
		          sv->slot, c->row, sv->state, sv->client ? sv->client->row : -1, gen,
		          sv->gen);
	if (c->server && c->server != sv) /* the client already has one */
		log_error(LOG_CRIT, 0, "C-%d: BUG: given S-%d while it holds S-%d (state %d)",
		          c->row, sv->slot, c->server->slot, c->server->state);
	sv->client = c;
	c->server = sv;
	atomic_store_explicit(&row_of(c)->slot, sv->slot, memory_order_release);
	shm_stat_add(worker_stats(c->pool), STAT_ASSIGN, 1);
	shm_stat_wait(worker_stats(c->pool), c->state == CL_WAITING || c->state == CL_LOGIN_WAIT
	                                         ? W.now - c->state_since
	                                         : 0);
	if (c->state != CL_LOGIN_WAIT)
		client_set_state(c, CL_ACTIVE);
	if (fdcache_get(sv, gen) == ST_OK)
		server_start(sv);
}

static bool slot_still_ours(const struct shm_handoff *h)
{
	struct shm_slot *sl = shm_slot(W.shm, h->slot);
	return atomic_load_explicit(&sl->gen, memory_order_acquire) == h->slot_gen &&
	       atomic_load_explicit(&sl->owner, memory_order_relaxed) == W.index &&
	       atomic_load_explicit(&sl->client, memory_order_relaxed) == h->client;
}

void client_on_handoff(const struct shm_handoff *h)
{
	struct client *c;

	if (h->client == HANDOFF_CLOSE) /* another worker needs the room of our idle TLS slot */
		return server_tls_on_close_request(h);
	/* HANDOFF_OPEN: open this slot (min_pool_size, or room a TLS slot gave up) */
	if (h->client < 0) {
		struct shm_slot *sl = shm_slot(W.shm, h->slot);
		if (atomic_load(&sl->gen) == h->slot_gen &&
		    atomic_load(&sl->state) == SLOT_CONNECTING &&
		    atomic_load(&sl->owner) == W.index)
			server_connect(h->slot, NULL);
		return;
	}
	c = &W.clients[h->client - W.first_row];
	bool alive = (c->state == CL_WAITING || c->state == CL_LOGIN_WAIT) && !c->closing &&
	             atomic_load_explicit(&row_of(c)->gen, memory_order_acquire) == h->client_gen;

	if (h->slot < 0) {
		if (alive)
			fail_waiting_client(c);
		return;
	}
	if (!slot_still_ours(h)) { /* freed meanwhile (repair after a crash) */
		if (alive)
			client_request_server(c);
		return;
	}
	if (alive) {
		client_attach(c, &W.servers[h->slot]);
		return;
	}
	/* The client left while the slot was on its way: pass the slot on. */
	W.servers[h->slot].client = NULL;
	server_release_unheld(h->slot);
}

static void free_row(struct client *c)
{
	struct shm_client *r = row_of(c);
	atomic_store_explicit(&r->slot, -1, memory_order_relaxed);
	atomic_store_explicit(&r->state, CROW_FREE, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->gen, 1, memory_order_release);
	atomic_fetch_sub(&W.shm->hdr->clients_total, 1);
	atomic_fetch_sub(&W.shm->workers[W.index].nclients, 1);
}

void client_close(struct client *c, const char *reason)
{
	if (c->closing || c->state == CL_FREE)
		return;
	c->closing = true;
	if ((c->state == CL_WAITING || c->state == CL_LOGIN_WAIT) && !c->server)
		shm_pool_dequeue(W.shm, c->pool, c->row); /* if not found, a handoff is in flight */
	if (c->server)
		server_client_gone(c->server);
	free_row(c);
	if (c->auth)
		auth_free(c);
	if (c->admin)
		admin_free(c);
	if (c->tls)
		tls_close(&c->tls);
	prepared_free(c);
	if (reason && c->state != CL_LOGIN && W.cfg->log_disconnections)
		log_error(LOG_INFO, 0,
		          "C-%d: db=%s user=%s addr=%s closing because: %s (age=%llus)", c->row,
		          c->db, c->user, c->addr, reason,
		          (unsigned long long)((wall_usec() - row_of(c)->connect_usec) / 1000000));
	worker_unregister(c->fd);
	close(c->fd);
	c->fd = -1;
	buf_release(&c->in);
	buf_release(&c->out);
	W.nclients--;
	c->in_free_list = true;
	c->next_free = W.free_list;
	W.free_list = c;
}

/* End of a loop turn: closed clients become reusable rows. */
void client_free_closed(void)
{
	while (W.free_list) {
		struct client *c = W.free_list;
		W.free_list = c->next_free;
		c->state = CL_FREE;
		c->in_free_list = false;
	}
}

static bool past(uint64_t since, double seconds)
{
	return seconds > 0 && W.now - since > (uint64_t)(seconds * 1e6);
}

static void tick_one(struct client *c)
{
	const struct config *cfg = W.cfg;
	const char *killed = admin_kill_reason(c);

	if (killed)
		return client_error_close(c, "57P01", "%s", killed);
	if (c->paused && (c->state == CL_WAITING || c->state == CL_LOGIN_WAIT)) {
		if (past(c->state_since, cfg->query_wait_timeout))
			client_error_close(c, "08P01", "query_wait_timeout");
		else if (!shm_ctl_paused(W.shm, c->pool)) {
			c->paused = false; /* RESUME */
			client_request_server(c);
		}
		return;
	}
	switch (c->state) {
	case CL_ADMIN: admin_tick(c); break;
	case CL_LOGIN:
	case CL_AUTH:
	case CL_TLS:
		if (past(c->state_since, cfg->client_login_timeout))
			client_error_close(c, "08P01", "client_login_timeout");
		break;
	case CL_LOGIN_WAIT:
	case CL_WAITING:
		if (past(c->state_since, cfg->query_wait_timeout) &&
		    shm_pool_dequeue(W.shm, c->pool, c->row))
			client_error_close(c, "08P01", "query_wait_timeout");
		else /* retries after a failed login, and the reserve pool, are driven from here */
			server_grow(c->pool, past(c->state_since, cfg->reserve_pool_timeout));
		break;
	case CL_IDLE:
		if (past(c->last_io, cfg->client_idle_timeout))
			client_error_close(c, "08P01", "client_idle_timeout");
		break;
	case CL_ACTIVE:
		if (c->server && c->server->tx != 'I' && c->pending == 0 &&
		    past(c->last_io, cfg->idle_transaction_timeout))
			client_error_close(c, "25P03", "idle transaction timeout");
		break;
	default: break;
	}
}

void client_tick(uint64_t now)
{
	(void)now;
	for (int i = 0; i < W.nrows; i++)
		if (W.clients[i].state != CL_FREE && !W.clients[i].closing)
			tick_one(&W.clients[i]);
	if (W.close_idle) /* safe shutdown: clients go once out of their transaction */
		for (int i = 0; i < W.nrows; i++) {
			struct client *c = &W.clients[i];
			if (W.orphaned && !c->closing &&
			    (c->state == CL_WAITING || c->state == CL_LOGIN_WAIT ||
			     (c->server && c->server->state == SV_WAIT_FD))) {
				/* no master: no socket will come for it */
				client_error_close(
				    c, "57P01",
				    "terminating connection: the pgshoal master is gone");
				continue;
			}
			if (c->closing ||
			    !(c->state == CL_IDLE || c->state == CL_LOGIN ||
			      (c->state == CL_ACTIVE && c->server &&
			       c->server->state == SV_ACTIVE && c->server->tx == 'I' &&
			       c->pending == 0 && !c->unsynced)))
				continue;
			client_error_close(c, "57P01",
			                   "terminating connection due to pgshoal shutdown");
		}
}
