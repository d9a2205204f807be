# The freestanding test guest: $(BUILD)/testguest.elf, loaded at 0x200000.
# Built with its own flags (no libc, no SSE, no red zone) and checked for
# instructions that KVM's instruction emulator cannot run.

GUEST_DIR    := tests/guest
GUEST_ELF    := $(BUILD)/testguest.elf
GUEST_C      := $(wildcard $(GUEST_DIR)/*.c)
GUEST_S      := $(wildcard $(GUEST_DIR)/*.S)
GUEST_OBJ    := $(GUEST_C:%.c=$(BUILD)/guest-obj/%.o) $(GUEST_S:%.S=$(BUILD)/guest-obj/%.o)
# min-pagesize=0: low fixed addresses (the BDA word at 0x40e) are real
# memory here, not null-pointer arithmetic.
GUEST_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g \
	-ffreestanding -fno-builtin -nostdlib -mgeneral-regs-only -mno-red-zone \
	-fno-stack-protector -fno-pic -fno-pie -mcmodel=small \
	-fno-asynchronous-unwind-tables -fcf-protection=none \
	-fno-tree-loop-distribute-patterns --param=min-pagesize=0
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,$(GUEST_DIR)/guest.ld \
	-Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,--no-warn-rwx-segments

$(BUILD)/guest-obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/guest-obj/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -MMD -MP -c $< -o $@

# Link to a temporary name so a guest that fails the instruction check never
# sits in $(BUILD) looking up to date.
$(GUEST_ELF): $(GUEST_OBJ) $(GUEST_DIR)/guest.ld $(GUEST_DIR)/check-insns.sh
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@.tmp $(GUEST_OBJ)
	$(GUEST_DIR)/check-insns.sh $@.tmp
	mv $@.tmp $@

.PHONY: guest
guest: $(GUEST_ELF)

TEST_DEPS += $(GUEST_ELF)
RUN_DEPS  += $(GUEST_ELF)

-include $(GUEST_OBJ:.o=.d)
