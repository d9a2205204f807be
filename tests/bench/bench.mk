# `make bench`: dvmm's start-up time and VMM memory against QEMU on the same
# test guest (tests/bench/bench.sh; inside the nested KVM host when this host
# has no usable /dev/kvm), report in $(BUILD)/bench/report.md.  The other
# fragments add their binaries to BENCH_BINS and as prerequisites of
# `bench`; the report lists them, and BENCH_ALL=1 runs them too.  Knobs:
# DVMM_BENCH_RUNS (20), DVMM_BENCH_MEM_RUNS (3), see tests/bench/bench.sh.
# Never fails on a number.
BENCH_PROBE := $(BUILD)/bench/memprobe.so

# Each other benchmark is one C file linked with libdvmm; the fragments
# name their binary and any extra prerequisites.
$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libdvmm.a | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libdvmm.a $(LDLIBS)

# The probe is preloaded into QEMU as well as dvmm: a plain shared object
# with no link to libdvmm.
$(BENCH_PROBE): tests/bench/memprobe.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -o $@ $< -ldl

.PHONY: bench
# BENCH_BINS in the recipe, not the prerequisites: fragments included after
# this one add to it, and recipes expand after every fragment is read.
bench: all $(BUILD)/testguest.elf $(BENCH_PROBE)
	tests/bench/bench.sh --bins "$(BENCH_BINS)" $(if $(BENCH_ALL),--run-bins)
