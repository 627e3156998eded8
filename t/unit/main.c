/* main.c — the one CUnit runner for every unit suite. alarm() guards against a
 * deadlocked multi-process test hanging the build. */
#include "unit.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	unsigned failures;

	alarm(120);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	register_config();
	register_futex();
	register_hba();
	register_json();
	register_pool();
	register_proto();
	register_scram();
	register_stats();
	register_stmt_registry();
	register_userlist();
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	printf("\nunit: %u passed, %u failed\n",
	       CU_get_number_of_tests_run() - CU_get_number_of_tests_failed(),
	       CU_get_number_of_tests_failed());
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
