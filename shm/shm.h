/*
 * shm.h — the shared segment: layout of every region and its records.
 * One anonymous MAP_SHARED mapping created by the master before the first
 * fork (nothing is left behind after a crash). Records refer to each other
 * by index, never by pointer. Each field says who writes it and how.
 */
#ifndef PGSHOAL_SHM_H
#define PGSHOAL_SHM_H

#include "common.h"
#include "config.h"
#include "futex.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SHM_MAGIC 0x4c534750u /* "PGSL" */
#define SHM_VERSION                                                                                \
	6 /* 3: md5 in pools (hba); 4: wait histogram (metrics); 5: TLS slot owner; 6:             \
	     prepared-statement registry */
#define CACHELINE              64
#define SHM_MIN_SLOTS_PER_POOL 100

/* Tracked server parameters: applied with SET when a client moves to a
 * server whose values differ from what the client asked for. */
enum shm_param {
	PARAM_CLIENT_ENCODING,
	PARAM_DATESTYLE,
	PARAM_TIMEZONE,
	PARAM_STANDARD_CONFORMING_STRINGS,
	PARAM_APPLICATION_NAME,
	PARAM_INTERVALSTYLE,
	PARAM_COUNT
};
#define PARAM_VALUE_LEN 64
extern const char *const shm_param_names[PARAM_COUNT];
int shm_param_lookup(const char *name); /* -1 if not tracked */

enum slot_state {
	SLOT_FREE = 0,
	SLOT_CONNECTING, /* reserved; its worker connects and logs in */
	SLOT_IDLE,       /* on the pool's idle stack */
	SLOT_ACTIVE,     /* leased by (owner, client), or handed over in flight */
	SLOT_STATE_COUNT
};
extern const char *const slot_state_names[SLOT_STATE_COUNT];

/* Header flags. */
#define SHM_F_SHUTDOWN 0x1 /* master: stop accepting; workers drain */
#define SHM_F_PAUSED   0x2 /* admin PAUSE/KILL without a database: new leases wait */

struct shm_header {
	uint32_t magic, version;
	uint32_t sizeof_header, sizeof_pool, sizeof_slot, sizeof_client, sizeof_worker;
	uint32_t nworkers, max_pools, slots_per_pool, clients_per_worker, inbox_size;
	uint32_t max_client_conn;
	/* prepared-statement registries (shm/stmt_registry.h): one per slot,
	 * stmt_stride bytes each; stmt_cap = 0 when max_prepared_statements = 0 */
	uint32_t stmt_max, stmt_cap, stmt_buckets;
	size_t stmt_stride;
	size_t off_pools, off_slots, off_idle, off_clients, off_workers, off_inbox, off_accounts,
	    off_targets, off_config, off_stats, off_stats_old, off_stmts;
	size_t total_size;
	pid_t master_pid;
	atomic_uint flags; /* SHM_F_SHUTDOWN: master; SHM_F_PAUSED: admin sessions (fetch_or/and) */
	atomic_uint config_gen;       /* master only, release store */
	atomic_int clients_total;     /* any worker: fetch_add on accept, fetch_sub on close */
	atomic_ullong next_client_id; /* any worker: fetch_add on accept (SHOW CLIENTS id) */
	atomic_uint
	    kill_gen; /* admin KILL without a database: bumped; clients of older gens close */
	atomic_ullong stats_old_usec; /* master: monotonic time of the stats_old snapshot */
	struct shm_mutex table_lock;  /* guards creating pool rows and accounts */
};

/* Connection counters shared by several pools: one per database name and
 * one per user name, for max_db_connections / max_user_connections. */
struct shm_account {
	char name[CFG_NAME_LEN]; /* under table_lock, before used is set */
	atomic_int used;         /* 0/1, release store under table_lock */
	atomic_int conns;        /* server slots not FREE, CAS by the reserving process */
	/* database accounts only, written by admin sessions (shm/ctl.h) */
	atomic_uint flags;    /* DB_F_PAUSED, DB_F_DISABLED: fetch_or / fetch_and */
	atomic_uint kill_gen; /* KILL db: bumped; the database's clients of older gens close */
};

struct shm_pool {
	struct shm_mutex lock;
	atomic_int used;       /* 0/1: written under table_lock (release) */
	char db[CFG_NAME_LEN]; /* key; under table_lock before used = 1 */
	char user[CFG_NAME_LEN];
	int db_acct, user_acct; /* account indices; under table_lock */
	/* limits in force; under lock (refreshed by whoever holds newer config) */
	int pool_size, reserve_size, max_db_conns, max_user_conns, mode;
	uint64_t login_retry_usec;
	/* under lock */
	int nservers;             /* slots not FREE */
	int nconnecting;          /* slots CONNECTING */
	int nidle;                /* entries on the idle stack */
	int wait_head, wait_tail; /* client indices, -1 = empty */
	int nwaiting;
	int nevicting;                         /* idle TLS slots claimed for their owner to close
	                                        * (another worker's client needs the room) */
	uint16_t nwaiting_of[CFG_MAX_WORKERS]; /* waiters per worker, for TLS slots */
	uint64_t last_fail_usec;               /* last failed server login, 0 = none */
	char last_error[256];                  /* that failure's message for clients */
	/* the server's ParameterStatus set, for welcoming clients without a
	 * server (PgBouncer's "welcome message"); under lock, once */
	uint32_t welcome_len;
	char welcome[1536];
	int32_t welcome_params_set; /* 0/1 */
	/* SCRAM pass-through (worker/auth.c -> worker/login.c): the ClientKey
	 * and ServerKey of the pool's user, learnt when a client logged in
	 * against a SCRAM verifier; lets any worker log in to the server
	 * without a cleartext password. Under lock. */
	int32_t scram_keys_set; /* 0/1 */
	uint8_t scram_client_key[32], scram_server_key[32];
	/* md5 pass-through (worker/auth.c -> worker/login.c): the md5 hash
	 * that auth_query returned for the pool's user, kept once a client
	 * logged in with it; "" = none. Under lock. */
	char md5_hash[36];
	/* bumped (by the master on reload/DNS change, or by RECONNECT) when the
	 * pool's server connections must be replaced: a slot made under an
	 * older value is closed at release instead of reused */
	atomic_uint recycle_gen;
} __attribute__((aligned(CACHELINE)));

struct shm_slot {
	atomic_int state;  /* enum slot_state; under pool lock */
	atomic_uint gen;   /* bumped under pool lock each time the slot is freed */
	int pool;          /* fixed: slot index / slots_per_pool */
	atomic_int owner;  /* worker leasing it, -1; under pool lock */
	atomic_int client; /* global client index leasing it, -1; under pool lock */
	uint32_t client_gen;
	/* set by the connecting worker before it publishes the slot (IDLE or
	 * handed over under the pool lock) and read by lessees afterwards */
	int32_t be_pid, be_key;
	/* the worker holding the connection's TLS state, -1 = plain: set by the
	 * connecting worker before it publishes the slot; reset by reserve.
	 * Such a slot is leased by that worker only (shm/pool.c) */
	int32_t tls_owner;
	socklen_t addrlen;
	struct sockaddr_storage addr; /* server address, for cancel requests */
	uint64_t created_usec;
	uint64_t idle_since_usec; /* under pool lock */
	uint32_t recycle_gen;     /* the pool's recycle_gen when this connection was made */
	int32_t last_worker;      /* the worker that leased it last; under pool lock */
	/* tracked parameters as the server last reported them; written by the
	 * process leasing the slot (single writer at a time) */
	char params[PARAM_COUNT][PARAM_VALUE_LEN];
} __attribute__((aligned(CACHELINE)));
_Static_assert(offsetof(struct shm_slot, tls_owner) < CACHELINE,
               "a lease reads tls_owner with state and gen: keep them on one cache line");

enum client_row_state {
	CROW_FREE = 0,
	CROW_USED,
};

/* A client's state, published in its row (cstate) by its worker so that
 * admin sessions and the master's metrics can count clients by state. */
enum client_state {
	CL_FREE = 0,
	CL_LOGIN,      /* reading the startup packet */
	CL_AUTH,       /* password exchange in progress (auth.c) */
	CL_LOGIN_WAIT, /* logged in, waiting for a server to learn its parameters */
	CL_IDLE,       /* no server, nothing to send */
	CL_WAITING,    /* has a request, queued for a server */
	CL_ACTIVE,     /* linked to a server */
	CL_TLS,        /* TLS handshake after SSLRequest (tls.c) */
	CL_ADMIN,      /* logged in to the admin console (admin.c) */
	CL_STATE_COUNT
};

struct shm_client {
	atomic_uint gen;     /* bumped by its worker when the row is freed */
	atomic_int state;    /* enum client_row_state; its worker */
	int pool;            /* its worker; -1 before login */
	atomic_int slot;     /* linked slot or -1; its worker, release store */
	uint32_t cancel_key; /* random, its worker, set before state = USED */
	/* waiter FIFO links, under the pool lock */
	int wait_next;
	int queued; /* 1 while on the FIFO */
	uint64_t wait_since_usec;
	uint64_t connect_usec;
	/* what SHOW CLIENTS shows; written by its worker (strings before state =
	 * USED, the rest as it changes), read without locks by admin sessions,
	 * which tolerate a row that changes under them */
	uint64_t id;              /* unique across the pooler (KILL_CLIENT) */
	atomic_int cstate;        /* enum client_state; its worker */
	atomic_ullong state_usec; /* monotonic: when cstate last changed */
	atomic_uint kill;         /* 1: an admin asked its worker to close it (KILL_CLIENT) */
	uint16_t port, local_port;
	uint8_t tls, is_admin;
	char addr[48], local_addr[48];
	char user[CFG_NAME_LEN], db[CFG_NAME_LEN];
	char app_name[PARAM_VALUE_LEN];
	atomic_int prepared; /* its named prepared statements (SHOW CLIENTS); its worker, relaxed */
};

/* A handoff pushed into a worker's inbox: slot given to one of its clients
 * (slot >= 0), or a failure for a waiting client (slot = -1). Commands
 * instead of a client: HANDOFF_OPEN, open this reserved slot (min_pool_size,
 * or room a TLS slot gave up); HANDOFF_CLOSE, close this TLS slot of yours,
 * claimed for another worker's client. */
#define HANDOFF_OPEN  (-1)
#define HANDOFF_CLOSE (-2)
/* shm_slot.client of a TLS slot claimed for its owner to close */
#define SLOT_CLIENT_EVICTING (-2)
struct shm_handoff {
	int32_t client;
	uint32_t client_gen;
	int32_t slot;
	uint32_t slot_gen;
};

struct shm_worker {
	atomic_int pid;       /* master writes at fork; 0 when dead */
	int eventfd;          /* created by the master before forking; same number everywhere */
	atomic_uint respawns; /* master */
	atomic_int nclients;  /* that worker */
	atomic_ullong loops;  /* that worker, each tick: loop turns so far (SHOW WORKERS) */
	atomic_int nfds;      /* that worker, each tick: server sockets it holds a copy of */
	struct shm_mutex inbox_lock;
	uint32_t inbox_head, inbox_tail; /* under inbox_lock; ring of inbox_size */
} __attribute__((aligned(CACHELINE)));

/* Where a database entry's server is: written by the master (seqlock: odd
 * seq while writing), read by workers when they open a connection. */
#define TARGET_MAX_ADDRS 4
struct shm_target {
	atomic_uint seq;
	int32_t ok; /* 0 = not resolved (yet) */
	int32_t naddr;
	char name[CFG_NAME_LEN]; /* the database entry it belongs to */
	socklen_t len[TARGET_MAX_ADDRS];
	struct sockaddr_storage addr[TARGET_MAX_ADDRS];
	uint32_t addr_gen;     /* bumped when the addresses change */
	atomic_uint prefer;    /* the address to use: rotated by workers on connect failures
	                        * (one host), chosen by the master's probes (several hosts
	                        * with target_session_attrs) */
	atomic_uint probe_now; /* any worker: a connect failed, probe again now */
};

/* The configuration in force, published by the master (seqlock: odd seq
 * while writing); workers copy it when hdr->config_gen moves. */
struct shm_config_snap {
	atomic_uint seq;
	uint32_t gen;
	struct config cfg;
};

struct shm {
	struct shm_header *hdr;
	struct shm_pool *pools;
	struct shm_slot *slots;
	int32_t *idle; /* per pool: stack of slot indices, slots_per_pool each */
	struct shm_client *clients;
	struct shm_worker *workers;
	struct shm_handoff *inbox;    /* per worker: inbox_size entries */
	struct shm_account *accounts; /* max_pools db accounts, then max_pools user accounts */
	struct shm_target *targets;   /* CFG_MAX_DBS, by config database index */
	struct shm_config_snap *config;
	struct shm_stats *stats;     /* nworkers x max_pools counters (shm/stats.h) */
	struct shm_stats *stats_old; /* max_pools: the master's snapshot for averages */
	char *stmts;                 /* per slot: a prepared-statement registry (stmt_registry.h) */
};

/* Master, before forking: size from the config and map the segment. */
int shm_create(struct shm *s, const struct config *cfg);
void shm_destroy(struct shm *s);
int shm_slot_count(const struct shm *s);
int shm_client_count(const struct shm *s);

static inline struct shm_slot *shm_slot(const struct shm *s, int i)
{
	return &s->slots[i];
}
static inline struct shm_client *shm_client(const struct shm *s, int i)
{
	return &s->clients[i];
}

/* Fake backend pid shown to clients: ((worker + 1) << 20) | row in worker. */
#define FAKE_PID_SHIFT 20
int shm_fake_pid(const struct shm *s, int client);
int shm_client_from_fake_pid(const struct shm *s, int32_t pid); /* -1 if invalid */

/* Worker inbox. push returns false if full (cannot happen when sized right). */
bool shm_inbox_push(struct shm *s, int worker, const struct shm_handoff *h);
int shm_inbox_pop_all(struct shm *s, int worker, struct shm_handoff *out, int max);
void shm_worker_wake(struct shm *s, int worker);

/* Configuration snapshot: the master publishes (and bumps config_gen);
 * a worker copies it out when the generation it holds is older. */
void shm_config_publish(struct shm *s, const struct config *cfg);
uint32_t shm_config_copy(struct shm *s, struct config *out);

/* Target addresses (seqlock). read returns false if not resolved. */
/* write: the master publishes n addresses for database entry `db` (name);
 * returns true if they differ from what was there. read: the preferred
 * address, false if unresolved or the entry is not `name`. next: a connect
 * to the preferred address failed, try the following one next time. */
bool shm_target_write(struct shm *s, int db, const char *name, const struct sockaddr_storage *addrs,
                      const socklen_t *lens, int n);
void shm_target_clear(struct shm *s, int db);
bool shm_target_read(struct shm *s, int db, const char *name, struct sockaddr_storage *addr,
                     socklen_t *len);
void shm_target_next(struct shm *s, int db);

#endif
