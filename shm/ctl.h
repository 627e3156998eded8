/*
 * ctl.h — the admin console's switches in shared memory, read on the paths
 * they steer: PAUSE (new leases wait), DISABLE (new logins refused) and
 * KILL (clients of an older kill generation close). Pooler-wide switches
 * live in the header, per-database ones in the database's account row
 * (shm_pool_db_account), so they also hold for pools created later.
 * Written by admin sessions in any worker with atomic or/and/add; read with
 * relaxed loads: each check is one or two loads of lines that stay cached.
 */
#ifndef PGSHOAL_CTL_H
#define PGSHOAL_CTL_H

#include "pool.h"

#define DB_F_PAUSED   0x1 /* PAUSE db / KILL db: new leases wait for RESUME */
#define DB_F_DISABLED 0x2 /* DISABLE db: new logins refused */

static inline unsigned shm_ctl_db_flags(const struct shm *s, int pool)
{
	int a = s->pools[pool].db_acct;
	return a >= 0 ? atomic_load_explicit(&s->accounts[a].flags, memory_order_relaxed) : 0;
}

/* New leases of this pool must wait (PAUSE, KILL). */
static inline bool shm_ctl_paused(const struct shm *s, int pool)
{
	return (atomic_load_explicit(&s->hdr->flags, memory_order_relaxed) & SHM_F_PAUSED) ||
	       (shm_ctl_db_flags(s, pool) & DB_F_PAUSED);
}

static inline bool shm_ctl_disabled(const struct shm *s, int pool)
{
	return shm_ctl_db_flags(s, pool) & DB_F_DISABLED;
}

/* Clients remember this at login; a KILL moves it. */
static inline uint32_t shm_ctl_kill_gen(const struct shm *s, int pool)
{
	int a = s->pools[pool].db_acct;
	uint32_t g = atomic_load_explicit(&s->hdr->kill_gen, memory_order_relaxed);
	return a >= 0 ? g + atomic_load_explicit(&s->accounts[a].kill_gen, memory_order_relaxed)
	              : g;
}

#endif
