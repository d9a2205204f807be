# Fuzz targets (libFuzzer, clang).  `make fuzz` runs every binary in
# FUZZ_BINS for FUZZ_TIME seconds each, starting from the committed seed
# corpus tests/fuzz/corpus/<name without fuzz_> and keeping what it finds in
# $(BUILD)/fuzz/found-<name>.  Other fragments append to FUZZ_BINS (with +=,
# so include order does not matter).  `make test` runs a short, seeded,
# deterministic pass of fuzz_virtq as a TAP test; without a clang that has
# libFuzzer, that test SKIPs with the reason.

FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_RUNS  ?= 20000
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined \
              -fno-sanitize-recover=all -fno-omit-frame-pointer

FUZZ_VIRTQ_SRC := tests/fuzz/fuzz_virtq.c virtio/virtq.c virtio/blk_req.c \
                  guest-mem/translate.c
FUZZ_BINS += $(BUILD)/fuzz/fuzz_virtq

$(BUILD)/fuzz/fuzz_virtq: $(FUZZ_VIRTQ_SRC) virtio/virtq.h virtio/blk_req.h guest-mem/gm.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CSTD) $(WARN) $(FUZZ_FLAGS) -o $@ $(FUZZ_VIRTQ_SRC)

# The TAP wrapper for `make test`: built even when clang cannot build the
# target, so the test reports a SKIP instead of breaking the build.
$(BUILD)/fuzz/fuzz_virtq.t: $(FUZZ_VIRTQ_SRC) tests/fuzz/fuzz.mk tests/fuzz/fuzz-tap.sh
	@mkdir -p $(dir $@)
	@if $(MAKE) --no-print-directory $(BUILD)/fuzz/fuzz_virtq >$(BUILD)/fuzz/build.log 2>&1; then \
	  printf '#!/bin/sh\nexec %s/tests/fuzz/fuzz-tap.sh %s %s/tests/fuzz/corpus/virtq %s\n' \
	    "$(CURDIR)" "$(CURDIR)/$(BUILD)/fuzz/fuzz_virtq" "$(CURDIR)" "$(FUZZ_RUNS)" > $@; \
	else \
	  printf '#!/bin/sh\necho "1..0 # SKIP cannot build the libFuzzer target with $(FUZZ_CC) (see $(BUILD)/fuzz/build.log)"\n' > $@; \
	fi
	@chmod +x $@

TEST_DEPS  += $(BUILD)/fuzz/fuzz_virtq.t
TEST_EXTRA += $(BUILD)/fuzz/fuzz_virtq.t

.PHONY: fuzz
fuzz: $(FUZZ_BINS)
	@set -e; for b in $(FUZZ_BINS); do \
	  n=$$(basename $$b); c=tests/fuzz/corpus/$${n#fuzz_}; \
	  found=$(BUILD)/fuzz/found-$$n; mkdir -p $$found; \
	  echo "fuzz: $$n for $(FUZZ_TIME) s (corpus $$c, new inputs in $$found)"; \
	  $$b -max_total_time=$(FUZZ_TIME) -print_final_stats=1 $$found $$( [ -d $$c ] && echo $$c ); \
	done
