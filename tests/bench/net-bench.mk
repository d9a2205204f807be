# `make bench-net`: virtio-net throughput (both ways) and TCP round-trip
# latency, dvmm (user space, vhost) against QEMU (user space, vhost), same
# Linux guest, in one nested KVM host boot where this host cannot run it
# (tests/bench/net-bench.sh).  Report: $(BUILD)/bench/net-report.md.  Knobs:
# DVMM_NET_BENCH_RUNS (2), DVMM_NET_BENCH_MB (32), DVMM_NET_BENCH_RR (2000).
# A benchmark, never a test: it does not fail on numbers.
.PHONY: bench-net
bench-net: all
	tests/bench/net-bench.sh
