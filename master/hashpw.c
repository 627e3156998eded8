/*
 * hashpw.c — `pgshoal --hash-password [--method scram-sha-256|md5] USER`:
 * reads a password from the terminal (without echo) or from stdin and
 * prints an auth_file line for it. Runs in the master's process before any
 * configuration is read; nothing else.
 */
#include "master.h"
#include "shm/password.h"
#include "shm/scram.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* One line from stdin; no echo when it is a terminal. */
static int read_password(char *pw, size_t cap)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	char *got;

	if (tty) {
		fprintf(stderr, "Password: ");
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	got = fgets(pw, (int)cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	if (!got)
		return -1;
	pw[strcspn(pw, "\r\n")] = '\0';
	return 0;
}

/* A userlist field: quotes doubled. */
static void print_quoted(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

int master_hash_password(const char *method, const char *user)
{
	char pw[CFG_PASSWORD_LEN], out[CFG_PASSWORD_LEN];
	uint8_t salt[SCRAM_SALT_LEN];
	struct scram_secret sec;
	bool md5 = strcmp(method, "md5") == 0;

	if (!md5 && strcmp(method, "scram-sha-256") != 0) {
		fprintf(stderr, "pgshoal: unknown --method \"%s\" (scram-sha-256 or md5)\n",
		        method);
		return EXIT_FATAL;
	}
	if (read_password(pw, sizeof(pw)) < 0 || !pw[0]) {
		fprintf(stderr, "pgshoal: no password given\n");
		return EXIT_FATAL;
	}
	if (md5) {
		password_md5(pw, user, out);
	} else if (RAND_bytes(salt, sizeof(salt)) != 1 ||
	           scram_make_secret(pw, salt, sizeof(salt), SCRAM_DEFAULT_ITERATIONS, &sec) < 0 ||
	           scram_format_secret(&sec, out, sizeof(out)) < 0) {
		OPENSSL_cleanse(pw, sizeof(pw));
		fprintf(stderr, "pgshoal: could not make a SCRAM verifier\n");
		return 1;
	}
	OPENSSL_cleanse(pw, sizeof(pw));
	print_quoted(user);
	putchar(' ');
	print_quoted(out);
	putchar('\n');
	return fflush(stdout) == 0 ? 0 : 1;
}
