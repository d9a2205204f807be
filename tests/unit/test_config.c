/* Config module: every rule of vmm/config.c has a malformed config here that
 * must fail with a message naming the section.key and the value, and the
 * good configs check defaults, overrides and the queue clamp.
 *
 * "@T" in INI text, --set strings and expected messages stands for the
 * per-run temporary directory, which holds a readable "kernel" (vmlinuz),
 * initrd and disk image. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/config.h"
#include "vmm/config_schema.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Test-only fixture shared by all cases: the temp dir made in group setup. */
static char tmpdir[64];

static const struct cfg_limits limits = { .max_vcpus = 4, .host_memory = 4ULL << 30 };

/* ---- helpers ------------------------------------------------------------ */

/* Copy `in` with every "@T" replaced by the temp dir; caller frees. */
static char *expand(const char *in)
{
    size_t cap = strlen(in) * 2 + 256, n = 0;
    char *out = malloc(cap);

    assert_non_null(out);
    for (const char *p = in; *p; p++) {
        if (p[0] == '@' && p[1] == 'T') {
            size_t l = strlen(tmpdir);

            if (n + l + 1 >= cap)
                out = realloc(out, cap = cap * 2 + l);
            assert_non_null(out);
            memcpy(out + n, tmpdir, l);
            n += l;
            p++;
            continue;
        }
        if (n + 2 >= cap)
            out = realloc(out, cap *= 2);
        assert_non_null(out);
        out[n++] = *p;
    }
    out[n] = '\0';
    return out;
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Write `ini` (expanded) to @T/<name> and return its malloc'd path. */
static char *write_ini(const char *name, const char *ini)
{
    char *text = expand(ini), *path;

    assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
    write_file(path, text, strlen(text));
    free(text);
    return path;
}

/* Load `ini` as @T/<name> with --set strings (NULL-terminated, expanded). */
static int load(const char *name, const char *ini, const char *const *sets,
                struct dvmm_config *cfg, char *err, size_t errlen)
{
    char *path = write_ini(name, ini), *xs[8];
    unsigned n = 0;
    int rc;

    for (; sets && sets[n]; n++) {
        assert_true(n < ARRAY_SIZE(xs));
        xs[n] = expand(sets[n]);
    }
    rc = cfg_load(path, xs, n, &limits, cfg, err, errlen);
    for (unsigned i = 0; i < n; i++)
        free(xs[i]);
    free(path);
    return rc;
}

static void expect_error(int rc, int want_rc, const char *err, const char *want)
{
    char *x = expand(want), msg[2048];
    bool ok = rc == want_rc && strstr(err, x);

    /* fail_msg longjmps: free first so ASan sees no leak on failure. */
    snprintf(msg, sizeof(msg), "rc %d (want %d), error '%s'; want it to contain '%s'",
             rc, want_rc, err, x);
    free(x);
    if (!ok)
        fail_msg("%s", msg);
    /* One line, always. */
    assert_null(strchr(err, '\n'));
}

/* ---- malformed configs ---------------------------------------------------- */

#define K "[vm]\nkernel = @T/vmlinuz\n"
#define D0 "[disk.0]\npath = @T/disk.img\n"
#define A10 "aaaaaaaaaa"

struct bad_case {
    const char *name;
    const char *ini;
    const char *sets[4];
    const char *expect;       /* substring of the one-line error */
    const char *file;         /* INI file name; "vm.ini" when NULL */
};

/* Most rows leave `file` out: the table reads better without a NULL column. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct bad_case bad_cases[] = {
    /* structure */
    { "unknown section", K "[vmm]\nx = 1\n", {0}, "vm.ini: [vmm]: unknown section" },
    { "unknown section [disk]", K "[disk]\npath = @T/disk.img\n", {0}, "[disk]: unknown section" },
    { "unknown key", K "memroy = 1G\n", {0}, "vm.ini: vm.memroy = '1G': unknown key" },
    { "unknown key in disk", K D0 "size = 1G\n", {0}, "disk.0.size = '1G': unknown key" },
    { "unknown key in mce", K "[mce]\nbank = 9\n", {0}, "mce.bank = '9': unknown key" },
    { "key outside section", "vcpus = 2\n" K, {0}, "vm.ini: vcpus = '2': key outside any section" },
    { "garbage file", "this is not an INI file\n", {0}, "vm.ini: line 1: syntax error: 'this is not an INI file'" },
    { "broken section line", K "[console\n", {0}, "vm.ini: line 3: '[console': missing ']'" },
    { "junk after section", K "[console] ; the console\n", {0}, "vm.ini: line 3: '[console] ; the console': junk after the section header" },
    { "junk inside section", K "[console]x]\n", {0}, "vm.ini: line 3: '[console]x]': bad section header" },
    { "empty section name", K "[]\nenabled = no\n", {0}, "vm.ini: line 3: '[]': bad section header" },
    { "unterminated quote", K "cmdline = \"console=ttyS0\n", {0}, "vm.ini: line 3: 'cmdline = \"console=ttyS0': unterminated quote" },
    { "junk after quote", K "cmdline = 'quiet'ro\n", {0}, "vm.ini: line 3: 'cmdline = 'quiet'ro': junk after the quoted value" },
    { "line without =", K "vcpus 2\n", {0}, "vm.ini: line 3: syntax error: 'vcpus 2'" },
    { "disk.X (names are lowercased)", K "[disk.X]\npath = @T/disk.img\n", {0}, "vm.ini: [disk.x]: bad disk section (use disk.0 .. disk.7)" },
    { "disk.99", K "[disk.99]\npath = @T/disk.img\n", {0}, "vm.ini: [disk.99]: disk index out of range" },
    { "disk.8", K "[disk.8]\npath = @T/disk.img\n", {0}, "[disk.8]: disk index out of range" },
    { "disk.01 leading zero", K "[disk.01]\npath = @T/disk.img\n", {0}, "[disk.01]: bad disk section" },
    { "disk.-1", K "[disk.-1]\npath = @T/disk.img\n", {0}, "[disk.-1]: bad disk section" },
    /* [vm] */
    { "missing kernel", "[vm]\nvcpus = 1\n", {0}, "vm.ini: vm.kernel: missing (required)" },
    { "empty file", "", {0}, "vm.ini: vm.kernel: missing (required)" },
    { "kernel missing file", "[vm]\nkernel = @T/nope\n", {0}, "vm.ini: vm.kernel = '@T/nope': No such file or directory" },
    { "kernel is a directory", "[vm]\nkernel = @T\n", {0}, "vm.kernel = '@T': not a regular file" },
    { "kernel is not a regular file (a FIFO)", "[vm]\nkernel = @T/fifo\n", {0}, "vm.kernel = '@T/fifo': not a regular file" },
    { "kernel empty", "[vm]\nkernel =\n", {0}, "vm.kernel = '': empty path" },
    { "initrd missing file", K "initrd = @T/nope.img\n", {0}, "vm.initrd = '@T/nope.img': No such file or directory" },
    { "name with space", K "name = my vm\n", {0}, "vm.name = 'my vm': use 1..63 characters" },
    { "name too long", K "name = " A10 A10 A10 A10 A10 A10 "abcd\n", {0}, "vm.name = '" A10 A10 A10 A10 A10 A10 "abcd': use 1..63" },
    { "name from bad file name", K, {0}, "my vm.ini: vm.name = 'my vm' (from the file name)", "my vm.ini" },
    { "vcpus not a number", K "vcpus = two\n", {0}, "vm.vcpus = 'two': not a number" },
    { "vcpus negative", K "vcpus = -1\n", {0}, "vm.vcpus = '-1': not a number" },
    { "vcpus trailing junk", K "vcpus = 2x\n", {0}, "vm.vcpus = '2x': not a number" },
    { "vcpus 0", K "vcpus = 0\n", {0}, "vm.vcpus = '0': must be at least 1" },
    { "vcpus above limit", K "vcpus = 5\n", {0}, "vm.vcpus = '5': more than the host's KVM limit of 4" },
    { "vcpus overflow", K "vcpus = 99999999999999999999999\n", {0}, "vm.vcpus = '99999999999999999999999': too large" },
    { "memory bad suffix", K "memory = 12Q\n", {0}, "vm.ini: vm.memory = '12Q': bad size suffix (use K, M, G or T)" },
    { "memory MB suffix", K "memory = 512MB\n", {0}, "vm.memory = '512MB': bad size suffix" },
    { "memory empty", K "memory =\n", {0}, "vm.memory = '': empty" },
    { "memory fraction", K "memory = 1.5G\n", {0}, "vm.memory = '1.5G': not a size" },
    { "memory inner space", K "memory = 1 G\n", {0}, "vm.memory = '1 G': not a size" },
    { "memory hex", K "memory = 0x1000000\n", {0}, "vm.memory = '0x1000000': not a size" },
    { "memory negative", K "memory = -1G\n", {0}, "vm.memory = '-1G': not a size" },
    { "memory overflow digits", K "memory = 99999999999999999999\n", {0}, "vm.memory = '99999999999999999999': too large" },
    { "memory overflow suffix", K "memory = 17179869184G\n", {0}, "vm.memory = '17179869184G': too large" },
    { "memory too small", K "memory = 8M\n", {0}, "vm.memory = '8M': less than the minimum of 16M" },
    { "memory zero", K "memory = 0\n", {0}, "vm.memory = '0': less than the minimum" },
    { "memory above host", K "memory = 5G\n", {0}, "vm.memory = '5G': more than the host's 4096M of RAM" },
    { "memory not 4K multiple", K "memory = 16385K\n", {0}, "vm.memory = '16385K': not a multiple of 4K" },
    { "bad on_reset", K "on_reset = halt\n", {0}, "vm.on_reset = 'halt': unknown value (use reboot or exit)" },
    /* [console] */
    { "console bad bool", K "[console]\nenabled = maybe\n", {0}, "console.enabled = 'maybe': not a boolean" },
    { "console input bad bool", K "[console]\ninput = 2\n", {0}, "console.input = '2': not a boolean" },
    { "console output empty", K "[console]\noutput =\n", {0}, "console.output = '': empty" },
    /* [debug-exit] */
    { "port 0x10000", K "[debug-exit]\nport = 0x10000\n", {0}, "debug-exit.port = '0x10000': out of range (use 0..65535)" },
    { "port 65536", K "[debug-exit]\nport = 65536\n", {0}, "debug-exit.port = '65536': out of range" },
    { "port bare 0x", K "[debug-exit]\nport = 0x\n", {0}, "debug-exit.port = '0x': not a number" },
    { "port bad hex", K "[debug-exit]\nport = 0xfg\n", {0}, "debug-exit.port = '0xfg': not a number" },
    { "size 3", K "[debug-exit]\nsize = 3\n", {0}, "debug-exit.size = '3': not an I/O width (use 1, 2 or 4)" },
    { "size 8", K "[debug-exit]\nsize = 8\n", {0}, "debug-exit.size = '8': not an I/O width" },
    { "debug-exit bad bool", K "[debug-exit]\nenabled = enabled\n", {0}, "debug-exit.enabled = 'enabled': not a boolean" },
    /* [memory] */
    { "bad backend", K "[memory]\nbackend = shm\n", {0}, "memory.backend = 'shm': unknown value (use anon, memfd, hugetlbfs or dmemfs)" },
    { "hugetlbfs without path", K "[memory]\nbackend = hugetlbfs\n", {0}, "vm.ini: memory.path: missing (required for backend hugetlbfs)" },
    { "dmemfs without path", K "[memory]\nbackend = dmemfs\n", {0}, "memory.path: missing (required for backend dmemfs)" },
    { "path with anon", K "[memory]\npath = /dev/hugepages\n", {0}, "memory.path = '/dev/hugepages': only for backend hugetlbfs or dmemfs (backend is anon)" },
    { "path with memfd", K "[memory]\nbackend = memfd\npath = /x\n", {0}, "memory.path = '/x': only for backend hugetlbfs or dmemfs (backend is memfd)" },
    { "thp with hugetlbfs", K "[memory]\nbackend = hugetlbfs\npath = /dev/hugepages\nthp = yes\n", {0}, "memory.thp = 'yes': only for backend anon or memfd (backend is hugetlbfs)" },
    { "thp with dmemfs", K "[memory]\nbackend = dmemfs\npath = /mnt/dmem\nthp = on\n", {0}, "memory.thp = 'on': only for backend anon or memfd (backend is dmemfs)" },
    { "prealloc bad bool", K "[memory]\nprealloc = sometimes\n", {0}, "memory.prealloc = 'sometimes': not a boolean" },
    { "host_node negative", K "[memory]\nhost_node = -1\n", {0}, "memory.host_node = '-1': not a number" },
    { "host_node too big", K "[memory]\nhost_node = 1024\n", {0}, "memory.host_node = '1024': out of range (use 0..1023)" },
    /* [disk.N] */
    { "disk without path", K "[disk.0]\nreadonly = yes\n", {0}, "vm.ini: disk.0.path: missing (required)" },
    { "disk path missing file", K "[disk.2]\npath = @T/nope.img\n", {0}, "disk.2.path = '@T/nope.img': No such file or directory" },
    { "disk path directory", K "[disk.0]\npath = @T\n", {0}, "disk.0.path = '@T': not a regular file or block device" },
    { "disk path neither file nor block device (a FIFO)", K "[disk.0]\npath = @T/fifo\n", {0}, "disk.0.path = '@T/fifo': not a regular file or block device" },
    { "disk readonly bad bool", K D0 "readonly = ro\n", {0}, "disk.0.readonly = 'ro': not a boolean" },
    { "queues 0", K D0 "queues = 0\n", {0}, "disk.0.queues = '0': must be at least 1" },
    { "queues junk", K D0 "queues = all\n", {0}, "disk.0.queues = 'all': not a number" },
    { "queue_size 3", K D0 "queue_size = 3\n", {0}, "disk.0.queue_size = '3': not a power of two" },
    { "queue_size 512", K D0 "queue_size = 512\n", {0}, "disk.0.queue_size = '512': out of range (use 2..256)" },
    { "queue_size 1", K D0 "queue_size = 1\n", {0}, "disk.0.queue_size = '1': out of range (use 2..256)" },
    { "serial 21 bytes", K D0 "serial = 123456789012345678901\n", {0}, "disk.0.serial = '123456789012345678901': longer than 20 bytes" },
    { "serial not printable", K D0 "serial = a\tb\n", {0}, "disk.0.serial = 'a?b': only printable ASCII" },
    { "bad cache", K D0 "cache = directsync\n", {0}, "disk.0.cache = 'directsync': unknown value (use writeback or none)" },
    { "bad engine", K D0 "engine = aio\n", {0}, "disk.0.engine = 'aio': unknown value (use io_uring or threads)" },
    { "second disk bad", K D0 "[disk.5]\npath = @T/disk.img\nqueue_size = 100\n", {0}, "disk.5.queue_size = '100': not a power of two" },
    { "two writable disks on one file", K D0 "[disk.1]\npath = @T/./disk.img\n", {0}, "disk.1.path = '@T/./disk.img': same file as disk.0" },
    { "shared file, one writable", K D0 "readonly = yes\n[disk.1]\npath = @T/disk.img\n", {0}, "disk.1.path = '@T/disk.img': same file as disk.0; a shared file must be readonly on both" },
    /* [mce], [control] */
    { "control bad bool", K "[control]\nenabled = y\n", {0}, "control.enabled = 'y': not a boolean" },
    { "control socket too long", K "[control]\nsocket = /" A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 "abcdefg\n", {0},
      "control.socket = '/" A10 A10 A10 A10 A10 A10 A10 "aaaaaaaaa...': longer than 107 bytes" },
    { "control socket empty", K "[control]\nsocket =\n", {0}, "control.socket = '': empty path" },
    /* --set */
    { "set without =", K, { "vm.vcpus", NULL }, "--set: 'vm.vcpus': expected section.key=value" },
    { "set without .", K, { "vcpus=2", NULL }, "--set: 'vcpus=2': expected section.key=value" },
    { "set empty section", K, { ".vcpus=2", NULL }, "--set: '.vcpus=2': expected section.key=value" },
    { "set empty key", K, { "vm.=2", NULL }, "--set: 'vm.=2': expected section.key=value" },
    { "set space in name", K, { "vm. vcpus=2", NULL }, "--set: 'vm. vcpus=2': bad character in the name" },
    { "set colon in name", K, { "vm:x.vcpus=2", NULL }, "--set: 'vm:x.vcpus=2': bad character" },
    { "set bad value", K, { "vm.memory=12Q", NULL }, "--set vm.memory: vm.memory = '12Q': bad size suffix (use K, M, G or T)" },
    { "set overrides good file value", K "vcpus = 2\n", { "vm.vcpus=9", NULL }, "--set vm.vcpus: vm.vcpus = '9': more than the host's KVM limit of 4" },
    { "set unknown section", K, { "foo.bar=1", NULL }, "--set foo.bar: [foo]: unknown section" },
    { "set unknown key", K, { "vm.cpus=2", NULL }, "--set vm.cpus: vm.cpus = '2': unknown key" },
    { "set bad disk section", K, { "disk.9.path=@T/disk.img", NULL }, "--set disk.9.path: [disk.9]: disk index out of range" },
    { "set makes a disk without path", K, { "disk.1.readonly=yes", NULL }, "--set disk.1.readonly: disk.1.path: missing (required)" },
    { "set makes hugetlbfs without path", K, { "memory.backend=hugetlbfs", NULL }, "--set memory.backend: memory.path: missing (required for backend hugetlbfs)" },
    { "set later one wins and is named", K, { "vm.vcpus=2", "vm.vcpus=0", NULL }, "--set vm.vcpus: vm.vcpus = '0': must be at least 1" },
    { "file error named after set", K "vcpus = 0\n", { "vm.memory=1G", NULL }, "vm.ini: vm.vcpus = '0': must be at least 1" },
};
#pragma GCC diagnostic pop

static void test_bad(void **state)
{
    const struct bad_case *bc = *state;
    struct dvmm_config cfg;
    char err[1024] = "";
    int rc;

    rc = load(bc->file ? bc->file : "vm.ini", bc->ini, bc->sets, &cfg, err, sizeof(err));
    expect_error(rc, -EINVAL, err, bc->expect);
}

/* ---- whole-file problems -------------------------------------------------- */

static void test_unreadable_file(void **state)
{
    struct dvmm_config cfg;
    char err[512], *path;
    int rc;

    (void)state;
    assert_true(asprintf(&path, "%s/absent.ini", tmpdir) > 0);
    rc = cfg_load(path, NULL, 0, &limits, &cfg, err, sizeof(err));
    expect_error(rc, -ENOENT, err, "@T/absent.ini: cannot read: No such file or directory");
    free(path);

    rc = cfg_load(tmpdir, NULL, 0, &limits, &cfg, err, sizeof(err));
    expect_error(rc, -EISDIR, err, "@T: cannot read: Is a directory");
}

static void test_binary_file(void **state)
{
    static const char bin[] = "[vm]\nkernel = x\n\0\x7f" "ELF\n[junk]\n";
    struct dvmm_config cfg;
    char err[512], *path;
    int rc;

    (void)state;
    assert_true(asprintf(&path, "%s/binary.ini", tmpdir) > 0);
    write_file(path, bin, sizeof(bin) - 1);
    rc = cfg_load(path, NULL, 0, &limits, &cfg, err, sizeof(err));
    expect_error(rc, -EINVAL, err, "binary.ini: not a text file (NUL byte at offset 16)");
    free(path);
}

static void test_line_too_long(void **state)
{
    struct dvmm_config cfg;
    char err[512], ini[2048];
    int rc;

    (void)state;
    snprintf(ini, sizeof(ini), "[vm]\nkernel = @T/vmlinuz\ncmdline = %01100d\n", 0);
    rc = load("long.ini", ini, NULL, &cfg, err, sizeof(err));
    expect_error(rc, -EINVAL, err, "long.ini: line 3: longer than 1024 bytes");
}

/* cmdline: 2047 bytes fit, 2048 do not (only --set can carry them). */
static void test_cmdline_limit(void **state)
{
    struct dvmm_config cfg;
    char err[512], *set;
    const char *sets[2] = { NULL, NULL };
    int rc;

    (void)state;
    set = malloc(CFG_CMDLINE_MAX + 16);
    assert_non_null(set);
    strcpy(set, "vm.cmdline=");
    memset(set + 11, 'c', CFG_CMDLINE_MAX - 1);
    set[11 + CFG_CMDLINE_MAX - 1] = '\0';
    sets[0] = set;
    rc = load("cmdline.ini", K, sets, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(cfg.vm.cmdline), CFG_CMDLINE_MAX - 1);

    strcat(set, "c");
    rc = load("cmdline.ini", K, sets, &cfg, err, sizeof(err));
    expect_error(rc, -EINVAL, err,
                 "--set vm.cmdline: vm.cmdline = 'cccccccccc");
    expect_error(rc, -EINVAL, err, "...': longer than 2047 bytes");
    free(set);
}

/* ---- good configs ----------------------------------------------------------- */

static void test_defaults(void **state)
{
    struct dvmm_config cfg;
    char err[512] = "", want[PATH_MAX];
    int rc;

    (void)state;
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    rc = load("myvm.ini", K, NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    snprintf(want, sizeof(want), "%s/myvm.ini", tmpdir);
    assert_string_equal(cfg.file, want);
    assert_string_equal(cfg.vm.name, "myvm");
    assert_int_equal(cfg.vm.vcpus, 1);
    assert_int_equal(cfg.vm.memory, 256ULL << 20);
    snprintf(want, sizeof(want), "%s/vmlinuz", tmpdir);
    assert_string_equal(cfg.vm.kernel, want);
    assert_string_equal(cfg.vm.initrd, "");
    assert_string_equal(cfg.vm.cmdline, "");
    assert_int_equal(cfg.vm.on_reset, CFG_RESET_REBOOT);
    assert_true(cfg.console.enabled);
    assert_string_equal(cfg.console.output, "stdout");
    assert_true(cfg.console.input);
    assert_true(cfg.debug_exit.enabled);
    assert_int_equal(cfg.debug_exit.port, 0xf4);
    assert_int_equal(cfg.debug_exit.size, 4);
    assert_int_equal(cfg.memory.backend, GM_ANON);
    assert_string_equal(cfg.memory.path, "");
    assert_false(cfg.memory.prealloc);
    assert_false(cfg.memory.thp);
    assert_int_equal(cfg.memory.host_node, -1);
    assert_int_equal(cfg.ndisks, 0);
    assert_string_equal(cfg.mce.log, "");
    assert_true(cfg.control.enabled);
    assert_string_equal(cfg.control.socket, "/run/user/1000/dvmm-myvm.sock");

    unsetenv("XDG_RUNTIME_DIR");
    rc = load("myvm.ini", K, NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.control.socket, "/run/dvmm/myvm.sock");

    /* A name without the .ini suffix is the whole basename. */
    rc = load("plain-name_1.2", K, NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.vm.name, "plain-name_1.2");
}

static void test_full(void **state)
{
    static const char ini[] =
        "; every key, with values other than the defaults\n"
        "[VM]\n"
        "Name = guest-1\n"
        "vcpus = 4\n"
        "memory = 1g\n"
        "kernel = \"@T/vmlinuz\"\n"
        "initrd = @T/initrd.img\n"
        "cmdline = \"console=ttyS0 root=/dev/vda ro;x#y\" ; quoted ; and # kept\n"
        "on_reset = EXIT\n"
        "[console]\n"
        "enabled = On\n"
        "output = @T/console.log\n"
        "input = FALSE\n"
        "[debug-exit]\n"
        "enabled = 0\n"
        "port = 0x501\n"
        "size = 2\n"
        "[memory]\n"
        "backend = hugetlbfs\n"
        "path = /dev/hugepages1G\n"
        "prealloc = true\n"
        "host_node = 1\n"
        "# disks out of order are stored sorted\n"
        "[disk.3]\n"
        "path = @T/disk.img\n"
        "readonly = yes\n"
        "queues = 2\n"
        "queue_size = 64\n"
        "serial = 01234567890123456789\n"
        "cache = none\n"
        "engine = threads\n"
        "[disk.0]\n"
        "path = @T/disk2.img\n"
        "engine = io_uring\n"
        "[mce]\n"
        "log = @T/mce.json\n"
        "[control]\n"
        "enabled = off\n"
        "socket = /tmp/x.sock\n";
    struct dvmm_config cfg;
    char err[512] = "", want[PATH_MAX];
    int rc;

    (void)state;
    rc = load("full.ini", ini, NULL, &cfg, err, sizeof(err));
    if (rc)
        fail_msg("%d: %s", rc, err);
    assert_string_equal(cfg.vm.name, "guest-1");
    assert_int_equal(cfg.vm.vcpus, 4);
    assert_int_equal(cfg.vm.memory, 1ULL << 30);
    snprintf(want, sizeof(want), "%s/initrd.img", tmpdir);
    assert_string_equal(cfg.vm.initrd, want);
    assert_string_equal(cfg.vm.cmdline, "console=ttyS0 root=/dev/vda ro;x#y");
    assert_int_equal(cfg.vm.on_reset, CFG_RESET_EXIT);
    assert_true(cfg.console.enabled);
    snprintf(want, sizeof(want), "%s/console.log", tmpdir);
    assert_string_equal(cfg.console.output, want);
    assert_false(cfg.console.input);
    assert_false(cfg.debug_exit.enabled);
    assert_int_equal(cfg.debug_exit.port, 0x501);
    assert_int_equal(cfg.debug_exit.size, 2);
    assert_int_equal(cfg.memory.backend, GM_HUGETLBFS);
    assert_string_equal(cfg.memory.path, "/dev/hugepages1G");
    assert_true(cfg.memory.prealloc);
    assert_false(cfg.memory.thp);
    assert_int_equal(cfg.memory.host_node, 1);
    assert_int_equal(cfg.ndisks, 2);
    assert_int_equal(cfg.disk[0].index, 0);
    assert_false(cfg.disk[0].readonly);
    assert_int_equal(cfg.disk[0].queues, 4);
    assert_int_equal(cfg.disk[0].queues_requested, 0);
    assert_int_equal(cfg.disk[0].queue_size, 256);
    assert_string_equal(cfg.disk[0].serial, "");
    assert_int_equal(cfg.disk[0].cache, BLK_CACHE_WRITEBACK);
    assert_int_equal(cfg.disk[0].engine, BLK_ENGINE_IO_URING);
    snprintf(want, sizeof(want), "%s/disk2.img", tmpdir);
    assert_string_equal(cfg.disk[0].path, want);
    assert_int_equal(cfg.disk[1].index, 3);
    snprintf(want, sizeof(want), "%s/disk.img", tmpdir);
    assert_string_equal(cfg.disk[1].path, want);
    assert_true(cfg.disk[1].readonly);
    assert_int_equal(cfg.disk[1].queues, 2);
    assert_int_equal(cfg.disk[1].queues_requested, 2);
    assert_int_equal(cfg.disk[1].queue_size, 64);
    assert_string_equal(cfg.disk[1].serial, "01234567890123456789");
    assert_int_equal(cfg.disk[1].cache, BLK_CACHE_NONE);
    assert_int_equal(cfg.disk[1].engine, BLK_ENGINE_THREADS);
    snprintf(want, sizeof(want), "%s/mce.json", tmpdir);
    assert_string_equal(cfg.mce.log, want);
    assert_false(cfg.control.enabled);
    assert_string_equal(cfg.control.socket, "/tmp/x.sock");
}

static void test_backends(void **state)
{
    struct dvmm_config cfg;
    char err[512] = "";
    int rc;

    (void)state;
    rc = load("be.ini", K "[memory]\nbackend = memfd\nthp = yes\n", NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.memory.backend, GM_MEMFD);
    assert_true(cfg.memory.thp);
    rc = load("be.ini", K "[memory]\nbackend = anon\nthp = 1\nhost_node = 0\n", NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.memory.backend, GM_ANON);
    assert_true(cfg.memory.thp);
    assert_int_equal(cfg.memory.host_node, 0);
    rc = load("be.ini", K "[memory]\nbackend = dmemfs\npath = /mnt/dmem\nthp = no\n", NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.memory.backend, GM_DMEMFS);
    assert_string_equal(cfg.memory.path, "/mnt/dmem");
}

/* stderr captured into a file while `fn` runs cfg_load. */
static int load_capturing_stderr(const char *ini, const char *const *sets,
                                 struct dvmm_config *cfg, char *log, size_t loglen)
{
    char err[512] = "", *path;
    int saved, fd, rc;
    ssize_t n;

    assert_true(asprintf(&path, "%s/stderr.txt", tmpdir) > 0);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    rc = load("clamp.ini", ini, sets, cfg, err, sizeof(err));
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    n = pread(fd, log, loglen - 1, 0);
    assert_true(n >= 0);
    log[n] = '\0';
    close(fd);
    free(path);
    if (rc)
        fail_msg("%d: %s", rc, err);
    return rc;
}

static void test_queue_clamp(void **state)
{
    struct dvmm_config cfg;
    char log[1024];

    (void)state;
    load_capturing_stderr(K "vcpus = 2\n" D0 "queues = 8\n", NULL, &cfg, log, sizeof(log));
    assert_int_equal(cfg.ndisks, 1);
    assert_int_equal(cfg.disk[0].queues, 2);
    assert_int_equal(cfg.disk[0].queues_requested, 8);
    if (!strstr(log, "disk.0.queues = 8 is more than the 2 vCPUs; using 2 queues"))
        fail_msg("warning missing, stderr was '%s'", log);
    if (!strstr(log, "clamp.ini: "))
        fail_msg("warning does not name the file: '%s'", log);

    /* From --set, the warning names the --set. */
    {
        const char *sets[] = { "disk.0.queues=3", NULL };

        load_capturing_stderr(K D0, sets, &cfg, log, sizeof(log));
        assert_int_equal(cfg.disk[0].queues, 1);
        assert_int_equal(cfg.disk[0].queues_requested, 3);
        if (!strstr(log, "--set disk.0.queues: disk.0.queues = 3 is more than the 1 vCPUs; using 1 queues"))
            fail_msg("warning missing, stderr was '%s'", log);
    }

    /* Equal to vcpus: no warning. */
    load_capturing_stderr(K "vcpus = 3\n" D0 "queues = 3\n", NULL, &cfg, log, sizeof(log));
    assert_int_equal(cfg.disk[0].queues, 3);
    assert_string_equal(log, "");
}

static void test_set_overrides(void **state)
{
    const char *sets[] = {
        "vm.vcpus=3",
        "VM.Memory=1G",                           /* names are case-insensitive */
        "vm.cmdline=console=ttyS0 root=/dev/vda", /* '=' inside the value */
        "disk.1.path=@T/disk.img",                /* creates [disk.1] */
        "disk.1.readonly=yes",
        "control.socket=/tmp/ctl.sock",           /* creates [control] */
        "vm.name=over",
        NULL,
    };
    struct dvmm_config cfg;
    char err[512] = "";
    int rc;

    (void)state;
    rc = load("set.ini", K "vcpus = 1\nmemory = 64M\nname = file\n", sets, &cfg, err, sizeof(err));
    if (rc)
        fail_msg("%d: %s", rc, err);
    assert_int_equal(cfg.vm.vcpus, 3);
    assert_int_equal(cfg.vm.memory, 1ULL << 30);
    assert_string_equal(cfg.vm.cmdline, "console=ttyS0 root=/dev/vda");
    assert_string_equal(cfg.vm.name, "over");
    assert_int_equal(cfg.ndisks, 1);
    assert_int_equal(cfg.disk[0].index, 1);
    assert_true(cfg.disk[0].readonly);
    assert_int_equal(cfg.disk[0].queues, 3);
    assert_string_equal(cfg.control.socket, "/tmp/ctl.sock");

    /* The later --set wins; an empty value is a value. */
    {
        const char *s2[] = { "vm.on_reset=exit", "vm.on_reset=reboot", "vm.cmdline=", NULL };

        rc = load("set.ini", K "cmdline = quiet\n", s2, &cfg, err, sizeof(err));
        assert_int_equal(rc, 0);
        assert_int_equal(cfg.vm.on_reset, CFG_RESET_REBOOT);
        assert_string_equal(cfg.vm.cmdline, "");
    }
}

static void test_control_socket_length(void **state)
{
    struct dvmm_config cfg;
    char err[512] = "", ini[512], dir[128];
    int rc;

    (void)state;
    /* Exactly 107 bytes fit in sun_path with its NUL. */
    snprintf(ini, sizeof(ini), K "[control]\nsocket = /%0106d\n", 0);
    rc = load("sock.ini", ini, NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(cfg.control.socket), 107);

    /* A default that would not fit is an error only when the socket is on. */
    memset(dir, 'd', 100);
    dir[0] = '/';
    dir[100] = '\0';
    setenv("XDG_RUNTIME_DIR", dir, 1);
    rc = load("sock.ini", K, NULL, &cfg, err, sizeof(err));
    expect_error(rc, -EINVAL, err, "sock.ini: control.socket: the default '/ddd");
    expect_error(rc, -EINVAL, err, "set control.socket");
    rc = load("sock.ini", K "[control]\nenabled = no\n", NULL, &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    unsetenv("XDG_RUNTIME_DIR");
}

static void test_block_device_disk(void **state)
{
    static const char *const candidates[] = { "/dev/loop0", "/dev/ram0", "/dev/sda", "/dev/vda", "/dev/nvme0n1" };
    struct dvmm_config cfg;
    char err[512] = "", ini[256];
    struct stat st;

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
        if (stat(candidates[i], &st) || !S_ISBLK(st.st_mode) || access(candidates[i], R_OK))
            continue;
        snprintf(ini, sizeof(ini), K "[disk.0]\npath = %s\nreadonly = yes\n", candidates[i]);
        assert_int_equal(load("blk.ini", ini, NULL, &cfg, err, sizeof(err)), 0);
        assert_string_equal(cfg.disk[0].path, candidates[i]);
        return;
    }
    print_message("# SKIP: no readable block device on this host\n");
    skip();
}

/* ---- cfg_parse_size ------------------------------------------------------- */

static void test_parse_size(void **state)
{
    static const struct { const char *s; int rc; uint64_t v; } t[] = {
        { "0", 0, 0 },
        { "1", 0, 1 },
        { "4096", 0, 4096 },
        { "4k", 0, 4096 },
        { "4K", 0, 4096 },
        { "1m", 0, 1ULL << 20 },
        { "512M", 0, 512ULL << 20 },
        { "2G", 0, 2ULL << 30 },
        { "1t", 0, 1ULL << 40 },
        { "007", 0, 7 },
        { "18446744073709551615", 0, UINT64_MAX },
        { "16777215T", 0, 16777215ULL << 40 },
        { "17179869183G", 0, 17179869183ULL << 30 },
        { "18446744073709551616", -ERANGE, 0 },
        { "99999999999999999999999", -ERANGE, 0 },
        { "16777216T", -ERANGE, 0 },
        { "17179869184G", -ERANGE, 0 },
        { "18014398509481984K", -ERANGE, 0 },
        { "", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "+1", -EINVAL, 0 },
        { " 1", -EINVAL, 0 },
        { "1 ", -EINVAL, 0 },
        { "1 G", -EINVAL, 0 },
        { "1GB", -EINVAL, 0 },
        { "1GiB", -EINVAL, 0 },
        { "1Q", -EINVAL, 0 },
        { "0x10", -EINVAL, 0 },
        { "1.5G", -EINVAL, 0 },
        { "G", -EINVAL, 0 },
        { "1G1", -EINVAL, 0 },
        { "1KK", -EINVAL, 0 },
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        uint64_t v = 0xdead;
        int rc = cfg_parse_size(t[i].s, &v);

        if (rc != t[i].rc || (rc == 0 && v != t[i].v))
            fail_msg("'%s': rc %d value %llu, want rc %d value %llu", t[i].s, rc,
                     (unsigned long long)v, t[i].rc, (unsigned long long)t[i].v);
    }
    assert_int_equal(cfg_parse_size(NULL, &(uint64_t){0}), -EINVAL);
}

/* ---- the schema ------------------------------------------------------------ */

/* Rows the loader and the README printer can use: a field that fits the
 * type, enum names, a README text where the type says nothing, and a
 * default that loads (test_defaults checks what it loads to). */
static void test_schema_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        char what[96];

        snprintf(what, sizeof(what), "row %zu (%s.%s)", i, cfg_sections[k->sec].name, k->key);
        if (k->sec >= CFG_SEC_NR || !k->key || !*k->key || !k->size)
            fail_msg("%s: no section, key or field", what);
        for (size_t j = 0; j < i; j++)
            if (cfg_keys[j].sec == k->sec && !strcmp(cfg_keys[j].key, k->key))
                fail_msg("%s: listed twice", what);
        switch (k->type) {
        case CFG_T_BOOL:
            if (k->size != sizeof(bool))
                fail_msg("%s: a bool field is %zu bytes", what, k->size);
            break;
        case CFG_T_UINT:
        case CFG_T_SIZE:
            if (k->size != 1 && k->size != 2 && k->size != 4 && k->size != 8)
                fail_msg("%s: a %zu-byte integer", what, k->size);
            if (k->min > cfg_key_max(k))
                fail_msg("%s: min above max", what);
            break;
        case CFG_T_ENUM:
            if (!k->names || !k->names[0].name || k->size != sizeof(int))
                fail_msg("%s: an enum needs names and an int-sized field", what);
            break;
        case CFG_T_STR:
        case CFG_T_PATH:
            if (k->size < 2)
                fail_msg("%s: no room for a string", what);
            break;
        case CFG_T_CUSTOM:
            if (!k->hook || !k->values)
                fail_msg("%s: a custom row needs its hook and README values", what);
            break;
        }
        if (k->req && k->def)
            fail_msg("%s: required, yet has a default", what);
    }
}

static void test_schema_enum_name(void **state)
{
    (void)state;
    assert_string_equal(cfg_enum_name(CFG_SEC_VM, "on_reset", CFG_RESET_EXIT), "exit");
    assert_string_equal(cfg_enum_name(CFG_SEC_NET, "vhost", CFG_VHOST_AUTO), "auto");
    assert_string_equal(cfg_enum_name(CFG_SEC_DISK, "engine", BLK_ENGINE_THREADS), "threads");
    assert_string_equal(cfg_enum_name(CFG_SEC_MEMORY, "backend", GM_DMEMFS), "dmemfs");
    assert_null(cfg_enum_name(CFG_SEC_DISK, "engine", BLK_ENGINE_DEFAULT));
    assert_null(cfg_enum_name(CFG_SEC_VM, "vcpus", 1));
    assert_null(cfg_enum_name(CFG_SEC_VM, "no_such_key", 0));
}

/* The README table: a header, then one row per key with three cells, with
 * every '|' inside a cell escaped. */
static void test_schema_markdown(void **state)
{
    static const char head[] = "| key | values | default |\n| --- | --- | --- |\n";
    char *buf = NULL, *line, *save = NULL;
    size_t len = 0, rows = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(f);
    assert_int_equal(cfg_schema_markdown(f), 0);
    assert_int_equal(fclose(f), 0);
    assert_true(!strncmp(buf, head, sizeof(head) - 1));
    for (line = strtok_r(buf + sizeof(head) - 1, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned bars = 0;

        for (const char *p = line; *p; p++)
            bars += *p == '|' && (p == line || p[-1] != '\\');
        if (bars != 4 || strncmp(line, "| `[", 4))
            fail_msg("not a 3-cell row: '%s'", line);
        rows++;
    }
    assert_int_equal(rows, cfg_nkeys);
    free(buf);
}

/* ---- fixture and runner ------------------------------------------------------ */

static int group_setup(void **state)
{
    char path[PATH_MAX];

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dvmm-cfg-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof(path), "%s/vmlinuz", tmpdir);
    write_file(path, "kernel", 6);
    snprintf(path, sizeof(path), "%s/initrd.img", tmpdir);
    write_file(path, "initrd", 6);
    snprintf(path, sizeof(path), "%s/disk.img", tmpdir);
    write_file(path, "disk", 4);
    snprintf(path, sizeof(path), "%s/disk2.img", tmpdir);
    write_file(path, "disk", 4);
    /* The file that is neither regular nor a block device is our own FIFO
     * (only stat()ed, never opened): /dev/null was found replaced by a
     * regular file on a shared machine, which made these cases fail. */
    snprintf(path, sizeof(path), "%s/fifo", tmpdir);
    if (mkfifo(path, 0600) < 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[PATH_MAX];

    (void)state;
    /* Only our own mkdtemp directory, whose name we just made. */
    if (strncmp(tmpdir, "/tmp/dvmm-cfg-", 14))
        return -1;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

#define NGOOD 15
static struct CMUnitTest tests[ARRAY_SIZE(bad_cases) + NGOOD];

/* --markdown: print README.md's key table (config-readme.t compares). */
int main(int argc, char **argv)
{
    static const struct CMUnitTest good[NGOOD] = {
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_binary_file),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_cmdline_limit),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_backends),
        cmocka_unit_test(test_queue_clamp),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_control_socket_length),
        cmocka_unit_test(test_block_device_disk),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_schema_rows),
        cmocka_unit_test(test_schema_markdown),
        cmocka_unit_test(test_schema_enum_name),
    };
    char *names[ARRAY_SIZE(bad_cases)];
    int rc;

    if (argc == 2 && !strcmp(argv[1], "--markdown"))
        return cfg_schema_markdown(stdout) ? 1 : 0;

    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
        if (asprintf(&names[i], "bad config: %s", bad_cases[i].name) < 0)
            return 1;
        tests[i] = (struct CMUnitTest){
            .name = names[i],
            .test_func = test_bad,
            .initial_state = (void *)&bad_cases[i],
        };
    }
    memcpy(tests + ARRAY_SIZE(bad_cases), good, sizeof(good));
    cmocka_set_message_output(CM_OUTPUT_TAP);
    rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++)
        free(names[i]);
    return rc;
}
