/*
 * hba.h — auth_hba_file: a pg_hba.conf subset (local/host/hostssl/hostnossl;
 * database and user lists with all, sameuser, quoted names; CIDR or
 * address + mask; methods trust, reject, md5, scram-sha-256, password,
 * cert). Pure parsing and matching: the master validates the file when it
 * loads the configuration (shm/config.c), each worker parses the text
 * published with it for its own copy.
 */
#ifndef PGSHOAL_HBA_H
#define PGSHOAL_HBA_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum hba_conn_type { HBA_LOCAL, HBA_HOST, HBA_HOSTSSL, HBA_HOSTNOSSL };
enum hba_method { HBA_TRUST, HBA_REJECT, HBA_MD5, HBA_SCRAM, HBA_PASSWORD, HBA_CERT };
/* A database or user list entry: a name, or an unquoted keyword. */
enum hba_item_kind { HBA_NAME, HBA_ALL, HBA_SAMEUSER, HBA_REPLICATION };

struct hba_item {
	int kind; /* enum hba_item_kind */
	char name[CFG_NAME_LEN];
};

struct hba_rule {
	int line;         /* where the record starts in the file */
	int type;         /* enum hba_conn_type */
	int method;       /* enum hba_method */
	int family;       /* AF_INET, AF_INET6, or 0: any address ("all", or local) */
	uint8_t addr[16]; /* network bytes, already masked */
	uint8_t mask[16];
	int db_first, ndb; /* entries of hba.items */
	int user_first, nuser;
};

struct hba {
	struct hba_rule *rules;
	int nrules;
	struct hba_item *items;
	int nitems;
};

/* One client connection as the rules see it. */
struct hba_conn {
	bool local; /* unix socket */
	bool tls;
	const struct sockaddr *addr; /* AF_INET or AF_INET6; unused when local */
	const char *db, *user;
};

/*
 * Parse a whole file's text. Returns 0, or -1 with "NAME:LINE: message" in
 * err (NAME as given, for messages) and *out empty; any bad line fails the
 * whole file, as PostgreSQL refuses a pg_hba.conf with an error.
 */
int hba_parse(const char *text, size_t len, const char *name, struct hba *out, char *err,
              size_t errlen);
void hba_free(struct hba *h);

/* The first rule that matches, or NULL (no entry: reject). */
const struct hba_rule *hba_match(const struct hba *h, const struct hba_conn *conn);

extern const char *const hba_method_names[]; /* by enum hba_method */

#endif
