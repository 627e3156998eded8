/*
 * tls.c — TLS for client and server connections (OpenSSL). Not implemented
 * yet: no connection ever has a TLS state, so these are never called.
 */
#include "io.h"

#include <errno.h>

ssize_t tls_recv(void *tls, void *buf, size_t n)
{
	(void)tls;
	(void)buf;
	(void)n;
	errno = EPROTO;
	return -1;
}

ssize_t tls_send(void *tls, const void *buf, size_t n)
{
	(void)tls;
	(void)buf;
	(void)n;
	errno = EPROTO;
	return -1;
}
