/*
 * proctitle.c — set the title ps shows for the master and each worker. The
 * argv strings are contiguous; the title is written over them (and the comm
 * name set with prctl). Called once per process after fork.
 */
#include "proctitle.h"
#include "common.h"

#include <string.h>
#include <sys/prctl.h>

static char *title_area;
static size_t title_len;

void proctitle_init(int argc, char **argv)
{
	if (argc <= 0 || !argv || !argv[0])
		return;
	title_area = argv[0];
	title_len = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[0]);
}

void proctitle_set(const char *title)
{
	char comm[16];
	strlcpy_s(comm, title + (strncmp(title, "pgshoal: ", 9) == 0 ? 9 : 0), sizeof(comm));
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	if (!title_area || title_len < 2)
		return;
	memset(title_area, 0, title_len + 1);
	strlcpy_s(title_area, title, title_len + 1);
}
