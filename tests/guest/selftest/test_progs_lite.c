// SPDX-License-Identifier: GPL-2.0
/*
 * The smallest driver for one prog_tests/ test of the kernel's BPF selftests:
 * test_progs.h's test__*() functions and a main() that runs the test named by
 * TEST (a function "void test_<TEST>(void)"), with test_progs' verdict lines:
 *
 *     #1/1 lru_gen_young/pte:OK
 *     ...
 *     #1 lru_gen_young:OK (or FAIL, SKIP)
 *
 * Used where test_progs as a whole cannot be built (Debian 12's clang 14
 * cannot compile all of the 6.12 selftests' BPF programs). Built with
 * -DTEST=NAME; an optional argument runs only the subtest of that name. Exit
 * status: 0 unless something failed.
 */
#include <test_progs.h>

#define STR(x) #x
#define XSTR(x) STR(x)
#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)

struct test_env env;

static const char *only;
static const char *subtest;
static int subtest_num, subtest_errors, test_errors;
static bool subtest_skipped, test_skipped;

void XCAT(test_, TEST)(void);

void test__force_log(void)
{
}

void test__end_subtest(void)
{
	const char *verdict;

	if (!subtest)
		return;
	verdict = subtest_errors ? "FAIL" : subtest_skipped ? "SKIP" : "OK";
	printf("#1/%d %s/%s:%s\n", subtest_num, XSTR(TEST), subtest, verdict);
	fflush(stdout);
	if (subtest_errors)
		test_errors++;
	subtest = NULL;
}

bool test__start_subtest(const char *name)
{
	test__end_subtest();
	subtest_num++;
	if (only && strcmp(name, only))
		return false;
	subtest = name;
	subtest_errors = 0;
	subtest_skipped = false;
	return true;
}

void test__skip(void)
{
	if (subtest)
		subtest_skipped = true;
	else
		test_skipped = true;
}

void test__fail(void)
{
	subtest_errors++;
	if (!subtest)
		test_errors++;
}

int test__join_cgroup(const char *path)
{
	errno = ENOSYS;
	return -1;
}

int main(int argc, char **argv)
{
	only = argc > 1 ? argv[1] : NULL;
	env.verbosity = VERBOSE_NORMAL;

	XCAT(test_, TEST)();
	test__end_subtest();

	printf("#1 %s:%s\n", XSTR(TEST),
	       test_errors ? "FAIL" : test_skipped ? "SKIP" : "OK");
	return test_errors ? 1 : 0;
}
