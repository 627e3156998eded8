/*
 * stmt_registry.c — the per-slot registry of prepared statements
 * (stmt_registry.h): a fixed array of entries per slot in shared memory,
 * with a hash index on the statement's SHA-256 and an LRU list. Runs in the
 * worker that holds the slot (single writer, see the header), and in any
 * process for shm_stmt_count. The region is mapped for every slot but only
 * the slots that are used ever touch their pages.
 */
#include "stmt_registry.h"

#include <stdio.h>
#include <string.h>

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

size_t shm_stmt_stride(int max, uint32_t *cap, uint32_t *nbuckets)
{
	size_t n;

	*cap = *nbuckets = 0;
	if (max <= 0)
		return 0;
	*cap = (uint32_t)max + STMT_SLACK;
	*nbuckets = pow2_at_least(*cap);
	n = sizeof(struct shm_stmt_reg) + sizeof(struct shm_stmt) * *cap +
	    sizeof(uint16_t) * *nbuckets;
	return (n + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
}

static uint16_t *buckets(const struct shm *s, struct shm_stmt_reg *r)
{
	return (uint16_t *)(shm_stmt_at(s, r, (int)s->hdr->stmt_cap));
}

static uint32_t bucket_of(const struct shm *s, const uint8_t *hash)
{
	uint32_t h;
	memcpy(&h, hash, sizeof(h)); /* SHA-256 bytes are already uniform */
	return h & (s->hdr->stmt_buckets - 1);
}

static void reset(const struct shm *s, struct shm_stmt_reg *r, uint32_t gen)
{
	uint32_t cap = s->hdr->stmt_cap;

	memset(buckets(s, r), 0, sizeof(uint16_t) * s->hdr->stmt_buckets);
	for (uint32_t i = 0; i < cap; i++) {
		struct shm_stmt *e = shm_stmt_at(s, r, (int)i);
		memset(e, 0, sizeof(*e));
		e->lru_next = i + 1 < cap ? (uint16_t)(i + 2) : 0; /* the free list */
	}
	r->free_head = 1;
	r->lru_head = r->lru_tail = 0;
	r->nused = 0;
	r->next_id = 0;
	r->lease = 0;
	r->poisoned = 0;
	atomic_store_explicit(&r->ready, 0, memory_order_relaxed);
	r->gen = gen;
}

struct shm_stmt_reg *shm_stmt_reg(const struct shm *s, int slot, uint32_t gen)
{
	struct shm_stmt_reg *r;

	if (!s->hdr->stmt_cap)
		return NULL;
	r = (struct shm_stmt_reg *)(s->stmts + (size_t)slot * s->hdr->stmt_stride);
	if (r->gen != gen) {
		log_debug(DBG_PROTO, "S-%d: prepared statements: registry of generation %u, now %u",
		          slot, r->gen, gen);
		reset(s, r, gen);
	}
	return r;
}

int shm_stmt_find(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash)
{
	for (uint16_t i = buckets(s, r)[bucket_of(s, hash)]; i; i = shm_stmt_at(s, r, i - 1)->hnext)
		if (memcmp(shm_stmt_at(s, r, i - 1)->hash, hash, STMT_HASH_LEN) == 0)
			return i - 1;
	return -1;
}

static void lru_unlink(const struct shm *s, struct shm_stmt_reg *r, int i)
{
	struct shm_stmt *e = shm_stmt_at(s, r, i);
	if (e->lru_prev)
		shm_stmt_at(s, r, e->lru_prev - 1)->lru_next = e->lru_next;
	else
		r->lru_head = e->lru_next;
	if (e->lru_next)
		shm_stmt_at(s, r, e->lru_next - 1)->lru_prev = e->lru_prev;
	else
		r->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = 0;
}

/* Put entry i at the most recently used end (head) or the least (tail). */
static void lru_push(const struct shm *s, struct shm_stmt_reg *r, int i, bool head)
{
	struct shm_stmt *e = shm_stmt_at(s, r, i);
	uint16_t *end = head ? &r->lru_head : &r->lru_tail,
	         *other = head ? &r->lru_tail : &r->lru_head;
	uint16_t *toward = head ? &e->lru_next : &e->lru_prev,
	         *away = head ? &e->lru_prev : &e->lru_next;

	*away = 0;
	*toward = *end;
	if (*end) {
		struct shm_stmt *n = shm_stmt_at(s, r, *end - 1);
		*(head ? &n->lru_prev : &n->lru_next) = (uint16_t)(i + 1);
	} else {
		*other = (uint16_t)(i + 1);
	}
	*end = (uint16_t)(i + 1);
}

/* Take a free position and index it under hash. */
static int take(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash, uint8_t state)
{
	uint16_t *b = &buckets(s, r)[bucket_of(s, hash)];
	struct shm_stmt *e;
	int i;

	if (!r->free_head)
		return -1;
	i = r->free_head - 1;
	e = shm_stmt_at(s, r, i);
	r->free_head = e->lru_next;
	memset(e, 0, sizeof(*e));
	memcpy(e->hash, hash, STMT_HASH_LEN);
	e->state = state;
	e->hnext = *b;
	*b = (uint16_t)(i + 1);
	r->nused++;
	return i;
}

int shm_stmt_add(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash)
{
	int i = take(s, r, hash, STMT_PENDING);
	if (i < 0)
		return -1;
	shm_stmt_at(s, r, i)->id = ++r->next_id;
	lru_push(s, r, i, true);
	return i;
}

int shm_stmt_restore(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash, uint32_t id)
{
	int i = shm_stmt_find(s, r, hash) < 0 ? take(s, r, hash, STMT_READY) : -1;
	if (i < 0)
		return -1;
	shm_stmt_at(s, r, i)->id = id;
	lru_push(s, r, i, false);
	atomic_store_explicit(&r->ready, atomic_load_explicit(&r->ready, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	return i;
}

void shm_stmt_set_ready(const struct shm *s, struct shm_stmt_reg *r, int i)
{
	struct shm_stmt *e = shm_stmt_at(s, r, i);
	if (e->state != STMT_PENDING)
		return;
	e->state = STMT_READY;
	atomic_store_explicit(&r->ready, atomic_load_explicit(&r->ready, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

void shm_stmt_remove(const struct shm *s, struct shm_stmt_reg *r, int i)
{
	struct shm_stmt *e = shm_stmt_at(s, r, i);
	uint16_t *p = &buckets(s, r)[bucket_of(s, e->hash)];

	if (e->state == STMT_FREE)
		return;
	while (*p && *p != i + 1)
		p = &shm_stmt_at(s, r, *p - 1)->hnext;
	if (*p)
		*p = e->hnext;
	lru_unlink(s, r, i);
	if (e->state == STMT_READY)
		atomic_store_explicit(&r->ready,
		                      atomic_load_explicit(&r->ready, memory_order_relaxed) - 1,
		                      memory_order_relaxed);
	e->state = STMT_FREE;
	e->hnext = 0;
	e->lru_next = r->free_head;
	r->free_head = (uint16_t)(i + 1);
	r->nused--;
}

void shm_stmt_touch(const struct shm *s, struct shm_stmt_reg *r, int i, uint32_t lease,
                    uint32_t grp)
{
	struct shm_stmt *e = shm_stmt_at(s, r, i);
	e->pin_lease = lease;
	e->pin_grp = grp;
	if (r->lru_head == i + 1)
		return;
	lru_unlink(s, r, i);
	lru_push(s, r, i, true);
}

bool shm_stmt_full(const struct shm *s, const struct shm_stmt_reg *r)
{
	return r->nused >= s->hdr->stmt_max;
}

int shm_stmt_victim(const struct shm *s, struct shm_stmt_reg *r, uint32_t lease,
                    uint32_t first_live)
{
	for (uint16_t i = r->lru_tail; i; i = shm_stmt_at(s, r, i - 1)->lru_prev) {
		struct shm_stmt *e = shm_stmt_at(s, r, i - 1);
		if (e->state != STMT_READY)
			continue;
		if (e->pin_lease == lease && e->pin_grp >= first_live)
			continue; /* a request in flight refers to it */
		return i - 1;
	}
	return -1;
}

void shm_stmt_clear_ready(const struct shm *s, struct shm_stmt_reg *r)
{
	for (uint32_t i = 0; i < s->hdr->stmt_cap; i++)
		if (shm_stmt_at(s, r, (int)i)->state == STMT_READY)
			shm_stmt_remove(s, r, (int)i);
	r->poisoned = 0;
}

int shm_stmt_count(const struct shm *s, int slot)
{
	const struct shm_stmt_reg *r;
	if (!s->hdr->stmt_cap)
		return 0;
	r = (const struct shm_stmt_reg *)(s->stmts + (size_t)slot * s->hdr->stmt_stride);
	if (r->gen != atomic_load_explicit(&shm_slot(s, slot)->gen, memory_order_relaxed))
		return 0;
	return atomic_load_explicit(&r->ready, memory_order_relaxed);
}

int shm_stmt_name(uint32_t id, char *out)
{
	return snprintf(out, STMT_NAME_LEN, STMT_NAME_PREFIX "%u", id);
}
