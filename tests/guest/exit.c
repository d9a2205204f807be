#include "exit.h"

#include "io.h"

/* One of the few globals: the exception path must find the port without
 * any context to hand. */
static uint16_t exit_port = DEBUG_EXIT_PORT_DEFAULT;

void guest_set_exit_port(uint16_t port)
{
	exit_port = port;
}

void guest_exit(uint32_t status)
{
	outl(exit_port, status);
	cpu_halt_forever();
}
