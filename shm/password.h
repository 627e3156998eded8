/*
 * password.h — what a stored password is (cleartext, md5 hash, SCRAM
 * verifier) and PostgreSQL's md5 password hashing. Pure functions on
 * strings: used by the workers (client and server authentication) and the
 * master (--hash-password).
 */
#ifndef PGSHOAL_PASSWORD_H
#define PGSHOAL_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

enum password_kind { PASSWORD_CLEAR, PASSWORD_MD5, PASSWORD_SCRAM };

#define PASSWORD_MD5_LEN 35 /* "md5" + 32 hex digits */

enum password_kind password_kind(const char *stored);

/* "md5" + hex(md5(password || user)): what pg_authid and userlist.txt hold. */
void password_md5(const char *password, const char *user, char out[PASSWORD_MD5_LEN + 1]);

/* The answer to an md5 challenge: "md5" + hex(md5(hex_part(hash) || salt)),
 * from a stored "md5..." hash. */
void password_md5_salted(const char *md5_hash, const uint8_t salt[4],
                         char out[PASSWORD_MD5_LEN + 1]);

/* Constant-time equality of two NUL-terminated strings (the length leaks). */
int password_equal(const char *a, const char *b);

#endif
