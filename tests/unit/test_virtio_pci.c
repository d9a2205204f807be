/* virtio-pci transport: capabilities, feature negotiation, status machine,
 * kicks (ioeventfd and MMIO path), MSI-X masking/PBA/routes, INTx. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

#include "tests/unit/test_virtio_pci_mock.h"
#include "tests/unit/test_virtq_fake.h"
#include "virtio/virtio_pci.h"

#define NQ 3
#define CMN(field) offsetof(struct virtio_pci_common_cfg, field)

struct fix {
    struct mock_vm vm;
    struct fake_ram ram;
    struct virtio_pci vp;
    int slot;
    uint64_t bar;
    int nstart, nstop;
    uint8_t devcfg[8];
};

static void d_cfg_read(void *o, uint64_t off, uint8_t *d, unsigned len)
{
    struct fix *f = o;
    memcpy(d, f->devcfg + off, len);
}
static int d_start(void *o) { ((struct fix *)o)->nstart++; return 0; }
static void d_stop(void *o) { ((struct fix *)o)->nstop++; }
static const struct vp_dev_ops dops = {
    .cfg_read = d_cfg_read, .start = d_start, .stop = d_stop,
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_int_equal(mock_vm_init(&f->vm), 0);
    fake_ram_init(&f->ram, 1);
    memcpy(f->devcfg, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
    struct vp_params p = {
        .name = "vtest", .virtio_id = VIRTIO_ID_BLOCK, .class_code = 0x018000,
        .features = 1ULL << VIRTIO_RING_F_EVENT_IDX | 1ULL << 5,
        .nqueues = NQ, .queue_size = 128, .cfg_size = 8, .ops = &dops,
        .opaque = f,
    };
    f->slot = vp_init(&f->vp, &p, &f->vm.pci, &f->vm.vmif, &f->ram.gm);
    assert_int_equal(f->slot, 1);
    f->bar = mock_cfg_read(&f->vm, 1, PCI_BASE_ADDRESS_0, 4) & ~0xfULL;
    mock_cfg_write(&f->vm, 1, PCI_COMMAND, 2,
                   PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    vp_destroy(&f->vp);
    mock_vm_destroy(&f->vm);
    fake_ram_free(&f->ram);
    free(f);
    return 0;
}

static uint64_t rd(struct fix *f, uint64_t off, unsigned len)
{ return mock_mmio_read(&f->vm, f->bar + off, len); }
static void wr(struct fix *f, uint64_t off, unsigned len, uint64_t v)
{ assert_int_equal(mock_mmio_write(&f->vm, f->bar + off, len, v), 0); }

static uint8_t status(struct fix *f) { return rd(f, CMN(device_status), 1); }

static void negotiate(struct fix *f, uint64_t feat)
{
    wr(f, CMN(device_status), 1, 0);
    wr(f, CMN(device_status), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(f, CMN(device_status), 1,
       VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(f, CMN(guest_feature_select), 4, 0);
    wr(f, CMN(guest_feature), 4, (uint32_t)feat);
    wr(f, CMN(guest_feature_select), 4, 1);
    wr(f, CMN(guest_feature), 4, feat >> 32);
    wr(f, CMN(device_status), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE |
       VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
}

static void test_caps(void **state)
{
    struct fix *f = *state;
    struct mock_vm *m = &f->vm;

    assert_int_equal(mock_cfg_read(m, 1, PCI_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(mock_cfg_read(m, 1, PCI_DEVICE_ID, 2), 0x1042);
    assert_int_equal(mock_cfg_read(m, 1, PCI_REVISION_ID, 1), 1);
    assert_true(f->bar >= 0xc0000000 && f->bar < 0xfec00000);
    for (int t = 1; t <= 5; t++) {
        unsigned c = mock_find_cap(m, 1, PCI_CAP_ID_VNDR, t);
        assert_true(c >= 0x40);
        assert_int_equal(mock_cfg_read(m, 1, c + 4, 1), 0);   /* bar */
    }
    unsigned n = mock_find_cap(m, 1, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_NOTIFY_CFG);
    assert_int_equal(mock_cfg_read(m, 1, n + 8, 4), VP_NOTIFY_OFF);
    assert_int_equal(mock_cfg_read(m, 1, n + 16, 4), 4);       /* multiplier */
    unsigned x = mock_find_cap(m, 1, PCI_CAP_ID_MSIX, -1);
    assert_true(x);
    assert_int_equal(mock_cfg_read(m, 1, x + 2, 2) & 0x7ff, NQ); /* NQ+1 vectors */
    assert_int_equal(mock_cfg_read(m, 1, x + 4, 4), VP_MSIX_TABLE_OFF);
    assert_int_equal(mock_cfg_read(m, 1, x + 8, 4), VP_MSIX_PBA_OFF);
    assert_int_equal(rd(f, CMN(num_queues), 2), NQ);
    assert_int_equal(rd(f, VP_DEVCFG_OFF + 2, 2), 0x4433);
    /* Outside the device config: zero, no crash. */
    assert_int_equal(rd(f, VP_DEVCFG_OFF + 8, 4), 0);
    /* The PCI_CFG window reads num_queues. */
    unsigned w = mock_find_cap(m, 1, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_PCI_CFG);
    mock_cfg_write(m, 1, w + 4, 1, 0);
    mock_cfg_write(m, 1, w + 8, 4, CMN(num_queues));
    mock_cfg_write(m, 1, w + 12, 4, 2);
    assert_int_equal(mock_cfg_read(m, 1, w + 16, 2), NQ);
}

static void test_features(void **state)
{
    struct fix *f = *state;
    wr(f, CMN(device_feature_select), 4, 0);
    assert_int_equal(rd(f, CMN(device_feature), 4),
                     1u << VIRTIO_RING_F_EVENT_IDX | 1u << 5);
    wr(f, CMN(device_feature_select), 4, 1);
    assert_int_equal(rd(f, CMN(device_feature), 4), 1);       /* VERSION_1 */
    wr(f, CMN(device_feature_select), 4, 7);
    assert_int_equal(rd(f, CMN(device_feature), 4), 0);

    negotiate(f, 1ULL << 5);                        /* no VERSION_1 */
    assert_false(status(f) & VIRTIO_CONFIG_S_FEATURES_OK);
    negotiate(f, 1ULL << 32 | 1ULL << 6);           /* not offered */
    assert_false(status(f) & VIRTIO_CONFIG_S_FEATURES_OK);
    negotiate(f, 1ULL << 32 | 1ULL << 5);
    assert_true(status(f) & VIRTIO_CONFIG_S_FEATURES_OK);
    assert_true(vp_has_feature(&f->vp, 5));
    assert_false(vp_has_feature(&f->vp, VIRTIO_RING_F_EVENT_IDX));
    /* Late feature writes do nothing. */
    wr(f, CMN(guest_feature_select), 4, 0);
    wr(f, CMN(guest_feature), 4, 1u << VIRTIO_RING_F_EVENT_IDX);
    assert_false(vp_has_feature(&f->vp, VIRTIO_RING_F_EVENT_IDX));
    /* DRIVER_OK without FEATURES_OK is refused. */
    wr(f, CMN(device_status), 1, 0);
    wr(f, CMN(device_status), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE |
       VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_false(status(f) & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->nstart, 0);
}

static void setup_queue(struct fix *f, unsigned q, uint16_t size,
                        uint64_t desc, uint64_t avail, uint64_t used)
{
    wr(f, CMN(queue_select), 2, q);
    wr(f, CMN(queue_size), 2, size);
    wr(f, CMN(queue_desc_lo), 4, (uint32_t)desc);
    wr(f, CMN(queue_desc_hi), 4, desc >> 32);
    wr(f, CMN(queue_avail_lo), 4, (uint32_t)avail);
    wr(f, CMN(queue_avail_hi), 4, avail >> 32);
    wr(f, CMN(queue_used_lo), 4, (uint32_t)used);
    wr(f, CMN(queue_used_hi), 4, used >> 32);
    wr(f, CMN(queue_enable), 2, 1);
}

static void test_queues_and_reset(void **state)
{
    struct fix *f = *state;
    negotiate(f, 1ULL << 32 | 1ULL << VIRTIO_RING_F_EVENT_IDX);
    wr(f, CMN(queue_select), 2, 1);
    assert_int_equal(rd(f, CMN(queue_size), 2), 128);
    assert_int_equal(rd(f, CMN(queue_notify_off), 2), 1);
    wr(f, CMN(queue_size), 2, 100);                  /* not a power of 2 */
    assert_int_equal(rd(f, CMN(queue_size), 2), 128);
    wr(f, CMN(queue_size), 2, 256);                  /* above max */
    assert_int_equal(rd(f, CMN(queue_size), 2), 128);
    setup_queue(f, 1, 64, 0x10000, 0x11000, 0x12000);
    assert_int_equal(rd(f, CMN(queue_enable), 2), 1);
    assert_int_equal(rd(f, CMN(queue_desc_lo), 4), 0x10000);
    /* Frozen once enabled. */
    wr(f, CMN(queue_size), 2, 32);
    assert_int_equal(rd(f, CMN(queue_size), 2), 64);
    wr(f, CMN(device_status), 1, status(f) | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(status(f) & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->nstart, 1);
    assert_int_equal(vp_vq(&f->vp, 1)->size, 64);
    assert_true(vp_vq(&f->vp, 1)->event_idx);

    /* Reset: device stopped before the write returns, state cleared. */
    wr(f, CMN(device_status), 1, 0);
    assert_int_equal(f->nstop, 1);
    assert_int_equal(status(f), 0);
    wr(f, CMN(queue_select), 2, 1);
    assert_int_equal(rd(f, CMN(queue_enable), 2), 0);
    assert_int_equal(rd(f, CMN(queue_size), 2), 128);
    assert_int_equal(rd(f, CMN(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);
}

static void test_bad_ring_needs_reset(void **state)
{
    struct fix *f = *state;
    negotiate(f, 1ULL << 32);
    setup_queue(f, 0, 64, 1ULL << 40, 0x11000, 0x12000);
    wr(f, CMN(device_status), 1, status(f) | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_true(status(f) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(f->nstart, 0);
    /* No MSI-X: config change via ISR bit 1 and INTx on pin 16. */
    assert_int_equal(f->vm.irq_level[16], 1);
    assert_int_equal(rd(f, VP_ISR_OFF, 1), VIRTIO_PCI_ISR_CONFIG);
    assert_int_equal(f->vm.irq_level[16], 0);
    assert_int_equal(rd(f, VP_ISR_OFF, 1), 0);
    wr(f, CMN(device_status), 1, 0);
    assert_int_equal(status(f), 0);
}

static bool fd_ready(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, 0) != 1)
        return false;
    uint64_t v;
    assert_int_equal(read(fd, &v, 8), 8);
    return true;
}

static void test_kicks(void **state)
{
    struct fix *f = *state;
    struct mock_vm *m = &f->vm;
    int fd = vp_kick_fd(&f->vp, 2);

    /* Decoding on: ioeventfd for every queue at its own address. */
    assert_true(m->ioev_on[fd % 64]);
    assert_int_equal(m->ioev_addr[fd % 64], f->bar + VP_NOTIFY_OFF + 8);
    /* The MMIO-exit path reaches the same eventfd. */
    assert_false(fd_ready(fd));
    wr(f, VP_NOTIFY_OFF + 8, 2, 2);
    assert_true(fd_ready(fd));
    /* Queue index past the end: ignored. */
    wr(f, VP_NOTIFY_OFF + 12, 2, 3);
    /* Moving the BAR moves the ioeventfds. */
    mock_cfg_write(m, 1, PCI_BASE_ADDRESS_0, 4, 0xd0000000);
    assert_true(m->ioev_on[fd % 64]);
    assert_int_equal(m->ioev_addr[fd % 64], 0xd0000000 + VP_NOTIFY_OFF + 8);
    mock_cfg_write(m, 1, PCI_COMMAND, 2, 0);
    assert_false(m->ioev_on[fd % 64]);
}

static void msix_entry(struct fix *f, unsigned v, uint64_t addr, uint32_t data,
                       bool masked)
{
    uint64_t e = VP_MSIX_TABLE_OFF + 16 * v;
    wr(f, e + 0, 4, (uint32_t)addr);
    wr(f, e + 4, 4, addr >> 32);
    wr(f, e + 8, 4, data);
    wr(f, e + 12, 4, masked);
}

static void test_msix(void **state)
{
    struct fix *f = *state;
    struct mock_vm *m = &f->vm;
    unsigned x = mock_find_cap(m, 1, PCI_CAP_ID_MSIX, -1);
    int vfd = msix_vector_fd(&f->vp.msix, 2);

    /* Entries reset masked. */
    assert_int_equal(rd(f, VP_MSIX_TABLE_OFF + 16 + 12, 4), 1);
    mock_cfg_write(m, 1, x + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    wr(f, CMN(queue_select), 2, 1);
    wr(f, CMN(queue_msix_vector), 2, 2);
    assert_int_equal(rd(f, CMN(queue_msix_vector), 2), 2);
    wr(f, CMN(queue_msix_vector), 2, 99);              /* no such vector */
    assert_int_equal(rd(f, CMN(queue_msix_vector), 2), VIRTIO_MSI_NO_VECTOR);
    wr(f, CMN(queue_msix_vector), 2, 2);

    msix_entry(f, 2, 0xfee00000, 0x41, true);
    assert_int_equal(m->nroute, 0);
    /* Masked: pending bit, no message. */
    vp_notify_queue(&f->vp, 1);
    assert_false(fd_ready(vfd));
    assert_int_equal(rd(f, VP_MSIX_PBA_OFF, 4), 1u << 2);
    /* Unmask: route + irqfd programmed, pending message delivered. */
    wr(f, VP_MSIX_TABLE_OFF + 32 + 12, 4, 0);
    assert_int_equal(m->nroute, 1);
    int gsi = f->vp.msix.v[2].gsi;
    assert_true(gsi >= 24);
    assert_int_equal(m->gsi_addr[gsi], 0xfee00000);
    assert_int_equal(m->gsi_data[gsi], 0x41);
    assert_int_equal(m->gsi_fd[gsi], vfd);
    assert_true(fd_ready(vfd));
    assert_int_equal(rd(f, VP_MSIX_PBA_OFF, 4), 0);
    vp_notify_queue(&f->vp, 1);
    assert_true(fd_ready(vfd));
    /* Retarget while unmasked: same GSI, new data. */
    wr(f, VP_MSIX_TABLE_OFF + 32 + 8, 4, 0x42);
    assert_int_equal(m->nroute, 2);
    assert_int_equal(f->vp.msix.v[2].gsi, gsi);
    assert_int_equal(m->gsi_data[gsi], 0x42);
    /* Function mask. */
    mock_cfg_write(m, 1, x + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    vp_notify_queue(&f->vp, 1);
    assert_false(fd_ready(vfd));
    assert_int_equal(rd(f, VP_MSIX_PBA_OFF, 1), 1u << 2);
    mock_cfg_write(m, 1, x + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    assert_true(fd_ready(vfd));
    assert_int_equal(m->nroute, 2);                    /* unchanged route */
    /* A queue with no vector raises nothing. */
    vp_notify_queue(&f->vp, 0);
    assert_int_equal(m->nirq, 0);
    /* Bad table access sizes are ignored. */
    wr(f, VP_MSIX_TABLE_OFF + 32 + 8, 2, 0x1234);
    assert_int_equal(rd(f, VP_MSIX_TABLE_OFF + 32 + 8, 4), 0x42);
}

static void test_intx(void **state)
{
    struct fix *f = *state;
    struct mock_vm *m = &f->vm;
    vp_notify_queue(&f->vp, 0);
    assert_int_equal(m->irq_level[16], 1);
    assert_int_equal(rd(f, VP_ISR_OFF, 1), 1);
    assert_int_equal(m->irq_level[16], 0);
    /* Interrupt Disable in the command register holds INTx low. */
    mock_cfg_write(m, 1, PCI_COMMAND, 2,
                   PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE);
    m->nirq = 0;
    vp_notify_queue(&f->vp, 0);
    assert_int_equal(m->nirq, 0);
}

static void test_no_ioeventfd(void **state)
{
    struct fix *f = *state;
    struct mock_vm *m = &f->vm;
    mock_cfg_write(m, 1, PCI_COMMAND, 2, 0);
    m->ioev_fail = -ENOSYS;
    mock_cfg_write(m, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    int fd = vp_kick_fd(&f->vp, 0);
    wr(f, VP_NOTIFY_OFF, 2, 0);
    assert_true(fd_ready(fd));
    m->ioev_fail = 0;
}

static void test_device_reset(void **state)
{
    struct fix *f = *state;
    struct mock_vm *m = &f->vm;
    unsigned x = mock_find_cap(m, 1, PCI_CAP_ID_MSIX, -1);

    mock_cfg_write(m, 1, x + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    msix_entry(f, 1, 0xfee00000, 0x33, false);
    negotiate(f, 1ULL << 32);
    setup_queue(f, 0, 64, 0x10000, 0x11000, 0x12000);
    wr(f, CMN(device_status), 1, status(f) | VIRTIO_CONFIG_S_DRIVER_OK);
    assert_int_equal(f->nstart, 1);
    mock_cfg_write(m, 1, PCI_BASE_ADDRESS_0, 4, 0xd0000000);

    vp_device_reset(&f->vp);
    assert_int_equal(f->nstop, 1);
    assert_false(msix_enabled(&f->vp.msix));
    assert_int_equal(mock_cfg_read(m, 1, x + 2, 2) & PCI_MSIX_FLAGS_ENABLE, 0);
    assert_int_equal(mock_cfg_read(m, 1, PCI_COMMAND, 2), 0);
    assert_int_equal(mock_cfg_read(m, 1, PCI_BASE_ADDRESS_0, 4), f->bar);
    assert_int_equal(mock_mmio_read(m, 0xd0000000, 1), ~0ULL);   /* unmapped */
    mock_cfg_write(m, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(status(f), 0);
    assert_int_equal(rd(f, VP_MSIX_TABLE_OFF + 16 + 12, 4), 1);
    assert_int_equal(rd(f, VP_MSIX_TABLE_OFF + 16 + 8, 4), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_caps), T(test_features), T(test_queues_and_reset),
        T(test_bad_ring_needs_reset), T(test_kicks), T(test_msix),
        T(test_intx), T(test_no_ioeventfd), T(test_device_reset),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
