#ifndef MXKIT_STORE_SENTINEL_H
#define MXKIT_STORE_SENTINEL_H

/* store_sentinel - the Redis master's address, from Redis Sentinel. */

#include <event2/event.h>

#include "store.h"

typedef void (*sentinel_found_fn) (void *context, const char *host, int port);

struct sentinel;
struct resolve;

struct sentinel *sentinel_create(struct event_base *base, const struct store_url *url,
			                 struct resolve *resolve, sentinel_found_fn found,
				         void *context);
void    sentinel_ask(struct sentinel *sentinel);
void    sentinel_free(struct sentinel **sentinel);

#endif
