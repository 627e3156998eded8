/*
 * prepared.c — named protocol-level prepared statements in transaction and
 * statement mode (issue #7), the client's side. Runs in worker processes.
 *
 * A tracked client (prepared_login) costs two counters per message until it
 * sends its first named Parse/Bind/Describe/Close. From then on its worker
 * keeps its statements (name -> query text, parameter types, SHA-256 of
 * both) and rewrites its messages on their way to whatever server its
 * transaction runs on: names become the slot's "pgshoal_<id>" (the slot's
 * registry in shared memory, shm/stmt_registry.c, says which statements the
 * server already has); a Parse the server already has is answered locally;
 * a Bind/Describe of a statement the server lacks is preceded by a Parse of
 * ours; a Close is answered locally. What must happen when the replies come
 * (swallow, answer, confirm, roll back) is queued by position and handled
 * in prepared_reply.c.
 *
 * The client's map is changed at once, as if every request succeeds
 * (PostgreSQL's order: a Close then a Parse of the same name in one
 * pipeline works); an error that makes the server skip the rest of a group
 * undoes the changes of the skipped messages, newest first.
 */
#include "prepared.h"
#include "proto.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- statements */

static uint32_t name_hash(const char *p, uint32_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

static void publish_count(struct client *c)
{
	atomic_store_explicit(&shm_client(W.shm, c->row)->prepared, (int)c->ps->nstmts,
	                      memory_order_relaxed);
}

struct ps_stmt *ps_map_get(struct ps_client *ps, const char *name, uint32_t len)
{
	if (!ps->map_cap)
		return NULL;
	for (struct ps_stmt *st = ps->map[name_hash(name, len) & (ps->map_cap - 1)]; st;
	     st = st->next)
		if (st->name_len == len && memcmp(st->data, name, len) == 0)
			return st;
	return NULL;
}

static bool map_grow(struct ps_client *ps)
{
	uint32_t cap = ps->map_cap ? ps->map_cap * 2 : 16;
	struct ps_stmt **m = calloc(cap, sizeof(*m));

	if (!m)
		return false;
	for (uint32_t i = 0; i < ps->map_cap; i++)
		while (ps->map[i]) {
			struct ps_stmt *st = ps->map[i];
			uint32_t b = name_hash(st->data, st->name_len) & (cap - 1);
			ps->map[i] = st->next;
			st->next = m[b];
			m[b] = st;
		}
	free(ps->map);
	ps->map = m;
	ps->map_cap = cap;
	return true;
}

/* The map takes a reference. false: out of memory. */
static bool map_put(struct client *c, struct ps_stmt *st)
{
	struct ps_client *ps = c->ps;
	uint32_t b;

	if (ps->nstmts >= ps->map_cap && !map_grow(ps) && !ps->map_cap)
		return false;
	b = name_hash(st->data, st->name_len) & (ps->map_cap - 1);
	st->next = ps->map[b];
	ps->map[b] = st;
	st->refs++;
	ps->nstmts++;
	publish_count(c);
	return true;
}

void ps_map_put(struct client *c, struct ps_stmt *st)
{
	(void)map_put(c, st); /* a restore: losing it only means "does not exist" later */
}

void ps_stmt_unref(struct ps_stmt *st)
{
	if (st && --st->refs == 0)
		free(st);
}

/* Take st out of the map (if it is there) and drop the map's reference. */
void ps_map_del(struct client *c, struct ps_stmt *st)
{
	struct ps_client *ps = c->ps;
	struct ps_stmt **p;

	if (!ps->map_cap)
		return;
	for (p = &ps->map[name_hash(st->data, st->name_len) & (ps->map_cap - 1)]; *p;
	     p = &(*p)->next)
		if (*p == st) {
			*p = st->next;
			ps->nstmts--;
			publish_count(c);
			ps_stmt_unref(st);
			return;
		}
}

/* DEALLOCATE ALL / DISCARD ALL from the client: its prepared statements are
 * gone, except those whose Parse was sent after it (still pending). */
void ps_forget_ready(struct client *c)
{
	struct ps_client *ps = c->ps;
	for (uint32_t i = 0; i < ps->map_cap; i++)
		for (struct ps_stmt *st = ps->map[i], *next; st; st = next) {
			next = st->next;
			if (st->state == PS_READY)
				ps_map_del(c, st);
		}
}

static struct ps_stmt *stmt_new(const char *name, uint32_t name_len, const char *body,
                                uint32_t body_len)
{
	struct ps_stmt *st = malloc(sizeof(*st) + name_len + 1 + body_len);

	if (!st)
		return NULL;
	memset(st, 0, sizeof(*st));
	st->name_len = name_len;
	st->body_len = body_len;
	memcpy(st->data, name, name_len);
	st->data[name_len] = '\0';
	st->body = st->data + name_len + 1;
	memcpy(st->body, body, body_len);
	if (!EVP_Digest(body, body_len, st->hash, NULL, EVP_sha256(), NULL)) {
		free(st);
		return NULL;
	}
	return st;
}

struct shm_stmt_reg *ps_reg(const struct server *sv)
{
	return shm_stmt_reg(W.shm, sv->slot, sv->gen);
}

/* The slot's registry, and a lease number of our own on it: entries this
 * client touches are pinned (not evicted) while its requests that use them
 * are in flight. */
static struct shm_stmt_reg *lease_reg(struct client *c, struct server *sv)
{
	struct ps_client *ps = c->ps;
	struct shm_stmt_reg *r = ps_reg(sv);

	if (ps->slot != sv->slot || ps->gen != sv->gen || ps->lease != r->lease) {
		ps->lease = ++r->lease;
		ps->slot = sv->slot;
		ps->gen = sv->gen;
	}
	return r;
}

/* -------------------------------------------------------- client hooks */

void prepared_login(struct client *c)
{
	c->pos.on = c->mode != POOL_SESSION && W.shm->hdr->stmt_cap > 0;
}

/* The request stream moves past a message the server answers as it is. */
static void count_forward(struct client *c, char type)
{
	switch (type) {
	case 'P':
	case 'B':
	case 'D':
	case 'E':
	case 'C': c->pos.fwd_unit++; break;
	case 'S':
	case 'Q':
	case 'F':
		c->pos.fwd_grp++;
		c->pos.fwd_unit = 0;
		break;
	default: break;
	}
}

/* Whether a P/B/D/C message names a statement: 1 yes, 0 no, -1 cannot
 * tell from the bytes there. */
static int names_statement(char type, const char *body, uint32_t avail, uint32_t len)
{
	const char *z;

	if (avail > len)
		avail = len;
	switch (type) {
	case 'P': return len == 0 ? 0 : avail < 1 ? -1 : body[0] != '\0';
	case 'B':
		z = memchr(body, 0, avail);
		if (!z)
			return avail == len ? 0 : -1;
		if ((uint32_t)(z + 1 - body) >= len)
			return 0;
		return (uint32_t)(z + 1 - body) >= avail ? -1 : z[1] != '\0';
	default: /* 'D', 'C' */
		if (len < 2)
			return 0;
		return avail < 2 ? -1 : body[0] == 'S' && body[1] != '\0';
	}
}

static int begin_rewriting(struct client *c)
{
	struct ps_client *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return ST_ERROR;
	ps->slot = -1;
	ps->raw_left = c->in.scan - c->in.start; /* scanned before, not sent yet */
	ps->mode = M_HDR;
	c->ps = ps;
	log_debug(DBG_PROTO, "C-%d: named prepared statements: rewriting from now on", c->row);
	return ST_OK;
}

int prepared_scan(struct client *c, char type, uint32_t total)
{
	struct buf *b = &c->in;
	uint32_t avail = b->end - b->scan;
	int named;

	switch (type) {
	case 'P':
	case 'B':
	case 'D':
	case 'C':
		named = names_statement(type, b->data + b->scan + 5, avail - 5, total - 5);
		if (named < 0 && (b->end < W.buf_size || b->start > 0))
			return ST_AGAIN;
		if (named != 0)
			return begin_rewriting(c);
		break;
	default: break;
	}
	count_forward(c, type);
	return ST_OK;
}

static bool still_stalled(const struct client *c);

/* The server socket should wait for EPOLLOUT: there is something to send,
 * or to rewrite (not while stalled, or epoll would spin). */
bool prepared_wants_write(const struct client *c)
{
	const struct ps_client *ps = c->ps;
	if (!ps)
		return c->in.data && c->in.scan > c->in.start;
	if (buf_len(&ps->out) > 0 || ps->cur_seg < ps->nseg)
		return true;
	if (ps->stalled)
		return !still_stalled(c);
	return c->in.data && c->in.scan > c->in.start;
}

static void free_action(struct ps_action *a)
{
	ps_stmt_unref(a->stmt);
	free(a->msg);
}

void prepared_free(struct client *c)
{
	struct ps_client *ps = c->ps;

	if (!ps)
		return;
	atomic_store_explicit(&shm_client(W.shm, c->row)->prepared, 0, memory_order_relaxed);
	for (uint32_t i = 0; i < ps->q_len; i++)
		free_action(&ps->q[(ps->q_head + i) % ps->q_cap]);
	for (uint32_t i = 0; i < ps->map_cap; i++)
		while (ps->map[i]) {
			struct ps_stmt *st = ps->map[i];
			ps->map[i] = st->next;
			ps_stmt_unref(st);
		}
	ps_stmt_unref(ps->seg_ref);
	free(ps->q);
	free(ps->map);
	free(ps->acc);
	buf_release(&ps->out);
	free(ps);
	c->ps = NULL;
}

/* A session-mode client may do anything to the server's statements: the
 * slot's registry is not trusted until a DEALLOCATE ALL (added to the SETs
 * run at the start of a lease) empties both. */
int prepared_lease_sql(struct client *c, struct server *sv, char *out, size_t cap)
{
	static const char sql[] = "DEALLOCATE ALL;";
	struct shm_stmt_reg *r;

	if (!W.shm->hdr->stmt_cap)
		return 0;
	if (!c->pos.on) {
		r = (struct shm_stmt_reg *)(W.shm->stmts +
		                            (size_t)sv->slot * W.shm->hdr->stmt_stride);
		if (r->gen == sv->gen && r->nused)
			r->poisoned = 1;
		return 0;
	}
	r = ps_reg(sv);
	if (!r->poisoned || cap < sizeof(sql))
		return 0;
	memcpy(out, sql, sizeof(sql));
	return (int)sizeof(sql) - 1;
}

/* ------------------------------------------------------------- output */

static void add_seg(struct ps_client *ps, const char *p, uint32_t len)
{
	if (len) {
		ps->seg[ps->nseg].p = p;
		ps->seg[ps->nseg++].len = len;
	}
}

static uint32_t out_room(const struct ps_client *ps)
{
	return W.buf_size - ps->out.end;
}

static void out_put(struct ps_client *ps, const char *p, uint32_t n)
{
	memcpy(ps->out.data + ps->out.end, p, n);
	ps->out.end += n;
	ps->out.scan = ps->out.end;
}

/* Copy pending pieces into out; true when none is left. */
static bool drain_segs(struct ps_client *ps)
{
	while (ps->cur_seg < ps->nseg) {
		struct ps_seg *s = &ps->seg[ps->cur_seg];
		uint32_t n = s->len < out_room(ps) ? s->len : out_room(ps);
		out_put(ps, s->p, n);
		s->p += n;
		s->len -= n;
		if (s->len)
			return false;
		ps->cur_seg++;
	}
	ps->nseg = ps->cur_seg = 0;
	ps_stmt_unref(ps->seg_ref);
	ps->seg_ref = NULL;
	return true;
}

static void put_u32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
}

/* A message into scratch at *len: type, length, a 'S' (Describe/Close) if
 * kind, the name and its NUL. */
static void small_msg(char *buf, uint32_t *len, char type, char kind, const char *name)
{
	uint32_t n = (uint32_t)strlen(name) + 1, off = *len;
	buf[off] = type;
	put_u32(buf + off + 1, 4 + (kind ? 1 : 0) + n);
	off += 5;
	if (kind)
		buf[off++] = kind;
	memcpy(buf + off, name, n);
	*len = off + n;
}

static bool queue_at(struct client *c, struct ps_action *a, enum ps_kind kind)
{
	a->kind = kind;
	a->grp = c->pos.fwd_grp;
	a->unit = c->pos.fwd_unit;
	log_debug(DBG_PROTO, "C-%d: action %d at %u.%u on S-%d", c->row, kind, a->grp, a->unit,
	          c->server ? c->server->slot : -1);
	return ps_queue(c->ps, a);
}

/*
 * Have the slot's server prepare st: a registry entry (PENDING), our Parse
 * in the output (after a Close of the least recently used statement when
 * the bound is reached). Returns the entry, or -1 after closing the client.
 */
static int prepare_on_server(struct client *c, struct shm_stmt_reg *r, struct ps_stmt *st)
{
	struct ps_client *ps = c->ps;
	struct ps_action ev = {.reg = -1};
	char name[STMT_NAME_LEN];
	uint32_t len = 0;
	int victim =
	        shm_stmt_full(W.shm, r) ? shm_stmt_victim(W.shm, r, ps->lease, c->pos.ans_grp) : -1,
	    i;

	if (victim >= 0) {
		struct shm_stmt *e = shm_stmt_at(W.shm, r, victim);
		ev.id = e->id;
		memcpy(ev.hash, e->hash, STMT_HASH_LEN);
		if (!queue_at(c, &ev, A_EVICT))
			goto oom;
		shm_stmt_name(e->id, name);
		small_msg(ps->scratch, &len, 'C', 'S', name);
		shm_stmt_remove(W.shm, r, victim);
	}
	i = shm_stmt_add(W.shm, r, st->hash);
	if (i < 0) {
		client_error_close(
		    c, "54000", "too many prepared statements in flight (max_prepared_statements)");
		return -1;
	}
	shm_stmt_touch(W.shm, r, i, ps->lease, c->pos.fwd_grp);
	shm_stmt_name(shm_stmt_at(W.shm, r, i)->id, name);
	ps->scratch[len] = 'P';
	put_u32(ps->scratch + len + 1, 4 + (uint32_t)strlen(name) + 1 + st->body_len);
	memcpy(ps->scratch + len + 5, name, strlen(name) + 1);
	len += 5 + (uint32_t)strlen(name) + 1;
	add_seg(ps, ps->scratch, len);
	add_seg(ps, st->body, st->body_len);
	st->refs++;
	ps->seg_ref = st;
	shm_stat_add(worker_stats(c->pool), STAT_SERVER_PARSE, 1);
	return i;
oom:
	client_error_close(c, "53200", "out of memory");
	return -1;
}

/* A statement the client named in a Bind/Describe: make sure the server has
 * it; its server-side name into out (PS_HEAD_MAX + 1 bytes). false: the
 * client was closed. */
static bool server_name(struct client *c, struct shm_stmt_reg *r, const char *cname, uint32_t clen,
                        char *out)
{
	struct ps_stmt *st = ps_map_get(c->ps, cname, clen);
	struct ps_action a = {.reg = -1};
	int i;

	if (!st) { /* the server says "does not exist" in PostgreSQL's words */
		if (strncmp(cname, STMT_NAME_PREFIX, strlen(STMT_NAME_PREFIX)) == 0)
			strcpy(out, STMT_NAME_PREFIX "0"); /* never one of ours */
		else
			memcpy(out, cname, clen + 1);
		return true;
	}
	i = shm_stmt_find(W.shm, r, st->hash);
	if (i >= 0) {
		shm_stmt_touch(W.shm, r, i, c->ps->lease, c->pos.fwd_grp);
	} else {
		i = prepare_on_server(c, r, st);
		if (i < 0)
			return false;
		a.reg = i;
		a.id = shm_stmt_at(W.shm, r, i)->id;
		if (!queue_at(c, &a, A_INJECT)) {
			client_error_close(c, "53200", "out of memory");
			return false;
		}
	}
	shm_stmt_name(shm_stmt_at(W.shm, r, i)->id, out);
	return true;
}

/* ----------------------------------------------------------- messages */

/* What a finish_* did with the message in acc. */
enum fin { FIN_ASIS, FIN_DONE, FIN_CLOSED };

static enum fin bad_message(struct client *c, const char *what)
{
	client_error_close(c, "08P01", "%s", what);
	return FIN_CLOSED;
}

static enum fin out_of_memory(struct client *c)
{
	client_error_close(c, "53200", "out of memory");
	return FIN_CLOSED;
}

/* The client Parses a name it already has: PostgreSQL's error, made by the
 * server failing a Describe of ours (so that it skips the rest of the group
 * as it would have), whose error is replaced by this one. */
static enum fin duplicate_name(struct client *c, const char *name)
{
	struct ps_client *ps = c->ps;
	struct ps_action a = {.reg = -1};
	char msg[256], mem[512];
	struct pbuf b;
	uint32_t len = 0;

	snprintf(msg, sizeof(msg), "prepared statement \"%.100s\" already exists", name);
	pb_init(&b, mem, sizeof(mem));
	proto_error(&b, "ERROR", "42P05", msg);
	a.msg = b.err ? NULL : malloc(b.len);
	if (!a.msg)
		return out_of_memory(c);
	memcpy(a.msg, b.p, b.len);
	a.msg_len = (uint32_t)b.len;
	if (!queue_at(c, &a, A_FAKE_ERROR)) {
		free(a.msg);
		return out_of_memory(c);
	}
	small_msg(ps->scratch, &len, 'D', 'S', STMT_NAME_PREFIX "0");
	add_seg(ps, ps->scratch, len);
	return FIN_DONE;
}

static bool valid_parse_body(const char *body, uint32_t len)
{
	uint32_t q = (uint32_t)strnlen(body, len), rest;
	if (q == len)
		return false;
	rest = len - q - 1;
	return rest >= 2 &&
	       rest == 2 + 4u * (((uint32_t)(uint8_t)body[q + 1] << 8) | (uint8_t)body[q + 2]);
}

/* A whole named Parse is in acc. */
static enum fin finish_parse(struct client *c, struct shm_stmt_reg *r)
{
	struct ps_client *ps = c->ps;
	struct ps_action a = {.reg = -1};
	uint32_t nlen = (uint32_t)strnlen(ps->acc, ps->acc_len);
	struct ps_stmt *st;
	enum ps_kind kind = A_LOCAL_PARSE;
	int i;

	if (nlen == ps->acc_len || !valid_parse_body(ps->acc + nlen + 1, ps->acc_len - nlen - 1))
		return bad_message(c, "invalid Parse message");
	shm_stat_add(worker_stats(c->pool), STAT_CLIENT_PARSE, 1);
	if (ps_map_get(ps, ps->acc, nlen))
		return duplicate_name(c, ps->acc);
	st = stmt_new(ps->acc, nlen, ps->acc + nlen + 1, ps->acc_len - nlen - 1);
	if (!st || !map_put(c, st)) {
		free(st);
		return out_of_memory(c);
	}
	i = shm_stmt_find(W.shm, r, st->hash);
	if (i >= 0) { /* the server has it: ParseComplete from us */
		shm_stmt_touch(W.shm, r, i, ps->lease, c->pos.fwd_grp);
	} else {
		i = prepare_on_server(c, r, st);
		if (i < 0)
			return FIN_CLOSED;
		kind = A_FWD_PARSE;
		a.reg = i;
		a.id = shm_stmt_at(W.shm, r, i)->id;
	}
	a.stmt = st;
	st->refs++;
	if (!queue_at(c, &a, kind)) {
		ps_stmt_unref(st);
		return out_of_memory(c);
	}
	if (kind == A_FWD_PARSE)
		c->pos.fwd_unit++;
	return FIN_DONE;
}

/* Bind: acc holds at least the portal and statement names. */
static enum fin finish_bind(struct client *c, struct shm_stmt_reg *r)
{
	struct ps_client *ps = c->ps;
	uint32_t plen = (uint32_t)strnlen(ps->acc, ps->acc_len), slen = 0, head, nlen, off;
	char name[PS_HEAD_MAX + 1];

	if (plen < ps->acc_len)
		slen = (uint32_t)strnlen(ps->acc + plen + 1, ps->acc_len - plen - 1);
	if (plen == ps->acc_len || plen + 1 + slen == ps->acc_len) { /* names not terminated */
		if (ps->acc_len < ps->body)
			return bad_message(c, "prepared statement or portal name too long");
		c->pos.fwd_unit++; /* malformed: the server will say so */
		return FIN_ASIS;
	}
	if (slen == 0) {
		c->pos.fwd_unit++;
		return FIN_ASIS; /* the unnamed statement */
	}
	head = plen + 1 + slen + 1;
	shm_stat_add(worker_stats(c->pool), STAT_BIND, 1);
	if (!server_name(c, r, ps->acc + plen + 1, slen, name)) /* a Parse of ours may go first */
		return FIN_CLOSED;
	c->pos.fwd_unit++;
	nlen = (uint32_t)strlen(name) + 1;
	ps->scratch2[0] = 'B';
	put_u32(ps->scratch2 + 1, 4 + plen + 1 + nlen + (ps->body - head));
	off = 5;
	memcpy(ps->scratch2 + off, ps->acc, plen + 1);
	off += plen + 1;
	memcpy(ps->scratch2 + off, name, nlen);
	off += nlen;
	add_seg(ps, ps->scratch2, off);
	add_seg(ps, ps->acc + head, ps->acc_len - head);
	return FIN_DONE;
}

/* Describe or Close: the whole message is in acc (or its first PS_HEAD_MAX bytes). */
static enum fin finish_describe_close(struct client *c, struct shm_stmt_reg *r)
{
	struct ps_client *ps = c->ps;
	struct ps_action a = {.reg = -1};
	uint32_t nlen = ps->acc_len > 1 ? (uint32_t)strnlen(ps->acc + 1, ps->acc_len - 1) : 0,
	         off = 0;
	char name[PS_HEAD_MAX + 1];

	if (ps->acc_len < 2 || ps->acc[0] != 'S' || nlen == 0) {
		c->pos.fwd_unit++; /* a portal, or the unnamed statement */
		return FIN_ASIS;
	}
	if (ps->acc_len < ps->body || nlen + 2 != ps->body)
		return bad_message(
		    c, "invalid Describe or Close message (or prepared statement name too long)");
	if (ps->type == 'C') { /* answered by us; the server keeps the statement for others */
		a.stmt = ps_map_get(ps, ps->acc + 1, nlen);
		if (a.stmt)
			a.stmt->refs++;
		if (!queue_at(c, &a, A_LOCAL_CLOSE)) {
			ps_stmt_unref(a.stmt);
			return out_of_memory(c);
		}
		if (a.stmt)
			ps_map_del(c, a.stmt);
		return FIN_DONE;
	}
	if (!server_name(c, r, ps->acc + 1, nlen, name))
		return FIN_CLOSED;
	small_msg(ps->scratch2, &off, 'D', 'S', name);
	add_seg(ps, ps->scratch2, off);
	c->pos.fwd_unit++;
	return FIN_DONE;
}

/* acc is complete for the message being read (for a Bind: once both names are in). */
static bool acc_complete(const struct ps_client *ps)
{
	const char *z;
	if (ps->acc_len == ps->acc_need)
		return true;
	if (ps->type != 'B' || !(z = memchr(ps->acc, 0, ps->acc_len)))
		return false;
	return memchr(z + 1, 0, ps->acc_len - (uint32_t)(z + 1 - ps->acc)) != NULL;
}

static bool acc_reserve(struct ps_client *ps, uint32_t need)
{
	uint32_t cap = ps->acc_cap ? ps->acc_cap : 256;
	char *p;
	if (need <= ps->acc_cap)
		return true;
	while (cap < need)
		cap = cap > UINT32_MAX / 2 ? need : cap * 2;
	p = realloc(ps->acc, cap);
	if (!p)
		return false;
	ps->acc = p;
	ps->acc_cap = cap;
	return true;
}

/* The statement name in acc, for a complete named P/B/D/C; NULL if none. */
static const char *acc_name(const struct ps_client *ps, uint32_t *len)
{
	const char *z;
	switch (ps->type) {
	case 'P':
		if (ps->acc_need != ps->body || !ps->acc[0])
			return NULL;
		*len = (uint32_t)strnlen(ps->acc, ps->acc_len);
		return ps->acc;
	case 'B':
		z = memchr(ps->acc, 0, ps->acc_len);
		if (!z || (uint32_t)(z + 1 - ps->acc) >= ps->acc_len || !z[1])
			return NULL;
		*len = (uint32_t)strnlen(z + 1, ps->acc_len - (uint32_t)(z + 1 - ps->acc));
		return z + 1;
	default:
		if (ps->acc_len < 2 || ps->acc[0] != 'S' || !ps->acc[1])
			return NULL;
		*len = (uint32_t)strnlen(ps->acc + 1, ps->acc_len - 1);
		return ps->acc + 1;
	}
}

/*
 * Whether the named message in acc must wait: a Parse or Close of the same
 * name in an earlier group (pipelined past a Sync) is not answered yet, and
 * an error there would undo it. Within one group the undo is exact; across
 * groups PostgreSQL's answer depends on the outcome, so wait for it.
 */
static bool waits_on_earlier(const struct client *c)
{
	const struct ps_client *ps = c->ps;
	uint32_t len = 0;
	const char *name = acc_name(ps, &len);

	for (uint32_t i = 0; name && i < ps->q_len; i++) {
		const struct ps_action *a = &ps->q[(ps->q_head + i) % ps->q_cap];
		if (a->grp >= c->pos.fwd_grp)
			break;
		if ((a->kind == A_FWD_PARSE || a->kind == A_LOCAL_PARSE ||
		     a->kind == A_LOCAL_CLOSE) &&
		    a->stmt && a->stmt->name_len == len && memcmp(a->stmt->data, name, len) == 0)
			return true;
	}
	return false;
}

/* The message in acc is complete: rewrite it, or let it through as it is.
 * ST_OK, ST_AGAIN (stalled: try again when replies came), ST_ERROR (closed). */
static int finish_message(struct client *c, struct shm_stmt_reg *r)
{
	struct ps_client *ps = c->ps;
	enum fin f;

	if (ps->type == 'P' && ps->acc_need == 1 && ps->body > 1) {
		if (ps->acc[0] != '\0') { /* named: the whole of it */
			ps->acc_need = ps->body;
			return ST_OK;
		}
		c->pos.fwd_unit++; /* the unnamed statement: stream it */
		f = FIN_ASIS;
	} else if (waits_on_earlier(c)) {
		ps->stalled = true;
		return ST_AGAIN;
	} else if (ps->type == 'P') {
		f = ps->acc[0] ? finish_parse(c, r) : (c->pos.fwd_unit++, FIN_ASIS);
	} else if (ps->type == 'B') {
		f = finish_bind(c, r);
	} else {
		f = finish_describe_close(c, r);
	}
	ps->stalled = false;
	if (f == FIN_CLOSED)
		return ST_ERROR;
	if (f == FIN_ASIS) {
		add_seg(ps, (const char *)ps->hdr, 5);
		add_seg(ps, ps->acc, ps->acc_len);
	}
	ps->mode = ps->left ? M_PASS : M_HDR;
	return ST_OK;
}

/* A header is complete: decide how to read the body. */
static void begin_message(struct client *c)
{
	struct ps_client *ps = c->ps;

	ps->type = (char)ps->hdr[0];
	ps->body = ps->left = get_u32(ps->hdr + 1) - 4;
	ps->acc_len = 0;
	switch (ps->type) {
	case 'P':
	case 'B':
	case 'D':
	case 'C':
		if (ps->body > 0) {
			ps->acc_need = ps->type == 'P'          ? 1
			               : ps->body < PS_HEAD_MAX ? ps->body
			                                        : PS_HEAD_MAX;
			ps->mode = M_ACC;
			return;
		}
		break; /* malformed: the server will say so */
	default: break;
	}
	count_forward(c, ps->type);
	add_seg(ps, (const char *)ps->hdr, 5);
	ps->mode = ps->left ? M_PASS : M_HDR;
}

/* One step over the client's scanned bytes: ST_OK, ST_AGAIN (stalled),
 * ST_ERROR (the client was closed). */
static int step(struct client *c, struct shm_stmt_reg *r)
{
	struct ps_client *ps = c->ps;
	struct buf *in = &c->in;
	const char *p = in->data + in->start;
	uint32_t avail = in->scan - in->start, n;

	if (ps->raw_left || ps->mode == M_PASS) {
		uint32_t *left = ps->raw_left ? &ps->raw_left : &ps->left;
		n = *left < avail ? *left : avail;
		n = n < out_room(ps) ? n : out_room(ps);
		out_put(ps, p, n);
		in->start += n;
		*left -= n;
		if (ps->mode == M_PASS && !ps->left && !ps->raw_left)
			ps->mode = M_HDR;
		return ST_OK;
	}
	if (ps->mode == M_HDR) {
		n = 5u - ps->hdr_len < avail ? 5u - ps->hdr_len : avail;
		memcpy(ps->hdr + ps->hdr_len, p, n);
		ps->hdr_len += (uint8_t)n;
		in->start += n;
		if (ps->hdr_len == 5) {
			ps->hdr_len = 0;
			begin_message(c);
		}
		return ST_OK;
	}
	/* M_ACC */
	n = ps->acc_need - ps->acc_len < avail ? ps->acc_need - ps->acc_len : avail;
	if (!acc_reserve(ps,
	                 ps->acc_len + n)) { /* grows with what came, not with what is announced */
		out_of_memory(c);
		return ST_ERROR;
	}
	memcpy(ps->acc + ps->acc_len, p, n);
	ps->acc_len += n;
	ps->left -= n;
	in->start += n;
	return acc_complete(ps) ? finish_message(c, r) : ST_OK;
}

/* Stalled on an earlier group's outcome, and still so. */
static bool still_stalled(const struct client *c)
{
	return c->ps->stalled && waits_on_earlier(c);
}

struct buf *prepared_output(struct client *c)
{
	struct server *sv = c->server;
	struct shm_stmt_reg *r = lease_reg(c, sv);
	struct ps_client *ps = c->ps;
	int st = ST_OK;

	if (!buf_reserve(&ps->out)) {
		client_error_close(c, "53200", "out of memory");
		return NULL;
	}
	if (ps->stalled && drain_segs(ps))
		st = still_stalled(c) ? ST_AGAIN : finish_message(c, r);
	while (st == ST_OK && drain_segs(ps) && c->in.start < c->in.scan && out_room(ps) > 0)
		st = step(c, r);
	if (st == ST_ERROR)
		return NULL; /* closed: c->ps is gone */
	if (ps->mode != M_ACC && ps->acc_cap > PS_ACC_KEEP) {
		free(ps->acc);
		ps->acc = NULL;
		ps->acc_cap = 0;
	}
	buf_compact(&c->in);
	ps_emit_due(c, sv); /* local answers with nothing before them in flight */
	return &ps->out;
}
