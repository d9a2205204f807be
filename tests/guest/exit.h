/* Ending the run through the isa-debug-exit compatible port. */
#ifndef GUEST_EXIT_H
#define GUEST_EXIT_H

#include <stdint.h>

#define DEBUG_EXIT_PORT_DEFAULT 0xf4

void guest_set_exit_port(uint16_t port);
/* Writes status (0 = all passed) to the exit port; if that returns (no such
 * device), halts for good. */
void guest_exit(uint32_t status) __attribute__((noreturn));

#endif
