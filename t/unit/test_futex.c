/*
 * test_futex.c — shm/futex.c: the process-shared mutex. Single-process
 * basics, exclusion between forked processes on a MAP_SHARED page, and the
 * master's repair of a lock whose holder died (and its refusal to touch a
 * lock whose holder lives). Every forking test arms alarm() on both sides so
 * a deadlock kills the run instead of hanging it, and reaps its children.
 */
#include "unit.h"
#include "shm/futex.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCHILDREN 4
#define NLOOPS    200000
/* The parent's guard; children get a shorter one so the parent sees them fail. */
#define GUARD_SECS       30
#define CHILD_GUARD_SECS 20

struct shared_page {
	struct shm_mutex m;
	long counter;     /* plain on purpose: only the mutex protects it */
	atomic_int ready; /* start barrier, so the children really overlap */
	atomic_int go;
};

static struct shared_page *map_page(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CU_ASSERT_FATAL(p != MAP_FAILED);
	memset(p, 0, 4096);
	shm_mutex_init(&((struct shared_page *)p)->m);
	return p;
}

/* Reap PID; true if it exited with status 0. */
static bool reap_ok(pid_t pid)
{
	int status;
	pid_t r;

	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	return r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Reap PID, whatever it died of. */
static void reap_any(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

/* Fork a child that takes the lock, reports through the pipe, then either
 * exits without unlocking (die = true) or sleeps until killed. */
static pid_t fork_holder(struct shared_page *pg, bool die)
{
	int fds[2];
	pid_t pid;
	char c;

	CU_ASSERT_FATAL(pipe(fds) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		alarm(CHILD_GUARD_SECS);
		close(fds[0]);
		shm_mutex_lock(&pg->m);
		if (write(fds[1], "x", 1) != 1)
			_exit(3);
		if (die)
			_exit(0);
		for (;;)
			pause();
	}
	close(fds[1]);
	CU_ASSERT(read(fds[0], &c, 1) == 1);
	close(fds[0]);
	return pid;
}

static void test_futex_basics(void)
{
	struct shm_mutex m;

	shm_mutex_init(&m);
	CU_ASSERT_EQUAL(atomic_load(&m.word), 0);
	CU_ASSERT_EQUAL(atomic_load(&m.holder), 0);

	CU_ASSERT_TRUE(shm_mutex_trylock(&m));
	CU_ASSERT_EQUAL(atomic_load(&m.word), 1);
	CU_ASSERT_EQUAL(atomic_load(&m.holder), getpid());
	CU_ASSERT_FALSE(shm_mutex_trylock(&m)); /* not recursive */
	shm_mutex_unlock(&m);
	CU_ASSERT_EQUAL(atomic_load(&m.word), 0);
	CU_ASSERT_EQUAL(atomic_load(&m.holder), 0);

	shm_mutex_lock(&m);
	CU_ASSERT_EQUAL(atomic_load(&m.word), 1);
	CU_ASSERT_EQUAL(atomic_load(&m.holder), getpid());
	CU_ASSERT_FALSE(shm_mutex_trylock(&m));
	/* A lock held by this (live) process is not "repaired" either. */
	CU_ASSERT_FALSE(shm_mutex_try_repair(&m));
	shm_mutex_unlock(&m);
	CU_ASSERT_EQUAL(atomic_load(&m.word), 0);

	/* try_repair on a free lock simply takes it. */
	CU_ASSERT_TRUE(shm_mutex_try_repair(&m));
	CU_ASSERT_EQUAL(atomic_load(&m.holder), getpid());
	shm_mutex_unlock(&m);
	CU_ASSERT_TRUE(shm_mutex_trylock(&m));
	shm_mutex_unlock(&m);
}

static void test_futex_contention(void)
{
	struct shared_page *pg = map_page();
	pid_t pids[NCHILDREN];
	unsigned prev = alarm(GUARD_SECS);
	int ok = 0;

	for (int i = 0; i < NCHILDREN; i++) {
		pids[i] = fork();
		CU_ASSERT_FATAL(pids[i] >= 0);
		if (pids[i] == 0) {
			alarm(CHILD_GUARD_SECS);
			atomic_fetch_add(&pg->ready, 1);
			while (!atomic_load(&pg->go))
				sched_yield();
			for (int k = 0; k < NLOOPS; k++) {
				shm_mutex_lock(&pg->m);
				pg->counter++;
				shm_mutex_unlock(&pg->m);
			}
			_exit(0);
		}
	}
	while (atomic_load(&pg->ready) < NCHILDREN)
		sched_yield();
	atomic_store(&pg->go, 1);
	for (int i = 0; i < NCHILDREN; i++)
		ok += reap_ok(pids[i]);
	CU_ASSERT_EQUAL(ok, NCHILDREN);
	CU_ASSERT_EQUAL(pg->counter, (long)NCHILDREN * NLOOPS);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.word), 0);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), 0);
	munmap(pg, 4096);
	alarm(prev);
}

static void test_futex_repair_dead_holder(void)
{
	struct shared_page *pg = map_page();
	unsigned prev = alarm(GUARD_SECS);
	pid_t pid = fork_holder(pg, true);

	CU_ASSERT_TRUE(reap_ok(pid));
	CU_ASSERT_NOT_EQUAL(atomic_load(&pg->m.word), 0);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), pid);
	CU_ASSERT_FALSE(shm_mutex_trylock(&pg->m));

	CU_ASSERT_TRUE(shm_mutex_try_repair(&pg->m));
	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), getpid());
	/* Now ours: a second repair or trylock must not succeed. */
	CU_ASSERT_FALSE(shm_mutex_trylock(&pg->m));
	CU_ASSERT_FALSE(shm_mutex_try_repair(&pg->m));
	shm_mutex_unlock(&pg->m);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.word), 0);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), 0);

	shm_mutex_lock(&pg->m);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), getpid());
	shm_mutex_unlock(&pg->m);
	CU_ASSERT_TRUE(shm_mutex_trylock(&pg->m));
	shm_mutex_unlock(&pg->m);
	munmap(pg, 4096);
	alarm(prev);
}

/* A holder that is alive keeps its lock, however long it holds it. */
static void test_futex_repair_spares_live_holder(void)
{
	struct shared_page *pg = map_page();
	unsigned prev = alarm(GUARD_SECS);
	pid_t pid = fork_holder(pg, false);

	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), pid);
	CU_ASSERT_FALSE(shm_mutex_trylock(&pg->m));
	CU_ASSERT_FALSE(shm_mutex_try_repair(&pg->m));
	CU_ASSERT_EQUAL(atomic_load(&pg->m.holder), pid); /* untouched */
	CU_ASSERT_NOT_EQUAL(atomic_load(&pg->m.word), 0);

	kill(pid, SIGKILL);
	reap_any(pid);
	/* Once it is gone (and reaped), the lock is repairable. */
	CU_ASSERT_TRUE(shm_mutex_try_repair(&pg->m));
	shm_mutex_unlock(&pg->m);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.word), 0);
	munmap(pg, 4096);
	alarm(prev);
}

/* The holder dies while another process sleeps on the lock: the repairer's
 * unlock must wake that waiter (the word was 2). */
static void test_futex_repair_wakes_waiter(void)
{
	struct shared_page *pg = map_page();
	unsigned prev = alarm(GUARD_SECS);
	pid_t holder = fork_holder(pg, false);
	pid_t waiter = fork();

	CU_ASSERT_FATAL(waiter >= 0);
	if (waiter == 0) {
		alarm(CHILD_GUARD_SECS);
		shm_mutex_lock(&pg->m);
		pg->counter = 42;
		shm_mutex_unlock(&pg->m);
		_exit(0);
	}
	/* Wait until the waiter has marked the word contended. */
	for (int i = 0; i < 20000 && atomic_load(&pg->m.word) != 2; i++)
		usleep(100);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.word), 2);

	kill(holder, SIGKILL);
	reap_any(holder);
	CU_ASSERT_TRUE(shm_mutex_try_repair(&pg->m));
	CU_ASSERT_EQUAL(pg->counter, 0);
	shm_mutex_unlock(&pg->m);
	CU_ASSERT_TRUE(reap_ok(waiter));
	CU_ASSERT_EQUAL(pg->counter, 42);
	CU_ASSERT_EQUAL(atomic_load(&pg->m.word), 0);
	munmap(pg, 4096);
	alarm(prev);
}

void register_futex(void)
{
	CU_pSuite s = CU_add_suite("futex", NULL, NULL);

	ADD_TEST(s, test_futex_basics);
	ADD_TEST(s, test_futex_contention);
	ADD_TEST(s, test_futex_repair_dead_holder);
	ADD_TEST(s, test_futex_repair_spares_live_holder);
	ADD_TEST(s, test_futex_repair_wakes_waiter);
}
