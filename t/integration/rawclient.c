/*
 * rawclient.c — hand-made protocol bytes sent over a raw TCP socket, for
 * what libpq will not send: malformed startup packets, garbage, oversized
 * lengths, silent clients.
 *
 * Usage: rawclient MODE HOST PORT [DB [USER]]
 *
 * MODE:
 *   startup    valid StartupMessage; prints "ok" (ReadyForQuery reached) or
 *              the SQLSTATE of the ErrorResponse, e.g. "error 3D000 ..."
 *   garbage    200 bytes of noise instead of a startup packet
 *   biglen     startup packet announcing 0x7ffffff0 bytes
 *   shortlen   startup packet announcing 4 bytes (less than the header)
 *   badproto   protocol version 9.9
 *   nonul      startup parameters not NUL-terminated
 *   partial    the first half of a valid startup packet, then silence
 *   silent     connect and send nothing
 *   ssl        SSLRequest; prints the one-byte answer, then a normal startup
 *   badmsg     valid startup, then a message announcing length 2
 *   hugemsg    valid startup, then a Query announcing 0x7ffffff0 bytes, with
 *              1 MB of it sent
 *   cancel     CancelRequest with a made-up key
 * Except for startup and ssl, it then reads until the server closes the
 * connection (at most 30 s) and prints "closed after N ms" plus the
 * ErrorResponse's SQLSTATE and message if one came. Exit 0 when the server
 * closed the connection (or answered, for startup/ssl), 1 when it did not.
 */
#include "t/integration/itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static int put32(unsigned char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
	return 4;
}

static size_t startup_packet(unsigned char *buf, const char *db, const char *user)
{
	size_t n = 8;
	put32(buf + 4, 196608); /* 3.0 */
	n += sprintf((char *)buf + n, "user") + 1;
	n += sprintf((char *)buf + n, "%s", user) + 1;
	n += sprintf((char *)buf + n, "database") + 1;
	n += sprintf((char *)buf + n, "%s", db) + 1;
	buf[n++] = 0;
	put32(buf, (uint32_t)n);
	return n;
}

static int connect_to(const char *host, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, host, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	if (send(fd, p, n, MSG_NOSIGNAL) != (ssize_t)n)
		printf("(send: %s) ", strerror(errno));
}

/* read one backend message (type + body) with a deadline; -1 on close/timeout */
static int read_msg(int fd, char *type, unsigned char *body, size_t cap, int timeout_ms)
{
	unsigned char hdr[5];
	size_t got = 0, need = 5;
	unsigned char *dst = hdr;
	uint32_t len = 0;
	for (int phase = 0; phase < 2; phase++) {
		while (got < need) {
			struct pollfd pfd = {fd, POLLIN, 0};
			if (poll(&pfd, 1, timeout_ms) <= 0)
				return -2;
			ssize_t r = recv(fd, dst + got, need - got, 0);
			if (r <= 0)
				return -1;
			got += r;
		}
		if (phase == 0) {
			*type = (char)hdr[0];
			memcpy(&len, hdr + 1, 4);
			len = ntohl(len);
			if (len < 4 || len - 4 > cap)
				return -3;
			need = len - 4;
			got = 0;
			dst = body;
		}
	}
	return (int)need;
}

static void print_error(const unsigned char *body, int n)
{
	const char *code = "", *msg = "";
	for (int i = 0; i < n && body[i];) {
		const char *v = (const char *)body + i + 1;
		if (body[i] == 'C')
			code = v;
		if (body[i] == 'M')
			msg = v;
		i += 2 + strlen(v);
	}
	printf("error %s \"%s\"", code, msg);
}

/* read until the server closes; report ErrorResponses seen */
static int until_closed(int fd, double t0)
{
	static unsigned char body[1 << 16];
	char type;
	int n, errors = 0;
	for (;;) {
		double left = 30.0 - (itest_now() - t0);
		n = read_msg(fd, &type, body, sizeof body, left > 0 ? (int)(left * 1000) : 0);
		if (n < 0)
			break;
		if (type == 'E') {
			print_error(body, n);
			printf("; ");
			errors++;
		}
	}
	if (n == -2) {
		printf("NOT closed after %.0f ms\n", (itest_now() - t0) * 1e3);
		return 1;
	}
	printf("closed after %.0f ms%s\n", (itest_now() - t0) * 1e3,
	       n == -3 ? " (bad message length from server)" : "");
	return 0;
}

/* startup until ReadyForQuery: 0, or prints the error and returns 1 */
static int do_startup(int fd, const char *db, const char *user)
{
	static unsigned char buf[1 << 16];
	char type;
	size_t n = startup_packet(buf, db, user);
	send_all(fd, buf, n);
	for (;;) {
		int r = read_msg(fd, &type, buf, sizeof buf, 15000);
		if (r < 0) {
			printf("closed or timed out during startup (%d)\n", r);
			return 1;
		}
		if (type == 'E') {
			print_error(buf, r);
			printf("\n");
			return 1;
		}
		if (type == 'Z')
			return 0;
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s MODE HOST PORT [DB [USER]]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1], *db = argc > 4 ? argv[4] : "postgres";
	const char *user = argc > 5 ? argv[5] : "tuser";
	alarm(60);
	int fd = connect_to(argv[2], atoi(argv[3]));
	double t0 = itest_now();
	unsigned char buf[4096];
	size_t n;

	if (strcmp(mode, "startup") == 0) {
		if (do_startup(fd, db, user) == 0)
			printf("ok\n");
		return 0;
	} else if (strcmp(mode, "ssl") == 0) {
		put32(buf, 8);
		put32(buf + 4, 80877103);
		send_all(fd, buf, 8);
		char ans = '?';
		if (recv(fd, &ans, 1, 0) != 1)
			return 1;
		printf("SSLRequest answer '%c'; ", ans);
		if (do_startup(fd, db, user) != 0)
			return 1;
		printf("startup after it ok\n");
		return ans == 'N' ? 0 : 1;
	} else if (strcmp(mode, "garbage") == 0) {
		for (int i = 0; i < 200; i++)
			buf[i] = (unsigned char)(i * 37 + 11);
		send_all(fd, buf, 200);
	} else if (strcmp(mode, "biglen") == 0) {
		n = startup_packet(buf, db, user);
		put32(buf, 0x7ffffff0);
		send_all(fd, buf, n);
	} else if (strcmp(mode, "shortlen") == 0) {
		put32(buf, 4);
		put32(buf + 4, 196608);
		send_all(fd, buf, 8);
	} else if (strcmp(mode, "badproto") == 0) {
		n = startup_packet(buf, db, user);
		put32(buf + 4, 9 << 16 | 9);
		send_all(fd, buf, n);
	} else if (strcmp(mode, "nonul") == 0) {
		n = startup_packet(buf, db, user);
		memset(buf + 8, 'x', n - 8);
		send_all(fd, buf, n);
	} else if (strcmp(mode, "partial") == 0) {
		n = startup_packet(buf, db, user);
		send_all(fd, buf, n / 2);
	} else if (strcmp(mode, "silent") == 0) {
		/* nothing */
	} else if (strcmp(mode, "badmsg") == 0 || strcmp(mode, "hugemsg") == 0) {
		if (do_startup(fd, db, user) != 0)
			return 1;
		t0 = itest_now();
		if (strcmp(mode, "badmsg") == 0) {
			buf[0] = 'Q';
			put32(buf + 1, 2);
			send_all(fd, buf, 5);
		} else {
			static unsigned char mb[1 << 20];
			memset(mb, ' ', sizeof mb);
			mb[0] = 'Q';
			put32(mb + 1, 0x7ffffff0);
			send_all(fd, mb, sizeof mb);
		}
	} else if (strcmp(mode, "cancel") == 0) {
		put32(buf, 16);
		put32(buf + 4, 80877102);
		put32(buf + 8, 0x00312345);
		put32(buf + 12, 0xdeadbeef);
		send_all(fd, buf, 16);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	printf("%s: ", mode);
	return until_closed(fd, t0);
}
