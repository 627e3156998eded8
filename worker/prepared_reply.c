/*
 * prepared_reply.c — named prepared statements (issue #7), the server's
 * side: each reply of a tracked client's server passes through
 * prepared_on_reply, which keeps client->pos.ans in step with the replies
 * and fires the actions prepared.c queued at that position:
 *  - our ParseComplete/CloseComplete (a re-prepare, an eviction) are
 *    swallowed, one message each, only at the exact position they belong;
 *  - local answers (ParseComplete for a statement the server has,
 *    CloseComplete) are inserted into the server's input buffer at that
 *    point, so they reach the client in order with the server's bytes;
 *  - the registry records a statement as READY only when its ParseComplete
 *    comes; an ErrorResponse makes the server skip to the end of the group,
 *    so every action still queued for that group is undone, newest first
 *    (its PENDING registry entries removed, evictions put back, the
 *    client's map restored).
 * The slot's registry is written here only by the worker holding the slot
 * (shm/stmt_registry.h). Runs in worker processes.
 */
#include "prepared.h"

#include <stdlib.h>
#include <string.h>

static const char parse_complete[5] = {'1', 0, 0, 0, 4};
static const char close_complete[5] = {'3', 0, 0, 0, 4};

/* ------------------------------------------------------------- queue */

bool ps_queue(struct ps_client *ps, const struct ps_action *a)
{
	if (ps->q_len == ps->q_cap) {
		uint32_t cap = ps->q_cap ? ps->q_cap * 2 : 16;
		struct ps_action *q = malloc(sizeof(*q) * cap);
		if (!q)
			return false;
		for (uint32_t i = 0; i < ps->q_len; i++)
			q[i] = ps->q[(ps->q_head + i) % ps->q_cap];
		free(ps->q);
		ps->q = q;
		ps->q_cap = cap;
		ps->q_head = 0;
	}
	ps->q[(ps->q_head + ps->q_len) % ps->q_cap] = *a;
	ps->q_len++;
	return true;
}

static struct ps_action *head(struct ps_client *ps)
{
	return ps->q_len ? &ps->q[ps->q_head] : NULL;
}

static void pop(struct ps_client *ps)
{
	ps->q_head = (ps->q_head + 1) % ps->q_cap;
	ps->q_len--;
}

/* The entry an action created, if it is still that one and PENDING. */
static int own_entry(struct shm_stmt_reg *r, const struct ps_action *a)
{
	struct shm_stmt *e;
	if (a->reg < 0)
		return -1;
	e = shm_stmt_at(W.shm, r, a->reg);
	return e->state == STMT_PENDING && e->id == a->id ? a->reg : -1;
}

/* What was done to the client's map and the registry was right. */
static void confirm(struct client *c, struct server *sv, struct ps_action *a)
{
	struct shm_stmt_reg *r = ps_reg(sv);
	int i = own_entry(r, a);

	(void)c;
	if (i >= 0)
		shm_stmt_set_ready(W.shm, r, i);
	if (a->stmt && (a->kind == A_LOCAL_PARSE || a->kind == A_FWD_PARSE))
		a->stmt->state = PS_READY;
	ps_stmt_unref(a->stmt);
	free(a->msg);
}

/* The server skipped (or refused) what the action stands for: undo it. */
static void rollback(struct client *c, struct server *sv, struct ps_action *a)
{
	struct shm_stmt_reg *r = ps_reg(sv);
	int i = own_entry(r, a);

	if (i >= 0)
		shm_stmt_remove(W.shm, r, i);
	switch (a->kind) {
	case A_LOCAL_PARSE:
	case A_FWD_PARSE: ps_map_del(c, a->stmt); break;
	case A_LOCAL_CLOSE: /* the statement lives on, unless its name was taken since */
		if (a->stmt && !ps_map_get(c->ps, a->stmt->data, a->stmt->name_len))
			ps_map_put(c, a->stmt);
		break;
	case A_EVICT: /* still on the server */ shm_stmt_restore(W.shm, r, a->hash, a->id); break;
	default: break;
	}
	ps_stmt_unref(a->stmt);
	free(a->msg);
}

/* An error: the server skips the rest of the current group. */
static void undo_group(struct client *c, struct server *sv)
{
	struct ps_client *ps = c->ps;
	uint32_t n = 0;

	while (n < ps->q_len && ps->q[(ps->q_head + n) % ps->q_cap].grp <= c->pos.ans_grp)
		n++;
	for (uint32_t k = n; k-- > 0;)
		rollback(c, sv, &ps->q[(ps->q_head + k) % ps->q_cap]);
	ps->q_head = (ps->q_head + n) % (ps->q_cap ? ps->q_cap : 1);
	ps->q_len -= n;
}

/* --------------------------------------------------- the reply buffer */

/* Make room for n more bytes in the server's input buffer. */
static bool room_for(struct server *sv, uint32_t n)
{
	struct buf *b = &sv->in;
	if (!b->data && !buf_reserve(b))
		return false;
	if (b->end + n > W.buf_size && b->start > 0) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->scan -= b->start;
		b->start = 0;
	}
	return b->end + n <= W.buf_size;
}

/* Put our message at the scan point: it goes to the client next. */
static bool insert_reply(struct server *sv, const char *p, uint32_t n)
{
	struct buf *b = &sv->in;
	if (!room_for(sv, n))
		return false;
	memmove(b->data + b->scan + n, b->data + b->scan, b->end - b->scan);
	memcpy(b->data + b->scan, p, n);
	b->end += n;
	b->scan += n;
	return true;
}

/* Remove the (whole) message at the scan point. */
static void drop_reply(struct server *sv, uint32_t n)
{
	struct buf *b = &sv->in;
	memmove(b->data + b->scan, b->data + b->scan + n, b->end - b->scan - n);
	b->end -= n;
}

/* Local answers whose turn has come: the server has answered everything
 * before them. Only at a message boundary. */
void ps_emit_due(struct client *c, struct server *sv)
{
	struct ps_client *ps = c->ps;
	struct ps_action *a;

	while ((a = head(ps)) && (a->kind == A_LOCAL_PARSE || a->kind == A_LOCAL_CLOSE) &&
	       a->grp == c->pos.ans_grp && a->unit <= c->pos.ans_unit && !c->pos.ans_err) {
		if (sv->sc.left)
			return; /* in the middle of a message: at its end */
		if (!insert_reply(sv, a->kind == A_LOCAL_PARSE ? parse_complete : close_complete,
		                  5)) {
			ps->blocked =
			    true; /* the client is slow: when it has taken what is there */
			return;
		}
		confirm(c, sv, a);
		pop(ps);
	}
}

/* ------------------------------------------------------------ replies */

static bool is_tag(const char *body, uint32_t len, const char *tag)
{
	return len == strlen(tag) + 1 && memcmp(body, tag, len) == 0;
}

static bool drops_all(const char *body, uint32_t len)
{
	return is_tag(body, len, "DEALLOCATE ALL") || is_tag(body, len, "DISCARD ALL");
}

/* pgshoal's own queries (login.c): a DISCARD ALL as server_reset_query, or
 * the DEALLOCATE ALL of prepared_lease_sql. */
void prepared_sync_tag(struct server *sv, const char *body, uint32_t len)
{
	struct shm_stmt_reg *r;
	if (!W.shm->hdr->stmt_cap || !drops_all(body, len))
		return;
	r = ps_reg(sv);
	shm_stmt_clear_ready(W.shm, r);
}

/* Count a reply that no action claimed. */
static int count_reply(struct client *c, struct server *sv, char type, uint32_t total)
{
	struct ps_pos *pos = &c->pos;

	switch (type) {
	case 'C':
		if (total <= 5 + 15 && drops_all(sv->in.data + sv->in.scan + 5, total - 5)) {
			shm_stmt_clear_ready(W.shm, ps_reg(sv)); /* the server has none left */
			if (c->ps)
				ps_forget_ready(c);
		}
		/* fall through */
	case '1':
	case '2':
	case '3':
	case 'n':
	case 'T':
	case 'I':
	case 's': pos->ans_unit++; break;
	case 'E':
		pos->ans_unit++;
		pos->ans_err = true;
		if (c->ps)
			undo_group(c, sv);
		break;
	case 'Z':
		if (c->ps)
			undo_group(c, sv); /* nothing is left for a group that went well */
		pos->ans_grp++;
		pos->ans_unit = 0;
		pos->ans_err = false;
		break;
	default: break;
	}
	return PS_FWD;
}

/* Our failing Describe's error: the client gets PostgreSQL's "already
 * exists" instead. */
static int fake_error(struct client *c, struct server *sv, struct ps_action *a, uint32_t total)
{
	struct ps_action done = *a;

	if (sv->in.end - sv->in.scan < total)
		return PS_WAIT;
	if (a->msg_len > total && !room_for(sv, a->msg_len - total)) {
		c->ps->blocked = true;
		return PS_WAIT;
	}
	drop_reply(sv, total);
	insert_reply(sv, a->msg, a->msg_len);
	pop(c->ps);
	free(done.msg);
	c->pos.ans_unit++;
	c->pos.ans_err = true;
	undo_group(c, sv);
	return PS_DROPPED;
}

/* A reply at the position of a server-answered action: is it its answer? */
static int on_action(struct client *c, struct server *sv, struct ps_action *a, char type,
                     uint32_t total)
{
	switch (a->kind) {
	case A_EVICT:
		if (type != '3')
			break;
		drop_reply(sv, total);
		pop(c->ps);
		return PS_DROPPED;
	case A_INJECT:
		if (type != '1')
			break;
		drop_reply(sv, total);
		confirm(c, sv, a);
		pop(c->ps);
		return PS_DROPPED;
	case A_FWD_PARSE:
		if (type != '1')
			break;
		confirm(c, sv, a);
		pop(c->ps);
		c->pos.ans_unit++;
		return PS_FWD;
	case A_FAKE_ERROR:
		if (type == 'E')
			return fake_error(c, sv, a, total);
		break;
	default: break;
	}
	return -1; /* an error (undone with its group), or a notice: as usual */
}

int prepared_on_reply(struct server *sv, char type, uint32_t total)
{
	struct client *c = sv->client;
	uint32_t avail = sv->in.end - sv->in.scan;
	struct ps_action *a;
	int r;

	/* whole messages where they are looked into, so each is counted once */
	if ((type == 'Z' || (type == 'C' && total <= 5 + 15)) && avail < total)
		return PS_WAIT;
	if (!c->ps)
		return count_reply(c, sv, type, total);
	log_debug(DBG_PROTO, "C-%d: reply %c at %u.%u (fwd %u.%u) q=%u", c->row, type,
	          c->pos.ans_grp, c->pos.ans_unit, c->pos.fwd_grp, c->pos.fwd_unit, c->ps->q_len);
	ps_emit_due(c, sv);
	if (c->ps->blocked)
		return PS_WAIT;
	a = head(c->ps);
	if (a && a->grp == c->pos.ans_grp && a->unit == c->pos.ans_unit && !c->pos.ans_err &&
	    a->kind != A_LOCAL_PARSE && a->kind != A_LOCAL_CLOSE) {
		r = on_action(c, sv, a, type, total);
		if (r >= 0)
			return r;
	}
	return count_reply(c, sv, type, total);
}

void prepared_reply_idle(struct server *sv)
{
	if (sv->client && sv->client->ps)
		ps_emit_due(sv->client, sv);
}

/* How much to read from the server: leave room for local answers. */
uint32_t prepared_read_room(const struct server *sv)
{
	uint32_t free_bytes = W.buf_size - sv->in.end;
	if (!sv->client || !sv->client->ps)
		return free_bytes;
	return free_bytes > PS_HEADROOM ? free_bytes - PS_HEADROOM : 0;
}

/* A local answer waited for room and the client has taken the bytes before
 * it: scan again. */
bool prepared_unblock(struct server *sv)
{
	struct client *c = sv->client;
	if (!c || !c->ps || !c->ps->blocked || (sv->in.data && sv->in.scan != sv->in.start))
		return false;
	c->ps->blocked = false;
	return true;
}
