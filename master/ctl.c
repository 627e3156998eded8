/*
 * ctl.c — the admin console's requests that only the master can carry out,
 * received on the broker socketpair of the worker whose session asked:
 * SET key = value. The master applies the key to a copy of the
 * configuration in force with the loader's own parsing and checks
 * (config_set), publishes the result as a reload does
 * (master_apply_config), and answers that worker with the outcome and the
 * generation that carries the change. Never blocks: one sendmsg on a
 * non-blocking socket; a worker that cannot take the answer times out.
 */
#include "master.h"
#include "shm/broker_msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void master_ctl_set(int worker, const struct broker_ctl *req)
{
	struct broker_ctl rep = {
	    .head = {.type = BR_SET_DONE, .slot = req->head.slot, .gen = req->head.gen}};
	struct config *next = malloc(sizeof(*next));
	char key[sizeof(req->key)], value[sizeof(req->text)];

	/* a worker's message, but still bytes from a socket: terminate them */
	memcpy(key, req->key, sizeof(key));
	key[sizeof(key) - 1] = '\0';
	memcpy(value, req->text, sizeof(value));
	value[sizeof(value) - 1] = '\0';
	if (!next) {
		rep.result = CFG_SET_INVALID;
		strlcpy_s(rep.text, "out of memory", sizeof(rep.text));
	} else {
		memcpy(next, &M.cfg, sizeof(*next));
		rep.result = config_set(next, key, value, rep.text, sizeof(rep.text));
	}
	if (rep.result == CFG_SET_OK) {
		master_apply_config(next);
		rep.config_gen = atomic_load(&M.shm.hdr->config_gen);
		log_error(LOG_INFO, 0, "SET %s = \"%s\" (worker %d): configuration generation %u",
		          key, value, worker, rep.config_gen);
	} else {
		log_error(LOG_WARNING, 0, "SET %s = \"%s\" (worker %d) refused: %s", key, value,
		          worker, rep.text);
	}
	free(next);
	if (broker_send_ctl(M.broker_master[worker], &rep) < 0 && errno != EPIPE)
		log_error(LOG_WARNING, errno, "sendmsg() to worker %d failed", worker);
}
