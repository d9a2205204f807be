/* hostcheck's I/O lines: see hostcheck_io.h. */
#include "kernel-support/hostcheck_io.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/if_tun.h>
#include <liburing.h>

#include "kernel-support/hostcheck_root.h"
#include "virtio/tap.h"
#include "virtio/vhost_net.h"

/* virtio-net: what TUNGETFEATURES says (multi-queue TAPs, vnet headers) and
 * whether vhost-net is there.  Under a fake root the features come from
 * <root>/.tun-features (hex), vhost from <root>/dev/vhost-net. */
static void hc_io_check_net(struct hc_ctx *x)
{
    struct hc_check *c;
    unsigned feat = 0;
    int perr = 0;
    char src[48] = "TUNGETFEATURES";
    bool probed = true;

    if (x->real) {
        perr = -tap_probe("/dev/net/tun", &feat);
    } else {
        char v[64];
        if (!hc_root_read_line(x, "/.tun-features", v, sizeof(v))) {
            feat = (unsigned)strtoul(v, NULL, 16);
            snprintf(src, sizeof(src), "TUNGETFEATURES (fixture)");
        } else {
            probed = false;
        }
    }
    if (!probed) {
        hc_add(x, "tun-multiqueue", HC_OK, "not probed under a fake root");
    } else if (perr) {
        c = hc_add(x, "tun-multiqueue", HC_WARN, "cannot probe /dev/net/tun: %s", strerror(perr));
        hc_advise(c, "virtio-net ([net.N]) needs a TAP: modprobe tun");
    } else if ((feat & (IFF_MULTI_QUEUE | IFF_VNET_HDR)) == (IFF_MULTI_QUEUE | IFF_VNET_HDR)) {
        hc_add(x, "tun-multiqueue", HC_OK, "%s 0x%x: IFF_MULTI_QUEUE and IFF_VNET_HDR", src, feat);
    } else {
        c = hc_add(x, "tun-multiqueue", HC_WARN, "%s 0x%x: IFF_MULTI_QUEUE %s, IFF_VNET_HDR %s",
                   src, feat, feat & IFF_MULTI_QUEUE ? "yes" : "no",
                   feat & IFF_VNET_HDR ? "yes" : "no");
        hc_advise(c, feat & IFF_VNET_HDR ? "net.N.queues > 1 needs multi-queue TAPs (Linux >= 3.8)"
                                         : "virtio-net needs vnet headers on the TAP");
    }

    char vh[PATH_MAX + 64];
    struct stat st;
    hc_root_path(x, VHOST_NET_DEV, vh, sizeof(vh));
    if (stat(vh, &st)) {
        c = hc_add(x, "vhost-net", HC_WARN, "%s: %s", VHOST_NET_DEV, strerror(errno));
        hc_advise(c, "net.N.vhost = yes needs it (modprobe vhost_net); vhost = auto and no use "
                     "the user-space datapath");
    } else if (x->real) {
        int fd = open(vh, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            c = hc_add(x, "vhost-net", HC_WARN, "%s: %s", VHOST_NET_DEV, strerror(errno));
            hc_advise(c, "net.N.vhost = yes needs read-write access to it");
        } else {
            close(fd);
            hc_add(x, "vhost-net", HC_OK, "%s opens read-write", VHOST_NET_DEV);
        }
    } else {
        hc_add(x, "vhost-net", HC_OK, "%s present", VHOST_NET_DEV);
    }
}


void hc_io_check(struct hc_ctx *x)
{
    uint64_t dis = 0;
    struct hc_check *c;
    int r = hc_root_read_u64(x, "/proc/sys/kernel/io_uring_disabled", &dis);
    char probe[128] = "";
    int perr = 0;
    if (x->real) {
        struct io_uring ring;
        int q = io_uring_queue_init(2, &ring, 0);
        if (q == 0) {
            io_uring_queue_exit(&ring);
            snprintf(probe, sizeof(probe), "io_uring_setup probe ok");
        } else {
            perr = -q;
            snprintf(probe, sizeof(probe), "io_uring_setup probe: %s", strerror(perr));
        }
    } else {
        char v[64];
        if (!hc_root_read_line(x, "/.io_uring", v, sizeof(v))) {
            if (strcmp(v, "ok")) {
                perr = isdigit((unsigned char)v[0]) ? atoi(v) : EPERM;
                snprintf(probe, sizeof(probe), "io_uring_setup probe: %s (fixture)", v);
            } else {
                snprintf(probe, sizeof(probe), "io_uring_setup probe ok (fixture)");
            }
        } else {
            snprintf(probe, sizeof(probe), "no probe under a fake root");
        }
    }
    char sysctl[64];
    if (r)
        snprintf(sysctl, sizeof(sysctl), "no io_uring_disabled sysctl");
    else
        snprintf(sysctl, sizeof(sysctl), "io_uring_disabled=%" PRIu64, dis);
    c = hc_add(x, "io-uring", dis || perr ? HC_WARN : HC_OK, "%s; %s", sysctl, probe);
    if (dis == 2 || perr)
        hc_advise(c, "virtio-blk falls back to engine=threads");
    else if (dis == 1)
        hc_advise(c, "only members of kernel.io_uring_group may use io_uring; others get engine=threads");

    char tun[PATH_MAX + 64];
    hc_root_path(x, "/dev/net/tun", tun, sizeof(tun));
    struct stat st;
    if (stat(tun, &st)) {
        c = hc_add(x, "tun", HC_WARN, "/dev/net/tun: %s", strerror(errno));
        hc_advise(c, "virtio-net (planned) needs it: modprobe tun");
    } else if (x->real && !S_ISCHR(st.st_mode)) {
        c = hc_add(x, "tun", HC_WARN, "/dev/net/tun is not a character device");
        hc_advise(c, "recreate it: mknod /dev/net/tun c 10 200");
    } else {
        c = hc_add(x, "tun", access(tun, R_OK | W_OK) ? HC_WARN : HC_OK, "/dev/net/tun %s",
                   access(tun, R_OK | W_OK) ? "present, not read-write for this user" : "present");
    }
    hc_io_check_net(x);
}

void hc_io_check_config(struct hc_ctx *x, const struct dvmm_config *cfg)
{
    struct hc_check *c;

    for (unsigned i = 0; i < cfg->ndisks; i++) {
        const struct blk_config *d = &cfg->disk[i];
        char name[HC_NAME_MAX];
        snprintf(name, sizeof(name), "config-disk.%u", d->index);
        int mode = d->readonly ? R_OK : R_OK | W_OK;
        if (access(d->path, mode)) {
            c = hc_add(x, name, HC_FAIL, "%s: %s%s", d->path, strerror(errno),
                       errno == EACCES ? (d->readonly ? " (read)" : " (read-write)") : "");
            hc_advise(c, "%s", errno == ENOENT ? "create it (truncate -s SIZE FILE) or fix disk.N.path"
                                               : "fix its permissions, or set readonly=yes");
        } else {
            hc_add(x, name, HC_OK, "%s %s", d->path, d->readonly ? "readable" : "read-write");
        }
    }

}
