/*
 * userlist.h — the auth_file: PgBouncer's userlist.txt, one
 * `"user" "password"` per line, the password in cleartext, as an md5 hash
 * or as a SCRAM verifier. A worker keeps its own parsed copy.
 */
#ifndef PGSHOAL_USERLIST_H
#define PGSHOAL_USERLIST_H

#include "shm/config.h"

#include <stddef.h>

struct userlist_entry {
	char user[CFG_NAME_LEN];
	char password[CFG_PASSWORD_LEN];
};

struct userlist {
	struct userlist_entry *e; /* sorted by user */
	int n;
};

/*
 * Parse a whole file's text. Lines: `"user" "password"` (a `""` inside
 * quotes is one quote; anything after the password is ignored), blank, or a
 * comment starting with ';' or '#'. Bad lines are skipped: the return value
 * is their number (err says which was first), or -1 without memory.
 */
int userlist_parse(const char *text, size_t len, struct userlist *out, char *err, size_t errlen);
void userlist_free(struct userlist *ul);
const char *userlist_lookup(const struct userlist *ul, const char *user);

/* The worker's copy: (re)read auth_file when the configuration generation
 * changed since the last read. NULL if the user is not listed. */
const char *userlist_password(const char *user);
/* Read PATH now; ST_OK, or ST_ERROR (logged) keeping the previous copy. */
int userlist_load(const char *path);

#endif
