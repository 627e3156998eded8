/*
 * password.c — stored password kinds and PostgreSQL's md5 hashing (see
 * password.h). Runs in workers and in the master's --hash-password; keeps
 * no state. Comparisons of secrets go through CRYPTO_memcmp.
 */
#include "password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

enum password_kind password_kind(const char *stored)
{
	if (strncmp(stored, "SCRAM-SHA-256$", 14) == 0)
		return PASSWORD_SCRAM;
	if (strlen(stored) == PASSWORD_MD5_LEN && strncmp(stored, "md5", 3) == 0 &&
	    strspn(stored + 3, "0123456789abcdef") == 32)
		return PASSWORD_MD5;
	return PASSWORD_CLEAR;
}

static void md5_hex(const void *a, size_t alen, const void *b, size_t blen,
                    char out[PASSWORD_MD5_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	memcpy(out, "md5", 3);
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL) || !EVP_DigestUpdate(ctx, a, alen) ||
	    !EVP_DigestUpdate(ctx, b, blen) || !EVP_DigestFinal_ex(ctx, d, &dlen) || dlen != 16)
		memset(d, 0, sizeof(d)); /* only without memory; never matches a real hash */
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex[d[i] >> 4];
		out[4 + 2 * i] = hex[d[i] & 15];
	}
	out[PASSWORD_MD5_LEN] = '\0';
}

void password_md5(const char *password, const char *user, char out[PASSWORD_MD5_LEN + 1])
{
	md5_hex(password, strlen(password), user, strlen(user), out);
}

void password_md5_salted(const char *md5_hash, const uint8_t salt[4],
                         char out[PASSWORD_MD5_LEN + 1])
{
	md5_hex(md5_hash + 3, 32, salt, 4, out);
}

int password_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}
