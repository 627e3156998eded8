/*
 * futex.c — the process-shared mutex of futex.h. Used by every process on
 * the pool rows and worker inboxes of the shared segment. FUTEX_WAIT/WAKE
 * without FUTEX_PRIVATE_FLAG since the word lives in a MAP_SHARED mapping.
 * Invariant: holder is nonzero whenever word is nonzero, except for the few
 * instructions between taking the word and storing the pid; repair treats a
 * zero holder as "not yet known" and leaves such a lock alone.
 */
#include "futex.h"

#include <errno.h>
#include <pthread.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The holder pid, cached: getpid() on every lock would be a syscall per
 * lease. A fork() child gets its own value through the atfork handler. */
static pid_t self_pid;

static void forget_pid(void)
{
	self_pid = 0;
}

static pid_t current_pid(void)
{
	static bool registered;
	if (self_pid == 0) {
		if (!registered) {
			pthread_atfork(NULL, NULL, forget_pid);
			registered = true;
		}
		self_pid = getpid();
	}
	return self_pid;
}

static long futex_call(atomic_uint *addr, int op, unsigned val)
{
	return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

void shm_mutex_init(struct shm_mutex *m)
{
	atomic_store_explicit(&m->word, 0, memory_order_relaxed);
	atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
}

static void set_holder(struct shm_mutex *m)
{
	atomic_store_explicit(&m->holder, current_pid(), memory_order_relaxed);
}

bool shm_mutex_trylock(struct shm_mutex *m)
{
	unsigned expected = 0;
	if (atomic_compare_exchange_strong_explicit(&m->word, &expected, 1, memory_order_acquire,
	                                            memory_order_relaxed)) {
		set_holder(m);
		return true;
	}
	return false;
}

void shm_mutex_lock(struct shm_mutex *m)
{
	unsigned c = 0;
	if (atomic_compare_exchange_strong_explicit(&m->word, &c, 1, memory_order_acquire,
	                                            memory_order_relaxed)) {
		set_holder(m);
		return;
	}
	if (c != 2)
		c = atomic_exchange_explicit(&m->word, 2, memory_order_acquire);
	while (c != 0) {
		futex_call(&m->word, FUTEX_WAIT, 2);
		c = atomic_exchange_explicit(&m->word, 2, memory_order_acquire);
	}
	set_holder(m);
}

void shm_mutex_unlock(struct shm_mutex *m)
{
	atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
	if (atomic_fetch_sub_explicit(&m->word, 1, memory_order_release) != 1) {
		atomic_store_explicit(&m->word, 0, memory_order_release);
		futex_call(&m->word, FUTEX_WAKE, 1);
	}
}

bool shm_mutex_try_repair(struct shm_mutex *m)
{
	pid_t holder;

	if (shm_mutex_trylock(m))
		return true;
	holder = atomic_load_explicit(&m->holder, memory_order_relaxed);
	if (holder <= 0 || kill(holder, 0) == 0 || errno != ESRCH)
		return false;
	/* The holder is gone: take the lock over in its place. */
	if (!atomic_compare_exchange_strong_explicit(&m->holder, &holder, current_pid(),
	                                             memory_order_acq_rel, memory_order_relaxed))
		return false;
	return true;
}
