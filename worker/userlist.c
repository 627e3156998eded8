/*
 * userlist.c — the auth_file (userlist.h): parsing PgBouncer's userlist.txt
 * and looking users up. Runs in workers; each keeps a sorted copy, read at
 * its first use and again after each reload (a new configuration
 * generation). A file that cannot be read keeps the previous copy.
 */
#include "worker.h"
#include "userlist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct userlist current;
static uint32_t current_gen;
static bool current_loaded;

/* A quoted field at *p (doubled quotes inside): into dst, *p past it. */
static bool quoted(const char **p, const char *end, char *dst, size_t cap)
{
	const char *s = *p;
	size_t n = 0;

	if (s >= end || *s != '"')
		return false;
	for (s++; s < end; s++) {
		if (*s == '"') {
			if (s + 1 < end && s[1] == '"') {
				s++;
			} else {
				*p = s + 1;
				dst[n] = '\0';
				return true;
			}
		}
		if (*s == '\n' || n + 1 >= cap)
			return false;
		dst[n++] = *s;
	}
	return false;
}

static const char *skip_blanks(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

static bool parse_line(const char *p, const char *end, struct userlist_entry *e)
{
	p = skip_blanks(p, end);
	if (!quoted(&p, end, e->user, sizeof(e->user)) || !e->user[0])
		return false;
	if (p >= end || (*p != ' ' && *p != '\t'))
		return false;
	p = skip_blanks(p, end);
	return quoted(&p, end, e->password, sizeof(e->password));
}

static int by_user(const void *a, const void *b)
{
	return strcmp(((const struct userlist_entry *)a)->user,
	              ((const struct userlist_entry *)b)->user);
}

int userlist_parse(const char *text, size_t len, struct userlist *out, char *err, size_t errlen)
{
	const char *p = text, *end = text + len;
	int bad = 0, line = 0, cap = 16;

	out->n = 0;
	out->e = malloc(sizeof(*out->e) * (size_t)cap);
	if (!out->e)
		return -1;
	if (err && errlen)
		err[0] = '\0';
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
		const char *q = skip_blanks(p, eol);
		line++;
		if (q < eol && *q != ';' && *q != '#') {
			if (out->n == cap) {
				struct userlist_entry *ne =
				    realloc(out->e, sizeof(*ne) * (size_t)cap * 2);
				if (!ne) {
					userlist_free(out);
					return -1;
				}
				out->e = ne;
				cap *= 2;
			}
			if (parse_line(q, eol, &out->e[out->n])) {
				out->n++;
			} else if (bad++ == 0 && err && errlen) {
				snprintf(err, errlen, "line %d: expected \"user\" \"password\"",
				         line);
			}
		}
		p = nl ? nl + 1 : end;
	}
	qsort(out->e, (size_t)out->n, sizeof(*out->e), by_user);
	return bad;
}

void userlist_free(struct userlist *ul)
{
	if (ul->e)
		memset(ul->e, 0, sizeof(*ul->e) * (size_t)ul->n); /* passwords */
	free(ul->e);
	ul->e = NULL;
	ul->n = 0;
}

const char *userlist_lookup(const struct userlist *ul, const char *user)
{
	struct userlist_entry key;
	const struct userlist_entry *e;

	if (!ul->n || strlen(user) >= sizeof(key.user))
		return NULL;
	strlcpy_s(key.user, user, sizeof(key.user));
	e = bsearch(&key, ul->e, (size_t)ul->n, sizeof(*ul->e), by_user);
	return e ? e->password : NULL;
}

int userlist_load(const char *path)
{
	struct userlist ul;
	char err[128];
	size_t len = 0;
	char *text = read_text_file(path, &len);
	int bad;

	if (!text) {
		log_error(LOG_ERR, errno, "could not read auth_file \"%s\"", path);
		return ST_ERROR;
	}
	bad = userlist_parse(text, len, &ul, err, sizeof(err));
	memset(text, 0, len);
	free(text);
	if (bad < 0) {
		log_error(LOG_ERR, 0, "auth_file \"%s\": out of memory", path);
		return ST_ERROR;
	}
	if (bad > 0)
		log_error(LOG_WARNING, 0, "auth_file \"%s\": %d bad line(s) skipped, first at %s",
		          path, bad, err);
	userlist_free(&current);
	current = ul;
	return ST_OK;
}

const char *userlist_password(const char *user)
{
	if (!W.cfg->auth_file[0])
		return NULL;
	if (!current_loaded || current_gen != W.config_gen) {
		current_loaded = true;
		current_gen = W.config_gen;
		userlist_load(W.cfg->auth_file);
	}
	return userlist_lookup(&current, user);
}
