/* The console tty: raw enough that keystrokes reach the guest one at a time
 * without echo, but ISIG stays on so Ctrl-C still stops dvmm cleanly. */
#ifndef DVMM_TERM_H
#define DVMM_TERM_H

#include <stdbool.h>
#include <termios.h>

struct term {
    int fd;
    bool raw;
    struct termios saved;
};

/* No-op (returns 0) when fd is not a tty. */
int term_enter_raw(struct term *t, int fd);
void term_restore(struct term *t);

#endif
