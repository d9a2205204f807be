# dmemfs-probe: the dmemfs module's user-side checks (tests/integration/dmemfs.t).
DMEMFS_PROBE := $(BUILD)/tests/dmemfs-probe
TEST_DEPS    += $(DMEMFS_PROBE)

$(DMEMFS_PROBE): tests/lib/dmemfs-probe.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $<
