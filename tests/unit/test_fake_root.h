/* Fake /proc and /sys trees for unit tests: write a file under a temporary
 * root, creating its directories.  Header-only, included by the test files
 * that need it (each test binary is one translation unit plus libdvmm.a). */
#ifndef DVMM_TEST_FAKE_ROOT_H
#define DVMM_TEST_FAKE_ROOT_H

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* mkdir -p of the file's directory under root, then write text to it. */
static inline void put(const char *root, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    FILE *f;

    snprintf(path, sizeof(path), "%s%s", root, rel);
    for (char *s = strchr(path + strlen(root) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

#endif
