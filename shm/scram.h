/*
 * scram.h — SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it:
 * stored verifiers, the key derivations, and both ends of the exchange as
 * pure functions on messages (no I/O, no allocation), so that the worker's
 * client authentication, its server login and the unit tests share one
 * implementation. Channel binding: tls-server-end-point (RFC 5929).
 */
#ifndef PGSHOAL_SCRAM_H
#define PGSHOAL_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN            32
#define SCRAM_SALT_LEN           16 /* what pgshoal generates (PostgreSQL's too) */
#define SCRAM_MAX_SALT           64
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_MAX_ITERATIONS     10000000
#define SCRAM_NONCE_RAW          18 /* random bytes; base64 is 24 characters */
#define SCRAM_MSG_MAX            512
#define SCRAM_CB_MAX             64 /* a certificate hash */

enum scram_result { SCRAM_OK = 0, SCRAM_MALFORMED = -1, SCRAM_BAD_PROOF = -2 };

/* A verifier: "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". */
struct scram_secret {
	int iterations;
	int salt_len;
	uint8_t salt[SCRAM_MAX_SALT];
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* base64 (RFC 4648, padded). encode returns the length written (cap must
 * hold 4 * ceil(n / 3) + 1); decode returns the byte count or -1. */
size_t scram_b64_encode(const uint8_t *in, size_t n, char *out);
int scram_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap);

int scram_parse_secret(const char *text, struct scram_secret *out); /* 0 or -1 */
int scram_make_secret(const char *password, const uint8_t *salt, int salt_len, int iterations,
                      struct scram_secret *out);
int scram_format_secret(const struct scram_secret *s, char *out, size_t cap); /* 0 or -1 */
/* A secret for an unknown user: looks real (salt derived from the name and a
 * process secret), never matches. */
void scram_mock_secret(const char *user, const uint8_t key[SCRAM_KEY_LEN],
                       struct scram_secret *out);

/* SaltedPassword -> ClientKey, ServerKey. */
int scram_salted_password(const char *password, const uint8_t *salt, int salt_len, int iterations,
                          uint8_t out[SCRAM_KEY_LEN]);
void scram_keys_from_salted(const uint8_t salted[SCRAM_KEY_LEN], uint8_t client_key[SCRAM_KEY_LEN],
                            uint8_t server_key[SCRAM_KEY_LEN]);
void scram_stored_key(const uint8_t client_key[SCRAM_KEY_LEN], uint8_t out[SCRAM_KEY_LEN]);

/* tls-server-end-point data for a certificate (an X509 *): its hash with the
 * signature's digest, SHA-256 for MD5 and SHA-1. Returns the length or -1. */
int scram_cert_endpoint_hash(void *x509, uint8_t out[SCRAM_CB_MAX]);

/* Server side: the worker authenticating a client. */
struct scram_server {
	struct scram_secret secret;
	bool plus_offered; /* SCRAM-SHA-256-PLUS was advertised (client on TLS) */
	bool plus;         /* the client chose it */
	int cb_len;
	uint8_t cb_data[SCRAM_CB_MAX]; /* our certificate's endpoint hash */
	char gs2_header[64];
	char nonce[128]; /* client nonce + server nonce */
	char client_first_bare[SCRAM_MSG_MAX];
	char server_first[SCRAM_MSG_MAX];
	uint8_t client_key[SCRAM_KEY_LEN]; /* recovered from a valid proof */
};

/* SASLInitialResponse data for mechanism (plus = "-PLUS"): writes
 * server-first-message into out. server_nonce: printable, no ','. */
int scram_server_first(struct scram_server *s, bool plus, const char *msg, size_t len,
                       const char *server_nonce, char *out, size_t cap);
/* SASLResponse data: checks channel binding, nonce and proof; on SCRAM_OK
 * writes server-final-message ("v=...") into out and s->client_key holds
 * the client's ClientKey. */
int scram_server_final(struct scram_server *s, const char *msg, size_t len, char *out, size_t cap);

/* Client side: a worker logging in to a server. Keys come from a password
 * (after server-first gives salt and iterations) or from a client's SCRAM
 * login (pass-through). */
struct scram_client {
	bool have_keys;
	uint8_t client_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
	char nonce[64];
	char client_first_bare[128];
	uint8_t server_signature[SCRAM_KEY_LEN];
};

/* client-first-message "n,,n=<user>,r=<nonce>" into out; returns its length
 * or -1. PostgreSQL ignores the user name; pgshoal sends "". */
int scram_client_first(struct scram_client *c, const char *user, const char *nonce, char *out,
                       size_t cap);
/* server-first-message in, client-final-message out (length, or -1);
 * password may be NULL when have_keys is set. */
int scram_client_final(struct scram_client *c, const char *password, const char *msg, size_t len,
                       char *out, size_t cap);
/* server-final-message: SCRAM_OK if the server proved it knows the verifier. */
int scram_client_verify(const struct scram_client *c, const char *msg, size_t len);

/* A random nonce of SCRAM_NONCE_RAW bytes in base64, into out[32]. */
int scram_random_nonce(char out[32]);

#endif
