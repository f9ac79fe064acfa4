#ifndef LMTP_WEBHOOK_ROUTE_H
#define LMTP_WEBHOOK_ROUTE_H

/* route.h - recipient patterns and the URLs they route to */

#include <stddef.h>

#define ROUTE_MAX_CAPTURES 9
#define ROUTE_MAX_SECRETS 2		/* the current one and the next */

struct webhook_route {
    char   *pattern;			/* lower case, '*' = capture */
    char   *url;			/* with {1}..{9} */
    char   *secret_files[ROUTE_MAX_SECRETS];	/* NULL: the global secret */
    int     secret_count;
    int     raw_message;		/* raw_message=yes */
    int     raw_given;			/* raw_message= seen */
};

#define ROUTE_SETTING "lmtp_webhook_route"	/* then 2, 3, ... without a gap */

const char *route_parse(const char *value, struct webhook_route *route);
int     route_expand_secrets(struct webhook_route *route, const char *address);
char   *route_setting_name(unsigned int n, char *buf, size_t size);
unsigned int route_next(const char *const *names, size_t count);
const char *route_unread(const char *name, unsigned int next, char *buf, size_t size);
int     route_match(const struct webhook_route *route, const char *address,
		            char **url_r, char **workspace_r);
int     route_could_match(const char *value, const char *address);
char   *route_url_redact(const char *url);
void    route_free(struct webhook_route *route);
size_t  route_detail_cut(const char *localpart, const char *delimiters);
size_t  route_detail_before(const char *localpart, const char *delimiters, size_t end);

#endif
