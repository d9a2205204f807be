/* The INI config: iniparser reads the file, this module validates every key
 * into struct dvmm_config.  Every error is one line naming the file, the
 * section.key and the bad value, and cfg_load returns -EINVAL (-errno for an
 * unreadable file); main turns that into exit code 2 before any VM exists.
 *
 * The sections and keys are the schema's (vmm/config_schema.h); unknown
 * ones are errors, so typos never pass silently. */
#ifndef DVMM_CONFIG_H
#define DVMM_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "virtio/blk_config.h"

#define CFG_MAX_DISKS 8
#define CFG_CMDLINE_MAX 2048
#define CFG_MIN_MEMORY (16ULL << 20)
#define CFG_MAX_NETS 8
/* Queue pairs of one NIC: two virtqueues each plus the control queue must
 * fit the transport's 64 (VP_MAX_QUEUES). */
#define CFG_NET_MAX_PAIRS 31
#define CFG_IFNAMSIZ 16            /* IFNAMSIZ: 15 bytes and the NUL */
#define CFG_NET_MIN_MTU 68         /* the IPv4 minimum */
#define CFG_NET_MAX_MTU 65535

enum cfg_on_reset { CFG_RESET_REBOOT, CFG_RESET_EXIT };
enum cfg_vhost { CFG_VHOST_NO, CFG_VHOST_YES, CFG_VHOST_AUTO };
/* [sandbox] seccomp: enforce (SIGSYS ends dvmm), log only, or off. */
enum cfg_seccomp { CFG_SECCOMP_YES, CFG_SECCOMP_LOG, CFG_SECCOMP_NO };

struct cfg_net {
    unsigned index;                /* N of [net.N] */
    char tap[CFG_IFNAMSIZ];        /* TAP interface: used if it exists, else created */
    uint8_t mac[6];                /* given, or derived from vm.name and N */
    bool mac_given;
    unsigned queues;               /* queue pairs after the clamp: 1..vcpus */
    unsigned queues_requested;     /* as written (0 when defaulted) */
    unsigned queue_size;           /* power of two, 2..256; default 256 */
    unsigned mtu;                  /* 68..65535; default 1500 */
    enum cfg_vhost vhost;          /* default no */
};

struct dvmm_config {
    char file[PATH_MAX];
    /* CLOCK_MONOTONIC ns when the file was read and parsed and --set
     * applied, before validation (dvmm run --trace-startup). */
    uint64_t t_parsed;
    struct {
        char name[64];
        unsigned vcpus;            /* default 1 */
        uint64_t memory;           /* bytes; default 256M */
        char kernel[PATH_MAX];     /* required */
        /* With cfg_limits.open_kernel: the kernel, opened read-only by the
         * config check for the loader's first load (one open of it per
         * run); the caller closes it.  Without, kernel_open is false. */
        bool kernel_open;
        int kernel_fd;
        char initrd[PATH_MAX];     /* "" when none */
        char cmdline[CFG_CMDLINE_MAX];
        enum cfg_on_reset on_reset;
    } vm;
    struct {
        bool enabled;              /* default yes */
        char output[PATH_MAX];     /* "stdout" (default) or a file path */
        bool input;                /* read guest input from stdin; default yes */
    } console;
    struct {
        bool enabled;              /* default yes */
        uint16_t port;             /* default 0xf4 */
        unsigned size;             /* 1, 2 or 4 bytes; default 4 */
    } debug_exit;
    struct gm_config memory;
    struct blk_config disk[CFG_MAX_DISKS];   /* virtio-blk's own type */
    unsigned ndisks;
    struct cfg_net net[CFG_MAX_NETS];
    unsigned nnets;
    struct {
        char log[PATH_MAX];        /* "" = stderr */
    } mce;
    struct {
        bool enabled;              /* default yes */
        char socket[PATH_MAX];     /* default $XDG_RUNTIME_DIR/dvmm-NAME.sock or /run/dvmm/NAME.sock */
    } control;
    struct {
        enum cfg_seccomp seccomp;  /* default yes */
        char user[64];             /* "" = stay who we are */
        unsigned uid, gid;         /* of user, looked up at load */
        char chroot[PATH_MAX];     /* "" = none; needs on_reset = exit */
    } sandbox;
};

/* Host facts the checks depend on, passed in so unit tests are deterministic. */
struct cfg_limits {
    unsigned max_vcpus;            /* KVM_CAP_MAX_VCPUS */
    uint64_t host_memory;          /* bytes of host RAM */
    bool open_kernel;              /* keep vm.kernel open (vm.kernel_fd) */
};

/* Parse `file`, apply each "section.key=value" of sets[0..nsets) on top, and
 * validate.  Warnings (such as the queue clamp) go to the log; errors to
 * err/errlen as one line. */
int cfg_load(const char *file, char *const *sets, unsigned nsets,
             const struct cfg_limits *lim, struct dvmm_config *out,
             char *err, size_t errlen);

/* The default MAC of [net.N] in VM `name`: stable across runs, locally
 * administered, unicast. */
void cfg_net_default_mac(const char *name, unsigned index, uint8_t mac[6]);

/* "4G", "512M", "1048576", "64K" -> bytes.  -EINVAL on junk, -ERANGE on overflow. */
int cfg_parse_size(const char *s, uint64_t *out);

#endif
