/*
 * daemon.c — life as a Unix daemon: detaching (-d), the pidfile (refused
 * while another live process holds it), dropping root privileges after the
 * listening sockets are bound, and systemd's notify protocol written by hand
 * to $NOTIFY_SOCKET (no libsystemd). Master only.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int master_daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0) {
		log_error(LOG_CRIT, errno, "fork() failed");
		return ST_ERROR;
	}
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return ST_ERROR;
	pid = fork(); /* never reacquire a controlling terminal */
	if (pid < 0)
		return ST_ERROR;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		return ST_ERROR;
	fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return ST_ERROR;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	M.daemon = true;
	return ST_OK;
}

/* Another pgshoal still running with this pidfile? */
static bool held_by_live_process(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (!f)
		return false;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 && pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM);
}

int master_pidfile_claim(const char *path)
{
	char tmp[CFG_PATH_LEN + 8];
	FILE *f;

	if (!path[0])
		return ST_OK;
	if (held_by_live_process(path)) {
		log_error(
		    LOG_CRIT, 0,
		    "pidfile \"%s\" belongs to a running process: is pgshoal already running?",
		    path);
		return ST_ERROR;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
	    rename(tmp, path) < 0) {
		log_error(LOG_CRIT, errno, "writing pidfile \"%s\" failed", path);
		return ST_ERROR;
	}
	return ST_OK;
}

int master_drop_privileges(const char *user)
{
	struct passwd *pw;

	if (!user[0] || geteuid() != 0)
		return ST_OK;
	pw = getpwnam(user);
	if (!pw) {
		log_error(LOG_CRIT, 0, "user \"%s\" does not exist", user);
		return ST_ERROR;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error(LOG_CRIT, errno, "dropping privileges to \"%s\" failed", user);
		return ST_ERROR;
	}
	log_error(LOG_INFO, 0, "running as user \"%s\"", user);
	return ST_OK;
}

/* sd_notify(3)'s protocol: one datagram to $NOTIFY_SOCKET ('@' = abstract). */
void master_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	socklen_t len;
	char msg[128];
	int fd, n;

	if (!path || !path[0] || strlen(path) >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, path, strlen(path));
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	n = snprintf(msg, sizeof(msg), "%s\nMAINPID=%d", state, (int)getpid());
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		log_error(LOG_WARNING, errno, "notify to \"%s\" failed", path);
	close(fd);
}
