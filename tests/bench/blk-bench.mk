# virtio-blk benchmark: `make bench` builds it, `make bench-blk` runs it
# (BLK_BENCH_ARGS, e.g. "-t 5 -s 512 -r 3 /dev/shm /var/tmp").  It prints dvmm vs
# fio ratios; it is not a test and never fails on numbers.
BENCH_BINS += $(BUILD)/bench/blk-bench
BLK_BENCH_ARGS ?= -t 3 -s 256 -r 2 /dev/shm $(CURDIR)/$(BUILD)

# Built by bench.mk's rule; it also drives the unit tests' guest driver.
$(BUILD)/bench/blk-bench: tests/unit/test_blk_driver.h

.PHONY: bench bench-blk
bench: $(BUILD)/bench/blk-bench
bench-blk: $(BUILD)/bench/blk-bench
	$(BUILD)/bench/blk-bench $(BLK_BENCH_ARGS)
