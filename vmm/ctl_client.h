/* `dvmm ctl SOCKET COMMAND [key=value ...]`: one request to a running
 * dvmm's control socket, its reply printed as indented JSON on stdout.
 *
 * Values that parse as decimal integers are sent as JSON integers, except
 * gpa, which always goes as a string so "0x1000" and "4096" both work.
 * Exit status: 0 when the reply says ok, 1 when it says not ok, 2 for a
 * usage error, an unreachable socket or an unreadable reply (the message
 * names the socket path and the errno). */
#ifndef DVMM_CTL_CLIENT_H
#define DVMM_CTL_CLIENT_H

#include <stddef.h>

#include <json-c/json.h>

#define CTL_CLIENT_TIMEOUT_S 30    /* a wedged main loop must not hang scripts */

/* argv[0] is "ctl". */
int ctl_client_main(int argc, char **argv);

/* The request object for `cmd` with `nargs` "key=value" strings; NULL with a
 * one-line message in err for a malformed, reserved ("cmd") or repeated
 * key. */
json_object *ctl_client_request(const char *cmd, int nargs, char *const *args,
                                char *err, size_t errlen);

/* Connect, send `req` as one line and return the parsed reply.  NULL with
 * *errp = -errno and a message naming the socket in err. */
json_object *ctl_client_call(const char *path, json_object *req, int *errp,
                             char *err, size_t errlen);

#endif
