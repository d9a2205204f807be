#include "virtio/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/log.h"

#define TAP_DEV "/dev/net/tun"

static int tap_setiff(int fd, const char *name, short flags)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_flags = flags;
    return ioctl(fd, TUNSETIFF, &ifr) < 0 ? -errno : 0;
}

/* SIOCSIFMTU and IFF_UP on an interface we just created. */
static void tap_configure_new(struct tap *t, unsigned mtu)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (s < 0) {
        log_warn("tap %s: socket: %s; left down with the default MTU", t->name,
                 strerror(errno));
        return;
    }
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t->name);
    ifr.ifr_mtu = (int)mtu;
    if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
        log_warn("tap %s: setting MTU %u: %s", t->name, mtu, strerror(errno));
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t->name);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            log_warn("tap %s: bringing it up: %s", t->name, strerror(errno));
    }
    close(s);
}

int tap_open(struct tap *t, const char *name, unsigned nq, unsigned mtu,
             const char *what, char *err, size_t errlen)
{
    short flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
    int hdr = TAP_VNET_HDR_LEN, r = 0;
    bool existed;

    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < TAP_MAX_QUEUES; i++)
        t->fd[i] = -1;
    if (!nq || nq > TAP_MAX_QUEUES)
        return log_fail(err, errlen, -EINVAL, "%s: %u queues (use 1..%u)", what, nq,
                        TAP_MAX_QUEUES);
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->is_tap = true;
    existed = if_nametoindex(name) != 0;

    for (unsigned i = 0; i < nq; i++) {
        int fd = open(TAP_DEV, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            r = -errno;
            log_fail(err, errlen, r, "%s = '%s': cannot open %s: %s%s", what, name, TAP_DEV,
                     strerror(-r), r == -ENOENT ? " (modprobe tun)" : "");
            goto fail;
        }
        t->fd[i] = fd;
        t->nq = i + 1;
        r = tap_setiff(fd, name, flags);
        /* An interface created without multi_queue refuses the flag; one
         * queue works without it. */
        if (r == -EINVAL && i == 0 && existed && nq == 1) {
            flags &= ~IFF_MULTI_QUEUE;
            r = tap_setiff(fd, name, flags);
        }
        if (r < 0) {
            if (r == -EINVAL && existed)
                log_fail(err, errlen, r, "%s = '%s': the interface exists but is not a "
                         "TAP that takes %u queue%s with vnet headers (create it with "
                         "`ip tuntap add dev %s mode tap%s`)", what, name, nq,
                         nq == 1 ? "" : "s", name, nq > 1 ? " multi_queue" : "");
            else if (r == -EPERM)
                log_fail(err, errlen, r, "%s = '%s': %s (needs CAP_NET_ADMIN, or a TAP "
                         "made for this user: ip tuntap add dev %s mode tap "
                         "multi_queue user UID)", what, name, strerror(-r), name);
            else if (r == -EBUSY)
                log_fail(err, errlen, r, "%s = '%s': busy (another process holds its "
                         "queue%s)", what, name, nq == 1 ? "" : "s");
            else
                log_fail(err, errlen, r, "%s = '%s': TUNSETIFF (queue %u): %s", what, name,
                         i, strerror(-r));
            goto fail;
        }
        if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
            r = -errno;
            log_fail(err, errlen, r, "%s = '%s': TUNSETVNETHDRSZ %d: %s", what, name, hdr,
                     strerror(-r));
            goto fail;
        }
        t->attached[i] = true;
    }
    t->multi_queue = flags & IFF_MULTI_QUEUE;
    t->created = !existed;
    if (t->created)
        tap_configure_new(t, mtu);
    /* Nothing may be handed to us before the guest says what it takes. */
    tap_set_offload(t, 0);
    return 0;

fail:
    tap_close(t);
    return r;
}

void tap_adopt(struct tap *t, const int *fds, unsigned nq)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < TAP_MAX_QUEUES; i++)
        t->fd[i] = -1;
    snprintf(t->name, sizeof(t->name), "adopted");
    t->nq = nq > TAP_MAX_QUEUES ? TAP_MAX_QUEUES : nq;
    for (unsigned i = 0; i < t->nq; i++) {
        t->fd[i] = fds[i];
        t->attached[i] = true;
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
}

void tap_close(struct tap *t)
{
    for (unsigned i = 0; i < TAP_MAX_QUEUES; i++) {
        if (t->fd[i] >= 0)
            close(t->fd[i]);
        t->fd[i] = -1;
    }
    t->nq = 0;
}

int tap_set_offload(struct tap *t, unsigned tun_flags)
{
    if (!t->is_tap || !t->nq)
        return 0;
    /* The offloads belong to the interface: one fd sets them for all. */
    if (ioctl(t->fd[0], TUNSETOFFLOAD, (unsigned long)tun_flags) < 0)
        return -errno;
    t->offload = tun_flags;
    return 0;
}

int tap_set_queue(struct tap *t, unsigned q, bool attach)
{
    struct ifreq ifr;

    if (q >= t->nq || t->attached[q] == attach)
        return 0;
    if (!t->is_tap || !t->multi_queue) {
        t->attached[q] = attach;
        return 0;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    if (ioctl(t->fd[q], TUNSETQUEUE, &ifr) < 0)
        return -errno;
    t->attached[q] = attach;
    return 0;
}

void tap_set_carrier(struct tap *t, bool up)
{
    int on = up;

    if (t->is_tap && t->nq && ioctl(t->fd[0], TUNSETCARRIER, &on) < 0)
        log_debug("tap %s: TUNSETCARRIER: %s", t->name, strerror(errno));
}

int tap_probe(const char *dev, unsigned *features)
{
    int fd = open(dev ? dev : TAP_DEV, O_RDWR | O_CLOEXEC), r = 0;

    *features = 0;
    if (fd < 0)
        return -errno;
    if (ioctl(fd, TUNGETFEATURES, features) < 0)
        r = -errno;
    close(fd);
    return r;
}
