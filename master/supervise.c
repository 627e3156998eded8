/*
 * supervise.c — the master's worker supervision: forking workers (the child
 * keeps only what it needs and calls worker_main), reaping them, repairing
 * the shared state a dead worker held, and respawning it with a backoff when
 * it keeps crashing. Exit code 2 from a worker means "do not respawn".
 */
#include "master.h"
#include "shm/broker_msg.h"
#include "shm/pool.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t *started_at;
static int *quick_deaths;

static int make_pair(int index)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error(LOG_ERR, errno, "socketpair() failed");
		return ST_ERROR;
	}
	M.broker_master[index] = sv[0];
	M.broker_worker[index] = sv[1];
	return ST_OK;
}

/* In the child: close what belongs to the master or to other workers. */
static void close_inherited(int index)
{
	for (int i = 0; i < master_worker_slots(); i++) {
		if (M.broker_master[i] >= 0)
			close(M.broker_master[i]);
		if (i != index && M.broker_worker[i] >= 0)
			close(M.broker_worker[i]);
	}
	for (int i = 0; M.tcp_fds && i < master_worker_slots(); i++)
		for (int k = 0; i != index && k < M.ntcp; k++)
			close(M.tcp_fds[i][k]);
	close(M.epfd);
	close(M.sig_fd);
	close(M.timer_fd);
	master_broker_close_all_in_child();
	master_http_close_in_child();
	master_monitor_close_all_in_child();
}

int master_spawn_worker(int index)
{
	pid_t pid;

	if (!started_at) {
		started_at = calloc((size_t)master_worker_slots(), sizeof(*started_at));
		quick_deaths = calloc((size_t)master_worker_slots(), sizeof(*quick_deaths));
	}
	if (M.broker_master[index] < 0 && make_pair(index) != ST_OK)
		return ST_ERROR;
	/* bound at start; not listening yet, or shut by the worker that last
	 * had this index (draining): listen() needs no privilege */
	for (int k = 0; M.tcp_fds && k < M.ntcp; k++)
		if (listen(M.tcp_fds[index][k], M.cfg.listen_backlog) < 0)
			log_error(LOG_ERR, errno, "listen() for worker %d failed", index);
	pid = fork();
	if (pid < 0) {
		log_error(LOG_ERR, errno, "fork() failed");
		return ST_ERROR;
	}
	if (pid == 0) {
		struct worker_env env = M.env;
		sigset_t none;
		sigemptyset(&none);
		env.broker_fd = M.broker_worker[index];
		for (int k = 0; M.tcp_fds && k < M.ntcp; k++) /* its own SO_REUSEPORT sockets */
			env.listen_fds[env.nlisten++] = M.tcp_fds[index][k];
		env.nprivate = M.tcp_fds ? M.ntcp : 0;
		close_inherited(index);
		sigprocmask(SIG_SETMASK, &none, NULL);
		worker_main(index, &env);
	}
	atomic_store(&M.shm.workers[index].pid, pid);
	started_at[index] = now_usec();
	master_epoll_add_broker(index);
	log_error(LOG_INFO, 0, "worker %d started (pid %d)", index, (int)pid);
	return ST_OK;
}

static int worker_of(pid_t pid)
{
	for (int i = 0; i < master_worker_slots(); i++)
		if (atomic_load(&M.shm.workers[i].pid) == pid)
			return i;
	return -1;
}

/* A worker's old socketpair: read what it left, then close both ends. */
static void retire_pair(int index)
{
	master_broker_on_message(index);
	master_epoll_del_broker(index);
	close(M.broker_master[index]);
	close(M.broker_worker[index]);
	M.broker_master[index] = M.broker_worker[index] = -1;
}

static void on_worker_exit(int index, int status)
{
	uint64_t now = now_usec();
	bool fatal = WIFEXITED(status) && WEXITSTATUS(status) == EXIT_FATAL;

	if (WIFSIGNALED(status))
		log_error(M.shutdown_mode ? LOG_INFO : LOG_WARNING, 0,
		          "worker %d killed by signal %d", index, WTERMSIG(status));
	else
		log_error(LOG_INFO, 0, "worker %d exited with code %d", index, WEXITSTATUS(status));
	atomic_store(&M.shm.workers[index].pid, 0);
	retire_pair(index);
	M.repair_pending[index] = true;
	quick_deaths[index] = now - started_at[index] < 2000000 ? quick_deaths[index] + 1 : 0;
	M.restart_after[index] =
	    fatal ? UINT64_MAX
	          : now + (quick_deaths[index]
	                       ? (100000ull << (quick_deaths[index] < 6 ? quick_deaths[index] : 6))
	                       : 0);
	if (fatal)
		log_error(LOG_ERR, 0, "worker %d exited with a fatal error: not respawning it",
		          index);
}

void master_reap_children(void)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		int index;
		if (pid <= 0)
			break;
		index = worker_of(pid);
		if (index >= 0)
			on_worker_exit(index, status);
	}
}

/* Free the dead worker's client rows: its clients are gone with it. */
static void free_client_rows(int index)
{
	int per = (int)M.shm.hdr->clients_per_worker;
	int freed = 0;
	for (int i = index * per; i < (index + 1) * per; i++) {
		struct shm_client *c = shm_client(&M.shm, i);
		if (atomic_load(&c->state) == CROW_FREE)
			continue;
		atomic_store(&c->slot, -1);
		atomic_store(&c->state, CROW_FREE);
		atomic_fetch_add(&c->gen, 1);
		freed++;
	}
	atomic_fetch_sub(&M.shm.hdr->clients_total, freed);
	atomic_store(&M.shm.workers[index].nclients, 0);
}

static bool repair_worker(int index)
{
	int close_slots[4096];
	int nclose = 0;
	int r = shm_pool_repair_worker(&M.shm, index, close_slots, (int)ARRAY_LEN(close_slots),
	                               &nclose);

	for (int i = 0; i < nclose; i++)
		master_broker_close_slot(close_slots[i]);
	if (r != ST_OK)
		return false;
	free_client_rows(index);
	master_broker_settle();
	log_error(LOG_INFO, 0, "worker %d: shared state repaired (%d server connections closed)",
	          index, nclose);
	return true;
}

void master_repair_tick(void)
{
	uint64_t now = now_usec();
	for (int i = 0; i < master_worker_slots(); i++) {
		if (M.repair_pending[i] && repair_worker(i))
			M.repair_pending[i] = false;
		if (i < M.cfg.workers && !M.repair_pending[i] &&
		    atomic_load(&M.shm.workers[i].pid) == 0 && !M.shutdown_mode &&
		    now >= M.restart_after[i]) {
			atomic_fetch_add(&M.shm.workers[i].respawns, 1);
			if (master_spawn_worker(i) != ST_OK)
				M.restart_after[i] = now + 1000000;
		}
	}
}

/* A reload changed `workers`. Extra workers drain: SIGTERM makes them stop
 * accepting (their own sockets shut) and leave once their clients have
 * gone; no client is dropped. New ones are forked now; an index whose
 * worker is still draining is forked again by master_repair_tick once that
 * one has exited. */
void master_apply_workers(int before)
{
	for (int i = M.cfg.workers; i < before; i++) {
		pid_t pid = atomic_load(&M.shm.workers[i].pid);
		if (pid <= 0)
			continue;
		log_error(LOG_INFO, 0,
		          "worker %d: draining (workers = %d): it exits when its clients have left",
		          i, M.cfg.workers);
		kill(pid, SIGTERM);
	}
	for (int i = before; i < M.cfg.workers; i++) {
		M.restart_after[i] = 0;
		quick_deaths[i] = 0;
		if (atomic_load(&M.shm.workers[i].pid) == 0 && !M.repair_pending[i] &&
		    master_spawn_worker(i) != ST_OK)
			M.restart_after[i] = now_usec() + 1000000;
	}
}
