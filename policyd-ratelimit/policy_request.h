#ifndef MXKIT_POLICY_REQUEST_H
#define MXKIT_POLICY_REQUEST_H

/* policy_request - Postfix policy delegation protocol requests. */

#include <stddef.h>

#define POLICY_LINE_MAX		8192
#define POLICY_ATTR_MAX		256
#define POLICY_REQUEST_MAX	(64 * 1024)

struct policy_attr {
    unsigned name;			/* offsets into buf */
    unsigned value;
    unsigned hash;			/* of the name (policy_request_get) */
};

struct policy_request {
    char   *buf;
    size_t  len;
    size_t  cap;
    struct policy_attr attrs[POLICY_ATTR_MAX];
    int     count;
};

void    policy_request_init(struct policy_request *req);
void    policy_request_reset(struct policy_request *req);
void    policy_request_free(struct policy_request *req);
const char *policy_request_add_line(struct policy_request *req, const char *line, size_t len);
const char *policy_request_finish(const struct policy_request *req);
const char *policy_request_get(const struct policy_request *req, const char *name);
int     policy_attribute_known(const char *name);
const char *policy_address_domain(const char *addr, char *buf, size_t size);
int     policy_address_routed(const char *addr);

#endif
