/*
 * proto.c — building and parsing PostgreSQL v3 protocol messages
 * (proto.h). Pure functions over memory, used by the worker's client and
 * server state machines and by the unit tests.
 */
#include "proto.h"

#include <string.h>

void pb_init(struct pbuf *b, char *mem, size_t cap)
{
	b->p = mem;
	b->len = 0;
	b->cap = cap;
	b->err = 0;
}

void pb_bytes(struct pbuf *b, const void *p, size_t n)
{
	if (b->err || n > b->cap - b->len) {
		b->err = 1;
		return;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void pb_u8(struct pbuf *b, uint8_t v)
{
	pb_bytes(b, &v, 1);
}

void pb_u16(struct pbuf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	pb_bytes(b, x, 2);
}

void pb_u32(struct pbuf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	pb_bytes(b, x, 4);
}

void pb_str(struct pbuf *b, const char *s)
{
	pb_bytes(b, s, strlen(s) + 1);
}

size_t pb_begin(struct pbuf *b, char type)
{
	size_t pos;
	pb_u8(b, (uint8_t)type);
	pos = b->len;
	pb_u32(b, 0);
	return pos;
}

void pb_end(struct pbuf *b, size_t lenpos)
{
	uint32_t n = (uint32_t)(b->len - lenpos);
	if (b->err)
		return;
	b->p[lenpos] = (char)(n >> 24);
	b->p[lenpos + 1] = (char)(n >> 16);
	b->p[lenpos + 2] = (char)(n >> 8);
	b->p[lenpos + 3] = (char)n;
}

void proto_error(struct pbuf *b, const char *severity, const char *sqlstate, const char *msg)
{
	size_t pos = pb_begin(b, 'E');
	pb_u8(b, 'S');
	pb_str(b, severity);
	pb_u8(b, 'V');
	pb_str(b, severity);
	pb_u8(b, 'C');
	pb_str(b, sqlstate);
	pb_u8(b, 'M');
	pb_str(b, msg);
	pb_u8(b, 0);
	pb_end(b, pos);
}

void proto_param_status(struct pbuf *b, const char *name, const char *value)
{
	size_t pos = pb_begin(b, 'S');
	pb_str(b, name);
	pb_str(b, value);
	pb_end(b, pos);
}

void proto_ready(struct pbuf *b, char status)
{
	size_t pos = pb_begin(b, 'Z');
	pb_u8(b, (uint8_t)status);
	pb_end(b, pos);
}

void proto_auth_ok(struct pbuf *b)
{
	size_t pos = pb_begin(b, 'R');
	pb_u32(b, 0);
	pb_end(b, pos);
}

void proto_backend_key(struct pbuf *b, int32_t pid, int32_t key)
{
	size_t pos = pb_begin(b, 'K');
	pb_u32(b, (uint32_t)pid);
	pb_u32(b, (uint32_t)key);
	pb_end(b, pos);
}

void proto_query(struct pbuf *b, const char *sql)
{
	size_t pos = pb_begin(b, 'Q');
	pb_str(b, sql);
	pb_end(b, pos);
}

static int parse_params(const char *p, const char *end, struct startup *st, const char **why)
{
	while (p < end && *p) {
		const char *name = p, *value;
		const char *z = memchr(p, 0, (size_t)(end - p));
		if (!z || z + 1 >= end)
			goto bad;
		value = z + 1;
		z = memchr(value, 0, (size_t)(end - value));
		if (!z)
			goto bad;
		if (st->nparams == STARTUP_MAX_PARAMS) {
			*why = "too many parameters in startup packet";
			return -1;
		}
		st->names[st->nparams] = name;
		st->values[st->nparams++] = value;
		p = z + 1;
	}
	if (p != end - 1 || *p != 0)
		goto bad;
	return 0;
bad:
	*why = "invalid startup packet layout: expected terminator as last byte";
	return -1;
}

int proto_parse_startup(const char *pkt, uint32_t len, struct startup *st, const char **why)
{
	memset(st, 0, sizeof(*st));
	if (len < 8 || len > MAX_STARTUP_PACKET) {
		*why = "invalid length of startup packet";
		return -1;
	}
	st->code = get_u32(pkt + 4);
	switch (st->code) {
	case PROTO_SSL:
	case PROTO_GSSENC: return len == 8 ? 0 : (*why = "invalid length of startup packet", -1);
	case PROTO_CANCEL:
		if (len != 16) {
			*why = "invalid length of cancel request";
			return -1;
		}
		st->cancel_pid = (int32_t)get_u32(pkt + 8);
		st->cancel_key = (int32_t)get_u32(pkt + 12);
		return 0;
	default: break;
	}
	if ((st->code >> 16) != 3) {
		*why = "unsupported frontend protocol";
		return -1;
	}
	return parse_params(pkt + 8, pkt + len, st, why);
}

const char *startup_get(const struct startup *st, const char *name)
{
	for (int i = 0; i < st->nparams; i++)
		if (strcmp(st->names[i], name) == 0)
			return st->values[i];
	return NULL;
}

int proto_header(const char *p, size_t n, char *type, uint32_t *total, uint32_t max)
{
	uint32_t len;
	if (n < 5)
		return 0;
	*type = p[0];
	len = get_u32(p + 1);
	if (len < 4 || len > max)
		return -1;
	*total = len + 1;
	return 1;
}
