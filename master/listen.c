/*
 * listen.c — the listening sockets, created by the master before it forks:
 * TCP on listen_addr:listen_port and the unix socket .s.PGSQL.<port> in
 * unix_socket_dir. With so_reuseport (the default) each worker has TCP
 * sockets of its own bound with SO_REUSEPORT, so the kernel spreads new
 * connections evenly over the workers; otherwise, and always for the unix
 * socket, one socket is shared and each worker's epoll waits on it with
 * EPOLLEXCLUSIVE (one connection wakes one worker — in practice mostly the
 * same idle one, which is why per-worker sockets are the default).
 */
#include "master.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int listen_on(const struct sockaddr *sa, socklen_t len, int backlog, const char *what,
                     bool reuseport, bool do_listen)
{
	int one = 1;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error(LOG_ERR, errno, "socket() for %s failed", what);
		return -1;
	}
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || (do_listen && listen(fd, backlog) < 0)) {
		log_error(LOG_ERR, errno, "bind()/listen() on %s failed", what);
		close(fd);
		return -1;
	}
	log_debug(DBG_STATE, "listening on %s", what);
	return fd;
}

int master_listen_tcp(const struct config *cfg, int *fds, int max, bool reuseport, bool do_listen)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res, *ai;
	char port[16];
	const char *host = strcmp(cfg->listen_addr, "*") == 0 ? NULL : cfg->listen_addr;
	int n = 0, rc;

	snprintf(port, sizeof(port), "%d", cfg->listen_port);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		log_error(LOG_ERR, 0, "getaddrinfo(\"%s\") failed: %s", cfg->listen_addr,
		          gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai && n < max; ai = ai->ai_next) {
		char what[300];
		snprintf(what, sizeof(what), "%s:%d%s", cfg->listen_addr, cfg->listen_port,
		         ai->ai_family == AF_INET6 ? " (IPv6)" : "");
		fds[n] = listen_on(ai->ai_addr, ai->ai_addrlen, cfg->listen_backlog, what,
		                   reuseport, do_listen);
		if (fds[n] < 0) {
			freeaddrinfo(res);
			return -1;
		}
		n++;
	}
	freeaddrinfo(res);
	return n;
}

static void unix_path(const struct config *cfg, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof(sun->sun_path), "%.90s/.s.PGSQL.%d", cfg->unix_socket_dir,
	         cfg->listen_port);
}

void master_unlink_socket(const struct config *cfg)
{
	struct sockaddr_un sun;
	if (!cfg->unix_socket_dir[0])
		return;
	unix_path(cfg, &sun);
	unlink(sun.sun_path);
}

int master_listen(const struct config *cfg, int *fds, int max)
{
	int n = 0;
	if (cfg->listen_addr[0] && !cfg->so_reuseport) {
		n = master_listen_tcp(cfg, fds, max, false, true);
		if (n < 0)
			return -1;
	}
	if (cfg->unix_socket_dir[0] && n < max) {
		struct sockaddr_un sun;
		unix_path(cfg, &sun);
		unlink(sun.sun_path); /* a stale socket from a crashed run */
		fds[n] = listen_on((struct sockaddr *)&sun, sizeof(sun), cfg->listen_backlog,
		                   sun.sun_path, false, true);
		if (fds[n] < 0)
			return -1;
		chmod(sun.sun_path, 0777);
		n++;
	}
	return n;
}
