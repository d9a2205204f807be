/* virtio-net framing, pure: the TX checks and the header copy the TAP
 * gets, the RX header translation to what the guest negotiated, the
 * TUNSETOFFLOAD flags, mergeable-buffer packing, and control commands. */
#include <errno.h>
#include <linux/if_tun.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/net_pkt.h"

#define F(b) (1ULL << (b))
#define ALL (F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | \
             F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_TSO4) | \
             F(VIRTIO_NET_F_GUEST_TSO6) | F(VIRTIO_NET_F_MTU) | F(VIRTIO_NET_F_MQ) | \
             F(VIRTIO_NET_F_CTRL_VQ))
#define NEEDS VIRTIO_NET_HDR_F_NEEDS_CSUM

static uint8_t pkt[70000];
static struct vq_elem e;
static struct net_tx tx;

/* A TX chain: header h, then len frame bytes, cut into pieces of `piece`
 * bytes (0: one buffer). */
static void chain(const struct virtio_net_hdr_v1 *h, size_t len, size_t piece)
{
    size_t total = NET_HDR_LEN + len, off = 0;
    memcpy(pkt, h, NET_HDR_LEN);
    for (size_t i = 0; i < len; i++)
        pkt[NET_HDR_LEN + i] = (uint8_t)i;
    memset(&e, 0, sizeof(e));
    if (piece && total / piece >= VQ_MAX_IOV - 1)
        piece = total / (VQ_MAX_IOV - 8) + 1;   /* no more pieces than a chain holds */
    while (off < total) {
        size_t c = piece && total - off > piece ? piece : total - off;
        e.iov[e.nout].iov_base = pkt + off;
        e.iov[e.nout].iov_len = c;
        e.nout++;
        off += c;
    }
    e.out_len = total;
}

static void test_tx_table(void **state)
{
    static const struct {
        const char *what;
        struct virtio_net_hdr_v1 h;
        size_t len;
        uint64_t feat;
        unsigned mtu;
        enum net_drop want;
    } t[] = {
        { "plain", { 0 }, 60, ALL, 1500, NET_PASS },
        { "42-byte ARP (no padding required)", { 0 }, 42, ALL, 1500, NET_PASS },
        { "exactly a header", { 0 }, 14, ALL, 1500, NET_PASS },
        { "runt", { 0 }, 13, ALL, 1500, NET_DROP_RUNT },
        { "empty frame", { 0 }, 0, ALL, 1500, NET_DROP_RUNT },
        { "mtu + vlan", { 0 }, 1518, ALL, 1500, NET_PASS },
        { "over mtu", { 0 }, 1519, ALL, 1500, NET_DROP_OVERSIZE },
        { "small mtu enforced with F_MTU", { 0 }, 1000, ALL, 576, NET_DROP_OVERSIZE },
        { "small mtu, no F_MTU: 1500 floor", { 0 }, 1000, ALL & ~F(VIRTIO_NET_F_MTU), 576, NET_PASS },
        { "jumbo mtu", { 0 }, 9018, ALL, 9000, NET_PASS },
        { "DATA_VALID on TX", { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, 60, ALL, 1500, NET_DROP_FLAGS },
        { "RSC_INFO on TX", { .flags = VIRTIO_NET_HDR_F_RSC_INFO }, 60, ALL, 1500, NET_DROP_FLAGS },
        { "csum ok", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16 }, 60, ALL, 1500, NET_PASS },
        { "csum field last 2 bytes", { .flags = NEEDS, .csum_start = 40, .csum_offset = 18 }, 60, ALL, 1500, NET_PASS },
        { "csum field 1 byte out", { .flags = NEEDS, .csum_start = 40, .csum_offset = 19 }, 60, ALL, 1500, NET_DROP_CSUM },
        { "csum overflow bait", { .flags = NEEDS, .csum_start = 0xffff, .csum_offset = 0xffff }, 60, ALL, 1500, NET_DROP_CSUM },
        { "csum not negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16 }, 60, ALL & ~F(VIRTIO_NET_F_CSUM), 1500, NET_DROP_CSUM },
        { "tso4", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448, .hdr_len = 66 }, 65000, ALL, 1500, NET_PASS },
        { "tso6", { .flags = NEEDS, .csum_start = 54, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV6, .gso_size = 1428, .hdr_len = 86 }, 30000, ALL, 1500, NET_PASS },
        { "tso largest", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, NET_MAX_GSO_FRAME, ALL, 1500, NET_PASS },
        { "tso too large", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, NET_MAX_GSO_FRAME + 1, ALL, 1500, NET_DROP_OVERSIZE },
        { "tso4 not negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, 3000, ALL & ~F(VIRTIO_NET_F_HOST_TSO4), 1500, NET_DROP_GSO },
        { "tso6 not negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV6, .gso_size = 1448 }, 3000, ALL & ~F(VIRTIO_NET_F_HOST_TSO6), 1500, NET_DROP_GSO },
        { "gso without NEEDS_CSUM", { .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, 3000, ALL, 1500, NET_DROP_GSO },
        { "gso size 0", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 }, 3000, ALL, 1500, NET_DROP_GSO },
        { "gso hdr_len past the frame", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 100, .hdr_len = 3001 }, 3000, ALL, 1500, NET_DROP_GSO },
        { "ufo", { .flags = NEEDS, .csum_start = 34, .csum_offset = 6, .gso_type = VIRTIO_NET_HDR_GSO_UDP, .gso_size = 1000 }, 3000, ALL, 1500, NET_DROP_GSO },
        { "ecn", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, .gso_size = 1000 }, 3000, ALL, 1500, NET_DROP_GSO },
        { "unknown gso", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = 0x7f, .gso_size = 1000 }, 3000, ALL, 1500, NET_DROP_GSO },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (size_t piece = 0; piece <= 7; piece += 7) {
            chain(&t[i].h, t[i].len, piece);
            enum net_drop d = net_tx_parse(&e, t[i].feat, t[i].mtu, &tx);
            if (d != t[i].want)
                fail_msg("%s (pieces of %zu): %s, want %s", t[i].what, piece, net_drop_name(d),
                         net_drop_name(t[i].want));
            if (d != NET_PASS)
                continue;
            /* What the TAP gets: our copy first, then exactly the frame. */
            assert_ptr_equal(tx.iov[0].iov_base, &tx.hdr);
            assert_int_equal(tx.frame_len, t[i].len);
            size_t sum = 0;
            for (unsigned k = 1; k < tx.niov; k++) {
                assert_ptr_equal(tx.iov[k].iov_base, pkt + NET_HDR_LEN + sum);
                sum += tx.iov[k].iov_len;
            }
            assert_int_equal(sum, t[i].len);
            assert_int_equal(tx.hdr.num_buffers, 0);
            if (t[i].h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
                assert_int_equal(tx.hdr.gso_size, 0);
                assert_int_equal(tx.hdr.hdr_len, 0);
            }
        }
    }
}

/* The header is read once, into the copy: a guest rewriting it after the
 * check changes nothing the TAP sees. */
static void test_tx_header_copied(void **state)
{
    struct virtio_net_hdr_v1 h = { .gso_size = 1234, .hdr_len = 55, .num_buffers = 3 };
    (void)state;
    chain(&h, 100, 0);
    assert_int_equal(net_tx_parse(&e, ALL, 1500, &tx), NET_PASS);
    ((struct virtio_net_hdr_v1 *)pkt)->flags = 0xff;
    ((struct virtio_net_hdr_v1 *)pkt)->gso_type = VIRTIO_NET_HDR_GSO_UDP;
    assert_int_equal(tx.hdr.flags, 0);
    assert_int_equal(tx.hdr.gso_type, 0);
    assert_int_equal(tx.hdr.gso_size, 0);     /* lies of a non-GSO header cleaned */
    assert_int_equal(tx.hdr.num_buffers, 0);
}

static void test_tx_chain_shape(void **state)
{
    struct virtio_net_hdr_v1 h = { 0 };
    (void)state;
    chain(&h, 100, 0);
    e.nin = 1;                                /* a device-writable buffer too */
    e.iov[1] = (struct iovec){ pkt + 1000, 10 };
    e.in_len = 10;
    assert_int_equal(net_tx_parse(&e, ALL, 1500, &tx), NET_DROP_TX_WRITABLE);
    chain(&h, 0, 0);
    e.out_len = 11;
    e.iov[0].iov_len = 11;
    assert_int_equal(net_tx_parse(&e, ALL, 1500, &tx), NET_DROP_HDR_SHORT);
    memset(&e, 0, sizeof(e));
    assert_int_equal(net_tx_parse(&e, ALL, 1500, &tx), NET_DROP_HDR_SHORT);
}

static void test_rx_fixup(void **state)
{
    static const struct {
        const char *what;
        struct virtio_net_hdr_v1 h;
        size_t len;
        uint64_t feat;
        enum net_drop want;
        uint8_t flags;            /* after, when it passes */
    } t[] = {
        { "plain", { 0 }, 60, ALL, NET_PASS, 0 },
        { "data valid kept", { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, 60, ALL, NET_PASS, VIRTIO_NET_HDR_F_DATA_VALID },
        { "data valid cleared without GUEST_CSUM", { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, 60, 0, NET_PASS, 0 },
        { "rsc info cleared", { .flags = VIRTIO_NET_HDR_F_RSC_INFO | VIRTIO_NET_HDR_F_DATA_VALID }, 60, ALL, NET_PASS, VIRTIO_NET_HDR_F_DATA_VALID },
        { "needs csum", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16 }, 60, ALL, NET_PASS, NEEDS },
        { "needs csum without GUEST_CSUM", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16 }, 60, 0, NET_DROP_CSUM, 0 },
        { "csum outside", { .flags = NEEDS, .csum_start = 59, .csum_offset = 0 }, 60, ALL, NET_DROP_CSUM, 0 },
        { "runt", { 0 }, 13, ALL, NET_DROP_RUNT, 0 },
        { "tso4", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, 60000, ALL, NET_PASS, NEEDS },
        { "tso4 not negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, 60000, ALL & ~F(VIRTIO_NET_F_GUEST_TSO4), NET_DROP_GSO, 0 },
        { "tso6 not negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV6, .gso_size = 1448 }, 60000, ALL & ~F(VIRTIO_NET_F_GUEST_TSO6), NET_DROP_GSO, 0 },
        { "ecn not negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, .gso_size = 1448 }, 60000, ALL, NET_DROP_GSO, 0 },
        { "ecn negotiated", { .flags = NEEDS, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, .gso_size = 1448 }, 60000, ALL | F(VIRTIO_NET_F_GUEST_ECN), NET_PASS, NEEDS },
        { "udp", { .flags = NEEDS, .csum_start = 34, .csum_offset = 6, .gso_type = VIRTIO_NET_HDR_GSO_UDP, .gso_size = 1448 }, 60000, ALL, NET_DROP_GSO, 0 },
        { "gso without csum", { .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448 }, 60000, ALL, NET_DROP_GSO, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct virtio_net_hdr_v1 h = t[i].h;
        h.gso_size = t[i].h.gso_type ? t[i].h.gso_size : 777;   /* stale junk */
        enum net_drop d = net_rx_fixup(&h, t[i].len, t[i].feat);
        if (d != t[i].want)
            fail_msg("%s: %s, want %s", t[i].what, net_drop_name(d), net_drop_name(t[i].want));
        if (d == NET_PASS) {
            assert_int_equal(h.flags, t[i].flags);
            if (!t[i].h.gso_type)
                assert_int_equal(h.gso_size, 0);
        }
    }
}

static void test_offloads(void **state)
{
    (void)state;
    assert_int_equal(net_tun_offloads(0), 0);
    assert_int_equal(net_tun_offloads(F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4)), 0);
    assert_int_equal(net_tun_offloads(F(VIRTIO_NET_F_GUEST_CSUM)), TUN_F_CSUM);
    assert_int_equal(net_tun_offloads(ALL), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    assert_int_equal(net_tun_offloads(F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO6)),
                     TUN_F_CSUM | TUN_F_TSO6);
    assert_int_equal(net_tun_offloads(ALL | F(VIRTIO_NET_F_GUEST_ECN)),
                     TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN);
    /* TSO the guest asked for without GUEST_CSUM: none (TUN needs CSUM). */
    assert_int_equal(net_tun_offloads(F(VIRTIO_NET_F_GUEST_TSO4)), 0);
    assert_int_equal(net_rx_need(ALL, 1500), NET_HDR_LEN + NET_MAX_GSO_FRAME);
    assert_int_equal(net_rx_need(0, 1500), 12 + 1518);
    assert_int_equal(net_rx_need(0, 9000), 12 + 9018);
    assert_int_equal(net_rx_need(0, 576), 12 + 1518);
}

static void test_rx_pack(void **state)
{
    uint32_t cap[5] = { 256, 256, 256, 256, 4096 }, used[5];
    (void)state;
    assert_int_equal(net_rx_pack(cap, 5, 1012, used), 4);
    assert_int_equal(used[0], 256);
    assert_int_equal(used[3], 244);
    assert_int_equal(net_rx_pack(cap, 5, 256, used), 1);
    assert_int_equal(used[0], 256);
    assert_int_equal(net_rx_pack(cap, 5, 257, used), 2);
    assert_int_equal(used[1], 1);
    assert_int_equal(net_rx_pack(cap, 5, 5120, used), 5);
    assert_int_equal(net_rx_pack(cap, 5, 5121, used), 0);
    assert_int_equal(net_rx_pack(cap, 0, 1, used), 0);
}

/* A control chain: out bytes, then `in` writable bytes. */
static uint8_t cbuf[64], ack[4];
static void cchain(const void *out, size_t olen, size_t split, size_t in)
{
    memcpy(cbuf, out, olen);
    memset(&e, 0, sizeof(e));
    if (split && split < olen) {
        e.iov[e.nout++] = (struct iovec){ cbuf, split };
        e.iov[e.nout++] = (struct iovec){ cbuf + split, olen - split };
    } else if (olen) {
        e.iov[e.nout++] = (struct iovec){ cbuf, olen };
    }
    e.out_len = olen;
    if (in) {
        e.iov[e.nout] = (struct iovec){ ack, in };
        e.nin = 1;
        e.in_len = in;
    }
}

static void test_ctrl_parse(void **state)
{
    struct net_ctrl c;
    uint64_t f = ALL;
    (void)state;

    cchain("\x04\x00\x03\x00", 4, 2, 1);
    assert_int_equal(net_ctrl_parse(&e, f, 4, &c), 0);
    assert_int_equal(c.ack, VIRTIO_NET_OK);
    assert_int_equal(c.pairs, 3);
    assert_ptr_equal(c.ack_ptr, ack);
    cchain("\x04\x00\x04\x00", 4, 1, 3);                 /* ack is the last writable byte */
    assert_int_equal(net_ctrl_parse(&e, f, 4, &c), 0);
    assert_int_equal(c.ack, VIRTIO_NET_OK);
    assert_ptr_equal(c.ack_ptr, ack + 2);

    static const struct { const char *out; size_t len; uint64_t feat; } bad[] = {
        { "\x04\x00\x05\x00", 4, ALL },                   /* more than max pairs */
        { "\x04\x00\x00\x00", 4, ALL },                   /* zero pairs */
        { "\x04\x00\x00\x80", 4, ALL },                   /* 0x8000 */
        { "\x04\x00\x01", 3, ALL },                       /* short data */
        { "\x04\x00\x01\x00\x00", 5, ALL },               /* long data */
        { "\x04\x00\x01\x00", 4, ALL & ~F(VIRTIO_NET_F_MQ) },
        { "\x04\x01\x00", 3, ALL },                       /* RSS config */
        { "\x04\x02", 2, ALL },                           /* hash config */
        { "\x00\x00\x01", 3, ALL },                       /* RX promisc */
        { "\x01\x01\x02\x00\x00\x00\x00\x01", 8, ALL },   /* MAC addr set */
        { "\x02\x00\x01\x00", 4, ALL },                   /* VLAN add */
        { "\x03\x00", 2, ALL },                           /* announce ack */
        { "\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00", 10, ALL }, /* offloads */
        { "\x06\x00", 2, ALL },                           /* notification coalescing */
        { "\xff\xff", 2, ALL },
        { "\x04", 1, ALL },                               /* class only */
        { "", 0, ALL },                                   /* nothing */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cchain(bad[i].out, bad[i].len, 0, 1);
        assert_int_equal(net_ctrl_parse(&e, bad[i].feat, 4, &c), 0);
        if (c.ack != VIRTIO_NET_ERR || !c.why)
            fail_msg("bad command %zu got ack %u", i, c.ack);
    }
    cchain("\x04\x00\x01\x00", 4, 0, 0);                 /* no ack byte */
    assert_int_equal(net_ctrl_parse(&e, f, 4, &c), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tx_table),
        cmocka_unit_test(test_tx_header_copied),
        cmocka_unit_test(test_tx_chain_shape),
        cmocka_unit_test(test_rx_fixup),
        cmocka_unit_test(test_offloads),
        cmocka_unit_test(test_rx_pack),
        cmocka_unit_test(test_ctrl_parse),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
