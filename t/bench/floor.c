/*
 * floor.c — the socket-call floor: CPU cost of 64-byte send()/recv() over
 * loopback TCP and over a unix socket.
 *   calls:    one thread holds both ends and alternates send(a) / recv(b):
 *             the cost of the two calls with nobody to wake up (a pooler
 *             under load: epoll said readable, the peer is busy). The
 *             thread's CPU time is split between send and recv by their
 *             wall-clock shares (nothing blocks, so wall ~ CPU).
 *   pingpong: two processes bounce one message; CPU of both (getrusage) /
 *             (2 * iterations) = one send + one recv with the sleep/wakeup.
 * usage: floor [iterations]   (default 200000)
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double rusage_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void pair(int tcp, int sv[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int one = 1, l;
	if (!tcp) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair");
		return;
	}
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(l, (void *)&a, len) || listen(l, 1) || getsockname(l, (void *)&a, &len))
		die("listen");
	sv[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(sv[0], (void *)&a, len) || (sv[1] = accept(l, NULL, NULL)) < 0)
		die("connect");
	setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

static void recv64(int fd, char *buf)
{
	for (ssize_t got = 0, k; got < 64; got += k)
		if ((k = recv(fd, buf + got, 64 - got, 0)) <= 0)
			die("recv");
}

/* r[0] send, r[1] recv (calls, no wakeups); r[2] send+recv pair (pingpong) */
static void run(int tcp, long n, double r[3])
{
	char buf[64] = {0};
	int sv[2], p[2];
	double ws = 0, wr = 0, t0, t1, t2, c0, mine, child;
	pid_t pid;

	pair(tcp, sv);
	c0 = now_us(CLOCK_THREAD_CPUTIME_ID);
	for (long i = 0; i < n; i++) {
		t0 = now_us(CLOCK_MONOTONIC);
		if (send(sv[0], buf, 64, 0) != 64)
			die("send");
		t1 = now_us(CLOCK_MONOTONIC);
		recv64(sv[1], buf);
		t2 = now_us(CLOCK_MONOTONIC);
		ws += t1 - t0, wr += t2 - t1;
	}
	c0 = (now_us(CLOCK_THREAD_CPUTIME_ID) - c0) / n;
	r[0] = c0 * ws / (ws + wr), r[1] = c0 * wr / (ws + wr);

	if (pipe(p))
		die("pipe");
	if ((pid = fork()) == 0) { /* child: echo every message, report its CPU */
		for (long i = 0; i < n; i++) {
			recv64(sv[1], buf);
			if (send(sv[1], buf, 64, 0) != 64)
				_exit(1);
		}
		child = rusage_us();
		_exit(write(p[1], &child, sizeof(child)) != sizeof(child));
	}
	c0 = rusage_us();
	for (long i = 0; i < n; i++) {
		if (send(sv[0], buf, 64, 0) != 64)
			die("send");
		recv64(sv[0], buf);
	}
	mine = rusage_us() - c0;
	if (read(p[0], &child, sizeof(child)) != sizeof(child))
		die("child");
	waitpid(pid, NULL, 0);
	r[2] = (mine + child) / (2.0 * n);
	close(sv[0]), close(sv[1]), close(p[0]), close(p[1]);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	double t[3], u[3];
	run(1, n, t);
	run(0, n, u);
	printf("socket floor: CPU µs per 64-byte call, %ld iterations\n", n);
	printf("  loopback TCP: send %.2f  recv %.2f  (pingpong with wakeups: send+recv %.2f)\n",
	       t[0], t[1], t[2]);
	printf("  unix socket:  send %.2f  recv %.2f  (pingpong with wakeups: send+recv %.2f)\n",
	       u[0], u[1], u[2]);
	printf("  forwarded txn, client TCP + server unix (2 sends + 2 recvs): %.2f (with wakeups "
	       "%.2f)\n",
	       t[0] + t[1] + u[0] + u[1], t[2] + u[2]);
	printf("FLOOR %.2f %.2f\n", t[0] + t[1] + u[0] + u[1], t[2] + u[2]);
	return 0;
}
