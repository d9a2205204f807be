/* MSI-X vectors that vhost writes itself (msix_set_direct): bound to KVM
 * while unmasked, unbound while masked so a message waits in the eventfd
 * (KVM delivers it when the irqfd is bound again), back to the old rules
 * when no direct writer is left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "tests/unit/test_virtio_pci_mock.h"
#include "virtio/msix.h"

static void entry(struct msix *m, unsigned v, uint32_t data, bool masked)
{
    uint8_t d[4];
    uint32_t vals[4] = { 0xfee00000, 0, data, masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0 };
    for (unsigned k = 0; k < 4; k++) {
        pci_cfg_put(d, 0, 4, vals[k]);
        msix_table_io(m, 16 * v + 4 * k, d, 4, true);
    }
}

static void mask(struct msix *m, unsigned v, bool on)
{
    uint8_t d[4];
    pci_cfg_put(d, 0, 4, on ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
    msix_table_io(m, 16 * v + 12, d, 4, true);
}

static uint64_t pending_count(int fd)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

static void test_direct(void **state)
{
    struct mock_vm vm;
    struct msix m;
    uint64_t one = 1;
    (void)state;

    assert_int_equal(mock_vm_init(&vm), 0);
    assert_int_equal(msix_init(&m, 4, &vm.vmif, "t"), 0);
    m.enabled = true;                       /* as msix_cfg_write would */
    entry(&m, 2, 0x41, false);
    int gsi = m.v[2].gsi, fd = msix_vector_fd(&m, 2);
    assert_true(gsi >= 0);
    assert_int_equal(vm.gsi_fd[gsi], fd);   /* routed and bound */

    msix_set_direct(&m, 2, true);
    assert_int_equal(vm.gsi_fd[gsi], fd);
    /* Masked: the irqfd goes, so vhost's write waits in the eventfd. */
    mask(&m, 2, true);
    assert_int_equal(vm.gsi_fd[gsi], -1);
    assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
    /* A second user of the vector, and one leaving: still direct. */
    msix_set_direct(&m, 2, true);
    msix_set_direct(&m, 2, false);
    assert_int_equal(vm.gsi_fd[gsi], -1);
    /* Unmasked: bound again, with the message still there for KVM. */
    mask(&m, 2, false);
    assert_int_equal(vm.gsi_fd[gsi], fd);
    assert_int_equal(pending_count(fd), 1);
    /* A new address/data while direct: re-routed, still bound. */
    entry(&m, 2, 0x42, false);
    assert_int_equal(vm.gsi_data[gsi], 0x42);
    assert_int_equal(vm.gsi_fd[gsi], fd);
    /* No direct user left: masking no longer unbinds (notify sets PBA). */
    msix_set_direct(&m, 2, false);
    mask(&m, 2, true);
    assert_int_equal(vm.gsi_fd[gsi], fd);
    msix_notify(&m, 2);
    assert_true(m.v[2].pending);
    assert_int_equal(pending_count(fd), 0);
    mask(&m, 2, false);
    assert_false(m.v[2].pending);
    assert_int_equal(pending_count(fd), 1);
    /* Out of range: ignored. */
    msix_set_direct(&m, 99, true);
    msix_destroy(&m);
    mock_vm_destroy(&vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_direct) };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
