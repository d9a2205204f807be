#include "vmm/vm_sandbox.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/sandbox.h"

int vm_sandbox_confine(const struct dvmm_config *cfg, struct ctl_server *ctl)
{
    const char *const reread[] = { cfg->vm.kernel, cfg->vm.initrd };
    char err[512];
    int ret;

    /* Clients with dvmm's uid or root only (control.c): after the drop,
     * the file must belong to the new uid for it to be used at all.  By
     * path, so before a chroot hides it. */
    if (cfg->sandbox.user[0] && ctl &&
        (ret = ctl_server_chown(ctl, cfg->sandbox.uid, cfg->sandbox.gid)) < 0)
        return ret;
    /* Everything dvmm will touch by path is open: from here on it sees
     * only this directory (chroot needs root, so before the user change). */
    if (cfg->sandbox.chroot[0]) {
        if (chroot(cfg->sandbox.chroot) < 0 || chdir("/") < 0) {
            ret = -errno;
            log_err("%s: sandbox.chroot = '%s': %s", cfg->file, cfg->sandbox.chroot,
                    strerror(-ret));
            return ret;
        }
        log_info("sandbox: chroot %s", cfg->sandbox.chroot);
    }
    if (!cfg->sandbox.user[0])
        return 0;
    ret = sandbox_drop_user(cfg->sandbox.user, cfg->sandbox.uid, cfg->sandbox.gid,
                            err, sizeof(err));
    if (ret < 0) {
        log_err("%s: %s", cfg->file, err);
        return ret;
    }
    /* A reboot loads the kernel again by path: say now, not at the
     * guest's first reset, that the new user cannot.  (chroot and reboot
     * do not go together: the config refuses them.) */
    for (unsigned i = 0; cfg->vm.on_reset == CFG_RESET_REBOOT && i < 2; i++) {
        if (reread[i][0] && access(reread[i], R_OK) < 0) {
            ret = -errno;
            log_err("%s: sandbox.user = '%s' cannot read %s '%s' (%s), which a guest "
                    "reboot loads again; make it readable or set vm.on_reset = exit",
                    cfg->file, cfg->sandbox.user, i ? "vm.initrd" : "vm.kernel",
                    reread[i], strerror(-ret));
            return ret;
        }
    }
    return 0;
}
