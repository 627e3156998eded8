/*
 * io.h — every read and write of a client or server socket goes through
 * these, so that a connection with TLS (c->tls / sv->tls, an SSL*) reads
 * and writes through OpenSSL and one without costs a plain syscall.
 * Return values follow recv/send: -1 with errno EAGAIN when it would block.
 */
#ifndef PGSHOAL_IO_H
#define PGSHOAL_IO_H

#include "worker.h"

#include <sys/socket.h>

ssize_t tls_recv(void *tls, void *buf, size_t n);
ssize_t tls_send(void *tls, const void *buf, size_t n);

static inline ssize_t client_recv(struct client *c, void *buf, size_t n)
{
	return c->tls ? tls_recv(c->tls, buf, n) : recv(c->fd, buf, n, 0);
}

static inline ssize_t client_send(struct client *c, const void *buf, size_t n)
{
	return c->tls ? tls_send(c->tls, buf, n) : send(c->fd, buf, n, MSG_NOSIGNAL);
}

static inline ssize_t server_recv(struct server *sv, void *buf, size_t n)
{
	return sv->tls ? tls_recv(sv->tls, buf, n) : recv(sv->fd, buf, n, 0);
}

static inline ssize_t server_send(struct server *sv, const void *buf, size_t n)
{
	return sv->tls ? tls_send(sv->tls, buf, n) : send(sv->fd, buf, n, MSG_NOSIGNAL);
}

#endif
