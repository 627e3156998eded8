/*
 * params.c — the server parameters a client expects (client_encoding,
 * DateStyle, TimeZone, standard_conforming_strings, application_name,
 * IntervalStyle). A server slot remembers what its server last reported (in
 * shared memory, since the slot moves between workers); when a client is
 * given a server whose values differ, SETs bring it in line first.
 */
#include "worker.h"

#include <stdio.h>
#include <string.h>

/* Append "SET name = 'value';" with the value's quotes doubled. */
static int append_set(char *out, size_t cap, size_t *len, const char *name, const char *value)
{
	int n = snprintf(out + *len, cap - *len, "SET %s = '", name);
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	for (const char *p = value; *p; p++) {
		if (*len + 2 >= cap)
			return -1;
		if (*p == '\'')
			out[(*len)++] = '\'';
		out[(*len)++] = *p;
	}
	n = snprintf(out + *len, cap - *len, "';");
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	return 0;
}

int params_build_sync(const struct client *c, const struct server *sv, char *out, size_t cap)
{
	const struct shm_slot *sl = shm_slot(W.shm, sv->slot);
	size_t len = 0;

	out[0] = '\0';
	for (int p = 0; p < PARAM_COUNT; p++) {
		if (!c->params[p][0] && p != PARAM_APPLICATION_NAME)
			continue; /* never learned: leave the server's */
		if (strcmp(c->params[p], sl->params[p]) == 0)
			continue;
		if (append_set(out, cap, &len, shm_param_names[p], c->params[p]) < 0)
			return -1;
	}
	return (int)len;
}

void params_apply_status(struct client *c, struct server *sv, const char *name, const char *value)
{
	int p = shm_param_lookup(name);
	if (p < 0)
		return;
	strlcpy_s(shm_slot(W.shm, sv->slot)->params[p], value, PARAM_VALUE_LEN);
	if (c)
		strlcpy_s(c->params[p], value, PARAM_VALUE_LEN);
}
