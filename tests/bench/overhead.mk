# `make overhead-report`: what guest RAM costs the host on each memory
# backend this host has (tests/bench/overhead-report.sh).  Writes
# $(BUILD)/overhead/report.md and overhead.svg.  Without a usable /dev/kvm
# it measures inside the nested KVM host (one boot for all backends).
# OVH_RAM (default 2G) sets the guest size.  Not a test: never fails on numbers.
.PHONY: overhead-report
overhead-report: $(BUILD)/dvmm $(BUILD)/testguest.elf
	DVMM_BUILD=$(BUILD) tests/bench/overhead-report.sh $(BUILD)/overhead
