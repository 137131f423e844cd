// SPDX-License-Identifier: GPL-2.0
/* Not a program: target BTF for core_fields.bpf.c. Every field of `struct sample`
 * has moved, some changed size or signedness, one is gone, the anonymous union is
 * nested differently, the bitfields sit in other storage units, and `enum color` has
 * other values and no GREEN. `target_value` holds known values laid out by the
 * compiler; the expect_* variables are the compiler's offsets and sizes. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>


struct point {
	long pad;
	int y;
	int x;
};

struct item {
	long id;
	short pad;
	int val;
};

struct sample {
	struct item items[4];
	int grid[3][4];
	char pad0[8];
	void *ptr;
	unsigned int grow;
	int shrink;
	union {
		struct {
			long pad1;
			int u_int;
		};
		char u_char;
	};
	short c;		/* signed in the target */
	long b;
	int arr[6];
	struct point pt;
	int a;
	unsigned int pad2 : 2;
	int bf_s : 7;
	unsigned int bf_u : 3;
	unsigned long long pad3 : 20;
	unsigned long long bf_wide : 40;
	int tail_len;
	int tail[];
};

enum color { BLUE = 10, RED = 20 };

struct sample target_value = {
	.ptr = (void *)0x1122334455667788,
	.grow = 200,
	.shrink = -5,
	.u_int = 0x5151,
	.c = -16657,	/* 0xbeef */
	.b = -1234567890123L,
	.arr = { 10, 11, 12, 13, 14, 15 },
	.pt = { .y = 42, .x = 41 },
	.a = 7,
	.bf_s = -13,
	.bf_u = 6,
	.bf_wide = 0xABCDE12345ULL,
	.tail_len = 2,
	.items = { [1] = { .id = 1, .val = 111 } },
	.grid = { [1] = { [2] = 333 } },
};
enum color target_color = RED;

unsigned long expect_a = __builtin_offsetof(struct sample, a);
unsigned long expect_b = __builtin_offsetof(struct sample, b);
unsigned long expect_c = __builtin_offsetof(struct sample, c);
unsigned long expect_pt = __builtin_offsetof(struct sample, pt);
unsigned long expect_pt_y = __builtin_offsetof(struct sample, pt.y);
unsigned long expect_arr2 = __builtin_offsetof(struct sample, arr[2]);
unsigned long expect_u_int = __builtin_offsetof(struct sample, u_int);
unsigned long expect_ptr = __builtin_offsetof(struct sample, ptr);
unsigned long expect_grow = __builtin_offsetof(struct sample, grow);
unsigned long expect_tail = __builtin_offsetof(struct sample, tail);
unsigned long expect_size = sizeof(struct sample);
