/*
 * master.h — the master process's modules: listening sockets, the fd broker,
 * server address resolution, worker supervision.
 */
#ifndef PGSHOAL_MASTER_H
#define PGSHOAL_MASTER_H

#include "shm/config.h"
#include "shm/shm.h"
#include "worker/worker_main.h"

struct master {
	struct config cfg;
	struct shm shm;
	struct worker_env env; /* what each worker inherits; broker_fd set per fork */
	int epfd, sig_fd, timer_fd;
	int (*tcp_fds)[MAX_LISTEN]; /* so_reuseport: each worker's own TCP sockets */
	int ntcp;
	int *broker_master; /* master's end of each worker's socketpair */
	int *broker_worker; /* worker's end, kept for respawns */
	bool *repair_pending;
	uint64_t *restart_after; /* backoff: earliest respawn time, usec */
	int shutdown_mode;       /* 0 running, SIGINT, SIGTERM, SIGQUIT */
	bool daemon;             /* detached: no stderr */
	uint64_t shutdown_deadline;
};

extern struct master M;

/* Worker indexes shared memory has room for (max_workers): the first
 * M.cfg.workers run; the others are free or draining after a reload. */
static inline int master_worker_slots(void)
{
	return (int)M.shm.hdr->nworkers;
}

/* listen.c */
/* Shared sockets (the unix socket, and TCP without so_reuseport). */
int master_listen(const struct config *cfg, int *fds, int max);
/* TCP sockets: one set per worker with reuseport. Returns the count or -1. */
int master_listen_tcp(const struct config *cfg, int *fds, int max, bool reuseport, bool do_listen);
void master_unlink_socket(const struct config *cfg);

/* broker.c */
int master_broker_init(int nslots);
void master_broker_on_message(int worker);
void master_broker_close_slot(int slot);
void master_broker_settle(void);
void master_broker_close_all_in_child(void);
void master_broker_janitor(void);

/* dns.c */
int master_dns_resolve_all(const struct config *cfg, struct shm *shm);
void master_dns_tick(void);
void master_dns_reload(void);
void master_describe_target(int db, int i, char *out, size_t len);
bool master_dns_failing(int db); /* its last lookup failed (the last good addresses stay) */

/* probe.c */
void master_probe_tick(void);
bool master_target_prefer(int db_index, int pick, const char *why);

/* json.c: top-level string or integer member of a flat JSON object;
 * ST_OK, or ST_ERROR (absent, another type, malformed, too long) */
int master_json_string(const char *json, const char *key, char *out, size_t len);
int master_json_int(const char *json, const char *key, long *out);

/* monitor.c: pg_auto_failover's monitor, LISTEN state */
void master_monitor_tick(void);
void master_monitor_on_event(int db_index);
bool master_monitor_active(int db_index);
void master_monitor_close_all_in_child(void);

/* daemon.c */
int master_daemonize(void);
int master_pidfile_claim(const char *path);
int master_drop_privileges(const char *user);
void master_notify(const char *state);

/* hashpw.c: --hash-password; returns the exit code */
int master_hash_password(const char *method, const char *user);

/* ctl.c: the admin console's requests that only the master can carry out */
struct broker_ctl;
void master_ctl_set(int worker, const struct broker_ctl *req);

/* reload.c */
void master_reload(void);
void master_apply_config(const struct config *next);
void master_reload_counts(unsigned *ok, unsigned *failed);
void master_recycle_db(const char *dbname);
bool master_forget_failures(const char *dbname);

/* stats.c */
void master_stats_tick(void);

/* supervise.c */
int master_spawn_worker(int index);
void master_reap_children(void);
void master_apply_workers(int before);
void master_repair_tick(void);
int master_run(void);

/* master.c */
void master_epoll_add_broker(int index);
void master_epoll_del_broker(int index);
void master_epoll_add_monitor(int db_index, int fd);
void master_epoll_del(int fd);

/* http.c: metrics_listen. Epoll tags: MASTER_TAG_HTTP for the listening
 * socket, MASTER_TAG_HTTP - 1 - i for connection i. */
#define MASTER_TAG_HTTP (-16)
int master_http_listen(const struct config *cfg); /* at start, before dropping privileges */
void master_http_start(void);                     /* once the master's epoll exists */
void master_http_on_event(int tag, uint32_t events);
void master_http_tick(void);
void master_http_close_in_child(void);

/* A growing text buffer for HTTP answers; oom once it would pass the cap. */
struct obuf {
	char *p;
	size_t len, cap;
	bool oom;
};
void obuf_printf(struct obuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int obuf_grow(struct obuf *b, size_t more);

/* metrics.c: GET /metrics, the Prometheus text format */
void master_metrics_render(struct obuf *out);
/* health.c: GET /health; returns the HTTP status, a short body in out */
int master_health(struct obuf *out);

#endif
