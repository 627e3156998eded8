/*
 * main.c — pgshoal's entry point: command line, configuration check (-t),
 * and the master's start: shared memory, listening sockets and server
 * addresses are set up before the workers are forked.
 */
#include "master.h"
#include "shm/proctitle.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: pgshoal [-t] [-v] [-V] CONFIG\n"
	             "  -t      check the configuration file and exit (0 ok, 2 error)\n"
	             "  -v      more logging (twice: protocol debug)\n"
	             "  -V      print the version and exit\n");
}

static int write_pidfile(const char *path)
{
	FILE *f;
	if (!path[0])
		return ST_OK;
	f = fopen(path, "w");
	if (!f) {
		log_error(LOG_ERR, errno, "fopen(\"%s\") failed", path);
		return ST_ERROR;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	return ST_OK;
}

static int load(const char *file, bool check_only)
{
	char err[512];
	if (config_load(file, &M.cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return EXIT_FATAL;
	}
	if (check_only) {
		fprintf(stderr, "%s: configuration is valid\n", file);
		return 0;
	}
	return -1;
}

static int start_master(void)
{
	int nslots;

	M.env.cfg = &M.cfg;
	M.env.shm = &M.shm;
	if (shm_create(&M.shm, &M.cfg) != ST_OK)
		return EXIT_FATAL;
	M.env.nlisten = master_listen(&M.cfg, M.env.listen_fds, MAX_LISTEN);
	if (M.env.nlisten <= 0) {
		log_error(LOG_CRIT, 0, "no listening socket: check listen_addr and unix_socket_dir");
		return EXIT_FATAL;
	}
	if (master_dns_resolve_all(&M.cfg, &M.shm) != ST_OK)
		log_error(LOG_WARNING, 0, "some server hosts could not be resolved");
	nslots = shm_slot_count(&M.shm);
	M.broker_master = malloc(sizeof(int) * (size_t)M.cfg.workers);
	M.broker_worker = malloc(sizeof(int) * (size_t)M.cfg.workers);
	M.repair_pending = calloc((size_t)M.cfg.workers, sizeof(bool));
	M.restart_after = calloc((size_t)M.cfg.workers, sizeof(uint64_t));
	if (!M.broker_master || !M.broker_worker || !M.repair_pending || !M.restart_after ||
	    master_broker_init(nslots) != ST_OK)
		return EXIT_FATAL;
	for (int i = 0; i < M.cfg.workers; i++)
		M.broker_master[i] = M.broker_worker[i] = -1;
	if (write_pidfile(M.cfg.pidfile) != ST_OK)
		return EXIT_FATAL;
	return -1;
}

int main(int argc, char **argv)
{
	bool check_only = false;
	int verbose = 0, opt, rc;

	while ((opt = getopt(argc, argv, "tvVh")) != -1) {
		switch (opt) {
		case 't': check_only = true; break;
		case 'v': verbose++; break;
		case 'V': printf("pgshoal %s\n", PGSHOAL_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_FATAL;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_FATAL;
	}
	rc = load(argv[optind], check_only);
	if (rc >= 0)
		return rc;
	proctitle_init(argc, argv);
	log_set_role("master");
	log_open(M.cfg.logfile, true);
	if (verbose || M.cfg.verbose) {
		log_min_level = LOG_DEBUG;
		log_debug_mask = (verbose + M.cfg.verbose) > 1 ? ~0u : DBG_STATE | DBG_POOL;
	}
	proctitle_set("pgshoal: master");
	log_error(LOG_INFO, 0, "pgshoal %s starting: %d workers, pool_mode=%s", PGSHOAL_VERSION, M.cfg.workers,
	          config_pool_mode_name(M.cfg.pool_mode));
	rc = start_master();
	if (rc >= 0)
		return rc;
	rc = master_run();
	master_unlink_socket(&M.cfg);
	if (M.cfg.pidfile[0])
		unlink(M.cfg.pidfile);
	log_error(LOG_INFO, 0, "master exiting");
	return rc;
}
