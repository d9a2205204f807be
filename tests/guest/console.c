#include "console.h"

#include <stdarg.h>

#include "fmt.h"
#include "io.h"

#define COM1		0x3f8
#define UART_LSR	5
#define UART_LSR_THRE	0x20
/* Never hang on a UART that never drains: after this many polls, send anyway. */
#define UART_POLL_MAX	100000

void console_init(void)
{
	outb(COM1 + 1, 0x00);	/* IER: no interrupts, we poll */
	outb(COM1 + 3, 0x80);	/* LCR: DLAB on */
	outb(COM1 + 0, 0x01);	/* divisor 1: 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* LCR: 8N1, DLAB off */
}

static void console_putc(char c)
{
	for (unsigned i = 0; i < UART_POLL_MAX; i++)
		if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
			break;
	outb(COM1, (uint8_t)c);
}

void console_puts(const char *s)
{
	while (*s)
		console_putc(*s++);
}

void console_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	fmt_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	console_puts(buf);
}
