# Linux-guest and nested-KVM-host rules.  The shell side (tests/lib/*.sh,
# tests/integration/*.t) finds build outputs and caches through DVMM_BUILD;
# pass make's BUILD on so `make BUILD=build-x test` stays in build-x.
DVMM_BUILD ?= $(BUILD)
export DVMM_BUILD

.PHONY: linux-kernel nested-check
# Fetch and unpack Debian's kernel into $(BUILD)/linux/ (cached).
linux-kernel:
	tests/lib/linux-kernel.sh

# Prove the nested KVM host works here (or that /dev/kvm does).
nested-check:
	prove -v --exec '' tests/integration/nested-selftest.t

.PHONY: linux-guest
# The Linux guest kit (kernel-support/guest/): Debian kernel + initramfs.
linux-guest:
	kernel-support/guest/mkinitramfs
