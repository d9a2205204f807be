# dvmm build.  Every .c under vmm/ guest-mem/ virtio/ kernel-support/ goes
# into build/libdvmm.a; build/dvmm is vmm/main.c linked against it, and each
# tests/unit/test_*.c is a cmocka binary linked against it.  Adding a source
# file needs no Makefile change.  Test-guest, fuzz and bench rules live next
# to their sources in tests/*/*.mk.

CC       ?= gcc
ifeq ($(origin CC),default)
CC       := gcc
endif
BUILD    ?= build
CSTD     := -std=gnu11
WARN     := -Wall -Wextra -Werror
CPPFLAGS := -D_GNU_SOURCE -I. -I/usr/include/iniparser
CFLAGS   ?= -O2 -g
CFLAGS   += $(CSTD) $(WARN) -pthread
LDLIBS   := -liniparser -ljson-c -luring -lseccomp -lpthread
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

LIB_SRC  := $(filter-out vmm/main.c,$(wildcard vmm/*.c guest-mem/*.c virtio/*.c kernel-support/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
ASAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/asan/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
ASAN_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/unit/%)
DEPS_OK  := $(BUILD)/.deps-ok
# Test scripts find binaries through DVMM_BUILD, so `make BUILD=x test` tests x.
export DVMM_BUILD := $(BUILD)

.PHONY: all run test unit asan deps clean
all: $(BUILD)/dvmm

# Missing headers mean missing packages: run the project's installer once.
$(DEPS_OK): kernel-support/install-deps
	@kernel-support/install-deps --check 2>/dev/null || kernel-support/install-deps
	@mkdir -p $(BUILD) && touch $@
deps: $(DEPS_OK)

$(BUILD)/obj/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/obj/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

# The sandbox's SIGSYS report names the blocked call from a const table
# (the handler may not allocate), generated from the kernel's UAPI header
# instead of kept by hand; test_sandbox checks it against libseccomp's.
SYSNAMES_UAPI := /usr/include/x86_64-linux-gnu/asm/unistd_64.h
SYSNAMES_H    := $(BUILD)/gen/sandbox_sysnames.h
$(SYSNAMES_H): $(SYSNAMES_UAPI) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9][0-9]*\)$$/    [\2] = "\1",/p' $< >$@.tmp
	@test -s $@.tmp || { echo "make: no system call numbers in $<" >&2; exit 1; }
	@mv $@.tmp $@
$(BUILD)/obj/vmm/sandbox_names.o $(BUILD)/asan/obj/vmm/sandbox_names.o: $(SYSNAMES_H)
$(BUILD)/obj/vmm/sandbox_names.o $(BUILD)/asan/obj/vmm/sandbox_names.o: CPPFLAGS += -I$(BUILD)/gen

# The seccomp filters depend only on the thread kind and the mode, so they
# are compiled here, not at every start (issue 16: ~33 ms of dvmm's start-up
# in the nested host), as Firecracker's seccompiler does: sandbox_gen builds
# each with libseccomp from vmm/sandbox_list.c and writes them as C arrays,
# which sandbox_bpf.c includes; test_sandbox checks them against a build
# made when it runs.  The generator links only the objects it needs (the
# library would include its own output).
SANDBOX_GEN     := $(BUILD)/sandbox_gen
SANDBOX_GEN_OBJ := $(BUILD)/obj/tools/sandbox_gen.o $(BUILD)/obj/vmm/sandbox_list.o \
                   $(BUILD)/obj/vmm/sandbox_build.o
SANDBOX_BPF_H   := $(BUILD)/gen/sandbox_bpf.h
$(SANDBOX_GEN): $(SANDBOX_GEN_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ -lseccomp
$(SANDBOX_BPF_H): $(SANDBOX_GEN)
	@mkdir -p $(dir $@)
	$(SANDBOX_GEN) >$@.tmp
	@mv $@.tmp $@
$(BUILD)/obj/vmm/sandbox_bpf.o $(BUILD)/asan/obj/vmm/sandbox_bpf.o: $(SANDBOX_BPF_H)
$(BUILD)/obj/vmm/sandbox_bpf.o $(BUILD)/asan/obj/vmm/sandbox_bpf.o: CPPFLAGS += -I$(BUILD)/gen

$(BUILD)/libdvmm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asan/libdvmm.a: $(ASAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

# dvmm links its own libraries statically and only glibc dynamically (NSS
# for sandbox.user); tests/bench/vmm-memory-builds.sh compares this build
# with `make static`.  It saves each exec four library loads, but measured
# no faster to start than an all-shared link in the nested host (issue 16:
# 365 vs 369 ms median, loaded machine).  Tests keep them shared.
# libseccomp is not linked: dvmm loads the filters compiled at build time
# (SANDBOX_BPF_H), and a call into it from dvmm's code fails the link.
DVMM_LDLIBS = -Wl,-Bstatic $(filter-out -lpthread -lseccomp,$(LDLIBS)) -Wl,-Bdynamic -lpthread
$(BUILD)/dvmm: $(BUILD)/obj/vmm/main.o $(BUILD)/libdvmm.a
	$(CC) $(CFLAGS) -o $@ $^ $(DVMM_LDLIBS)

# `make static`: glibc linked in as well, as Firecracker and kvmtool ship
# their VMMs: no shared object mapped at all, and nothing to load inside an
# empty [sandbox] chroot.  glibc's link warning about getpwnam (NSS) is
# expected: sandbox.user is looked up from the config, before any chroot.
.PHONY: static
static: $(BUILD)/dvmm-static
$(BUILD)/dvmm-static: $(BUILD)/obj/vmm/main.o $(BUILD)/libdvmm.a
	$(CC) $(CFLAGS) -static -o $@ $^ $(filter-out -lseccomp,$(LDLIBS))

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libdvmm.a | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libdvmm.a -lcmocka $(LDLIBS)

$(BUILD)/asan/tests/unit/%: tests/unit/%.c $(BUILD)/asan/libdvmm.a | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN) -o $@ $< $(BUILD)/asan/libdvmm.a -lcmocka $(LDLIBS)

unit: $(UNIT_BIN)
asan: $(ASAN_BIN)

include $(wildcard tests/*/*.mk)

# test_boot_debian loads Debian's kernel from $(BUILD)/linux/, where
# tests/lib/linux-kernel.sh caches it: fetch it before prove runs the unit
# binaries.  Cached, this is one apt-cache lookup; offline it fails, the
# test skips naming the path, and make test goes on.
.PHONY: linux-kernel-fetch
linux-kernel-fetch:
	@tests/lib/linux-kernel.sh >/dev/null || echo "make test: Debian kernel not fetched (see above); test_boot_debian will skip" >&2
TEST_DEPS += linux-kernel-fetch

# Everything `make test` runs is TAP, driven by prove.  Unit binaries run
# twice: the -O2 build and the ASan/UBSan build.
test: all unit asan $(TEST_DEPS)
	prove --exec tests/lib/run-tap --timer --failures $(UNIT_BIN) $(ASAN_BIN) $(TEST_EXTRA) tests/integration/*.t

# Whether /dev/kvm opens read-write (tests/lib/kvm-env.sh's kvm_usable; the
# -c test first, or the redirection would create a plain file there).
KVM_USABLE = [ -c /dev/kvm ] && { : <>/dev/kvm; } 2>/dev/null

# Without a usable /dev/kvm (these PVM machines), the same command runs in
# the nested KVM host: QEMU TCG with nested SVM, see tests/lib/nested.sh.
run: all $(RUN_DEPS)
	@if $(KVM_USABLE); then \
		$(BUILD)/dvmm run configs/default.ini; \
	else \
		echo "make run: no usable /dev/kvm here; booting inside the nested KVM host (QEMU TCG + nested SVM, ~30 s)" >&2; \
		DVMM_BUILD=$(BUILD) tests/lib/nested-run $(BUILD)/dvmm run configs/default.ini; \
	fi

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(ASAN_OBJ:.o=.d) $(BUILD)/obj/vmm/main.d $(BUILD)/obj/tools/sandbox_gen.d
