# heatmap — top-level entry points. `make demo` shows the product; `make check` tests it.
# Both install what they need first (tools/deps.py: apt packages, and pip packages for
# $(PYTHON)); with everything there that step takes a fraction of a second.
PYTHON ?= python3
CLANG ?= clang
# kernel/bpf.cflags: the flags every BPF object of the project is compiled with (a clang
# response file, also read by tests/bpfc.py); the prefix map keeps the shipped object
# the same wherever the checkout is
BPF_CFLAGS = @kernel/bpf.cflags -fdebug-prefix-map=$(CURDIR)=.

.PHONY: all deps-demo deps-check test lint check check-debug-kernel bpf kernel demo bench clean

all: check

deps-demo:
	$(PYTHON) tools/deps.py demo

deps-check:
	$(PYTHON) tools/deps.py check

test:
	$(PYTHON) -m pytest -q tests

lint:
	$(PYTHON) -m ruff check .

# in this order, also under make -j
check:
	$(PYTHON) tools/deps.py check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q tests

# the guest suite on the debug kernel (kernel/config.debug); .ci/run runs it after check.
# Without test_time_guest.py: it checks how agings fall into wall-clock intervals, which
# a lockdep kernel on 4 emulated CPUs over 2 host cores is too slow to keep (its refs and
# DAMON phasing failed there); it locks nothing the rest of the suite does not.
check-debug-kernel:
	$(PYTHON) tools/deps.py check
	HEATMAP_GUEST_KERNEL=debug $(PYTHON) -m pytest -q tests/guest \
		--ignore=tests/guest/test_time_guest.py

# The BPF objects heatmap.py loads (the MGLRU hooks' counts, DAMON's aggregations).
# Committed, so users need no compiler; rebuild them with Debian 12's clang 14 and
# libbpf-dev 1.1 (tests/test_bpf_object.py checks that the committed files are what
# these rules produce).
HEATMAP_BPF_O ?= kernel/heatmap.bpf.o
DAMON_BPF_O ?= kernel/damon.bpf.o
bpf: $(HEATMAP_BPF_O) $(DAMON_BPF_O)

$(HEATMAP_BPF_O): kernel/heatmap.bpf.c kernel/bpf.cflags
	$(CLANG) $(BPF_CFLAGS) -c kernel/heatmap.bpf.c -o $@

$(DAMON_BPF_O): kernel/damon.bpf.c kernel/bpf.cflags
	$(CLANG) $(BPF_CFLAGS) -c kernel/damon.bpf.c -o $@

kernel:
	kernel/build-kernel

demo:
	$(PYTHON) tools/deps.py demo
	$(PYTHON) demo/run

# every benchmark (the guest ones boot the patched kernel under QEMU)
# bench/bands.py is a workload, not a benchmark
BENCHES = $(filter-out bench/guestbench.py bench/bands.py,$(wildcard bench/*.py))
bench:
	for b in $(BENCHES); do echo "== $$b"; $(PYTHON) $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
