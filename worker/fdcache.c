/*
 * fdcache.c — a worker's copies of server sockets, one per slot at the
 * generation it was fetched for. A worker that leases a slot it has no copy
 * of asks the master's fd broker once (BR_REQUEST) and caches the answer; a
 * worker that opened a connection deposits a copy with the master, unless
 * it is a TLS connection: only this worker can use that one. Stale copies
 * (older generation) are closed when the slot is next used here.
 */
#include "worker.h"
#include "shm/broker_msg.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

void fdcache_forget(struct server *sv)
{
	if (sv->tls)
		tls_close(&sv->tls);
	if (sv->fd < 0)
		return;
	if (sv->registered)
		worker_unregister(sv->fd);
	close(sv->fd);
	sv->fd = -1;
	sv->registered = false;
	sv->events = 0;
	W.local_gen[sv->slot] = 0;
}

int fdcache_get(struct server *sv, uint32_t gen)
{
	struct broker_msg m = {.type = BR_REQUEST, .slot = sv->slot, .gen = gen};

	if (sv->fd >= 0 && W.local_gen[sv->slot] == gen) {
		sv->gen = gen;
		return ST_OK;
	}
	fdcache_forget(sv);
	sv->gen = gen;
	server_set_state(sv, SV_WAIT_FD);
	if (broker_send(W.broker_fd, &m, -1) < 0) {
		log_error(LOG_ERR, errno, "sendmsg() to the master failed");
	}
	return ST_AGAIN;
}

void fdcache_deposit(struct server *sv)
{
	struct broker_msg m = {.type = BR_DEPOSIT, .slot = sv->slot, .gen = sv->gen};
	W.local_gen[sv->slot] = sv->gen;
	if (sv->tls)
		return; /* its OpenSSL state is here alone: no copy for others */
	if (broker_send(W.broker_fd, &m, sv->fd) < 0)
		log_error(LOG_ERR, errno, "sendmsg(SCM_RIGHTS) to the master failed");
}

static void on_give(const struct broker_msg *m, int fd)
{
	struct server *sv = &W.servers[m->slot];
	if (sv->state != SV_WAIT_FD || sv->gen != m->gen) {
		/* the client left meanwhile: keep the copy if it is current */
		if (sv->state == SV_NONE && sv->fd < 0 &&
		    atomic_load(&shm_slot(W.shm, m->slot)->gen) == m->gen) {
			sv->fd = fd;
			W.local_gen[m->slot] = m->gen;
		} else {
			close(fd);
		}
		return;
	}
	sv->fd = fd;
	W.local_gen[m->slot] = m->gen;
	server_start(sv);
}

/* The master has no socket for that generation: the slot is dead. */
static void on_gone(const struct broker_msg *m)
{
	struct server *sv = &W.servers[m->slot];
	struct client *c = sv->client;
	if (sv->state != SV_WAIT_FD || sv->gen != m->gen)
		return;
	server_set_state(sv, SV_ACTIVE);
	server_close(sv, "the master holds no socket for this slot");
	if (c && !c->closing)
		client_request_server(c);
}

void fdcache_on_broker(void)
{
	for (;;) {
		union broker_any u;
		struct broker_msg m;
		int fd;
		int n = broker_recv(W.broker_fd, &u, &fd);
		if (n == 0) {
			worker_unregister(W.broker_fd);
			worker_orphaned();
			return;
		}
		if (n < 0)
			return;
		if (u.msg.type == BR_SET_DONE) { /* an answer for an admin session */
			admin_set_done(&u.ctl);
			continue;
		}
		m = u.msg;
		if (m.slot < 0 || m.slot >= W.nslots) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (m.type == BR_GIVE && fd >= 0)
			on_give(&m, fd);
		else if (m.type == BR_GONE)
			on_gone(&m);
		else if (fd >= 0)
			close(fd);
	}
}
