/*
 * broker.c — the master's fd broker. It keeps one copy of every logged-in
 * server socket (deposited by the worker that opened it) and hands copies
 * to workers that lease a slot they have none of. It never blocks: a
 * request for a socket not yet deposited waits in a short pending list.
 * TLS server connections are never deposited: their OpenSSL state lives in
 * the worker that opened them, which alone may use them, so a request for
 * one is answered BR_GONE.
 */
#include "master.h"
#include "shm/broker_msg.h"
#include "shm/pool.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct held {
	int fd;
	uint32_t gen;
};

struct pending {
	int worker, slot;
	uint32_t gen;
};

static struct held *held;
static int nheld;
static struct pending *pend;
static int npend, pend_cap;

int master_broker_init(int nslots)
{
	held = calloc((size_t)nslots, sizeof(*held));
	pend_cap = 1024;
	pend = calloc((size_t)pend_cap, sizeof(*pend));
	if (!held || !pend)
		return ST_ERROR;
	nheld = nslots;
	for (int i = 0; i < nslots; i++)
		held[i].fd = -1;
	return ST_OK;
}

static void reply(int worker, int type, int slot, uint32_t gen, int fd)
{
	struct broker_msg m = {.type = (uint32_t)type, .slot = slot, .gen = gen};
	if (broker_send(M.broker_master[worker], &m, fd) < 0 && errno != EPIPE)
		log_error(LOG_WARNING, errno, "sendmsg() to worker %d failed", worker);
}

static void drop_held(int slot)
{
	if (held[slot].fd >= 0)
		close(held[slot].fd);
	held[slot].fd = -1;
	held[slot].gen = 0;
}

/* Close a server connection the master alone is responsible for (its slot
 * was freed by the janitor or by repair): Terminate, then shut it down for
 * every process that still has a copy. */
void master_broker_close_slot(int slot)
{
	if (held[slot].fd < 0)
		return;
	(void)!send(held[slot].fd, "X\0\0\0\4", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(held[slot].fd, SHUT_RDWR);
	drop_held(slot);
}

/* Answer requests that waited for a deposit, or whose slot died. */
static void settle_pending(void)
{
	int k = 0;
	for (int i = 0; i < npend; i++) {
		struct pending *p = &pend[i];
		uint32_t cur = atomic_load(&M.shm.slots[p->slot].gen);
		if (held[p->slot].fd >= 0 && held[p->slot].gen == p->gen)
			reply(p->worker, BR_GIVE, p->slot, p->gen, held[p->slot].fd);
		else if (cur != p->gen)
			reply(p->worker, BR_GONE, p->slot, p->gen, -1);
		else
			pend[k++] = *p;
	}
	npend = k;
}

static void on_request(int worker, const struct broker_msg *m)
{
	if (M.shm.slots[m->slot].tls_owner >= 0 &&
	    atomic_load(&M.shm.slots[m->slot].gen) == m->gen) {
		reply(worker, BR_GONE, m->slot, m->gen, -1);
	} else if (held[m->slot].fd >= 0 && held[m->slot].gen == m->gen) {
		reply(worker, BR_GIVE, m->slot, m->gen, held[m->slot].fd);
	} else if (atomic_load(&M.shm.slots[m->slot].gen) != m->gen) {
		reply(worker, BR_GONE, m->slot, m->gen, -1);
	} else if (npend < pend_cap) {
		pend[npend++] = (struct pending){worker, m->slot, m->gen};
	} else {
		reply(worker, BR_GONE, m->slot, m->gen, -1);
	}
}

void master_broker_on_message(int worker)
{
	for (;;) {
		union broker_any u;
		struct broker_msg m;
		int fd;
		int n = broker_recv(M.broker_master[worker], &u, &fd);
		if (n <= 0)
			break;
		if (u.msg.type == BR_SET) { /* the console's, not a slot's */
			master_ctl_set(worker, &u.ctl);
			continue;
		}
		m = u.msg;
		if (m.slot < 0 || m.slot >= nheld) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		switch (m.type) {
		case BR_DEPOSIT:
			if (fd < 0)
				break;
			if (atomic_load(&M.shm.slots[m.slot].gen) != m.gen) {
				/* freed (by repair) before the deposit arrived */
				shutdown(fd, SHUT_RDWR);
				close(fd);
				break;
			}
			drop_held(m.slot);
			held[m.slot].fd = fd;
			held[m.slot].gen = m.gen;
			break;
		case BR_REQUEST: on_request(worker, &m); break;
		case BR_CLOSE:
			if (held[m.slot].gen == m.gen)
				drop_held(m.slot);
			break;
		default:
			if (fd >= 0)
				close(fd);
			break;
		}
	}
	settle_pending();
}

/* After repair: requests for slots that died must be answered. */
void master_broker_settle(void)
{
	settle_pending();
}

/* A freshly forked worker must not keep the master's copies. */
void master_broker_close_all_in_child(void)
{
	for (int i = 0; i < nheld; i++)
		if (held[i].fd >= 0)
			close(held[i].fd);
}

/* min_pool_size: ask a worker (round robin) to open what a pool lacks. */
static void fill_min_pool(int pool)
{
	static int next;
	const struct config_db *db = config_find_db(&M.cfg, M.shm.pools[pool].db);
	int min = db ? config_min_pool_size(&M.cfg, db) : 0;
	int worker, slot;
	struct shm_handoff h;

	if (min <= 0)
		return;
	worker = next++ % M.cfg.workers;
	if (atomic_load(&M.shm.workers[worker].pid) <= 0)
		return;
	slot = shm_pool_reserve_min(&M.shm, pool, worker, min);
	if (slot < 0)
		return;
	h = (struct shm_handoff){
	    .client = -1, .slot = slot, .slot_gen = atomic_load(&M.shm.slots[slot].gen)};
	shm_inbox_push(&M.shm, worker, &h);
	shm_worker_wake(&M.shm, worker);
}

/* Close idle connections past server_idle_timeout or server_lifetime;
 * open those min_pool_size asks for. */
void master_broker_janitor(void)
{
	int close_slots[256];
	uint64_t now = now_usec();
	for (int p = 0; p < (int)M.shm.hdr->max_pools; p++) {
		int n;
		if (!atomic_load(&M.shm.pools[p].used))
			break;
		n = shm_pool_reap_idle(&M.shm, p, now, M.cfg.server_idle_timeout,
		                       M.cfg.server_lifetime, close_slots,
		                       (int)ARRAY_LEN(close_slots));
		for (int i = 0; i < n; i++)
			master_broker_close_slot(close_slots[i]);
		fill_min_pool(p);
	}
}
