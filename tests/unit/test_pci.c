/* PCI host bridge, conf1, BAR sizing/relocation, capability list, INTx. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "vmm/bus.h"
#include "vmm/pci.h"

struct fix {
    struct bus pio, mmio;
    struct vmif vmif;
    struct pci pci;
    struct pci_dev dev;
    int last_irq, last_level, nirq;
    unsigned bar_hits;
    uint64_t last_off;
    int moved_mapped;
    uint64_t moved_addr;
};

static int mock_irq_line(void *o, unsigned irq, int level)
{
    struct fix *f = o;
    f->last_irq = irq;
    f->last_level = level;
    f->nirq++;
    return 0;
}

static void dev_bar_io(void *o, unsigned bar, uint64_t off, uint8_t *d,
                       unsigned len, bool w)
{
    struct fix *f = o;
    (void)bar;
    f->bar_hits++;
    f->last_off = off;
    if (!w)
        memset(d, 0x5a, len);
}

static void dev_bar_moved(void *o, unsigned bar, uint64_t addr, bool mapped)
{
    struct fix *f = o;
    (void)bar;
    f->moved_mapped = mapped;
    f->moved_addr = addr;
}

static const struct pci_dev_ops ops = {
    .bar_io = dev_bar_io, .bar_moved = dev_bar_moved,
};

static uint32_t cfg_read(struct fix *f, unsigned slot, unsigned reg,
                         unsigned len)
{
    uint8_t d[4];
    pci_cfg_put(d, 0, 4, 0x80000000U | slot << 11 | (reg & 0x7fc));
    assert_int_equal(bus_dispatch(&f->pio, 0xcf8, d, 4, true), 0);
    memset(d, 0, 4);
    assert_int_equal(bus_dispatch(&f->pio, 0xcfc + (reg & 3), d, len, false),
                     0);
    return pci_cfg_get(d, 0, len);
}

static void cfg_write(struct fix *f, unsigned slot, unsigned reg,
                      unsigned len, uint32_t v)
{
    uint8_t d[4];
    pci_cfg_put(d, 0, 4, 0x80000000U | slot << 11 | (reg & 0x7fc));
    assert_int_equal(bus_dispatch(&f->pio, 0xcf8, d, 4, true), 0);
    pci_cfg_put(d, 0, 4, v);
    assert_int_equal(bus_dispatch(&f->pio, 0xcfc + (reg & 3), d, len, true),
                     0);
}

static int setup(void **state)
{
    struct fix *f = test_calloc(1, sizeof(*f));
    assert_int_equal(bus_init(&f->pio, "pio"), 0);
    assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
    f->vmif.opaque = f;
    f->vmif.irq_line = mock_irq_line;
    assert_int_equal(pci_init(&f->pci, &f->pio, &f->mmio, &f->vmif), 0);
    struct pci_dev_info info = {
        .name = "testdev", .vendor_id = 0x1af4, .device_id = 0x1042,
        .class_code = 0x010000, .ops = &ops, .opaque = f,
    };
    pci_dev_init(&f->dev, &info);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    pci_destroy(&f->pci);
    bus_destroy(&f->mmio);
    bus_destroy(&f->pio);
    test_free(f);
    return 0;
}

static void test_host_bridge(void **state)
{
    struct fix *f = *state;
    assert_int_equal(cfg_read(f, 0, PCI_VENDOR_ID, 2), 0x8086);
    assert_int_equal(cfg_read(f, 0, PCI_CLASS_REVISION, 4) >> 8, 0x060000);
    /* Empty slot and disabled latch read all ones. */
    assert_int_equal(cfg_read(f, 5, PCI_VENDOR_ID, 4), 0xffffffff);
    uint8_t d[4] = { 0, 0, 0, 0 };
    assert_int_equal(bus_dispatch(&f->pio, 0xcf8, d, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->pio, 0xcfc, d, 4, false), 0);
    assert_int_equal(pci_cfg_get(d, 0, 4), 0xffffffff);
    /* Linux's type-1 probe: latch reads back what was written. */
    pci_cfg_put(d, 0, 4, 0x80000000U);
    bus_dispatch(&f->pio, 0xcf8, d, 4, true);
    memset(d, 0, 4);
    bus_dispatch(&f->pio, 0xcf8, d, 4, false);
    assert_int_equal(pci_cfg_get(d, 0, 4), 0x80000000U);
    /* Function 1 does not exist. */
    assert_int_equal(cfg_read(f, 0, PCI_VENDOR_ID | 0x100, 2), 0xffff);
}

static void test_bar_and_caps(void **state)
{
    struct fix *f = *state;
    uint8_t body[6] = { 1, 2, 3, 4, 5, 6 };

    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 0, 0x8000, false, false), 0);
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 2, 0x1000, true, false), 0);
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 5, 0x1000, true, false),
                     -EINVAL);
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 1, 100, false, false),
                     -EINVAL);
    int c1 = pci_add_cap(&f->dev, 0x09, body, sizeof(body), NULL);
    int c2 = pci_add_cap(&f->dev, 0x11, body, sizeof(body), NULL);
    assert_true(c1 >= 0x40 && c2 > c1);
    int slot = pci_add_device(&f->pci, &f->dev);
    assert_int_equal(slot, 1);

    assert_true(cfg_read(f, slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(cfg_read(f, slot, PCI_CAPABILITY_LIST, 1), c1);
    assert_int_equal(cfg_read(f, slot, c1, 1), 0x09);
    assert_int_equal(cfg_read(f, slot, c1 + 1, 1), c2);
    assert_int_equal(cfg_read(f, slot, c2 + 1, 1), 0);
    assert_int_equal(cfg_read(f, slot, c2 + 2, 1), 1);
    assert_int_equal(cfg_read(f, slot, PCI_INTERRUPT_PIN, 1), 1);
    assert_int_equal(cfg_read(f, slot, PCI_INTERRUPT_LINE, 1), 16);

    /* Pre-assigned in the 32-bit hole, not decoded until enabled. */
    uint32_t bar0 = cfg_read(f, slot, PCI_BASE_ADDRESS_0, 4);
    assert_int_equal(bar0, 0xc0000000);
    uint32_t bar2 = cfg_read(f, slot, PCI_BASE_ADDRESS_2, 4);
    assert_int_equal(bar2 & 0xf, PCI_BASE_ADDRESS_MEM_TYPE_64);
    assert_true((bar2 & ~0xfU) >= 0xc0008000);
    assert_int_equal(cfg_read(f, slot, PCI_BASE_ADDRESS_3, 4), 0);
    uint8_t d[4];
    assert_int_equal(bus_dispatch(&f->mmio, 0xc0000010, d, 4, false), -ENOENT);

    /* Sizing. */
    cfg_write(f, slot, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
    assert_int_equal(cfg_read(f, slot, PCI_BASE_ADDRESS_0, 4), 0xffff8000);
    cfg_write(f, slot, PCI_BASE_ADDRESS_3, 4, 0xffffffff);
    assert_int_equal(cfg_read(f, slot, PCI_BASE_ADDRESS_3, 4), 0xffffffff);
    cfg_write(f, slot, PCI_BASE_ADDRESS_3, 4, 0);
    cfg_write(f, slot, PCI_BASE_ADDRESS_0, 4, 0xc0000000);

    /* Enable decoding: BAR0 appears on the MMIO bus. */
    cfg_write(f, slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    assert_int_equal(bus_dispatch(&f->mmio, 0xc0000010, d, 4, false), 0);
    assert_int_equal(f->last_off, 0x10);
    assert_int_equal(d[0], 0x5a);
    assert_int_equal(f->moved_mapped, 1);

    /* Move it: old address gone, new one decodes, device told. */
    cfg_write(f, slot, PCI_BASE_ADDRESS_0, 4, 0xd0000000);
    assert_int_equal(bus_dispatch(&f->mmio, 0xc0000010, d, 4, false), -ENOENT);
    assert_int_equal(bus_dispatch(&f->mmio, 0xd0000020, d, 4, true), 0);
    assert_int_equal(f->last_off, 0x20);
    assert_int_equal(f->moved_addr, 0xd0000000);

    /* Decoding off: unmapped. */
    cfg_write(f, slot, PCI_COMMAND, 2, 0);
    assert_int_equal(bus_dispatch(&f->mmio, 0xd0000020, d, 4, true), -ENOENT);
    assert_int_equal(f->moved_mapped, 0);

    /* Read-only header fields stay. */
    cfg_write(f, slot, PCI_VENDOR_ID, 4, 0);
    assert_int_equal(cfg_read(f, slot, PCI_VENDOR_ID, 2), 0x1af4);

    pci_remove_device(&f->pci, &f->dev);
}

static void test_intx(void **state)
{
    struct fix *f = *state;
    struct pci_dev devs[10];
    struct pci_dev_info info = { .name = "d", .vendor_id = 1 };

    for (unsigned i = 0; i < 10; i++) {
        pci_dev_init(&devs[i], &info);
        assert_int_equal(pci_add_device(&f->pci, &devs[i]), (int)i + 1);
    }
    assert_int_equal(pci_intx_pin(1), 16);
    assert_int_equal(pci_intx_pin(8), 23);
    assert_int_equal(pci_intx_pin(9), 16);
    assert_int_equal(cfg_read(f, 10, PCI_INTERRUPT_LINE, 1), 17);
    assert_int_equal(pci_set_intx(&devs[9], 1), 0);
    assert_int_equal(f->last_irq, 17);
    assert_int_equal(f->last_level, 1);
    /* Interrupt Disable suppresses assertion. */
    cfg_write(f, 10, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    f->nirq = 0;
    assert_int_equal(pci_set_intx(&devs[9], 1), 0);
    assert_int_equal(f->nirq, 0);
    for (unsigned i = 0; i < 10; i++)
        pci_remove_device(&f->pci, &devs[i]);
}

static void test_bar_full(void **state)
{
    struct fix *f = *state;
    /* 0xc0000000 + 512 MiB + 256 MiB fits; another 512 MiB does not. */
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 0, 1ULL << 29, false, false), 0);
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 1, 1ULL << 28, false, false), 0);
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 2, 1ULL << 29, false, false),
                     -ENOSPC);
    pci_set_ram_top(&f->pci, 6ULL << 30);
    assert_int_equal(pci_add_bar(&f->pci, &f->dev, 2, 1ULL << 29, true, true), 0);
    assert_int_equal(pci_cfg_get(f->dev.cfg, PCI_BASE_ADDRESS_3, 4), 1);
    assert_int_equal(pci_cfg_get(f->dev.cfg, PCI_BASE_ADDRESS_2, 4), 0x80000004);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_bridge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_full, setup, teardown),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
