/*
 * common.h — status codes, logging and small helpers shared by the master,
 * the workers and the tests. Lives in shm/ because both process kinds build
 * on it (STYLE.md: shm/ includes neither master/ nor worker/).
 */
#ifndef PGSHOAL_COMMON_H
#define PGSHOAL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

/* Return codes for non-blocking steps. */
#define ST_OK    0
#define ST_ERROR (-1)
#define ST_AGAIN (-2)
#define ST_DONE  (-3)

#define MUST_CHECK   __attribute__((warn_unused_result))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED       __attribute__((unused))

#define PGSHOAL_VERSION "0.1.0"

/* Exit codes: 0 clean, 1 error (respawn a worker), 2 fatal config error. */
#define EXIT_RESPAWN 1
#define EXIT_FATAL   2

/* Debug categories: a bitmask, one branch when off. */
#define DBG_STATE  0x01
#define DBG_POOL   0x02
#define DBG_PROTO  0x04
#define DBG_BROKER 0x08
extern unsigned log_debug_mask;
extern int log_min_level;

void log_open(const char *logfile, bool to_stderr);
void log_set_role(const char *role);
/* Also send lines to syslog(3) with this ident and facility name. */
void log_syslog(const char *ident, const char *facility);
/* err: an errno to append as "(errno: strerror)", or 0. */
void log_error(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define log_debug(cat, ...)                                                                        \
	do {                                                                                       \
		if (__builtin_expect(log_debug_mask & (cat), 0))                                   \
			log_error(LOG_DEBUG, 0, __VA_ARGS__);                                      \
	} while (0)

/* Monotonic clock in microseconds. */
uint64_t now_usec(void);
/* Wall clock in microseconds since the epoch. */
uint64_t wall_usec(void);

size_t strlcpy_s(char *dst, const char *src, size_t size);

/* A whole file in a malloc'd buffer (NUL-terminated, *len without the NUL);
 * NULL with errno set. */
char *read_text_file(const char *path, size_t *len);

struct sockaddr_storage;
/* An address as text ("unix" for a unix socket); returns the port, 0 for unix. */
int sockaddr_describe(const struct sockaddr_storage *sa, char *host, size_t len);

#endif
