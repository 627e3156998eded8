/*
 * worker_main.h — the one door from master/ into worker/: what a worker
 * inherits at fork, and worker_main(), which never returns.
 */
#ifndef PGSHOAL_WORKER_MAIN_H
#define PGSHOAL_WORKER_MAIN_H

#include "shm/config.h"
#include "shm/shm.h"

#define MAX_LISTEN 8

struct worker_env {
	const struct config *cfg; /* the master's copy, inherited at fork */
	struct shm *shm;
	int listen_fds[MAX_LISTEN];
	int nlisten;
	int nprivate;  /* the last nprivate listen_fds are this worker's own (SO_REUSEPORT) */
	int broker_fd; /* this worker's end of its socketpair with the master */
};

void worker_main(int index, const struct worker_env *env) __attribute__((noreturn));

#endif
