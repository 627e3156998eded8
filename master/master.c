/*
 * master.c — the master's event loop: one epoll over the signalfd, a
 * 100 ms timerfd (repair, respawn, janitor), the broker socketpairs, the
 * pg_auto_failover monitor connections (monitor.c) and, with
 * metrics_listen, the HTTP sockets (http.c). It never speaks the client
 * protocol and never waits on a pool lock.
 * Signals: HUP reload, INT/TERM/QUIT shutdowns (see begin_shutdown),
 * USR1 pause, USR2 resume; SIGCHLD reaps workers.
 */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct master M;

#define TAG_SIGNAL  (-1)
#define TAG_TIMER   (-2)
#define TAG_MONITOR (-1000) /* - db index: a pg_auto_failover monitor connection */

static void add(int fd, int tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(int64_t)tag};
	if (epoll_ctl(M.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		log_error(LOG_ERR, errno, "epoll_ctl(ADD) failed");
}

void master_epoll_add_broker(int index)
{
	add(M.broker_master[index], index);
}

void master_epoll_del_broker(int index)
{
	epoll_ctl(M.epfd, EPOLL_CTL_DEL, M.broker_master[index], NULL);
}

void master_epoll_add_monitor(int db_index, int fd)
{
	add(fd, TAG_MONITOR - db_index);
}

void master_epoll_del(int fd)
{
	epoll_ctl(M.epfd, EPOLL_CTL_DEL, fd, NULL);
}

static int setup(void)
{
	struct itimerspec its = {.it_interval = {0, 100000000}, .it_value = {0, 100000000}};
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	/* a shell starts background jobs with INT and QUIT ignored, and an
	 * ignored signal never reaches a signalfd: take the defaults back */
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&set, sig) == 1)
			signal(sig, SIG_DFL);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	M.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	M.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	M.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (M.sig_fd < 0 || M.timer_fd < 0 || M.epfd < 0) {
		log_error(LOG_CRIT, errno, "signalfd/timerfd/epoll setup failed");
		return ST_ERROR;
	}
	timerfd_settime(M.timer_fd, 0, &its, NULL);
	add(M.sig_fd, TAG_SIGNAL);
	add(M.timer_fd, TAG_TIMER);
	master_http_start();
	return ST_OK;
}

static void signal_workers(int sig)
{
	for (int i = 0; i < master_worker_slots(); i++) {
		pid_t pid = atomic_load(&M.shm.workers[i].pid);
		if (pid > 0)
			kill(pid, sig);
	}
}

/*
 * PgBouncer's (1.23) meanings: SIGINT stops accepting and closes clients as
 * soon as they are out of their transaction; SIGTERM stops accepting and
 * waits for clients to leave by themselves, for shutdown_wait_timeout, then
 * goes on as SIGINT; SIGQUIT (or a second SIGTERM) ends everything now.
 * Workers get SIGTERM = stop accepting, SIGINT = also close idle clients.
 */
static void begin_shutdown(int sig)
{
	if (sig == SIGQUIT || (sig == SIGTERM && M.shutdown_mode == SIGTERM)) {
		log_error(LOG_INFO, 0, "immediate shutdown");
		signal_workers(SIGQUIT);
		M.shutdown_mode = SIGQUIT;
		return;
	}
	if (M.shutdown_mode == SIGINT || (M.shutdown_mode && sig == SIGTERM))
		return;
	master_notify("STOPPING=1");
	atomic_fetch_or(&M.shm.hdr->flags, SHM_F_SHUTDOWN);
	if (sig == SIGINT) {
		log_error(LOG_INFO, 0, "got SIGINT: shutting down once transactions are done");
		M.shutdown_mode = SIGINT;
		M.shutdown_deadline = 0;
		signal_workers(SIGINT);
		return;
	}
	log_error(LOG_INFO, 0, "got SIGTERM: waiting up to %g s for clients to disconnect",
	          M.cfg.shutdown_wait_timeout);
	M.shutdown_mode = SIGTERM;
	M.shutdown_deadline = now_usec() + (uint64_t)(M.cfg.shutdown_wait_timeout * 1e6);
	signal_workers(SIGTERM);
}

static void on_signal(void)
{
	struct signalfd_siginfo si;
	while (read(M.sig_fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD: master_reap_children(); break;
		case SIGHUP:
			master_notify("RELOADING=1");
			master_reload();
			master_notify("READY=1");
			break;

		case SIGUSR1: /* PgBouncer's: pause, as the console's PAUSE */
			atomic_fetch_or(&M.shm.hdr->flags, SHM_F_PAUSED);
			log_error(LOG_INFO, 0,
			          "SIGUSR1: paused, new transactions wait for SIGUSR2 or RESUME");
			break;
		case SIGUSR2:
			atomic_fetch_and(&M.shm.hdr->flags, ~(unsigned)SHM_F_PAUSED);
			log_error(LOG_INFO, 0, "SIGUSR2: resumed");
			break;
		default: begin_shutdown((int)si.ssi_signo); break;
		}
	}
}

static bool workers_alive(void)
{
	for (int i = 0; i < master_worker_slots(); i++)
		if (atomic_load(&M.shm.workers[i].pid) > 0)
			return true;
	return false;
}

static void on_tick(void)
{
	static unsigned ticks;
	uint64_t v;
	if (read(M.timer_fd, &v, sizeof(v)) < 0)
		return;
	master_reap_children();
	master_repair_tick();
	master_broker_settle(); /* requests whose slot died without a message */
	if (++ticks % 10 == 0)
		master_broker_janitor();
	master_dns_tick();
	master_monitor_tick();
	master_probe_tick();
	master_stats_tick();
	master_http_tick();
	if (M.shutdown_deadline && now_usec() > M.shutdown_deadline) {
		log_error(LOG_INFO, 0,
		          "shutdown_wait_timeout passed: closing clients once out of transactions");
		M.shutdown_mode = SIGINT;
		M.shutdown_deadline = 0;
		signal_workers(SIGINT);
	}
}

int master_run(void)
{
	struct epoll_event evs[32];

	if (setup() != ST_OK)
		return EXIT_RESPAWN;
	for (int i = 0; i < M.cfg.workers; i++)
		if (master_spawn_worker(i) != ST_OK)
			return EXIT_RESPAWN;
	master_notify("READY=1");
	for (;;) {
		int n = epoll_wait(M.epfd, evs, 32, -1);
		if (n < 0 && errno != EINTR) {
			log_error(LOG_CRIT, errno, "epoll_wait() failed");
			return EXIT_RESPAWN;
		}
		for (int i = 0; i < n; i++) {
			int tag = (int)(int64_t)evs[i].data.u64;
			if (tag == TAG_SIGNAL)
				on_signal();
			else if (tag == TAG_TIMER)
				on_tick();
			else if (tag <= TAG_MONITOR)
				master_monitor_on_event(TAG_MONITOR - tag);
			else if (tag <= MASTER_TAG_HTTP)
				master_http_on_event(tag, evs[i].events);
			else
				master_broker_on_message(tag);
		}
		if (M.shutdown_mode && !workers_alive())
			return 0;
	}
}
