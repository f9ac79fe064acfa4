#ifndef MXKIT_RELAY_H
#define MXKIT_RELAY_H

/* relay - move bytes both ways between two sockets with splice(2). */

#include <event2/event.h>

struct relay;

/* Called once: why is NULL after both sides closed in order. */
typedef void (*relay_done_fn) (void *context, const char *why);

struct relay *relay_start(struct event_base *base, int client_fd, int backend_fd,
			          int idle_timeout_ms, relay_done_fn done, void *context);
void    relay_bytes(const struct relay *relay, unsigned long long *up,
		            unsigned long long *down);
void    relay_free(struct relay **relay);

#endif
