# Fuzz targets (libFuzzer, clang).  `make fuzz` runs every binary in
# FUZZ_BINS for FUZZ_TIME seconds each (0: no limit), or FUZZ_EXECS
# executions when that comes first, starting from the committed corpus
# tests/fuzz/corpus/<name without fuzz_> (with tests/fuzz/<name>.dict as a
# dictionary when there is one) and keeping what it finds in
# $(BUILD)/fuzz/found-<name>.  Run one at a time on a shared machine (one
# core each); `make fuzz-cov` then measures the coverage (below).  Other fragments append to FUZZ_BINS (with +=,
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
	  n=$$(basename $$b); c=tests/fuzz/corpus/$${n#fuzz_}; d=tests/fuzz/$${n#fuzz_}.dict; \
	  found=$(BUILD)/fuzz/found-$$n; mkdir -p $$found; \
	  echo "fuzz: $$n for $(FUZZ_TIME) s$(if $(FUZZ_EXECS), or $(FUZZ_EXECS) runs) (corpus $$c, new inputs in $$found)"; \
	  $$b -max_total_time=$(FUZZ_TIME) $(if $(FUZZ_EXECS),-runs=$(FUZZ_EXECS)) -print_final_stats=1 \
	    $$( [ -f $$d ] && echo -dict=$$d ) $$found $$( [ -d $$c ] && echo $$c ); \
	done

# Coverage of what the fuzzers reached: `make fuzz-cov` rebuilds each target
# in FUZZ_COV_TARGETS with clang's source-based coverage
# (-fprofile-instr-generate -fcoverage-mapping), runs it once over its
# committed corpus, $(BUILD)/fuzz/found-fuzz_<name> (what `make fuzz`
# found) and FUZZ_COV_CORPUS_<name> (more directories, optional), and appends
# llvm-cov's report for the target's parser files to
# $(BUILD)/fuzz-cov/report.txt.  A fragment adds a target with
#   FUZZ_COV_TARGETS += name, FUZZ_COV_<name>_SRC, FUZZ_COV_<name>_FILES
#   (the files reported) and optionally FUZZ_COV_<name>_LIBS.
LLVM_PROFDATA ?= $(firstword $(shell command -v llvm-profdata llvm-profdata-14))
LLVM_COV      ?= $(firstword $(shell command -v llvm-cov llvm-cov-14))
FUZZ_COV_FLAGS := -g -O1 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping
FUZZ_COV_DIR   := $(BUILD)/fuzz-cov

FUZZ_COV_TARGETS      += virtq
FUZZ_COV_virtq_SRC    := $(FUZZ_VIRTQ_SRC)
FUZZ_COV_virtq_FILES  := virtio/virtq.c virtio/blk_req.c guest-mem/translate.c

# fuzz_cov_one NAME: build, replay, merge, report.
define fuzz_cov_one
	@echo "fuzz-cov: $(1)"
	$(FUZZ_CC) $(CPPFLAGS) $(CSTD) $(WARN) $(FUZZ_COV_FLAGS) -o $(FUZZ_COV_DIR)/fuzz_$(1) \
		$(FUZZ_COV_$(1)_SRC) $(FUZZ_COV_$(1)_LIBS)
	rm -f $(FUZZ_COV_DIR)/$(1).profraw
	LLVM_PROFILE_FILE=$(FUZZ_COV_DIR)/$(1).profraw $(FUZZ_COV_DIR)/fuzz_$(1) -runs=0 \
		$(wildcard tests/fuzz/corpus/$(1) $(BUILD)/fuzz/found-fuzz_$(1)) \
		$(FUZZ_COV_CORPUS_$(1)) >$(FUZZ_COV_DIR)/$(1).log 2>&1
	$(LLVM_PROFDATA) merge -sparse -o $(FUZZ_COV_DIR)/$(1).profdata $(FUZZ_COV_DIR)/$(1).profraw
	@{ echo "== fuzz_$(1): $$(grep -Eo 'INITED .*' $(FUZZ_COV_DIR)/$(1).log | head -n 1)"; \
	  $(LLVM_COV) report $(FUZZ_COV_DIR)/fuzz_$(1) -instr-profile=$(FUZZ_COV_DIR)/$(1).profdata \
		$(FUZZ_COV_$(1)_FILES); \
	  $(LLVM_COV) report -show-functions $(FUZZ_COV_DIR)/fuzz_$(1) \
		-instr-profile=$(FUZZ_COV_DIR)/$(1).profdata $(FUZZ_COV_$(1)_FILES) | \
		awk 'NF == 10 && $$2 ~ /^[0-9]+$$/ && $$1 != "TOTAL" { \
			printf "  %-28s regions %7s  lines %7s  branches %7s\n", $$1, $$4, $$7, \
				$$8 == 0 ? "-" : $$10 }'; \
	} | tee -a $(FUZZ_COV_DIR)/report.txt

endef

.PHONY: fuzz-cov
fuzz-cov: | $(DEPS_OK)
	@[ -n "$(LLVM_PROFDATA)" ] && [ -n "$(LLVM_COV)" ] || \
		{ echo "fuzz-cov: llvm-profdata/llvm-cov not found (Debian: llvm-14, see kernel-support/install-deps)" >&2; exit 1; }
	@mkdir -p $(FUZZ_COV_DIR) && : >$(FUZZ_COV_DIR)/report.txt
	$(foreach t,$(FUZZ_COV_TARGETS),$(call fuzz_cov_one,$(t)))
	@echo "fuzz-cov: $(FUZZ_COV_DIR)/report.txt"
