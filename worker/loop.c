/*
 * loop.c — a worker process: worker_main() and its epoll loop. Runs in each
 * forked worker. It accepts clients on the shared listening sockets
 * (EPOLLEXCLUSIVE), reads handoffs from its inbox when its eventfd fires,
 * receives sockets from the master's fd broker, and ticks timeouts. Nothing
 * here blocks on another process (invariant 4).
 */
#include "worker.h"
#include "shm/broker_msg.h"
#include "shm/proctitle.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct worker W;

#define TICK_MS    100
#define MAX_EVENTS 128

static int kind_listen = EV_LISTEN, kind_eventfd = EV_EVENTFD, kind_broker = EV_BROKER,
           kind_timer = EV_TIMER, kind_signal = EV_SIGNAL;
static int signal_fd = -1;

void worker_update_events(int fd, uint32_t *cur, uint32_t want, void *ptr)
{
	struct epoll_event ev = {.events = want, .data.ptr = ptr};
	if (*cur == want)
		return;
	if (epoll_ctl(W.epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		log_error(LOG_ERR, errno, "epoll_ctl(MOD, %d) failed", fd);
	*cur = want;
}

void worker_unregister(int fd)
{
	if (epoll_ctl(W.epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT && errno != EBADF)
		log_error(LOG_WARNING, errno, "epoll_ctl(DEL, %d) failed", fd);
}

static void add_fd(int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error(LOG_CRIT, errno, "epoll_ctl(ADD, %d) failed", fd);
		exit(EXIT_RESPAWN);
	}
}

static void setup_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	for (int sig = 1; sig < NSIG; sig++) /* ignored signals never reach a signalfd */
		if (sigismember(&set, sig) == 1)
			signal(sig, SIG_DFL);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	/* The master's death ends us: finish transactions, then exit. */
	prctl(PR_SET_PDEATHSIG, SIGINT);
	if (getppid() != W.shm->hdr->master_pid)
		exit(0);
}

static void setup_loop(void)
{
	struct itimerspec its = {.it_interval = {0, TICK_MS * 1000000},
	                         .it_value = {0, TICK_MS * 1000000}};

	W.epfd = epoll_create1(EPOLL_CLOEXEC);
	W.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (W.epfd < 0 || W.timer_fd < 0 || signal_fd < 0) {
		log_error(LOG_CRIT, errno, "epoll/timerfd/signalfd setup failed");
		exit(EXIT_RESPAWN);
	}
	timerfd_settime(W.timer_fd, 0, &its, NULL);
	for (int i = 0; i < W.nlisten; i++)
		add_fd(W.listen_fds[i], EPOLLIN | EPOLLEXCLUSIVE, &kind_listen);
	add_fd(W.shm->workers[W.index].eventfd, EPOLLIN, &kind_eventfd);
	add_fd(W.broker_fd, EPOLLIN, &kind_broker);
	add_fd(W.timer_fd, EPOLLIN, &kind_timer);
	add_fd(signal_fd, EPOLLIN, &kind_signal);
}

static void alloc_tables(void)
{
	struct shm_header *h = W.shm->hdr;

	W.nrows = (int)h->clients_per_worker;
	W.first_row = W.index * W.nrows;
	W.nslots = shm_slot_count(W.shm);
	W.clients = calloc((size_t)W.nrows, sizeof(*W.clients));
	W.servers = calloc((size_t)W.nslots, sizeof(*W.servers));
	W.local_gen = calloc((size_t)W.nslots, sizeof(*W.local_gen));
	W.handoffs = calloc(h->inbox_size, sizeof(*W.handoffs));
	W.buf_pool_cap = 256;
	W.buf_pool = calloc((size_t)W.buf_pool_cap, sizeof(char *));
	if (!W.clients || !W.servers || !W.local_gen || !W.handoffs || !W.buf_pool) {
		log_error(LOG_CRIT, errno, "calloc() failed");
		exit(EXIT_RESPAWN);
	}
	for (int i = 0; i < W.nslots; i++) {
		W.servers[i].kind = EV_SERVER;
		W.servers[i].slot = i;
		W.servers[i].fd = -1;
	}
}

/* This worker's own SO_REUSEPORT sockets: take what is queued, then shut
 * them, which takes them out of the kernel's choice (a listening socket
 * nobody accepts on would hold new connections). The master's listen()
 * opens them again for the next worker of this index. */
static void shut_private_listeners(void)
{
	for (int n = 0; n < 8; n++) /* client_accept takes up to 32 per socket */
		client_accept(-1);
	for (int i = W.nlisten - W.nprivate_listen; i < W.nlisten; i++)
		if (shutdown(W.listen_fds[i], SHUT_RD) < 0)
			log_error(LOG_WARNING, errno, "shutdown() of a listening socket failed");
}

static void stop_accepting(void)
{
	if (W.draining)
		return;
	shut_private_listeners();
	W.draining = true;
	for (int i = 0; i < W.nlisten; i++)
		worker_unregister(W.listen_fds[i]);
	proctitle_set("pgshoal: worker (draining)");
}

/* The master died: finish what can be finished, then exit. */
void worker_orphaned(void)
{
	if (W.orphaned)
		return;
	W.orphaned = W.now ? W.now : 1;
	W.close_idle = true;
	stop_accepting();
	log_error(LOG_WARNING, 0, "the master is gone: finishing transactions, then exiting");
}

static void on_signal(void)
{
	struct signalfd_siginfo si;
	while (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGQUIT)
			exit(0);
		if (si.ssi_signo == SIGINT)
			W.close_idle =
			    true; /* safe shutdown: clients go when out of transactions */
		if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
			stop_accepting();
	}
}

static void on_inbox(void)
{
	uint64_t v;
	int n;
	if (read(W.shm->workers[W.index].eventfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error(LOG_WARNING, errno, "read() of eventfd failed");
	n = shm_inbox_pop_all(W.shm, W.index, W.handoffs, (int)W.shm->hdr->inbox_size);
	for (int i = 0; i < n; i++)
		client_on_handoff(&W.handoffs[i]);
}

static void on_tick(void)
{
	uint64_t v;
	if (read(W.timer_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (atomic_load_explicit(&W.shm->hdr->flags, memory_order_acquire) & SHM_F_SHUTDOWN)
		stop_accepting();
	if (getppid() != W.shm->hdr->master_pid)
		worker_orphaned();
	/* without the master no fd comes and no crashed worker is repaired:
	 * give clients shutdown_wait_timeout to finish, then go */
	if (W.orphaned && W.now - W.orphaned > (uint64_t)(W.cfg->shutdown_wait_timeout * 1e6)) {
		log_error(LOG_WARNING, 0, "master gone for shutdown_wait_timeout: exiting");
		exit(0);
	}
	client_tick(W.now);
	auth_query_tick();
	server_tick(W.now);
	admin_worker_tick();
}

static void dispatch(struct epoll_event *ev)
{
	int kind = *(int *)ev->data.ptr;
	switch (kind) {
	case EV_LISTEN: client_accept(-1); break;
	case EV_EVENTFD: on_inbox(); break;
	case EV_BROKER: fdcache_on_broker(); break;
	case EV_TIMER: on_tick(); break;
	case EV_SIGNAL: on_signal(); break;
	case EV_CLIENT: client_on_event(ev->data.ptr, ev->events); break;
	case EV_SERVER: server_on_event(ev->data.ptr, ev->events); break;
	case EV_CANCEL: cancel_on_event(ev->data.ptr, ev->events); break;
	default: log_error(LOG_CRIT, 0, "unknown event kind %d", kind); abort();
	}
}

/* Pool limits in force follow the configuration: each worker refreshes the
 * rows after a reload (the same values; whichever writes last is right). */
static void refresh_pool_limits(void)
{
	for (int p = 0; p < (int)W.shm->hdr->max_pools; p++) {
		struct shm_pool *row = &W.shm->pools[p];
		const struct config_db *db;
		struct pool_limits lim;
		if (!atomic_load_explicit(&row->used, memory_order_acquire))
			break;
		db = config_find_db(W.cfg, row->db);
		if (!db)
			continue;
		lim = client_pool_limits(db, row->user);
		shm_pool_set_limits(W.shm, p, &lim);
	}
}

/* The master published a new configuration: take it at this loop turn. */
static void maybe_reload(void)
{
	if (atomic_load_explicit(&W.shm->hdr->config_gen, memory_order_relaxed) == W.config_gen)
		return;
	W.config_gen = shm_config_copy(W.shm, &W.cfg_store);
	log_open(W.cfg->logfile, true);
	refresh_pool_limits();
	log_debug(DBG_STATE, "configuration generation %u in force", W.config_gen);
}

void worker_main(int index, const struct worker_env *env)
{
	char title[64];
	struct epoll_event events[MAX_EVENTS];
	int tls_busy = 0;

	W.index = index;
	W.config_gen = shm_config_copy(env->shm, &W.cfg_store);
	W.cfg = &W.cfg_store;
	W.shm = env->shm;
	W.broker_fd = env->broker_fd;
	W.nlisten = env->nlisten;
	W.nprivate_listen = env->nprivate;
	memcpy(W.listen_fds, env->listen_fds, sizeof(W.listen_fds));
	W.buf_size = (uint32_t)W.cfg->pkt_buf;
	snprintf(title, sizeof(title), "pgshoal: worker %d", index);
	proctitle_set(title);
	log_set_role(title + 9);
	setup_signals();
	alloc_tables();
	setup_loop();
	atomic_store(&W.shm->workers[index].pid, getpid());
	for (;;) {
		int n = epoll_wait(W.epfd, events, MAX_EVENTS, tls_busy ? 0 : -1);
		if (n < 0 && errno != EINTR) {
			log_error(LOG_CRIT, errno, "epoll_wait() failed");
			exit(EXIT_RESPAWN);
		}
		W.now = now_usec();
		W.loops++;
		for (int i = 0; i < n; i++)
			dispatch(&events[i]);
		tls_busy = tls_run_pending(); /* bytes inside OpenSSL, unseen by epoll */
		client_free_closed();
		maybe_reload();
		if (W.draining && W.nclients == 0) {
			server_tls_close_all();
			exit(0);
		}
	}
}
