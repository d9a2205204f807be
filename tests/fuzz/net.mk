# virtio-net parser fuzzing (tests/fuzz/fuzz_net.c): TX chains, control
# commands, RX header translation and mergeable packing over a fuzzed ring.
#  - $(BUILD)/fuzz/fuzz_net: the libFuzzer binary, in FUZZ_BINS for
#    `make fuzz`; `make fuzz-net` runs only it for FUZZ_TIME seconds.  Seeds:
#    tests/fuzz/corpus/net (written by tests/fuzz/make-net-seeds.py).
#  - $(BUILD)/fuzz/fuzz_net.t: `make test`'s short seeded pass (FUZZ_RUNS
#    runs from the seeds, fixed seed), a SKIP when clang cannot build it.

FUZZ_NET_SRC := tests/fuzz/fuzz_net.c virtio/virtq.c virtio/net_pkt.c guest-mem/translate.c
FUZZ_BINS += $(BUILD)/fuzz/fuzz_net

$(BUILD)/fuzz/fuzz_net: $(FUZZ_NET_SRC) virtio/virtq.h virtio/net_pkt.h guest-mem/gm.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(CSTD) $(WARN) $(FUZZ_FLAGS) -o $@ $(FUZZ_NET_SRC)

$(BUILD)/fuzz/fuzz_net.t: $(FUZZ_NET_SRC) tests/fuzz/net.mk tests/fuzz/fuzz-tap.sh
	@mkdir -p $(dir $@)
	@if $(MAKE) --no-print-directory $(BUILD)/fuzz/fuzz_net >$(BUILD)/fuzz/build-net.log 2>&1; then \
	  printf '#!/bin/sh\nexec %s/tests/fuzz/fuzz-tap.sh %s %s/tests/fuzz/corpus/net %s\n' \
	    "$(CURDIR)" "$(CURDIR)/$(BUILD)/fuzz/fuzz_net" "$(CURDIR)" "$(FUZZ_RUNS)" > $@; \
	else \
	  printf '#!/bin/sh\necho "1..0 # SKIP cannot build the libFuzzer target with $(FUZZ_CC) (see $(BUILD)/fuzz/build-net.log)"\n' > $@; \
	fi
	@chmod +x $@

TEST_DEPS  += $(BUILD)/fuzz/fuzz_net.t
TEST_EXTRA += $(BUILD)/fuzz/fuzz_net.t

.PHONY: fuzz-net
fuzz-net: $(BUILD)/fuzz/fuzz_net
	@mkdir -p $(BUILD)/fuzz/found-fuzz_net
	$(BUILD)/fuzz/fuzz_net -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
		$(BUILD)/fuzz/found-fuzz_net tests/fuzz/corpus/net
