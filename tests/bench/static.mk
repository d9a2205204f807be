# `make bench` measures both builds of dvmm (tests/bench/vmm-memory-builds.sh):
# the static one is built with it.
bench: $(BUILD)/dvmm-static
