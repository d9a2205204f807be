#!/bin/bash
# The modules of vmm/, guest-mem/, virtio/ and kernel-support/ include each
# other without a circle: a module is X.c with X.h, and X depends on Y when
# either file includes Y.h.  The VM's own modules are layered
# vcpu <- vm_mce <- vm <- vm_control <- main (README "Layout"); a vCPU
# sees a vcpu_env, never struct vm.  Two pairs are allowed, and said why:
#   kernel-support/hostcheck: hostcheck.h holds the report types every
#     area module fills in; hostcheck.c, the CLI, calls the areas;
#   virtio/net <-> virtio/vhost_net: vhost is the kernel back end of one
#     virtio-net device and works on its queue pairs.
# A new circle fails here with the cycle printed.  No KVM needed.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh

command -v python3 >/dev/null 2>&1 || tap_skip_all "python3 not installed"
tap_plan 2

cycles=$(python3 - <<'PY'
import glob, re

ALLOWED = {
    frozenset({"virtio/net", "virtio/vhost_net"}),
}
deps = {}
for d in ("vmm", "guest-mem", "virtio", "kernel-support"):
    for f in glob.glob(d + "/*.[ch]"):
        m = f[:-2]
        for inc in re.findall(r'^#include "([^"]+)\.h"', open(f).read(), re.M):
            if inc != m:
                deps.setdefault(m, set()).add(inc)

def allowed(cycle):
    s = frozenset(cycle)
    if s in ALLOWED:
        return True
    # hostcheck.h is the types header of the hostcheck family.
    return all(c.startswith("kernel-support/hostcheck") for c in cycle)

found = set()
def walk(node, path):
    for nxt in sorted(deps.get(node, ())):
        if nxt in path:
            c = path[path.index(nxt):]
            i = c.index(min(c))
            found.add(tuple(c[i:] + c[:i]))
        elif len(path) < 12:
            walk(nxt, path + [nxt])

for m in sorted(deps):
    walk(m, [m])
for c in sorted(found):
    if not allowed(c):
        print(" -> ".join(c + (c[0],)))
PY
)
if [ -z "$cycles" ]; then
    tap_ok "no include circle between modules (allowed: hostcheck types, net/vhost_net)"
else
    tap_not_ok "no include circle between modules" "circles:" "$cycles"
fi

# The vCPU's side of the layering, said directly so the message is plain.
bad=$(grep -l -E '#include "vmm/(vm|vm_mce|vm_control)\.h"' vmm/vcpu.c vmm/vcpu.h)
tap_is "$bad" "" "vcpu.c and vcpu.h include none of vm.h, vm_mce.h, vm_control.h"
tap_done
