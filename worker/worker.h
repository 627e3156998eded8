/*
 * worker.h — the worker's own objects: clients, its view of the server slots
 * it holds, I/O buffers and the epoll loop's shared state. Internal to
 * worker/ (the master only sees worker_main.h).
 */
#ifndef PGSHOAL_WORKER_H
#define PGSHOAL_WORKER_H

#include "shm/common.h"
#include "shm/config.h"
#include "shm/pool.h"
#include "shm/shm.h"
#include "shm/stats.h"
#include "worker_main.h"

#include <stdint.h>

enum ev_kind {
	EV_LISTEN = 1,
	EV_EVENTFD,
	EV_BROKER,
	EV_TIMER,
	EV_SIGNAL,
	EV_CLIENT,
	EV_SERVER,
	EV_CANCEL
};

/* An I/O buffer; memory is taken from the worker's free list only while
 * bytes are in flight (buf_get/buf_put), so idle connections hold none. */
struct buf {
	char *data;
	uint32_t start, end; /* unsent bytes are [start, end) */
	uint32_t scan;       /* bytes before this offset are scanned */
};

/* Incremental scanner over a stream of protocol messages. */
struct scan {
	uint32_t left;  /* body bytes of the current message still to pass */
	uint8_t hdr[5]; /* a header split across reads */
	uint8_t hdr_len;
};

enum server_state {
	SV_NONE = 0,   /* not held by this worker */
	SV_CONNECTING, /* TCP/unix connect in progress */
	SV_LOGIN,      /* startup sent, authenticating */
	SV_WAIT_FD,    /* leased, waiting for the master's copy of the socket */
	SV_SYNC,       /* running SETs / reset / connect query; replies swallowed */
	SV_ACTIVE,     /* forwarding for its client */
	SV_TLS,        /* SSLRequest sent, or TLS handshake in progress (server_tls.c) */
	SV_STATE_COUNT
};

struct server;
struct ps_client;

/* Named prepared statements (worker/prepared.h): where a tracked client's
 * request stream (fwd: the next message to the server) and its server's
 * replies (ans) stand, in groups (ended by Sync/Query/FunctionCall) and
 * units (messages answered by one final reply). */
struct ps_pos {
	uint32_t fwd_grp, fwd_unit;
	uint32_t ans_grp, ans_unit;
	bool ans_err; /* the server reported an error in the current group: it skips to its end */
	bool on;      /* tracked: transaction or statement mode with max_prepared_statements > 0 */
};

enum sync_next {
	SYNC_THEN_FORWARD,
	SYNC_THEN_RELEASE,
	SYNC_THEN_PUBLISH,
	SYNC_THEN_START,
	SYNC_THEN_AUTH_QUERY
};

struct client {
	int kind; /* EV_CLIENT; first, so epoll's data pointer can be dispatched */
	int fd;
	int row; /* global client index (shm client table) */
	enum client_state state;
	uint32_t events;
	int pool, mode;
	int db_index;
	struct server *server;
	struct buf in;  /* from the client, not yet sent to the server */
	struct buf out; /* to the client, left over when its server was released */
	struct scan sc;
	int pending;   /* ReadyForQuery messages the client still expects */
	bool unsynced; /* extended-protocol messages sent since the last Sync */
	uint64_t state_since, last_io;
	bool closing, in_free_list;
	char user[CFG_NAME_LEN], db[CFG_NAME_LEN];
	char params[PARAM_COUNT][PARAM_VALUE_LEN]; /* what the client expects */
	char addr[64];
	void *tls;           /* SSL* when the client negotiated TLS */
	struct auth *auth;   /* only while in CL_AUTH (auth.c) */
	struct admin *admin; /* admin console session (admin.c); NULL for others */
	bool paused; /* CL_WAITING because its pool is paused: not queued, retried each tick */
	uint32_t kill_gen;    /* shm_ctl_kill_gen at login; a KILL moves it */
	struct ps_pos pos;    /* prepared statements: counters (cheap, while pos.on) */
	struct ps_client *ps; /* prepared statements: state, from the first named one on */
	struct client *next_free;
};

struct server {
	int kind; /* EV_SERVER */
	int slot;
	uint32_t gen;    /* generation this view (and fd) belongs to */
	int fd;          /* this worker's copy, -1 = none */
	bool registered; /* fd is in this worker's epoll set */
	uint32_t events;
	enum server_state state;
	struct client *client;
	struct buf in; /* from the server, not yet sent to the client */
	struct scan sc;
	char tx;              /* last ReadyForQuery status: 'I', 'T' or 'E' */
	int after_sync;       /* what to do when SV_SYNC's ReadyForQuery comes: enum sync_next */
	bool release_pending; /* at a boundary, waiting for the client to take the bytes */
	bool sync_failed;     /* an ErrorResponse came while in SV_SYNC */
	bool checked;         /* server_check_query ran for this lease */
	uint64_t since;       /* entered current state / request start */
	uint64_t xact_start;  /* first request of the running transaction, 0 = none (stats) */
	struct login *login;  /* only while logging in */
	void *tls;            /* SSL* for a TLS server connection (this worker only) */
};

struct worker {
	int index;
	const struct config *cfg; /* &cfg_store: this worker's copy of the snapshot */
	struct config cfg_store;
	uint32_t config_gen;
	struct shm *shm;
	int epfd, broker_fd, timer_fd;
	int nlisten;
	int nprivate_listen; /* the last ones of listen_fds are this worker's own */
	int listen_fds[MAX_LISTEN];
	bool draining;          /* not accepting; exits when its last client is gone */
	bool close_idle;        /* also close clients that are out of a transaction */
	uint64_t orphaned;      /* when the master was found gone (0 = alive) */
	struct client *clients; /* clients_per_worker, by row - first row */
	int first_row, nrows;
	struct server *servers; /* by slot */
	uint32_t *local_gen;    /* by slot: generation of the cached fd, 0 = none */
	int nslots;
	int nclients;
	struct client *free_list; /* closed clients to recycle at the end of the loop turn */
	char **buf_pool;          /* free I/O buffers */
	int nbuf_pool, buf_pool_cap;
	uint32_t buf_size;
	uint64_t now;
	uint64_t loops;               /* loop turns (SHOW WORKERS) */
	struct shm_handoff *handoffs; /* scratch for inbox pops */
};

extern struct worker W;

/* loop.c */
void worker_update_events(int fd, uint32_t *cur, uint32_t want, void *ptr);
void worker_unregister(int fd);
void worker_orphaned(void);

/* buf.c */
bool buf_reserve(struct buf *b);
void buf_release(struct buf *b);
void buf_compact(struct buf *b);
static inline uint32_t buf_len(const struct buf *b)
{
	return b->end - b->start;
}

/* client.c */
void client_accept(int listen_fd);
void client_on_event(struct client *c, uint32_t events);
void client_set_state(struct client *c, enum client_state st);
void client_update_events(struct client *c);
void client_close(struct client *c, const char *reason);
void client_error_close(struct client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void client_request_server(struct client *c);
void client_attach(struct client *c, struct server *sv);
void client_on_handoff(const struct shm_handoff *h);
void client_flush_to_server(struct client *c);
void client_send_welcome(struct client *c);
void client_login_done(struct client *c);
struct pool_limits client_pool_limits(const struct config_db *db, const char *user);
void client_write(struct client *c, const char *p, size_t n); /* pgshoal's own messages */
void client_tick(uint64_t now);
void client_free_closed(void);
const char *client_state_name(enum client_state st);

/* server.c */
void server_set_state(struct server *sv, enum server_state st);
void server_update_events(struct server *sv);
void server_on_event(struct server *sv, uint32_t events);
void server_connect(int slot, struct client *for_client);
void server_start(struct server *sv);
void server_release(struct server *sv);
void server_close(struct server *sv, const char *reason);
void server_flush_to_client(struct server *sv);
void server_client_gone(struct server *sv);
void server_tick(uint64_t now);
void server_release_unheld(int slot);
void server_grow(int pool, bool use_reserve);
void server_publish(struct server *sv);
void server_fail(struct server *sv, const char *err);
bool server_event_is_mine(struct server *sv);

/* login.c (server-side login) */
void login_begin(struct server *sv, const struct config_db *db, const char *user,
                 const char *dbname);
void login_send_startup(struct server *sv);
int login_on_data(struct server *sv);
int sync_on_data(struct server *sv);
int swallow_query(struct server *sv, const char *sql, int after);
/* Send ready-made messages ending in Sync; replies swallowed as above. */
int swallow_send(struct server *sv, const char *msgs, size_t len, int after);
void login_free(struct server *sv);

/* fdcache.c */
int fdcache_get(struct server *sv, uint32_t gen); /* ST_OK: fd ready; ST_AGAIN: asked the master */
void fdcache_deposit(struct server *sv);
void fdcache_on_broker(void);
void fdcache_forget(struct server *sv);

/* auth.c: client authentication. auth_begin returns ST_OK when the client
 * is accepted at once, ST_AGAIN when an exchange started (the client is in
 * CL_AUTH; auth_on_data calls client_login_done on success), ST_ERROR when
 * it closed the client. */
int auth_begin(struct client *c);
bool auth_will_fail(const struct client *c);
bool auth_query_applies(const struct client *c);
void auth_on_data(struct client *c);
void auth_free(struct client *c);
/* auth_query answered (stored: the user's password hash, NULL if none). */
void auth_lookup_done(struct client *c, const char *stored);

/* auth_hba.c: auth_type hba. The auth_type the client's auth_hba_file
 * record asks for, or -1 when it is rejected (the client is closed). */
int auth_hba_method(struct client *c);

/* auth_query.c: the password hash of a user not in the auth_file, looked
 * up on the server through the pool of (auth_dbname, auth_user). begin:
 * ST_DONE no lookup applies, ST_OK found in the cache (into out), ST_AGAIN
 * started (auth_lookup_done follows), ST_ERROR the client was closed. */
int auth_query_begin(struct client *c, char *out, size_t cap);
bool auth_query_start(struct server *sv); /* server_start: run the query if it is for one */
void auth_query_on_row(struct server *sv, const char *body, uint32_t len);
void auth_query_done(struct server *sv);   /* its ReadyForQuery */
void auth_query_forget(struct client *c);  /* a wrong password: drop the cached hash */
void auth_query_abandon(struct client *c); /* the client is going: drop its lookup */
void auth_query_tick(void);

/* tls.c. client_begin answers an SSLRequest ('S' and CL_TLS, or 'N');
 * false when the client's startup phase is over for now. */
bool tls_client_begin(struct client *c);
void tls_client_handshake(struct client *c);
void tls_close(void **tls);
/* Peer certificate's CN (verified), or -1. */
int tls_peer_cn(void *tls, char *out, size_t cap);
/* tls-server-end-point data of the certificate we presented, or -1. */
int tls_endpoint_hash(void *tls, uint8_t *out);
/* Loop turn end: connections whose bytes wait inside OpenSSL (invisible to
 * epoll) are read now; returns how many still wait (epoll_wait timeout 0). */
int tls_run_pending(void);
/* Server connections (pgshoal is the TLS client): begin sets sv->tls for
 * the server named host (SNI; verify-full checks it); handshake returns
 * ST_OK, ST_AGAIN (events set) or ST_ERROR with err filled. */
int tls_server_begin(struct server *sv, const char *host, char *err, size_t errlen);
int tls_server_handshake(struct server *sv, char *err, size_t errlen);

/* server_tls.c: TLS to the servers and its slot affinity (see there).
 * start: after connect, send SSLRequest (true) unless TLS is off for this
 * connection (false: log in in the clear). */
bool server_tls_start(struct server *sv);
void server_tls_on_event(struct server *sv);
/* Close this worker's TLS connection for sv (Terminate first when logged in). */
void server_tls_drop(struct server *sv, bool terminate);
/* A TLS slot was freed: its room to the worker whose client waited longest. */
void server_tls_grow(int pool);
/* A client of this worker waits for a full pool: make another worker close
 * an idle TLS slot for it (true if one was asked). */
bool server_tls_evict(int pool);
void server_tls_ask_close(int slot);
void server_tls_on_close_request(const struct shm_handoff *h);
void server_tls_tick(struct server *sv);
void server_tls_close_all(void);

/* admin.c: the admin console. admin_is_db: the database names it answers
 * to; admin_begin: the client asked for it (before authentication);
 * admin_login_done: authenticated (permissions, welcome, CL_ADMIN). */
bool admin_is_db(const char *db);
int admin_begin(struct client *c);
void admin_login_done(struct client *c);
void admin_on_event(struct client *c, uint32_t events);
void admin_update_events(struct client *c);
void admin_tick(struct client *c);
void admin_free(struct client *c);
/* Fill the shared client row for SHOW CLIENTS (accept, then login). */
void admin_note_client(struct client *c, const struct sockaddr_storage *sa);
void admin_note_login(struct client *c, const char *app_name);
/* Non-NULL (the reason) when an admin asked for this client to go. */
const char *admin_kill_reason(struct client *c);
/* Each tick: publish this worker's numbers for SHOW WORKERS. */
void admin_worker_tick(void);
/* The master's answer to a session's SET (fdcache.c receives it). */
struct broker_ctl;
void admin_set_done(const struct broker_ctl *rep);

/* This worker's statistics row for a pool (shm/stats.h). */
static inline struct shm_stats *worker_stats(int pool)
{
	return shm_stats_row(W.shm, W.index, pool);
}

/* prepared.c, prepared_reply.c: named prepared statements in transaction
 * and statement mode (issue #7). Hooks, each cheap when unused:
 *  - login: prepared_login decides whether the client is tracked;
 *  - scan_client: prepared_scan counts a tracked client's messages until
 *    its first named one, which switches it to rewriting (c->ps);
 *  - client_flush_to_server: prepared_output rewrites into the buffer to send;
 *  - scan_server: prepared_on_reply for each reply of a tracked client
 *    (PS_FWD: as usual, PS_WAIT: stop scanning, PS_DROPPED: swallowed);
 *    prepared_reply_idle when the scan ran out of bytes;
 *  - server_start: prepared_lease_sql adds what the slot needs first. */
enum { PS_FWD, PS_WAIT, PS_DROPPED };
void prepared_login(struct client *c);
int prepared_scan(struct client *c, char type, uint32_t total);
struct buf *prepared_output(struct client *c);
bool prepared_wants_write(const struct client *c);
void prepared_free(struct client *c);
int prepared_lease_sql(struct client *c, struct server *sv, char *out, size_t cap);
int prepared_on_reply(struct server *sv, char type, uint32_t total);
void prepared_reply_idle(struct server *sv);
uint32_t prepared_read_room(const struct server *sv);
bool prepared_unblock(struct server *sv);
void prepared_sync_tag(struct server *sv, const char *body, uint32_t len);

/* cancel.c */
void cancel_forward(int32_t fake_pid, int32_t key);
void cancel_on_event(void *obj, uint32_t events);

/* params.c */
int params_build_sync(const struct client *c, const struct server *sv, char *out, size_t cap);
void params_apply_status(struct client *c, struct server *sv, const char *name, const char *value);

#endif
