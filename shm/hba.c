/*
 * hba.c — auth_hba_file (hba.h): parsing a pg_hba.conf subset and finding
 * the first record that matches a connection. Pure functions: the master
 * parses the file when it loads or reloads the configuration (a bad file
 * refuses the configuration, "FILE:LINE: message") and publishes its text
 * with the configuration; each worker parses that text for its own copy
 * (worker/auth_hba.c).
 *
 * The syntax is PostgreSQL's: one record per line, a trailing backslash
 * continues it, '#' starts a comment outside quotes, fields are separated
 * by blanks, list entries by commas, and any double quote in a token makes
 * it a plain name (a quoted "all" is a database called all). Every error
 * names its line; nothing after an error is used.
 */
#include "hba.h"
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const hba_method_names[] = {"trust",    "reject", "md5", "scram-sha-256",
                                        "password", "cert",   NULL};

struct token {
	char text[CFG_NAME_LEN];
	bool quoted; /* had a double quote: never a keyword */
	bool comma;  /* a comma followed: the list goes on */
};

struct parser {
	struct hba *h;
	const char *name; /* the file, for messages */
	int line;
	int cap_rules, cap_items;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int bad(struct parser *ps, const char *fmt, ...)
{
	int n = 0;
	va_list ap;

	if (!ps->err || !ps->errlen)
		return -1;
	n = snprintf(ps->err, ps->errlen, "%s:%d: ", ps->name, ps->line);
	if (n < 0 || (size_t)n >= ps->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The next token of the record at *pp: 1 with *t, 0 at the end (or a
 * comment), -1 on an error. */
static int next_token(struct parser *ps, const char **pp, struct token *t)
{
	const char *p = *pp;
	bool in_quote = false;
	size_t n = 0;

	memset(t, 0, sizeof(*t));
	while (blank(*p))
		p++;
	if (!*p || *p == '#')
		return 0;
	for (; *p; p++) {
		if (in_quote) {
			if (*p == '"') {
				in_quote = false;
				continue;
			}
		} else if (blank(*p) || *p == ',' || *p == '#') {
			break;
		} else if (*p == '"') {
			in_quote = t->quoted = true;
			continue;
		}
		if (n + 1 >= sizeof(t->text))
			return bad(ps, "token too long (max %zu bytes)", sizeof(t->text) - 1);
		t->text[n++] = *p;
	}
	if (in_quote)
		return bad(ps, "unterminated quoted string");
	if (*p == ',') {
		t->comma = true;
		p++;
	}
	*pp = p;
	return 1;
}

/* A field that is one word (connection type, address, mask, method). */
static int next_word(struct parser *ps, const char **pp, struct token *t, const char *what)
{
	int r = next_token(ps, pp, t);
	if (r == 0)
		return bad(ps, "end of line before %s", what);
	if (r > 0 && t->comma)
		return bad(ps, "%s cannot be a list", what);
	return r < 0 ? -1 : 0;
}

/* Room for element n of the array at *arr (capacity *cap, each size
 * bytes): its zeroed address, or NULL without memory. */
static void *grow(void **arr, int n, int *cap, size_t size)
{
	if (n == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		void *p = realloc(*arr, size * (size_t)ncap);
		if (!p)
			return NULL;
		*arr = p;
		*cap = ncap;
	}
	return memset((char *)*arr + size * (size_t)n, 0, size);
}

static struct hba_item *new_item(struct parser *ps)
{
	void *arr = ps->h->items;
	struct hba_item *it = grow(&arr, ps->h->nitems, &ps->cap_items, sizeof(*it));

	ps->h->items = arr;
	if (it)
		ps->h->nitems++;
	return it;
}

/* One list entry of the database (is_db) or user field. */
static int list_item(struct parser *ps, const struct token *t, bool is_db)
{
	struct hba_item *it;
	int kind = HBA_NAME;

	if (!t->quoted && t->text[0] == '@')
		return bad(ps, "\"@file\" inclusion is not supported");
	if (!t->quoted && t->text[0] == '+' && !is_db)
		return bad(ps, "group membership (\"+role\") is not supported");
	if (!t->quoted && strcmp(t->text, "all") == 0)
		kind = HBA_ALL;
	else if (!t->quoted && is_db && strcmp(t->text, "sameuser") == 0)
		kind = HBA_SAMEUSER;
	else if (!t->quoted && is_db && strcmp(t->text, "replication") == 0)
		kind = HBA_REPLICATION;
	else if (!t->quoted && is_db &&
	         (!strcmp(t->text, "samerole") || !strcmp(t->text, "samegroup")))
		return bad(ps, "\"%s\" is not supported", t->text);
	else if (!t->text[0])
		return bad(ps, "empty %s name", is_db ? "database" : "user");
	it = new_item(ps);
	if (!it)
		return bad(ps, "out of memory");
	it->kind = kind;
	strlcpy_s(it->name, t->text, sizeof(it->name));
	return 0;
}

/* A comma-separated list field: entries appended to items. */
static int list_field(struct parser *ps, const char **pp, bool is_db, int *first, int *n)
{
	const char *what = is_db ? "database" : "user";
	struct token t;
	int r;

	*first = ps->h->nitems;
	do {
		r = next_token(ps, pp, &t);
		if (r == 0)
			return bad(ps, "end of line before %s", what);
		if (r < 0 || list_item(ps, &t, is_db) < 0)
			return -1;
	} while (t.comma);
	*n = ps->h->nitems - *first;
	return 0;
}

static int parse_type(struct parser *ps, const struct token *t, struct hba_rule *rule)
{
	static const char *const names[] = {"local", "host", "hostssl", "hostnossl"};

	for (int i = 0; i < (int)ARRAY_LEN(names); i++)
		if (!t->quoted && strcmp(t->text, names[i]) == 0) {
			rule->type = i;
			return 0;
		}
	if (!strcmp(t->text, "hostgssenc") || !strcmp(t->text, "hostnogssenc") ||
	    !strncmp(t->text, "include", 7))
		return bad(ps, "\"%s\" is not supported", t->text);
	return bad(ps, "invalid connection type \"%s\"", t->text);
}

/* Bytes of an address of family af in text, or -1. */
static int parse_ip(const char *text, int af, uint8_t *out)
{
	return inet_pton(af, text, out) == 1 ? 0 : -1;
}

static int family_of(const char *text, uint8_t *out)
{
	if (parse_ip(text, AF_INET, out) == 0)
		return AF_INET;
	if (parse_ip(text, AF_INET6, out) == 0)
		return AF_INET6;
	return 0;
}

static int addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* "a.b.c.d/n", "::1/128", or an address whose mask is the next field. */
static int parse_address(struct parser *ps, const char **pp, const struct token *t,
                         struct hba_rule *rule)
{
	char text[CFG_NAME_LEN], *slash;
	struct token m;
	long bits;
	char *end;

	if (!t->quoted && strcmp(t->text, "all") == 0)
		return 0; /* family 0: any address */
	if (!t->quoted && (!strcmp(t->text, "samehost") || !strcmp(t->text, "samenet")))
		return bad(ps, "\"%s\" is not supported", t->text);
	strlcpy_s(text, t->text, sizeof(text));
	slash = strchr(text, '/');
	if (slash)
		*slash = '\0';
	rule->family = family_of(text, rule->addr);
	if (!rule->family)
		return bad(ps, "invalid IP address \"%s\" (host names are not supported)", text);
	if (slash) {
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || bits < 0 ||
		    bits > addr_len(rule->family) * 8)
			return bad(ps, "invalid CIDR mask in address \"%s\"", t->text);
		for (int i = 0; i < addr_len(rule->family); i++, bits -= 8)
			rule->mask[i] = bits >= 8   ? 0xff
			                : bits <= 0 ? 0
			                            : (uint8_t)(0xff << (8 - bits));
	} else {
		if (next_word(ps, pp, &m, "IP mask") < 0)
			return -1;
		if (parse_ip(m.text, rule->family, rule->mask) < 0)
			return bad(ps, "invalid IP mask \"%s\" (or a CIDR mask missing in \"%s\")",
			           m.text, t->text);
	}
	for (int i = 0; i < addr_len(rule->family); i++)
		rule->addr[i] &= rule->mask[i];
	return 0;
}

static int parse_method(struct parser *ps, const struct token *t, struct hba_rule *rule)
{
	for (int i = 0; hba_method_names[i]; i++)
		if (strcmp(t->text, hba_method_names[i]) == 0) {
			rule->method = i;
			if (rule->method == HBA_CERT && rule->type != HBA_HOSTSSL)
				return bad(
				    ps, "cert authentication is only supported on hostssl records");
			return 0;
		}
	return bad(ps, "authentication method \"%s\" is not supported", t->text);
}

/* A new rule at the end; counted once its line parsed. */
static struct hba_rule *new_rule(struct parser *ps)
{
	void *arr = ps->h->rules;
	struct hba_rule *r = grow(&arr, ps->h->nrules, &ps->cap_rules, sizeof(*r));

	ps->h->rules = arr;
	return r;
}

/* One logical line (continuations joined). */
static int parse_record(struct parser *ps, const char *p)
{
	struct hba_rule *rule;
	struct token t;
	int r = next_token(ps, &p, &t);

	if (r <= 0)
		return r; /* blank or comment */
	rule = new_rule(ps);
	if (!rule)
		return bad(ps, "out of memory");
	rule->line = ps->line;
	if (t.comma)
		return bad(ps, "connection type cannot be a list");
	if (parse_type(ps, &t, rule) < 0 ||
	    list_field(ps, &p, true, &rule->db_first, &rule->ndb) < 0 ||
	    list_field(ps, &p, false, &rule->user_first, &rule->nuser) < 0)
		return -1;
	if (rule->type != HBA_LOCAL &&
	    (next_word(ps, &p, &t, "IP address") < 0 || parse_address(ps, &p, &t, rule) < 0))
		return -1;
	if (next_word(ps, &p, &t, "authentication method") < 0 || parse_method(ps, &t, rule) < 0)
		return -1;
	r = next_token(ps, &p, &t);
	if (r > 0)
		return bad(ps, "authentication options (\"%s\") are not supported", t.text);
	if (r < 0)
		return -1;
	ps->h->nrules++;
	return 0;
}

void hba_free(struct hba *h)
{
	free(h->rules);
	free(h->items);
	memset(h, 0, sizeof(*h));
}

int hba_parse(const char *text, size_t len, const char *name, struct hba *out, char *err,
              size_t errlen)
{
	struct parser ps = {.h = out, .name = name, .err = err, .errlen = errlen};
	const char *p = text, *end = text + len;
	char *rec = malloc(len + 1);
	size_t n = 0;
	int next_line = 1, rc = 0;
	bool cont = false; /* the previous line ended in a backslash */

	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (!rec)
		return bad(&ps, "out of memory");
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
		size_t l = (size_t)(eol - p);

		if (!cont)
			ps.line = next_line; /* a record is named by its first line */
		next_line++;
		if (l && p[l - 1] == '\r')
			l--;
		memcpy(rec + n, p, l);
		n += l;
		p = nl ? nl + 1 : end;
		cont = n && rec[n - 1] == '\\' && p < end;
		if (cont) {
			n--; /* continued on the next line */
			continue;
		}
		rec[n] = '\0';
		if (memchr(rec, '\0', n))
			rc = bad(&ps, "NUL byte in the file");
		else
			rc = parse_record(&ps, rec);
		n = 0;
	}
	free(rec);
	if (rc < 0)
		hba_free(out);
	return rc < 0 ? -1 : 0;
}

static bool addr_match(const struct hba_rule *r, const struct sockaddr *sa)
{
	const uint8_t *a;

	if (r->family == 0)
		return true;
	if (!sa || sa->sa_family != r->family)
		return false; /* an IPv4 record matches IPv4 clients only, as in PostgreSQL */
	a = r->family == AF_INET
	        ? (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
	        : (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	for (int i = 0; i < addr_len(r->family); i++)
		if ((a[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

/* Database entries (is_db) or user entries of rule r. */
static bool list_match(const struct hba *h, int first, int n, const struct hba_conn *c, bool is_db)
{
	const char *want = is_db ? c->db : c->user;

	for (int i = first; i < first + n; i++) {
		const struct hba_item *it = &h->items[i];
		switch (it->kind) {
		case HBA_ALL: return true;
		case HBA_SAMEUSER:
			if (strcmp(c->db, c->user) == 0)
				return true;
			break;
		case HBA_REPLICATION: break; /* pgshoal refuses replication connections */
		case HBA_NAME:
			if (strcmp(it->name, want) == 0)
				return true;
			break;
		default: abort();
		}
	}
	return false;
}

static bool type_match(const struct hba_rule *r, const struct hba_conn *c)
{
	switch (r->type) {
	case HBA_LOCAL: return c->local;
	case HBA_HOST: return !c->local;
	case HBA_HOSTSSL: return !c->local && c->tls;
	case HBA_HOSTNOSSL: return !c->local && !c->tls;
	default: abort();
	}
}

const struct hba_rule *hba_match(const struct hba *h, const struct hba_conn *conn)
{
	for (int i = 0; i < h->nrules; i++) {
		const struct hba_rule *r = &h->rules[i];
		if (type_match(r, conn) && (conn->local || addr_match(r, conn->addr)) &&
		    list_match(h, r->db_first, r->ndb, conn, true) &&
		    list_match(h, r->user_first, r->nuser, conn, false))
			return r;
	}
	return NULL;
}
