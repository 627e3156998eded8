/*
 * admin.c — the admin console's session: a client that asked for the
 * virtual database admin_db (or "pgbouncer") is answered by the worker
 * itself over the simple query protocol. This file owns the session's life
 * (permissions at login, the welcome, reading queries, sending replies that
 * may be larger than an I/O buffer), the command parser and dispatch, and
 * the shared client-row fields that SHOW CLIENTS reads. Runs in workers.
 *
 * Whatever worker a session lands on answers for the whole pooler: every
 * number comes from shared memory (admin_show.c) and every switch is set
 * there (admin_ctl.c). Nothing here blocks: a command that must wait
 * (PAUSE, WAIT_CLOSE, KILL_CLIENT) is parked and re-checked each tick.
 *
 * The parser follows PgBouncer's three forms, case-insensitively:
 *   WORD [WORD] [;]      SET key = word [;]      SET key = 'string' [;]
 * where WORD is [A-Za-z0-9_]+ or a "quoted" name (SET's unquoted word may
 * also hold a '.', for 30.5). Anything else — two
 * statements, SQL, an unterminated quote — is a syntax error and nothing
 * is run. One command per query.
 */
#include "admin.h"
#include "io.h"
#include "proto.h"
#include "shm/ctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_REPLY (64u << 20) /* a SHOW larger than this is refused */
#define ARG_LEN         CFG_NAME_LEN
#define VAL_LEN         256

bool admin_is_db(const char *db)
{
	return strcmp(db, W.cfg->admin_db) == 0 || strcmp(db, "pgbouncer") == 0;
}

/* ---------------------------------------------------------------- replies */

static void put(struct admin *a, const void *p, size_t n)
{
	if (a->oom)
		return;
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 4096;
		char *q;
		while (cap < a->len + n)
			cap *= 2;
		q = cap <= ADMIN_MAX_REPLY ? realloc(a->out, cap) : NULL;
		if (!q) {
			a->oom = true;
			return;
		}
		a->out = q;
		a->cap = cap;
	}
	memcpy(a->out + a->len, p, n);
	a->len += n;
}

static void put_u16(struct admin *a, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(a, b, 2);
}

static void put_u32(struct admin *a, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	put(a, b, 4);
}

static void put_str(struct admin *a, const char *s)
{
	put(a, s, strlen(s) + 1);
}

static size_t msg_begin(struct admin *a, char type)
{
	size_t pos;
	put(a, &type, 1);
	pos = a->len;
	put_u32(a, 0);
	return pos;
}

static void msg_end(struct admin *a, size_t pos)
{
	uint32_t n = (uint32_t)(a->len - pos);
	if (a->oom)
		return;
	a->out[pos] = (char)(n >> 24);
	a->out[pos + 1] = (char)(n >> 16);
	a->out[pos + 2] = (char)(n >> 8);
	a->out[pos + 3] = (char)n;
}

static void type_of(char t, uint32_t *oid, int16_t *size)
{
	switch (t) {
	case 'i':
	case 'I': *oid = 23, *size = 4; break;    /* int4 */
	case 'q': *oid = 20, *size = 8; break;    /* int8 */
	case 'N': *oid = 1700, *size = -1; break; /* numeric */
	case 'b': *oid = 17, *size = -1; break;   /* bytea */
	default: *oid = 25, *size = -1; break;    /* text ('s', 'T') */
	}
}

void admin_rowdesc(struct admin *a, const char *types, const char *const *names)
{
	size_t n = strlen(types), pos = msg_begin(a, 'T');

	put_u16(a, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		uint32_t oid;
		int16_t size;
		type_of(types[i], &oid, &size);
		put_str(a, names[i]);
		put_u32(a, 0); /* table oid */
		put_u16(a, 0); /* column number */
		put_u32(a, oid);
		put_u16(a, (uint16_t)size);
		put_u32(a, 0xffffffffu); /* typmod -1 */
		put_u16(a, 0);           /* text format */
	}
	msg_end(a, pos);
}

static void put_value(struct admin *a, const char *v)
{
	if (!v) {
		put_u32(a, 0xffffffffu); /* NULL */
		return;
	}
	put_u32(a, (uint32_t)strlen(v));
	put(a, v, strlen(v));
}

static const char *format_time(uint64_t wall, char *buf, size_t len)
{
	time_t t = (time_t)(wall / 1000000);
	struct tm tm;
	if (!wall || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm))
		return NULL;
	return buf;
}

void admin_row(struct admin *a, const char *types, ...)
{
	size_t n = strlen(types), pos = msg_begin(a, 'D');
	va_list ap;

	put_u16(a, (uint16_t)n);
	va_start(ap, types);
	for (size_t i = 0; i < n; i++) {
		char tmp[64];
		const char *v = tmp;
		int iv;
		switch (types[i]) {
		case 's': v = va_arg(ap, const char *); break;
		case 'i': snprintf(tmp, sizeof(tmp), "%d", va_arg(ap, int)); break;
		case 'I':
			iv = va_arg(ap, int);
			if (iv == -1)
				v = NULL;
			else
				snprintf(tmp, sizeof(tmp), "%d", iv);
			break;
		case 'q':
		case 'N':
			snprintf(tmp, sizeof(tmp), "%llu",
			         (unsigned long long)va_arg(ap, uint64_t));
			break;
		case 'T': v = format_time(va_arg(ap, uint64_t), tmp, sizeof(tmp)); break;
		default: log_error(LOG_CRIT, 0, "bad admin column type '%c'", types[i]); abort();
		}
		put_value(a, v);
	}
	va_end(ap);
	msg_end(a, pos);
}

static void ready(struct admin *a)
{
	size_t pos = msg_begin(a, 'Z');
	put(a, "I", 1);
	msg_end(a, pos);
}

void admin_complete(struct admin *a, const char *tag)
{
	size_t pos = msg_begin(a, 'C');
	put_str(a, tag);
	msg_end(a, pos);
	ready(a);
}

static void error_fields(struct admin *a, const char *severity, const char *sqlstate,
                         const char *msg)
{
	size_t pos = msg_begin(a, 'E');
	put(a, "S", 1);
	put_str(a, severity);
	put(a, "V", 1);
	put_str(a, severity);
	put(a, "C", 1);
	put_str(a, sqlstate);
	put(a, "M", 1);
	put_str(a, msg);
	put(a, "", 1);
	msg_end(a, pos);
}

void admin_fail(struct admin *a, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	error_fields(a, "ERROR", sqlstate, msg);
	ready(a);
}

void admin_notice(struct admin *a, const char *msg, const char *detail)
{
	size_t pos = msg_begin(a, 'N');
	put(a, "S", 1);
	put_str(a, "NOTICE");
	put(a, "C", 1);
	put_str(a, "00000");
	put(a, "M", 1);
	put_str(a, msg);
	if (detail) {
		put(a, "D", 1);
		put_str(a, detail);
	}
	put(a, "", 1);
	msg_end(a, pos);
}

/* --------------------------------------------------------------- the I/O */

void admin_update_events(struct client *c)
{
	struct admin *a = c->admin;
	uint32_t want = 0;

	if (c->closing)
		return;
	if (a->sent < a->len)
		want |= EPOLLOUT;
	if (!c->in.data || c->in.end < W.buf_size || c->in.start > 0)
		want |= EPOLLIN;
	worker_update_events(c->fd, &c->events, want, c);
}

static void admin_flush(struct client *c)
{
	struct admin *a = c->admin;

	while (a->sent < a->len) {
		ssize_t n = client_send(c, a->out + a->sent, a->len - a->sent);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_close(c, "client write failed");
			return;
		}
		a->sent += (size_t)n;
	}
	if (a->sent == a->len) {
		a->sent = a->len = 0;
		if (a->cap > 65536) { /* a big SHOW is over: give the memory back */
			free(a->out);
			a->out = NULL;
			a->cap = 0;
		}
	}
	admin_update_events(c);
}

/* A broken session: one FATAL error after what is queued, then close. */
static void admin_fatal(struct client *c, const char *sqlstate, const char *msg)
{
	error_fields(c->admin, "FATAL", sqlstate, msg);
	admin_flush(c);
	if (!c->closing)
		client_close(c, msg);
}

/* --------------------------------------------------------------- parsing */

struct parsed {
	char verb[32];
	char arg[ARG_LEN];
	char val[VAL_LEN];
	bool is_set;
};

enum { P_OK, P_SYNTAX, P_TOO_LONG };

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static bool is_word_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

static const char *skip_space(const char *p)
{
	while (is_space(*p))
		p++;
	return p;
}

/* A quoted token (q = '"' or '\''), doubled quotes inside meaning one. */
static int read_quoted(const char **pp, char q, char *out, size_t cap)
{
	const char *p = *pp + 1;
	size_t n = 0;

	for (;;) {
		char ch = *p++;
		if (ch == '\0')
			return P_SYNTAX;
		if (ch == q) {
			if (*p != q)
				break;
			p++;
		}
		if (n + 1 >= cap)
			return P_TOO_LONG;
		out[n++] = ch;
	}
	if (n == 0 && q == '"')
		return P_SYNTAX;
	out[n] = '\0';
	*pp = p;
	return P_OK;
}

/* A word, or a "quoted" name; with dot, SET's unquoted value, which may
 * also be a number with a fraction (30.5, which PgBouncer wants quoted). */
static int read_token(const char **pp, char *out, size_t cap, bool dot)
{
	const char *p = *pp;
	size_t n = 0;

	if (*p == '"')
		return read_quoted(pp, '"', out, cap);
	while (is_word_char(*p) || (dot && *p == '.' && n > 0)) {
		if (n + 1 >= cap)
			return P_TOO_LONG;
		out[n++] = *p++;
	}
	if (n == 0)
		return P_SYNTAX;
	out[n] = '\0';
	*pp = p;
	return P_OK;
}

static int read_word(const char **pp, char *out, size_t cap)
{
	return read_token(pp, out, cap, false);
}

/* The end: an optional ';' and white space, nothing else. */
static int read_end(const char *p)
{
	p = skip_space(p);
	if (*p == ';')
		p = skip_space(p + 1);
	return *p ? P_SYNTAX : P_OK;
}

/* SET key (=|TO) value, after "set". */
static int parse_set(const char *p, struct parsed *cmd)
{
	int r;

	if (!is_space(*p))
		return P_SYNTAX;
	p = skip_space(p);
	if ((r = read_word(&p, cmd->arg, sizeof(cmd->arg))) != P_OK)
		return r;
	p = skip_space(p);
	if (*p == '=')
		p++;
	else if (strncasecmp(p, "to", 2) == 0 && (is_space(p[2]) || p[2] == '\'' || p[2] == '"'))
		p += 2;
	else
		return P_SYNTAX;
	p = skip_space(p);
	r = *p == '\'' ? read_quoted(&p, '\'', cmd->val, sizeof(cmd->val))
	               : read_token(&p, cmd->val, sizeof(cmd->val), true);
	if (r != P_OK)
		return r;
	cmd->is_set = true;
	return read_end(p);
}

static int parse_command(const char *q, struct parsed *cmd)
{
	const char *p = skip_space(q);
	const char *after;
	int r;

	memset(cmd, 0, sizeof(*cmd));
	if ((r = read_word(&p, cmd->verb, sizeof(cmd->verb))) != P_OK)
		return r;
	if (strcasecmp(cmd->verb, "set") == 0 && *p && read_end(p) != P_OK)
		return parse_set(p, cmd);
	after = skip_space(p);
	if (after != p && (is_word_char(*after) || *after == '"')) {
		p = after;
		if ((r = read_word(&p, cmd->arg, sizeof(cmd->arg))) != P_OK)
			return r;
	}
	return read_end(p);
}

/* ------------------------------------------------------------- dispatch */

static void run_command(struct client *c, const char *q)
{
	struct admin *a = c->admin;
	struct parsed cmd;
	int r = parse_command(q, &cmd);

	a->mark = a->len;
	if (r == P_TOO_LONG)
		admin_fail(a, "42601", "bad arguments: a name or value is too long");
	else if (r != P_OK)
		admin_fail(a, "42601", "invalid command '%.200s', use SHOW HELP;", q);
	else if (cmd.is_set)
		admin_set(c, cmd.arg, cmd.val);
	else if (strcasecmp(cmd.verb, "show") == 0 || strcasecmp(cmd.verb, "select") == 0) {
		if (!cmd.arg[0] || !admin_show(c, cmd.arg))
			admin_fail(a, "42601", "invalid command '%.200s', use SHOW HELP;", q);
	} else if (!admin_control(c, cmd.verb, cmd.arg)) {
		admin_fail(a, "42601", "invalid command '%.200s', use SHOW HELP;", q);
	}
	if (a->oom) { /* drop the partial reply, say why */
		a->len = a->mark;
		a->oom = false;
		admin_fail(a, "53200", "out of memory: the reply would exceed %u MB",
		           ADMIN_MAX_REPLY >> 20);
	}
}

/* Run whole Query messages while nothing is queued or pending. */
static void process_input(struct client *c)
{
	struct admin *a = c->admin;

	while (!c->closing && a->wait == AW_NONE && a->sent == a->len && c->in.data &&
	       buf_len(&c->in) >= 5) {
		const char *p = c->in.data + c->in.start;
		uint32_t len = get_u32(p + 1);
		const char *body = p + 5;

		if (p[0] == 'X')
			return client_close(c, "client sent Terminate");
		if (p[0] != 'Q')
			return admin_fatal(
			    c, "08P01", "the admin console speaks the simple query protocol only");
		if (len < 5 || len > W.buf_size - 1)
			return admin_fatal(c, "54000", "admin command too long");
		if (buf_len(&c->in) < len + 1)
			break;
		if (body[len - 5] != '\0' || strlen(body) != len - 5)
			return admin_fatal(c, "08P01", "invalid Query message");
		c->in.start += len + 1;
		run_command(c, body);
		admin_flush(c);
	}
	if (!c->closing) {
		buf_compact(&c->in);
		admin_update_events(c);
	}
}

static void read_input(struct client *c)
{
	ssize_t n;

	if (!buf_reserve(&c->in))
		return client_close(c, "out of memory");
	buf_compact(&c->in);
	if (!c->in.data && !buf_reserve(&c->in))
		return client_close(c, "out of memory");
	if (c->in.end == W.buf_size)
		return; /* a whole message waits for its turn */
	n = client_recv(c, c->in.data + c->in.end, W.buf_size - c->in.end);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		return client_close(c, n == 0 ? "client closed connection" : "client read failed");
	}
	c->in.end += (uint32_t)n;
	c->last_io = W.now;
}

void admin_on_event(struct client *c, uint32_t events)
{
	if (events & EPOLLOUT)
		admin_flush(c);
	if (!c->closing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		read_input(c);
	if (!c->closing)
		process_input(c);
}

void admin_tick(struct client *c)
{
	if (W.draining)
		return client_error_close(c, "57P01", "pgshoal is shutting down");
	admin_check_wait(c);
}

void admin_check_wait(struct client *c)
{
	struct admin *a = c->admin;

	if (a->wait != AW_NONE && admin_wait_done(c)) {
		a->wait = AW_NONE;
		admin_flush(c);
		if (!c->closing)
			process_input(c);
	}
}

/* ----------------------------------------------------------------- login */

int admin_begin(struct client *c)
{
	c->admin = calloc(1, sizeof(*c->admin));
	if (!c->admin) {
		client_close(c, "out of memory");
		return ST_ERROR;
	}
	c->pool = -1;
	c->db_index = 0; /* no database entry: auth.c reads dbs[db_index] */
	shm_client(W.shm, c->row)->is_admin = 1;
	return ST_OK;
}

/* The special login: user "pgbouncer" (or "pgshoal") over the unix socket
 * from the OS user pgshoal runs as, like PgBouncer's. */
static bool peer_is_owner(struct client *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct ucred cr;
	socklen_t clen = sizeof(cr);

	if (strcmp(c->user, "pgbouncer") != 0 && strcmp(c->user, "pgshoal") != 0)
		return false;
	if (getsockname(c->fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family != AF_UNIX)
		return false;
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &clen) < 0)
		return false;
	return cr.uid == geteuid();
}

static void welcome(struct client *c)
{
	char mem[1024];
	struct pbuf b;

	pb_init(&b, mem, sizeof(mem));
	proto_auth_ok(&b);
	proto_param_status(&b, "server_version", PGSHOAL_VERSION "/pgshoal");
	proto_param_status(&b, "server_encoding", "UTF8");
	proto_param_status(&b, "client_encoding", "UTF8");
	proto_param_status(&b, "DateStyle", "ISO");
	proto_param_status(&b, "TimeZone", "GMT");
	proto_param_status(&b, "standard_conforming_strings", "on");
	proto_param_status(&b, "integer_datetimes", "on");
	proto_param_status(&b, "application_name", c->params[PARAM_APPLICATION_NAME]);
	proto_backend_key(&b, shm_fake_pid(W.shm, c->row),
	                  (int32_t)shm_client(W.shm, c->row)->cancel_key);
	if (!b.err)
		put(c->admin, b.p, b.len);
	ready(c->admin);
}

void admin_login_done(struct client *c)
{
	struct admin *a = c->admin;
	bool stats;

	a->is_admin = admin_list_has(W.cfg->admin_users, c->user) || peer_is_owner(c);
	stats = admin_list_has(W.cfg->stats_users, c->user);
	if (!a->is_admin && !stats)
		return client_error_close(
		    c, "42501",
		    "not allowed: user \"%s\" is in neither admin_users nor stats_users", c->user);
	if (W.cfg->log_connections)
		log_error(LOG_INFO, 0, "C-%d: db=%s user=%s addr=%s admin console login (%s)",
		          c->row, c->db, c->user, c->addr, a->is_admin ? "admin" : "stats");
	welcome(c);
	client_set_state(c, CL_ADMIN);
	admin_flush(c);
	if (!c->closing)
		process_input(c);
}

void admin_free(struct client *c)
{
	free(c->admin->out);
	free(c->admin);
	c->admin = NULL;
}

/* ------------------------------------------------- shared rows, helpers */

/* the unix socket reports pgshoal's own port, as PgBouncer does */
static void describe(const struct sockaddr_storage *sa, char *addr, size_t len, uint16_t *port)
{
	int p = sockaddr_describe(sa, addr, len);
	*port = (uint16_t)(p ? p : W.cfg->listen_port);
}

void admin_note_client(struct client *c, const struct sockaddr_storage *sa)
{
	struct shm_client *r = shm_client(W.shm, c->row);
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);

	r->id = atomic_fetch_add_explicit(&W.shm->hdr->next_client_id, 1, memory_order_relaxed) + 1;
	atomic_store_explicit(&r->kill, 0, memory_order_relaxed);
	r->user[0] = r->db[0] = r->app_name[0] = '\0';
	r->tls = r->is_admin = 0;
	describe(sa, r->addr, sizeof(r->addr), &r->port);
	if (getsockname(c->fd, (struct sockaddr *)&local, &len) == 0)
		describe(&local, r->local_addr, sizeof(r->local_addr), &r->local_port);
	else
		r->local_addr[0] = '\0', r->local_port = 0;
}

void admin_note_login(struct client *c, const char *app_name)
{
	struct shm_client *r = shm_client(W.shm, c->row);
	strlcpy_s(r->user, c->user, sizeof(r->user));
	strlcpy_s(r->db, c->db, sizeof(r->db));
	strlcpy_s(r->app_name, app_name ? app_name : "", sizeof(r->app_name));
	r->tls = c->tls != NULL;
}

const char *admin_kill_reason(struct client *c)
{
	if (atomic_load_explicit(&shm_client(W.shm, c->row)->kill, memory_order_relaxed))
		return "admin forced disconnect";
	if (c->pool >= 0 && c->kill_gen != shm_ctl_kill_gen(W.shm, c->pool))
		return "database killed by admin";
	return NULL;
}

void admin_worker_tick(void)
{
	static unsigned ticks;
	struct shm_worker *w = &W.shm->workers[W.index];
	int nfds = 0;

	if (ticks++ % 10)
		return;
	for (int i = 0; i < W.nslots; i++)
		nfds += W.local_gen[i] != 0;
	atomic_store_explicit(&w->nfds, nfds, memory_order_relaxed);
	atomic_store_explicit(&w->loops, W.loops, memory_order_relaxed);
}

bool admin_list_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	while (*list) {
		const char *end;
		size_t len;
		while (*list == ' ' || *list == '\t' || *list == ',')
			list++;
		end = list + strcspn(list, ",");
		len = (size_t)(end - list);
		while (len && (list[len - 1] == ' ' || list[len - 1] == '\t'))
			len--;
		if (len && len == n && strncmp(list, name, n) == 0)
			return true;
		list = end;
	}
	return false;
}

uint64_t admin_wall_of(uint64_t mono_usec)
{
	uint64_t now = now_usec(), wall = wall_usec();
	if (!mono_usec)
		return 0;
	return mono_usec > now ? wall : wall - (now - mono_usec);
}
