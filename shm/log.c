/*
 * log.c — the logger used by every process: one line per event, with the
 * time, the pid and the process role, to stderr and/or the logfile.
 * Writes with a single write(2) so lines from several processes sharing the
 * file do not interleave.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

unsigned log_debug_mask;
int log_min_level = LOG_INFO;

static int log_fd = -1;
static bool log_stderr = true;
static char log_role[32] = "pgshoal";
static bool log_to_syslog;
static char syslog_ident[64];

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT: return "FATAL";
	case LOG_ERR: return "ERROR";
	case LOG_WARNING: return "WARNING";
	case LOG_NOTICE:
	case LOG_INFO: return "LOG";
	default: return "DEBUG";
	}
}

void log_open(const char *logfile, bool to_stderr)
{
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	if (logfile && logfile[0]) {
		log_fd = open(logfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (log_fd < 0)
			log_error(LOG_ERR, errno, "open(\"%s\") failed", logfile);
	}
	log_stderr = to_stderr || log_fd < 0;
}

static int facility_code(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} map[] = {{"daemon", LOG_DAEMON}, {"user", LOG_USER},     {"local0", LOG_LOCAL0},
	           {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
	           {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},
	           {"local7", LOG_LOCAL7}};
	for (size_t i = 0; i < ARRAY_LEN(map); i++)
		if (strcmp(map[i].name, name) == 0)
			return map[i].code;
	return LOG_DAEMON;
}

void log_syslog(const char *ident, const char *facility)
{
	strlcpy_s(syslog_ident, ident, sizeof(syslog_ident));
	openlog(syslog_ident, LOG_PID | LOG_NDELAY, facility_code(facility));
	log_to_syslog = true;
}

void log_set_role(const char *role)
{
	strlcpy_s(log_role, role, sizeof(log_role));
}

void log_error(int level, int err, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;

	if (level > log_min_level && level != LOG_DEBUG)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n,
	                      ".%03ld [%d] %s %s: ", ts.tv_nsec / 1000000, (int)getpid(), log_role,
	                      level_name(level));
	va_start(ap, fmt);
	if (n < sizeof(line))
		n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (err && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, " (errno: %s)", strerror(err));
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (log_fd >= 0 && write(log_fd, line, n) < 0) {
		/* nothing better to do: the log itself failed */
	}
	if (log_stderr && write(STDERR_FILENO, line, n) < 0) {
	}
	if (log_to_syslog) /* syslog adds its own time and pid */
		syslog(level == LOG_DEBUG ? LOG_DEBUG : level, "%.*s", (int)(n - 1),
		       strchr(line, ']') + 2);
}

uint64_t now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t wall_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

size_t strlcpy_s(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

char *read_text_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		size_t r;
		if (n + 4096 > cap) {
			char *t = realloc(text, cap = cap * 2 + 8192);
			if (!t)
				break;
			text = t;
		}
		r = fread(text + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0) {
			int e = ferror(f) ? EIO : 0;
			fclose(f);
			if (e) {
				free(text);
				errno = e;
				return NULL;
			}
			text[n] = '\0';
			*len = n;
			return text;
		}
	}
	fclose(f);
	free(text);
	errno = ENOMEM;
	return NULL;
}

int sockaddr_describe(const struct sockaddr_storage *sa, char *host, size_t len)
{
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)len);
		return ntohs(in->sin_port);
	}
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)len);
		return ntohs(in6->sin6_port);
	}
	strlcpy_s(host, "unix", len);
	return 0;
}
