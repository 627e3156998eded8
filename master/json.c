/*
 * json.c — reads one member of a flat JSON object, enough for the payload
 * of pg_auto_failover's NOTIFY state ({"type": "state", "host": "…",
 * "port": 5432, …}). Runs in the master (monitor.c). Strings and integers
 * only; nested values are skipped. Bounded: the text is read up to
 * JSON_MAX_LEN bytes (a NOTIFY payload is under 8000) and never past its
 * end, nesting up to JSON_MAX_DEPTH; anything malformed is "not found".
 */
#include "master.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_LEN   8192
#define JSON_MAX_DEPTH 16

struct cursor {
	const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int hex_value(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char h = p[i];
		v <<= 4;
		if (h >= '0' && h <= '9')
			v |= h - '0';
		else if (h >= 'a' && h <= 'f')
			v |= h - 'a' + 10;
		else if (h >= 'A' && h <= 'F')
			v |= h - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* One escaped character after the backslash; '\0' if malformed. Non-ASCII
 * \uXXXX becomes '?': host and state names are ASCII. */
static char unescape(struct cursor *c)
{
	char e;
	if (c->p >= c->end)
		return '\0';
	e = *c->p++;
	switch (e) {
	case '"':
	case '\\':
	case '/': return e;
	case 'b': return '\b';
	case 'f': return '\f';
	case 'n': return '\n';
	case 'r': return '\r';
	case 't': return '\t';
	case 'u': {
		int v = c->end - c->p >= 4 ? hex_value(c->p) : -1;
		if (v <= 0)
			return '\0';
		c->p += 4;
		return v < 0x80 ? (char)v : '?';
	}
	default: return '\0';
	}
}

/* A string at the cursor, unescaped into OUT (NULL: skip it). False if
 * malformed, or longer than LEN - 1. */
static bool read_string(struct cursor *c, char *out, size_t len)
{
	size_t n = 0;
	if (c->p >= c->end || *c->p != '"')
		return false;
	c->p++;
	while (c->p < c->end && *c->p != '"') {
		char ch = *c->p++;
		if ((unsigned char)ch < 0x20)
			return false;
		if (ch == '\\' && (ch = unescape(c)) == '\0')
			return false;
		if (out && n + 1 >= len)
			return false;
		if (out)
			out[n++] = ch;
	}
	if (c->p >= c->end)
		return false;
	c->p++;
	if (out)
		out[n] = '\0';
	return true;
}

/* Skip a value of any kind: a string, or everything up to the next ',' or
 * closing bracket at this level (numbers, literals, nested values). */
static bool skip_value(struct cursor *c)
{
	int depth = 0;
	while (c->p < c->end) {
		char ch = *c->p;
		if (ch == '"') {
			if (!read_string(c, NULL, 0))
				return false;
			continue;
		}
		if ((ch == ',' || ch == '}' || ch == ']') && depth == 0)
			return true;
		if (ch == '{' || ch == '[') {
			if (++depth > JSON_MAX_DEPTH)
				return false;
		} else if (ch == '}' || ch == ']') {
			depth--;
		}
		c->p++;
	}
	return false;
}

/* Position the cursor on the value of top-level member KEY. */
static bool find_member(const char *json, const char *key, struct cursor *c)
{
	size_t n = strnlen(json, JSON_MAX_LEN);
	char name[64];

	if (n == JSON_MAX_LEN)
		return false;
	c->p = json;
	c->end = json + n;
	skip_ws(c);
	if (c->p >= c->end || *c->p++ != '{')
		return false;
	for (;;) {
		bool fits;
		skip_ws(c);
		if (c->p < c->end && *c->p == '"') {
			const char *start = c->p;
			fits = read_string(c, name, sizeof(name));
			if (!fits) { /* a name too long to be KEY: skip it */
				c->p = start;
				if (!read_string(c, NULL, 0))
					return false;
			}
		} else {
			return false;
		}
		skip_ws(c);
		if (c->p >= c->end || *c->p++ != ':')
			return false;
		skip_ws(c);
		if (fits && strcmp(name, key) == 0)
			return true;
		if (!skip_value(c))
			return false;
		skip_ws(c);
		if (c->p >= c->end || *c->p++ != ',')
			return false; /* '}' (KEY absent) or malformed */
	}
}

int master_json_string(const char *json, const char *key, char *out, size_t len)
{
	struct cursor c;
	if (!find_member(json, key, &c) || !read_string(&c, out, len))
		return ST_ERROR;
	return ST_OK;
}

int master_json_int(const char *json, const char *key, long *out)
{
	struct cursor c;
	char buf[24], *end;
	size_t n = 0;
	long v;

	if (!find_member(json, key, &c))
		return ST_ERROR;
	while (c.p < c.end && n + 1 < sizeof(buf) && (*c.p == '-' || (*c.p >= '0' && *c.p <= '9')))
		buf[n++] = *c.p++;
	buf[n] = '\0';
	skip_ws(&c);
	if (n == 0 || c.p >= c.end || (*c.p != ',' && *c.p != '}'))
		return ST_ERROR; /* empty, a fraction, an exponent, or too long */
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || *end)
		return ST_ERROR;
	*out = v;
	return ST_OK;
}
