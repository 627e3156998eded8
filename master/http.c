/*
 * http.c — the master's small HTTP server for metrics_listen: GET (or HEAD)
 * /metrics (metrics.c) and /health (health.c), in the master's own epoll
 * loop. Off unless metrics_listen is set; bound before privileges drop.
 *
 * Invariants: nothing here blocks or waits — sockets are non-blocking and
 * every answer is computed at once from shared memory. What a client may
 * cost is bounded: HTTP_MAX_CONNS connections at a time (one more gets a
 * 503 and is closed), a request of at most HTTP_MAX_REQUEST bytes (431
 * beyond), and HTTP_TIMEOUT_USEC from accept to close, whatever the client
 * does (checked on the master's 100 ms tick). One request per connection
 * (Connection: close); after the answer the connection is half-closed and
 * drained, so that a request body we did not read cannot reset the answer.
 * Workers never see these sockets: the child closes them after fork.
 */
#include "master.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_MAX_CONNS    8
#define HTTP_MAX_REQUEST  8192
#define HTTP_MAX_REPLY    (16u << 20)
#define HTTP_TIMEOUT_USEC 5000000ull

enum http_state { HC_FREE, HC_READ, HC_WRITE, HC_DRAIN };

struct http_conn {
	int fd;
	enum http_state state;
	uint64_t deadline;
	size_t got;      /* request bytes in req */
	struct obuf out; /* the whole answer */
	size_t sent;
	char req[HTTP_MAX_REQUEST + 1];
};

static int listen_fd = -1;
static struct http_conn *conns; /* HTTP_MAX_CONNS, allocated when listening */

/* ---------------------------------------------------------- out buffer */

void obuf_printf(struct obuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;
		if (b->oom)
			return;
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		if (obuf_grow(b, (size_t)n + 1) != ST_OK)
			return;
	}
}

int obuf_grow(struct obuf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 16384;
	char *p;

	while (cap - b->len < more)
		cap *= 2;
	p = cap <= HTTP_MAX_REPLY ? realloc(b->p, cap) : NULL;
	if (!p) {
		b->oom = true;
		return ST_ERROR;
	}
	b->p = p;
	b->cap = cap;
	return ST_OK;
}

static void obuf_free(struct obuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------- sockets */

static uint64_t tag_of(int i)
{
	return (uint64_t)(int64_t)(MASTER_TAG_HTTP - 1 - i);
}

int master_http_listen(const struct config *cfg)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res;
	char host[CFG_HOST_LEN], port[16];
	int p, rc, one = 1;

	if (!cfg->metrics_listen[0])
		return ST_OK;
	if (config_split_hostport(cfg->metrics_listen, host, sizeof(host), &p) != 0)
		return ST_ERROR; /* config_load checked it */
	snprintf(port, sizeof(port), "%d", p);
	rc = getaddrinfo(strcmp(host, "*") == 0 || !host[0] ? NULL : host, port, &hints, &res);
	if (rc != 0) {
		log_error(LOG_CRIT, 0, "metrics_listen \"%s\": %s", cfg->metrics_listen,
		          gai_strerror(rc));
		return ST_ERROR;
	}
	listen_fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd >= 0)
		setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (listen_fd < 0 || bind(listen_fd, res->ai_addr, res->ai_addrlen) < 0 ||
	    listen(listen_fd, 16) < 0) {
		log_error(LOG_CRIT, errno, "metrics_listen \"%s\": socket()/bind()/listen() failed",
		          cfg->metrics_listen);
		freeaddrinfo(res);
		return ST_ERROR;
	}
	freeaddrinfo(res);
	conns = calloc(HTTP_MAX_CONNS, sizeof(*conns));
	if (!conns)
		return ST_ERROR;
	for (int i = 0; i < HTTP_MAX_CONNS; i++)
		conns[i].fd = -1;
	log_error(LOG_INFO, 0, "serving /metrics and /health on %s", cfg->metrics_listen);
	return ST_OK;
}

void master_http_start(void)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(int64_t)MASTER_TAG_HTTP};

	if (listen_fd >= 0 && epoll_ctl(M.epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
		log_error(LOG_ERR, errno, "epoll_ctl(ADD) of the metrics socket failed");
}

void master_http_close_in_child(void)
{
	if (listen_fd >= 0)
		close(listen_fd);
	for (int i = 0; conns && i < HTTP_MAX_CONNS; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
}

static void conn_close(struct http_conn *c)
{
	close(c->fd); /* also takes it out of the epoll set */
	c->fd = -1;
	c->state = HC_FREE;
	obuf_free(&c->out);
}

static void want(struct http_conn *c, int i, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag_of(i)};
	if (epoll_ctl(M.epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		log_error(LOG_ERR, errno, "epoll_ctl(MOD) of a metrics connection failed");
}

/* ------------------------------------------------------------ answers */

static void on_write(struct http_conn *c, int i);

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* Headers before the body already in c->out (it is moved behind them). */
static void answer(struct http_conn *c, int i, int status, const char *type, bool head)
{
	struct obuf body = c->out;
	char hdr[256];
	int n;

	if (body.oom) { /* the body could not be built: say so instead */
		obuf_free(&body);
		status = 500;
		type = "text/plain; charset=utf-8";
		obuf_printf(&body, "the answer would exceed %u MB\n", HTTP_MAX_REPLY >> 20);
	}
	n = snprintf(hdr, sizeof(hdr),
	             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: "
	             "close\r\n\r\n",
	             status, reason(status), type, body.len,
	             status == 405 ? "Allow: GET, HEAD\r\n" : "");
	memset(&c->out, 0, sizeof(c->out));
	if (obuf_grow(&c->out, (size_t)n + (head ? 0 : body.len)) == ST_OK) {
		memcpy(c->out.p, hdr, (size_t)n);
		if (!head && body.len)
			memcpy(c->out.p + n, body.p, body.len);
		c->out.len = (size_t)n + (head ? 0 : body.len);
	}
	obuf_free(&body);
	c->sent = 0;
	c->state = HC_WRITE;
	on_write(c, i); /* most answers fit the socket buffer at once */
}

static void text_answer(struct http_conn *c, int i, int status, const char *msg)
{
	obuf_printf(&c->out, "%s\n", msg);
	answer(c, i, status, "text/plain; charset=utf-8", false);
}

/* The request line "METHOD TARGET HTTP/1.x"; headers are not needed. */
static void handle(struct http_conn *c, int i)
{
	char *line = c->req, *method, *target, *version, *save = NULL, *q;
	bool head;

	line[strcspn(line, "\r\n")] = '\0';
	method = strtok_r(line, " ", &save);
	target = strtok_r(NULL, " ", &save);
	version = strtok_r(NULL, " ", &save);
	if (!method || !target || !version || strtok_r(NULL, " ", &save) || target[0] != '/' ||
	    strncmp(version, "HTTP/1.", 7) != 0)
		return text_answer(c, i, 400, "bad request");
	head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0)
		return text_answer(c, i, 405, "only GET and HEAD");
	if ((q = strchr(target, '?')))
		*q = '\0';
	if (strcmp(target, "/metrics") == 0) {
		master_metrics_render(&c->out);
		answer(c, i, 200, "text/plain; version=0.0.4; charset=utf-8", head);
	} else if (strcmp(target, "/health") == 0) {
		int status = master_health(&c->out);
		answer(c, i, status, "text/plain; charset=utf-8", head);
	} else {
		text_answer(c, i, 404, "not found: try /metrics or /health");
	}
}

/* ---------------------------------------------------------------- I/O */

static void on_accept(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), i;
		struct epoll_event ev = {.events = EPOLLIN};

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_error(LOG_WARNING, errno,
				          "accept4() on the metrics socket failed");
			return;
		}
		for (i = 0; i < HTTP_MAX_CONNS && conns[i].state != HC_FREE; i++)
			;
		if (i == HTTP_MAX_CONNS) { /* full: one try at a short answer, then go */
			static const char busy[] =
			    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n"
			    "Connection: close\r\n\r\nbusy\n";
			(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		ev.data.u64 = tag_of(i);
		if (epoll_ctl(M.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_error(LOG_ERR, errno, "epoll_ctl(ADD) of a metrics connection failed");
			close(fd);
			continue;
		}
		conns[i] = (struct http_conn){
		    .fd = fd, .state = HC_READ, .deadline = now_usec() + HTTP_TIMEOUT_USEC};
	}
}

/* A whole header block: "\r\n\r\n" (or bare "\n\n", which curl never sends
 * but people typing into nc do). */
static bool request_complete(const struct http_conn *c)
{
	return strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n");
}

static void on_read(struct http_conn *c, int i)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->req + c->got, HTTP_MAX_REQUEST - c->got, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			return conn_close(c); /* gone (or failed) before asking */
		c->got += (size_t)n;
		c->req[c->got] = '\0';
		if (memchr(c->req, '\0', c->got)) /* NUL bytes: not HTTP */
			return text_answer(c, i, 400, "bad request");
		if (request_complete(c))
			return handle(c, i);
		if (c->got == HTTP_MAX_REQUEST)
			return text_answer(c, i, 431, "request too large");
	}
}

static void on_write(struct http_conn *c, int i)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return want(c, i, EPOLLOUT); /* the rest when the socket drains */
		if (n <= 0)
			return conn_close(c);
		c->sent += (size_t)n;
	}
	obuf_free(&c->out);
	shutdown(c->fd, SHUT_WR);
	c->state = HC_DRAIN;
	want(c, i, EPOLLIN);
}

/* After the answer: read what the client still sends until it closes
 * (a few reads per event, so that a client that keeps sending cannot keep
 * the master here; the deadline ends it). */
static void on_drain(struct http_conn *c)
{
	char sink[4096];
	ssize_t n = 1;

	for (int k = 0; k < 4 && n > 0; k++)
		n = recv(c->fd, sink, sizeof(sink), 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
		conn_close(c);
}

void master_http_on_event(int tag, uint32_t events)
{
	int i = MASTER_TAG_HTTP - 1 - tag;
	struct http_conn *c;

	if (tag == MASTER_TAG_HTTP)
		return on_accept();
	if (!conns || i < 0 || i >= HTTP_MAX_CONNS || conns[i].state == HC_FREE)
		return;
	c = &conns[i];
	switch (c->state) {
	case HC_READ: on_read(c, i); break;
	case HC_WRITE:
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_write(c, i);
		break;
	case HC_DRAIN: on_drain(c); break;
	default: log_error(LOG_CRIT, 0, "bad metrics connection state %d", c->state); abort();
	}
}

/* On the master's tick: a connection past its time is closed, whatever
 * it is doing (a slow request, a slow reader, a client that never closes). */
void master_http_tick(void)
{
	uint64_t now = now_usec();

	for (int i = 0; conns && i < HTTP_MAX_CONNS; i++) {
		if (conns[i].state == HC_FREE || now < conns[i].deadline)
			continue;
		if (conns[i].state != HC_DRAIN)
			log_error(LOG_INFO, 0, "metrics: closing an HTTP client after %llu s",
			          HTTP_TIMEOUT_USEC / 1000000);
		conn_close(&conns[i]);
	}
}
