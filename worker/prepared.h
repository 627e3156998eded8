/*
 * prepared.h — named protocol-level prepared statements in transaction and
 * statement mode (issue #7), shared by worker/prepared.c (the client's
 * statements and the rewriting of its messages) and worker/prepared_reply.c
 * (the server's replies: what to swallow, what to answer locally, what to
 * roll back). Internal to worker/; client.c and server.c see the small API
 * in worker.h.
 *
 * Positions. A request stream is cut into groups by Sync, Query and
 * FunctionCall (each answered by one ReadyForQuery); inside a group each
 * Parse, Bind, Describe, Execute and Close the server sees is a unit, and
 * the server answers each unit with exactly one final message
 * (ParseComplete, BindComplete, RowDescription/NoData, CommandComplete/
 * EmptyQuery/PortalSuspended, CloseComplete) or with an ErrorResponse after
 * which it skips the rest of the group. client->pos counts units and groups
 * on both sides, so an action queued at (group, unit) fires exactly when the
 * server's replies reach that point — and is rolled back when an error makes
 * the server skip it.
 */
#ifndef PGSHOAL_PREPARED_H
#define PGSHOAL_PREPARED_H

#include "worker.h"
#include "shm/stmt_registry.h"

#define PS_HEAD_MAX 512   /* a Bind's portal and statement names, or a whole Describe/Close */
#define PS_HEADROOM 256   /* bytes left free in a server's input buffer for local answers */
#define PS_ACC_KEEP 65536 /* an accumulation buffer larger than this is freed after use */

enum ps_stmt_state { PS_PENDING, PS_READY };

/* One of the client's named statements (this worker's memory). */
struct ps_stmt {
	struct ps_stmt *next; /* chain in the client's map */
	int refs;             /* the map, actions, output in progress */
	uint8_t state;        /* enum ps_stmt_state: PENDING until its ParseComplete */
	uint8_t hash[STMT_HASH_LEN];
	uint32_t name_len; /* without the NUL */
	uint32_t body_len; /* the Parse body after the name: query, NUL, parameter types */
	char *body;        /* = data + name_len + 1 */
	char data[];       /* name, NUL, body */
};

enum ps_kind {
	A_LOCAL_PARSE, /* answer ParseComplete ourselves */
	A_LOCAL_CLOSE, /* answer CloseComplete ourselves */
	A_FWD_PARSE,   /* the client's Parse, renamed: forward its reply */
	A_INJECT,      /* our Parse before a Bind/Describe: swallow its ParseComplete */
	A_EVICT,       /* our Close of the LRU statement: swallow its CloseComplete */
	A_FAKE_ERROR,  /* a failing Describe of ours: replace its error by msg */
};

struct ps_action {
	uint8_t kind;                /* enum ps_kind */
	uint32_t grp, unit;          /* where in the reply stream it belongs */
	int32_t reg;                 /* registry entry (FWD, INJECT) */
	uint32_t id;                 /* that entry's id, or the evicted one's */
	uint8_t hash[STMT_HASH_LEN]; /* EVICT: the evicted statement */
	struct ps_stmt *stmt; /* LOCAL_PARSE, FWD: the new statement; LOCAL_CLOSE: the closed one */
	char *msg;            /* FAKE_ERROR: the ErrorResponse to send (malloc'd) */
	uint32_t msg_len;
};

enum ps_mode { M_HDR, M_PASS, M_ACC };

struct ps_seg { /* output waiting for room in out */
	const char *p;
	uint32_t len;
};

struct ps_client {
	struct buf out;    /* rewritten bytes for the server (scan == end) */
	uint32_t raw_left; /* bytes before the first named message: sent as they are */
	/* the message being read from the client */
	enum ps_mode mode;
	char type;
	uint8_t hdr[5], hdr_len;
	uint32_t left; /* its body bytes not yet taken */
	uint32_t body; /* its body length */
	char *acc;     /* accumulated body bytes (Parse, Bind head, Describe, Close) */
	uint32_t acc_len, acc_cap, acc_need;
	/* output in order: small pieces in scratch, a statement body, the rest of acc */
	struct ps_seg seg[4];
	int nseg, cur_seg;
	struct ps_stmt *seg_ref; /* keeps a body alive while it is sent */
	char scratch[64];
	char scratch2[PS_HEAD_MAX + 64];
	/* the client's statements: name -> statement */
	struct ps_stmt **map;
	uint32_t map_cap, nstmts;
	/* actions by position */
	struct ps_action *q;
	uint32_t q_head, q_len, q_cap;
	/* the slot being rewritten for */
	int slot;
	uint32_t gen, lease;
	/* replies: a local answer found no room in the server's buffer */
	bool blocked;
	/* the message in acc names a statement whose Parse or Close in an
	 * earlier group is not answered yet: wait (its outcome decides) */
	bool stalled;
};

/* prepared.c */
struct ps_stmt *ps_map_get(struct ps_client *ps, const char *name, uint32_t len);
void ps_map_put(struct client *c, struct ps_stmt *st);
void ps_map_del(struct client *c, struct ps_stmt *st);
void ps_stmt_unref(struct ps_stmt *st);
void ps_forget_ready(struct client *c);
struct shm_stmt_reg *ps_reg(const struct server *sv);

/* prepared_reply.c */
bool ps_queue(struct ps_client *ps, const struct ps_action *a);
void ps_emit_due(struct client *c, struct server *sv);

#endif
