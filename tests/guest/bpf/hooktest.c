// SPDX-License-Identifier: GPL-2.0
/*
 * hooktest: a small libbpf driver for the MGLRU hook tests in the guest (the
 * reference for what the project's own loader must be able to do).
 *
 *   hooktest attach OBJ PINDIR [TARGET_TGID]
 *       load OBJ, pin its maps as PINDIR/<map>, set target[0] if given, attach
 *       every fentry/fmod_ret program and pin its link as PINDIR/link_<prog>;
 *       removing PINDIR detaches everything.
 *   hooktest dump PINDIR
 *       print "young TGID HOOK REGION PAGES CALLS ANON_PAGES NID_MASK" lines for
 *       the young map (if the object has one) and "stat INDEX VALUE" lines for
 *       the stats map.
 *   hooktest age OBJ CGROUP_ID [CAN_SWAP [FORCE_SCAN]]
 *       load OBJ, run its syscall program "age" once with BPF_PROG_TEST_RUN and
 *       print "ret N", N being what bpf_lru_gen_age_cgroup() returned.
 *   hooktest age-loop OBJ CGROUP_ID [CAN_SWAP [FORCE_SCAN]]
 *       the same, but load OBJ once and run "age" for every line read from stdin,
 *       like a monitor that ages every interval (loading a program between agings
 *       would flush TLBs as a side effect of JIT memory permission changes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

struct key { __u32 tgid, hook; __u64 region; };
struct val { __u64 pages, calls, anon_pages, nid_mask; };
struct age_args { __u64 cgroup_id; __u32 can_swap, force_scan; __s32 ret; __u32 pad; };

static int fail(const char *what, int err)
{
	fprintf(stderr, "hooktest: %s: %s\n", what, strerror(err < 0 ? -err : err));
	return 1;
}

static int do_attach(const char *path, const char *dir, const char *target)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct bpf_program *prog;
	struct bpf_map *map;
	char pin[512];
	int err;

	if (!obj)
		return fail("open", errno);
	bpf_object__for_each_map(map, obj) {
		if (strchr(bpf_map__name(map), '.'))
			continue;
		snprintf(pin, sizeof(pin), "%s/%s", dir, bpf_map__name(map));
		bpf_map__set_pin_path(map, pin);
	}
	err = bpf_object__load(obj);
	if (err)
		return fail("load", err);
	if (target) {
		__u32 zero = 0, tgid = strtoul(target, NULL, 0);

		map = bpf_object__find_map_by_name(obj, "target");
		if (!map || bpf_map_update_elem(bpf_map__fd(map), &zero, &tgid, 0))
			return fail("set target", errno);
	}
	bpf_object__for_each_program(prog, obj) {
		struct bpf_link *link;

		if (bpf_program__type(prog) != BPF_PROG_TYPE_TRACING)
			continue;
		link = bpf_program__attach(prog);
		if (!link)
			return fail(bpf_program__name(prog), errno);
		snprintf(pin, sizeof(pin), "%s/link_%s", dir, bpf_program__name(prog));
		err = bpf_link__pin(link, pin);
		if (err)
			return fail("pin link", err);
		printf("attached %s\n", bpf_program__name(prog));
	}
	return 0;
}

static int do_dump(const char *dir)
{
	char path[512];
	struct key k, next, *prev = NULL;
	struct val v;
	__u32 i;
	__u64 s;
	int fd;

	snprintf(path, sizeof(path), "%s/young", dir);
	fd = bpf_obj_get(path);
	if (fd < 0 && errno != ENOENT)
		return fail(path, errno);
	while (fd >= 0 && !bpf_map_get_next_key(fd, prev, &next)) {
		if (!bpf_map_lookup_elem(fd, &next, &v))
			printf("young %u %u %llu %llu %llu %llu %llu\n", next.tgid, next.hook,
			       (unsigned long long)next.region, (unsigned long long)v.pages,
			       (unsigned long long)v.calls, (unsigned long long)v.anon_pages,
			       (unsigned long long)v.nid_mask);
		k = next;
		prev = &k;
	}
	snprintf(path, sizeof(path), "%s/stats", dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return fail(path, errno);
	for (i = 0; !bpf_map_lookup_elem(fd, &i, &s); i++)
		printf("stat %u %llu\n", i, (unsigned long long)s);
	return 0;
}

static int do_age(const char *path, const char *cgroup, const char *can_swap,
		  const char *force_scan, int loop)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct age_args args = {
		.cgroup_id = strtoull(cgroup, NULL, 0),
		.can_swap = can_swap ? atoi(can_swap) : 1,
		.force_scan = force_scan ? atoi(force_scan) : 1,
	};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
	struct bpf_program *prog;
	int err;

	if (!obj)
		return fail("open", errno);
	err = bpf_object__load(obj);
	if (err)
		return fail("load", err);
	prog = bpf_object__find_program_by_name(obj, "age");
	if (!prog)
		return fail("no program 'age'", ENOENT);
	do {
		char line[64];

		if (loop && !fgets(line, sizeof(line), stdin))
			break;
		args.ret = 0;
		err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
		if (err)
			return fail("test run", errno);
		printf("ret %d\n", args.ret);
		fflush(stdout);
	} while (loop);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "attach"))
		return do_attach(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
	if (argc == 3 && !strcmp(argv[1], "dump"))
		return do_dump(argv[2]);
	if (argc >= 4 && (!strcmp(argv[1], "age") || !strcmp(argv[1], "age-loop")))
		return do_age(argv[2], argv[3], argc > 4 ? argv[4] : NULL,
			      argc > 5 ? argv[5] : NULL, !strcmp(argv[1], "age-loop"));
	fprintf(stderr, "usage: hooktest attach OBJ PINDIR [TGID] | dump PINDIR | "
		"age|age-loop OBJ CGROUP_ID [CAN_SWAP [FORCE_SCAN]]\n");
	return 2;
}
