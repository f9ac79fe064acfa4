#ifndef MXKIT_LOOKUP_H
#define MXKIT_LOOKUP_H

/* lookup - the client's host name for XCLIENT NAME and REVERSE_NAME. */

#include <event2/dns.h>

#include "addr.h"

struct lookup;

/* name: verified host name, "[UNAVAILABLE]" or "[TEMPUNAVAIL]";
 * reverse_name: the PTR name as found, or the same bracketed forms. */
typedef void (*lookup_done_fn) (void *context, const char *name, const char *reverse_name);

struct lookup *lookup_start(struct evdns_base *dns, struct event_base *base, int timeout_ms,
			            const union addr_sockaddr *client, lookup_done_fn done,
			            void *context);
void    lookup_cancel(struct lookup **lookup);

#endif
