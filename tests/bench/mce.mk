# Machine-check latency benchmark: `make bench-mce` builds it and runs it
# where /dev/kvm is usable, else inside the nested KVM host.  Its figures are
# never a test; tests/integration/mce.t runs a short burst of it to check
# that no machine check is lost.
MCE_BENCH_N ?= 1000
TEST_DEPS += $(BUILD)/bench/mce-latency

.PHONY: bench bench-mce
bench: $(BUILD)/bench/mce-latency

bench-mce: $(BUILD)/bench/mce-latency $(BUILD)/dvmm $(GUEST_ELF)
	@mkdir -p $(BUILD)/bench/mce-run
	@if $(KVM_USABLE); then \
		$< -n $(MCE_BENCH_N) $(BUILD)/dvmm $(GUEST_ELF) $(abspath $(BUILD))/bench/mce-run; \
	else \
		echo "bench-mce: no usable /dev/kvm here; running in the nested KVM host" >&2; \
		DVMM_BUILD=$(BUILD) tests/lib/nested-run $(abspath $<) -n $(MCE_BENCH_N) \
			$(abspath $(BUILD))/dvmm $(abspath $(GUEST_ELF)) /tmp; \
	fi
