/*
 * futex.h — a process-shared mutex on a 32-bit word (Drepper's three states:
 * 0 free, 1 locked, 2 locked with waiters), with the holder's pid beside it
 * so the master can repair a lock whose holder died.
 */
#ifndef PGSHOAL_FUTEX_H
#define PGSHOAL_FUTEX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

struct shm_mutex {
	atomic_uint word;  /* 0 free, 1 locked, 2 locked + waiters */
	atomic_int holder; /* pid of the holder, 0 when free; written by the holder */
};

void shm_mutex_init(struct shm_mutex *m);
void shm_mutex_lock(struct shm_mutex *m);
void shm_mutex_unlock(struct shm_mutex *m);
bool shm_mutex_trylock(struct shm_mutex *m);
/*
 * Master only: if the lock is held by a process that no longer exists,
 * take it over (the caller then holds it and must repair what it guards).
 * Returns true if the caller now holds the lock.
 */
bool shm_mutex_try_repair(struct shm_mutex *m);

#endif
