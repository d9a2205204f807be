/* Polled 8250 UART output on COM1 (0x3f8): the guest's only channel out. */
#ifndef GUEST_CONSOLE_H
#define GUEST_CONSOLE_H

void console_init(void);
void console_puts(const char *s);
void console_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
