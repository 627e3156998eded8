/*
 * cancel.c — CancelRequests. A client's fake BackendKeyData names its worker
 * and row; a cancel may arrive at any worker, which looks the client up in
 * shared memory and, only while that client is linked to a server, sends
 * the server's real pid and key to the server's address. The connection is
 * non-blocking: a small object waits for the connect in the epoll loop.
 */
#include "worker.h"
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct cancel_req {
	int kind; /* EV_CANCEL */
	int fd;
	char pkt[16];
};

static void finish(struct cancel_req *r)
{
	worker_unregister(r->fd);
	close(r->fd);
	free(r);
}

void cancel_on_event(void *obj, uint32_t events)
{
	struct cancel_req *r = obj;
	if (events & EPOLLOUT) {
		if (send(r->fd, r->pkt, sizeof(r->pkt), MSG_NOSIGNAL) != (ssize_t)sizeof(r->pkt))
			log_error(LOG_WARNING, errno, "sending cancel request to server failed");
	}
	finish(r);
}

static void build_packet(char *p, int32_t pid, int32_t key)
{
	struct pbuf b;
	pb_init(&b, p, 16);
	pb_u32(&b, 16);
	pb_u32(&b, PROTO_CANCEL);
	pb_u32(&b, (uint32_t)pid);
	pb_u32(&b, (uint32_t)key);
}

void cancel_forward(int32_t fake_pid, int32_t key)
{
	int client = shm_client_from_fake_pid(W.shm, fake_pid);
	struct shm_client *row;
	struct shm_slot *sl;
	struct cancel_req *r;
	struct epoll_event ev = {.events = EPOLLOUT};
	int slot;

	if (client < 0)
		return;
	row = shm_client(W.shm, client);
	if (atomic_load_explicit(&row->state, memory_order_acquire) != CROW_USED ||
	    row->cancel_key != (uint32_t)key)
		return;
	slot = atomic_load_explicit(&row->slot, memory_order_acquire);
	if (slot < 0)
		return; /* not linked to a server: nothing runs, nothing to cancel */
	sl = shm_slot(W.shm, slot);
	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->kind = EV_CANCEL;
	build_packet(r->pkt, sl->be_pid, sl->be_key);
	r->fd = socket(sl->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->fd < 0 || (connect(r->fd, (struct sockaddr *)&sl->addr, sl->addrlen) < 0 &&
	                  errno != EINPROGRESS)) {
		log_error(LOG_WARNING, errno, "connect() for cancel request failed");
		if (r->fd >= 0)
			close(r->fd);
		free(r);
		return;
	}
	ev.data.ptr = r;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, r->fd, &ev) < 0) {
		close(r->fd);
		free(r);
		return;
	}
	log_debug(DBG_PROTO, "cancel for client %d forwarded to slot %d", client, slot);
}
