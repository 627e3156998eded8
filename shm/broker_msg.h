/*
 * broker_msg.h — the messages on the socketpair between the master (fd
 * broker) and each worker. SOCK_SEQPACKET keeps one message per datagram;
 * a server socket travels as SCM_RIGHTS beside DEPOSIT and GIVE. The
 * admin console's SET travels the same way (struct broker_ctl): the master
 * alone changes the configuration, and answers the worker that asked.
 */
#ifndef PGSHOAL_BROKER_MSG_H
#define PGSHOAL_BROKER_MSG_H

#include "config.h"

#include <stdint.h>

enum broker_type {
	BR_DEPOSIT = 1, /* worker -> master: a logged-in server socket (+fd) */
	BR_REQUEST,     /* worker -> master: send me a copy of (slot, gen) */
	BR_GIVE,        /* master -> worker: here it is (+fd) */
	BR_GONE,        /* master -> worker: (slot, gen) no longer exists */
	BR_CLOSE,       /* worker -> master: (slot, gen) closed, drop your copy */
	BR_SET,         /* worker -> master: SET key = value (struct broker_ctl) */
	BR_SET_DONE,    /* master -> worker: its result (struct broker_ctl) */
};

struct broker_msg {
	uint32_t type;
	int32_t slot;
	uint32_t gen;
};

/* BR_SET and BR_SET_DONE. head.slot and head.gen name the admin client (its
 * global row and the row's generation), so that an answer that comes after
 * the client left reaches nobody. */
struct broker_ctl {
	struct broker_msg head;
	int32_t result;      /* BR_SET_DONE: enum config_set_result */
	uint32_t config_gen; /* BR_SET_DONE, CFG_SET_OK: the generation that carries the change */
	char key[CFG_NAME_LEN]; /* BR_SET */
	char text[512];         /* BR_SET: the value; BR_SET_DONE: why it was refused */
};

union broker_any {
	struct broker_msg msg;
	struct broker_ctl ctl;
};

/* Send one message, with an optional fd (-1 = none). */
int broker_send(int sock, const struct broker_msg *m, int fd);
int broker_send_ctl(int sock, const struct broker_ctl *m);
/* Receive one message of either kind (its size checked against its type).
 * Returns bytes read (0 = peer gone, -1 = error/EAGAIN), *fd = received fd or -1. */
int broker_recv(int sock, union broker_any *m, int *fd);

#endif
