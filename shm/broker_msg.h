/*
 * broker_msg.h — the messages on the socketpair between the master (fd
 * broker) and each worker. SOCK_SEQPACKET keeps one message per datagram;
 * a server socket travels as SCM_RIGHTS beside DEPOSIT and GIVE.
 */
#ifndef PGSHOAL_BROKER_MSG_H
#define PGSHOAL_BROKER_MSG_H

#include <stdint.h>

enum broker_type {
	BR_DEPOSIT = 1, /* worker -> master: a logged-in server socket (+fd) */
	BR_REQUEST,     /* worker -> master: send me a copy of (slot, gen) */
	BR_GIVE,        /* master -> worker: here it is (+fd) */
	BR_GONE,        /* master -> worker: (slot, gen) no longer exists */
	BR_CLOSE,       /* worker -> master: (slot, gen) closed, drop your copy */
};

struct broker_msg {
	uint32_t type;
	int32_t slot;
	uint32_t gen;
};

/* Send/receive one message, with an optional fd (-1 = none). */
int broker_send(int sock, const struct broker_msg *m, int fd);
/* Returns bytes read (0 = peer gone, -1 = error/EAGAIN), *fd = received fd or -1. */
int broker_recv(int sock, struct broker_msg *m, int *fd);

#endif
