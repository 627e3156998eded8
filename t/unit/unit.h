/* unit.h — each t/unit/test_<module>.c defines register_<module>() which adds
 * one CUnit suite; t/unit/main.c calls them all. */
#ifndef PGSHOAL_UNIT_H
#define PGSHOAL_UNIT_H
#include <CUnit/CUnit.h>

void register_config(void);
void register_futex(void);
void register_hba(void);
void register_json(void);
void register_pool(void);
void register_proto(void);
void register_scram(void);
void register_stats(void);
void register_stmt_registry(void);
void register_userlist(void);

#define ADD_TEST(suite, fn) CU_add_test(suite, #fn, fn)

struct shm;
/* Unmap a test's segment; shm_destroy() leaves the workers' eventfds open,
 * so close them too (a unit run would leak descriptors per test). */
void unit_shm_teardown(struct shm *s);
#endif
