# Prefault benchmark (guest-mem): `make bench` builds it, `make
# bench-prefault` runs it (as root it also reserves and mounts hugetlbfs).
BENCH_BINS += $(BUILD)/bench/prefault-bench

# Prerequisites named directly: fragments included after this one add
# their own to BENCH_BINS, which this line would not see.
.PHONY: bench bench-prefault
bench: $(BUILD)/bench/prefault-bench

bench-prefault: $(BUILD)/bench/prefault-bench
	$< $(PREFAULT_GIB)
