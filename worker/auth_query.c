/*
 * auth_query.c — the password hash of a user who is not in the auth_file,
 * looked up on the server with auth_query (PgBouncer's setting). Runs in
 * worker processes.
 *
 * The lookup goes through the shared pool of (auth_dbname or the client's
 * database, auth_user), leased the way any client leases: the client itself
 * waits in that pool's FIFO. For the lookup's duration the client's pool
 * (c->pool, its shared row's pool, its KILL generation) is the auth pool,
 * so queueing, handoffs from other workers, timeouts and crash repair all
 * work unchanged; server_start() hands the leased server to
 * auth_query_start(), which sends Parse/Bind/Execute/Sync with the user
 * name as $1 (never spliced into SQL). The DataRow's second column is the
 * hash (md5 or SCRAM verifier; NULL, empty or no row: no such user). At the
 * ReadyForQuery the server goes back to the pool, the client gets its own
 * pool back and auth.c goes on with the exchange.
 *
 * Found hashes are cached per worker for AUTH_QUERY_CACHE_SEC, keyed by
 * (auth pool, user); a reload empties the cache and a failed password drops
 * its entry, so a password changed on the server is seen at the next try.
 */
#include "worker.h"
#include "proto.h"
#include "shm/ctl.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_QUERY_CACHE_SEC  30
#define AUTH_QUERY_CACHE_SIZE 64

/* One client's lookup in progress. */
struct lookup {
	int pool;     /* the auth pool */
	int own_pool; /* the client's pool, given back at the end */
	uint32_t own_kill_gen;
	uint64_t started; /* bounded by client_login_timeout */
	int rows;         /* DataRows seen; the first one counts */
	bool found, bad;  /* a hash came; the reply was not two columns */
	char hash[CFG_PASSWORD_LEN];
};

struct cached {
	int pool; /* the auth pool; -1 = empty entry */
	char user[CFG_NAME_LEN];
	char hash[CFG_PASSWORD_LEN];
	uint64_t at;
};

static struct lookup **by_row; /* W.nrows pointers, by client row - W.first_row */
static int nactive;
static struct cached cache[AUTH_QUERY_CACHE_SIZE];
static uint32_t cache_gen;

static struct lookup *lookup_of(const struct client *c)
{
	return by_row ? by_row[c - W.clients] : NULL;
}

static void drop_lookup(struct client *c)
{
	struct lookup *l = lookup_of(c);
	if (!l)
		return;
	OPENSSL_cleanse(l, sizeof(*l));
	free(l);
	by_row[c - W.clients] = NULL;
	nactive--;
}

/* ------------------------------------------------------------- the cache */

static void cache_clear_entry(struct cached *e)
{
	OPENSSL_cleanse(e, sizeof(*e));
	e->pool = -1;
}

static struct cached *cache_find(int pool, const char *user)
{
	if (cache_gen != W.config_gen) { /* a reload may have changed auth_query */
		for (int i = 0; i < AUTH_QUERY_CACHE_SIZE; i++)
			cache_clear_entry(&cache[i]);
		cache_gen = W.config_gen;
	}
	for (int i = 0; i < AUTH_QUERY_CACHE_SIZE; i++) {
		struct cached *e = &cache[i];
		if (e->pool != pool || strcmp(e->user, user) != 0)
			continue;
		if (W.now - e->at <= (uint64_t)AUTH_QUERY_CACHE_SEC * 1000000u)
			return e;
		cache_clear_entry(e);
	}
	return NULL;
}

static void cache_put(int pool, const char *user, const char *hash)
{
	struct cached *e = cache_find(pool, user), *oldest = &cache[0];

	for (int i = 0; !e && i < AUTH_QUERY_CACHE_SIZE; i++) {
		if (cache[i].pool < 0 || cache[i].at == 0) {
			e = &cache[i];
			break;
		}
		if (cache[i].at < oldest->at)
			oldest = &cache[i];
	}
	if (!e)
		e = oldest;
	e->pool = pool;
	e->at = W.now ? W.now : 1;
	strlcpy_s(e->user, user, sizeof(e->user));
	strlcpy_s(e->hash, hash, sizeof(e->hash));
}

/* --------------------------------------------------------------- lookups */

/* auth_query is set, and an auth_user for the client's database entry. */
bool auth_query_applies(const struct client *c)
{
	const struct config_db *db = &W.cfg->dbs[c->db_index];
	return W.cfg->auth_query[0] && (db->auth_user[0] || W.cfg->auth_user[0]);
}

/* The pool auth_query runs in for this client, -1 if none applies (no
 * auth_user; the admin console), -2 if the pool table is full. */
static int auth_pool(const struct client *c)
{
	const struct config *cfg = W.cfg;
	const struct config_db *db, *adb;
	const char *user, *dbname;
	struct pool_limits lim;
	int pool;

	if (c->pool < 0 || !auth_query_applies(c))
		return -1;
	db = &cfg->dbs[c->db_index];
	user = db->auth_user[0] ? db->auth_user : cfg->auth_user;
	dbname = db->auth_dbname[0]    ? db->auth_dbname
	         : cfg->auth_dbname[0] ? cfg->auth_dbname
	                               : c->db;
	adb = config_find_db(cfg, dbname);
	if (!user[0] || !adb)
		return -1;
	if (adb->user[0]) /* that entry forces its own login: the pool is that user's */
		user = adb->user;
	lim = client_pool_limits(adb, user);
	pool = shm_pool_find(W.shm, dbname, user, &lim);
	return pool < 0 ? -2 : pool;
}

/* The client waits for, then uses, a server of `pool` instead of its own. */
static void set_pool(struct client *c, int pool, uint32_t kill_gen)
{
	c->pool = pool;
	shm_client(W.shm, c->row)->pool = pool;
	c->kill_gen = kill_gen;
}

int auth_query_begin(struct client *c, char *out, size_t cap)
{
	int pool = auth_pool(c);
	struct cached *e;
	struct lookup *l;

	if (pool == -1)
		return ST_DONE;
	if (pool < 0) {
		client_error_close(c, "53300", "no more pools available (max_pools)");
		return ST_ERROR;
	}
	e = cache_find(pool, c->user);
	if (e) {
		strlcpy_s(out, e->hash, cap);
		return ST_OK;
	}
	if (!by_row)
		by_row = calloc((size_t)W.nrows, sizeof(*by_row));
	l = by_row ? calloc(1, sizeof(*l)) : NULL;
	if (!l) {
		client_close(c, "out of memory");
		return ST_ERROR;
	}
	by_row[c - W.clients] = l;
	nactive++;
	l->pool = pool;
	l->own_pool = c->pool;
	l->own_kill_gen = c->kill_gen;
	l->started = W.now;
	log_debug(DBG_POOL, "C-%d: auth_query for user \"%s\" in pool %s/%s", c->row, c->user,
	          W.shm->pools[pool].db, W.shm->pools[pool].user);
	set_pool(c, pool, shm_ctl_kill_gen(W.shm, pool));
	client_request_server(c);
	return c->closing ? ST_ERROR : ST_AGAIN;
}

bool auth_query_start(struct server *sv)
{
	struct client *c = sv->client;
	const char *user = c->user;
	char mem[CFG_QUERY_LEN + 2 * CFG_NAME_LEN + 64];
	struct pbuf b;
	size_t pos;

	if (!lookup_of(c))
		return false;
	pb_init(&b, mem, sizeof(mem));
	pos = pb_begin(&b, 'P'); /* unnamed statement, parameter type left to the server */
	pb_str(&b, "");
	pb_str(&b, W.cfg->auth_query);
	pb_u16(&b, 0);
	pb_end(&b, pos);
	pos = pb_begin(&b, 'B'); /* unnamed portal; one text parameter; text results */
	pb_str(&b, "");
	pb_str(&b, "");
	pb_u16(&b, 0);
	pb_u16(&b, 1);
	pb_u32(&b, (uint32_t)strlen(user));
	pb_bytes(&b, user, strlen(user));
	pb_u16(&b, 0);
	pb_end(&b, pos);
	pos = pb_begin(&b, 'E');
	pb_str(&b, "");
	pb_u32(&b, 0);
	pb_end(&b, pos);
	pos = pb_begin(&b, 'S');
	pb_end(&b, pos);
	if (b.err || swallow_send(sv, b.p, b.len, SYNC_THEN_AUTH_QUERY) != ST_OK) {
		server_close(sv, "auth_query could not be sent");
		client_error_close(c, "08006", "server connection failed");
	}
	return true;
}

/* DataRow: int16 columns, then per column int32 length (-1 = NULL) and
 * bytes. The second column is the password. */
void auth_query_on_row(struct server *sv, const char *body, uint32_t len)
{
	struct lookup *l = sv->client ? lookup_of(sv->client) : NULL;
	uint32_t off = 2;
	int32_t n = 0;

	if (!l || l->rows++ > 0)
		return;
	if (len < 2 || ((uint8_t)body[0] << 8 | (uint8_t)body[1]) < 2) {
		l->bad = true;
		return;
	}
	for (int col = 0; col < 2; col++) {
		if (len - off < 4) {
			l->bad = true;
			return;
		}
		n = (int32_t)get_u32(body + off);
		off += 4;
		if (n > 0 && (uint32_t)n > len - off) {
			l->bad = true;
			return;
		}
		if (col == 0 && n > 0)
			off += (uint32_t)n;
	}
	if (n > 0 && (size_t)n < sizeof(l->hash)) {
		memcpy(l->hash, body + off, (size_t)n);
		l->hash[n] = '\0';
		l->found = true;
	} else if (n >= (int32_t)sizeof(l->hash)) {
		l->bad = true;
	}
}

/* Hand the result to auth.c; the lookup is gone before (auth.c may close
 * the client, which would free it). */
static void finish(struct client *c, struct lookup *l)
{
	char hash[CFG_PASSWORD_LEN];
	bool found = l->found;

	strlcpy_s(hash, l->hash, sizeof(hash));
	drop_lookup(c);
	auth_lookup_done(c, found ? hash : NULL);
	OPENSSL_cleanse(hash, sizeof(hash));
}

void auth_query_done(struct server *sv)
{
	struct client *c = sv->client;
	struct lookup *l = lookup_of(c);
	bool failed = sv->sync_failed || l->bad;

	set_pool(c, l->own_pool, l->own_kill_gen);
	client_set_state(c, CL_AUTH);
	if (buf_len(&c->in) > 0) /* it should be waiting for our request */
		client_error_close(c, "08P01", "unexpected message during authentication");
	server_release(sv); /* the client is back in CL_AUTH: nothing is forwarded */
	if (c->closing)
		return;
	if (failed) {
		log_error(LOG_WARNING, 0, "C-%d: db=%s user=%s addr=%s auth_query failed%s", c->row,
		          c->db, c->user, c->addr,
		          l->bad ? ": it must return (user name, password) rows"
		                 : " (see the error above)");
		client_error_close(c, "08P01", "authentication query failed");
		return;
	}
	if (l->found)
		cache_put(l->pool, c->user, l->hash);
	finish(c, l);
}

void auth_query_forget(struct client *c)
{
	int pool = auth_pool(c);
	struct cached *e = pool >= 0 ? cache_find(pool, c->user) : NULL;
	if (e)
		cache_clear_entry(e);
}

void auth_query_abandon(struct client *c)
{
	drop_lookup(c);
}

/* A lookup is part of the login: client_login_timeout bounds it, also when
 * the server does not answer (the server is closed, not reused). */
void auth_query_tick(void)
{
	for (int i = 0; nactive > 0 && i < W.nrows; i++) {
		struct client *c = &W.clients[i];
		struct lookup *l = by_row[i];
		if (!l || c->closing || W.cfg->client_login_timeout <= 0 ||
		    W.now - l->started <= (uint64_t)(W.cfg->client_login_timeout * 1e6))
			continue;
		log_error(LOG_WARNING, 0, "C-%d: db=%s user=%s addr=%s auth_query timed out%s",
		          c->row, c->db, c->user, c->addr,
		          c->server ? "" : " waiting for a server");
		if (c->server && c->server->state == SV_SYNC) /* a server that does not answer */
			server_close(c->server, "auth_query timed out");
		client_error_close(c, "08P01", "client_login_timeout");
	}
}
