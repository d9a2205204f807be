# Control-protocol request parser fuzzing (vmm/ctl_proto.c, no socket).
#  - $(BUILD)/fuzz/fuzz_control: libFuzzer binary (clang), listed in
#    FUZZ_BINS for `make fuzz` (seeds: tests/fuzz/corpus/control, written by
#    `fuzz_control_tap --seeds DIR`); `make fuzz-control` runs only it, for
#    FUZZ_TIME seconds.
#  - $(BUILD)/tests/fuzz/fuzz_control_tap: the same target built with gcc
#    and ASan/UBSan, run by `make test` as a short fixed-seed TAP pass that
#    also replays every input of tests/fuzz/corpus/control.
# The libFuzzer build compiles the sources it tests itself, so they carry
# clang's coverage instrumentation.

FUZZ_CC          ?= clang
FUZZ_CONTROL_SRC := tests/fuzz/fuzz_control.c vmm/ctl_proto.c
FUZZ_CONTROL     := $(BUILD)/fuzz/fuzz_control
FUZZ_CONTROL_TAP := $(BUILD)/tests/fuzz/fuzz_control_tap

FUZZ_BINS   += $(FUZZ_CONTROL)
TEST_DEPS   += $(FUZZ_CONTROL_TAP)
TEST_EXTRA  += $(FUZZ_CONTROL_TAP)

$(FUZZ_CONTROL): $(FUZZ_CONTROL_SRC) vmm/ctl_proto.h vmm/mce.h | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CSTD) $(WARN) -g -O1 \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-o $@ $(FUZZ_CONTROL_SRC) -ljson-c

$(FUZZ_CONTROL_TAP): tests/fuzz/fuzz_control.c tests/fuzz/control.mk $(BUILD)/asan/libdvmm.a | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN) -DFUZZ_TAP_MAIN \
		-DFUZZ_CORPUS_DIR='"$(CURDIR)/tests/fuzz/corpus/control"' -o $@ $< \
		$(BUILD)/asan/libdvmm.a $(LDLIBS)

.PHONY: fuzz-control
fuzz-control: $(FUZZ_CONTROL)
	@mkdir -p $(BUILD)/fuzz/found-fuzz_control
	$(FUZZ_CONTROL) -max_total_time=$(FUZZ_TIME) $(if $(FUZZ_EXECS),-runs=$(FUZZ_EXECS)) \
		-print_final_stats=1 -dict=tests/fuzz/control.dict \
		$(BUILD)/fuzz/found-fuzz_control tests/fuzz/corpus/control

FUZZ_COV_TARGETS        += control
FUZZ_COV_control_SRC    := $(FUZZ_CONTROL_SRC)
FUZZ_COV_control_FILES  := vmm/ctl_proto.c
FUZZ_COV_control_LIBS   := -ljson-c
