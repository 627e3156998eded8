/*
 * proto.h — PostgreSQL v3 wire protocol helpers: building the few messages
 * pgshoal writes itself, reading headers, and parsing startup packets. No
 * I/O here, so the framing is unit-tested on its own.
 */
#ifndef PGSHOAL_PROTO_H
#define PGSHOAL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_V3           196608u /* 3.0 */
#define PROTO_CANCEL       80877102u
#define PROTO_SSL          80877103u
#define PROTO_GSSENC       80877104u
#define MAX_STARTUP_PACKET 10000u /* PostgreSQL's limit */

struct pbuf { /* bounded writer; overflow sets err and writes nothing more */
	char *p;
	size_t len, cap;
	int err;
};

void pb_init(struct pbuf *b, char *mem, size_t cap);
void pb_u8(struct pbuf *b, uint8_t v);
void pb_u16(struct pbuf *b, uint16_t v);
void pb_u32(struct pbuf *b, uint32_t v);
void pb_str(struct pbuf *b, const char *s); /* with its NUL */
void pb_bytes(struct pbuf *b, const void *p, size_t n);
size_t pb_begin(struct pbuf *b, char type); /* returns offset of the length field */
void pb_end(struct pbuf *b, size_t lenpos);

static inline uint32_t get_u32(const void *p)
{
	const uint8_t *q = p;
	return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
}

/* ErrorResponse (severity "ERROR" or "FATAL"). */
void proto_error(struct pbuf *b, const char *severity, const char *sqlstate, const char *msg);
void proto_param_status(struct pbuf *b, const char *name, const char *value);
void proto_ready(struct pbuf *b, char status);
void proto_auth_ok(struct pbuf *b);
void proto_backend_key(struct pbuf *b, int32_t pid, int32_t key);
void proto_query(struct pbuf *b, const char *sql);

/* A parsed StartupMessage: pointers into the packet body. */
#define STARTUP_MAX_PARAMS 32
struct startup {
	uint32_t code;
	int nparams;
	const char *names[STARTUP_MAX_PARAMS];
	const char *values[STARTUP_MAX_PARAMS];
	int32_t cancel_pid, cancel_key;
};

/*
 * Parse a startup-phase packet (len includes its own 4 bytes). Returns 0, or
 * -1 with *why set to a client-facing message.
 */
int proto_parse_startup(const char *pkt, uint32_t len, struct startup *st, const char **why);
const char *startup_get(const struct startup *st, const char *name);

/* Find the next message in [p, p+n): type and total length (1 + len field).
 * Returns 1 if a whole header is there, 0 if more bytes are needed, -1 if the
 * length field is impossible (< 4 or > max). */
int proto_header(const char *p, size_t n, char *type, uint32_t *total, uint32_t max);

#endif
