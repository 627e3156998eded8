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
	fprintf(out, "usage: pgshoal [-d] [-u USER] [-t] [-v] [-V] [-h] CONFIG\n"
	             "  -d, --daemon    detach and run in the background (log to logfile/syslog)\n"
	             "  -u, --user USER drop root privileges to USER after binding\n"
	             "  -t, --test      check the configuration file and exit (0 ok, 2 error)\n"
	             "  -v, --verbose   more logging (twice: protocol debug)\n"
	             "  -V, --version   print the version and exit\n"
	             "  -h, --help      this text\n"
	             "       pgshoal --hash-password [--method scram-sha-256|md5] USER\n"
	             "                  print an auth_file line for a password read from stdin\n");
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
	if (M.daemon && master_daemonize() != ST_OK)
		return EXIT_FATAL;
	if (master_pidfile_claim(M.cfg.pidfile) != ST_OK)
		return EXIT_FATAL;
	if (shm_create(&M.shm, &M.cfg) != ST_OK)
		return EXIT_FATAL;
	M.env.nlisten = master_listen(&M.cfg, M.env.listen_fds, MAX_LISTEN);
	if (M.env.nlisten >= 0 && M.cfg.so_reuseport && M.cfg.listen_addr[0]) {
		/* bound now, while we may still be root, for every worker a reload
		 * may add; a worker's sockets listen only while it runs */
		M.tcp_fds = calloc((size_t)master_worker_slots(), sizeof(*M.tcp_fds));
		for (int w = 0; M.tcp_fds && w < master_worker_slots() && M.ntcp >= 0; w++)
			M.ntcp = master_listen_tcp(&M.cfg, M.tcp_fds[w], MAX_LISTEN - M.env.nlisten,
			                           true, w < M.cfg.workers);
		if (!M.tcp_fds || M.ntcp < 0)
			return EXIT_FATAL;
	}
	log_error(LOG_INFO, 0, "listening on %s:%d%s%s%s", M.cfg.listen_addr, M.cfg.listen_port,
	          M.cfg.so_reuseport ? " (a socket per worker, SO_REUSEPORT)" : "",
	          M.cfg.unix_socket_dir[0] ? " and in " : "", M.cfg.unix_socket_dir);
	if (M.env.nlisten + M.ntcp <= 0) {
		log_error(LOG_CRIT, 0,
		          "no listening socket: check listen_addr and unix_socket_dir");
		return EXIT_FATAL;
	}
	if (master_http_listen(&M.cfg) != ST_OK)
		return EXIT_FATAL;
	if (master_dns_resolve_all(&M.cfg, &M.shm) != ST_OK)
		log_error(LOG_WARNING, 0, "some server hosts could not be resolved");
	nslots = shm_slot_count(&M.shm);
	M.broker_master = malloc(sizeof(int) * (size_t)master_worker_slots());
	M.broker_worker = malloc(sizeof(int) * (size_t)master_worker_slots());
	M.repair_pending = calloc((size_t)master_worker_slots(), sizeof(bool));
	M.restart_after = calloc((size_t)master_worker_slots(), sizeof(uint64_t));
	if (!M.broker_master || !M.broker_worker || !M.repair_pending || !M.restart_after ||
	    master_broker_init(nslots) != ST_OK)
		return EXIT_FATAL;
	for (int i = 0; i < master_worker_slots(); i++)
		M.broker_master[i] = M.broker_worker[i] = -1;
	if (master_drop_privileges(M.cfg.user) != ST_OK)
		return EXIT_FATAL;
	shm_config_publish(&M.shm, &M.cfg);
	return -1;
}

static const struct option long_opts[] = {
    {"daemon", no_argument, NULL, 'd'},
    {"user", required_argument, NULL, 'u'},
    {"test", no_argument, NULL, 't'},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"hash-password", no_argument, NULL, 'H'},
    {"method", required_argument, NULL, 'M'},
    {NULL, 0, NULL, 0},
};

static void setup_logging(int verbose)
{
	log_set_role("master");
	log_open(M.cfg.logfile, !M.daemon);
	if (M.cfg.syslog)
		log_syslog(M.cfg.syslog_ident, M.cfg.syslog_facility);
	if (verbose || M.cfg.verbose) {
		log_min_level = LOG_DEBUG;
		log_debug_mask = (verbose + M.cfg.verbose) > 1 ? ~0u : DBG_STATE | DBG_POOL;
	}
}

int main(int argc, char **argv)
{
	bool check_only = false;
	const char *user = NULL, *method = "scram-sha-256";
	bool hash_password = false;
	int verbose = 0, opt, rc;

	while ((opt = getopt_long(argc, argv, "du:tvVh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'd': M.daemon = true; break;
		case 'u': user = optarg; break;
		case 't': check_only = true; break;
		case 'v': verbose++; break;
		case 'V': printf("pgshoal %s\n", PGSHOAL_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		case 'H': hash_password = true; break;
		case 'M': method = optarg; break;
		default: usage(stderr); return EXIT_FATAL;
		}
	}
	if (hash_password && optind == argc - 1)
		return master_hash_password(method, argv[optind]);
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_FATAL;
	}
	rc = load(argv[optind], check_only);
	if (rc >= 0)
		return rc;
	if (user)
		strlcpy_s(M.cfg.user, user, sizeof(M.cfg.user));
	if (M.daemon && !M.cfg.logfile[0] && !M.cfg.syslog) {
		fprintf(stderr, "pgshoal: -d needs logfile or syslog in the configuration\n");
		return EXIT_FATAL;
	}
	proctitle_init(argc, argv);
	setup_logging(verbose);
	proctitle_set("pgshoal: master");
	log_error(LOG_INFO, 0, "pgshoal %s starting: %d workers, pool_mode=%s", PGSHOAL_VERSION,
	          M.cfg.workers, config_pool_mode_name(M.cfg.pool_mode));
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
