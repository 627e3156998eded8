/*
 * broker_msg.c — sendmsg/recvmsg with SCM_RIGHTS for the fd broker messages
 * of broker_msg.h. Used by the master and by every worker.
 */
#include "broker_msg.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

static int send_bytes(int sock, const void *m, size_t len, int fd)
{
	struct iovec iov = {.iov_base = (void *)m, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *cm;
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

int broker_send(int sock, const struct broker_msg *m, int fd)
{
	return send_bytes(sock, m, sizeof(*m), fd);
}

int broker_send_ctl(int sock, const struct broker_ctl *m)
{
	return send_bytes(sock, m, sizeof(*m), -1);
}

int broker_recv(int sock, union broker_any *m, int *fd)
{
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = u.buf,
	                     .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	struct cmsghdr *cm;

	*fd = -1;
	n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n <= 0)
		return (int)n;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	if (n < (ssize_t)sizeof(m->msg) ||
	    n != (ssize_t)(m->msg.type == BR_SET || m->msg.type == BR_SET_DONE ? sizeof(m->ctl)
	                                                                       : sizeof(m->msg))) {
		errno = EPROTO;
		return -1;
	}
	return (int)n;
}
