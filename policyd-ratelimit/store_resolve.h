#ifndef MXKIT_STORE_RESOLVE_H
#define MXKIT_STORE_RESOLVE_H

/* store_resolve - Redis and Sentinel host names, looked up on the loop. */

#include <event2/event.h>

#define RESOLVE_ADDRS_MAX	64	/* evdns gives at most 32 A + 32 AAAA */
#define RESOLVE_MS		5000	/* a whole lookup, search list included */

struct resolve_result {
    int     count;			/* 0: failed, see why */
    char    addr[RESOLVE_ADDRS_MAX][64];	/* numeric, in the answer's order */
    char    why[160];
};

typedef void (*resolve_fn) (void *context, const struct resolve_result *result);

struct resolve;
struct resolve_req;

int     resolve_literal(const char *host);
const char *resolve_check(const char *resolv_conf, const char *hosts_file);
struct resolve *resolve_create(struct event_base *base, const char *resolv_conf,
			               const char *hosts_file);
void    resolve_free(struct resolve **resolve);
struct resolve_req *resolve_start(struct resolve *resolve, const char *name,
				          resolve_fn fn, void *context);
void    resolve_cancel(struct resolve_req **req);

#endif
