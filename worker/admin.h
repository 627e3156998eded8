/*
 * admin.h — what the admin console's three files share: the session, the
 * reply builder (RowDescription / DataRow / CommandComplete in a growing
 * buffer) and the command handlers. Internal to admin.c, admin_show.c and
 * admin_ctl.c.
 */
#ifndef PGSHOAL_ADMIN_H
#define PGSHOAL_ADMIN_H

#include "worker.h"

/* A command that answers later (admin_tick polls its condition). */
enum admin_wait {
	AW_NONE,
	AW_PAUSE,       /* servers of wait_db ("" = all) all idle or closed */
	AW_WAIT_CLOSE,  /* no server of wait_db left from before a RECONNECT */
	AW_KILL_CLIENT, /* the client row wait_row left generation wait_gen */
	AW_SET,         /* the master's answer to SET, then its configuration generation here */
};

struct admin {
	char *out; /* reply bytes not yet sent: [sent, len) */
	size_t len, cap, sent;
	size_t mark;   /* where the reply being built starts */
	bool oom;      /* the reply could not grow: answered with an error */
	bool is_admin; /* admin_users (everything) or stats_users (SHOW) */
	enum admin_wait wait;
	char wait_db[CFG_NAME_LEN];
	int wait_row;
	uint32_t wait_gen;
	uint64_t wait_since;
	/* AW_SET: the master's answer (admin_set_done) */
	bool set_answered;
	int set_result;   /* enum config_set_result */
	uint32_t set_gen; /* CFG_SET_OK: the generation that carries the change */
	char set_error[512];
};

/* Types of result columns, as PgBouncer declares them:
 *  's' text, 'T' a time shown as text (wall-clock usec, 0 = NULL),
 *  'i' int4, 'I' int4 with -1 = NULL, 'q' int8, 'N' numeric (uint64_t);
 *  'b' bytea (rowdesc only). */
void admin_rowdesc(struct admin *a, const char *types, const char *const *names);
void admin_row(struct admin *a, const char *types, ...);
void admin_complete(struct admin *a, const char *tag); /* CommandComplete + ReadyForQuery */
void admin_fail(struct admin *a, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4))); /* ErrorResponse + ReadyForQuery */
void admin_notice(struct admin *a, const char *msg, const char *detail);

/* admin_show.c: SHOW <what>; false if <what> is unknown. */
bool admin_show(struct client *c, const char *what);

/* admin_ctl.c: a control command (the session is an admin); false if the
 * verb is unknown. SET key = value. The async waits' conditions. */
bool admin_control(struct client *c, const char *verb, const char *arg);
void admin_set(struct client *c, const char *key, const char *value);
bool admin_wait_done(struct client *c);
/* A parked command whose condition may hold now: answer it, go on. */
void admin_check_wait(struct client *c);

/* Shared helpers. */
bool admin_list_has(const char *list, const char *name);
uint64_t admin_wall_of(uint64_t mono_usec); /* a monotonic stamp as wall-clock usec */

#endif
