#include "vmm/term.h"

#include <errno.h>
#include <unistd.h>

int term_enter_raw(struct term *t, int fd)
{
    struct termios raw;

    t->fd = fd;
    t->raw = false;
    if (!isatty(fd))
        return 0;
    if (tcgetattr(fd, &t->saved) < 0)
        return -errno;
    raw = t->saved;
    raw.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR |
                               ICRNL | IXON);
    raw.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | IEXTEN);
    raw.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &raw) < 0)
        return -errno;
    t->raw = true;
    return 0;
}

void term_restore(struct term *t)
{
    if (t->raw) {
        tcsetattr(t->fd, TCSANOW, &t->saved);
        t->raw = false;
    }
}
