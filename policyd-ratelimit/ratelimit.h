#ifndef MXKIT_RATELIMIT_H
#define MXKIT_RATELIMIT_H

/* limits - rate limits, overrides and exemptions from the configuration. */

#include "cidr_list.h"
#include "config.h"
#include "htable.h"
#include "policy_request.h"

#define LIMIT_RATES_MAX	4
#define LIMIT_KEY_MAX	512		/* key buffers; keys are shorter: */
#define RATELIMIT_KEY_PLAIN_MAX	256	/* values this long or longer are */
#define RATELIMIT_KEY_HASHED	256	/* hashed to keys of this length */
#define RATELIMIT_DELIMITER	"+"	/* recipient_delimiter: Debian's and Dovecot's */
#define LIMIT_NAME_MAX	64

enum limit_count { COUNT_MESSAGES, COUNT_RECIPIENTS, COUNT_BYTES };
enum limit_action { ACTION_DEFER, ACTION_REJECT, ACTION_HOLD, ACTION_WARN };

struct limit_rate {
    long long count;
    long long period_ms;
    long long burst;			/* 0: same as count */
    char    text[48];			/* as written, "30/1m" */
};

struct limit_rates {
    struct limit_rate rate[LIMIT_RATES_MAX];
    int     count;
};

struct limit {
    char   *name;
    char   *key_attr;			/* attribute, sender_domain, ... */
    int     v4_prefix;			/* client_address/N/M, else -1 */
    int     v6_prefix;
    struct limit_rates rates;
    enum limit_count count;
    enum limit_action action;
    int     dry_run;
    char   *unless;			/* skip when this attribute is set */
    int     per_recipient;		/* key derived from the recipient */
    struct htable *overrides;		/* key value -> struct limit_rates */
    const char *delimiter;		/* limits.delimiter */
};

struct exemption {
    char   *attr;
    struct cidr_list *cidrs;		/* client_address */
    struct htable *values;		/* anything else (lower case) */
};

struct quarantine;

struct limits {
    struct limit *limit;
    int     limit_count;
    struct exemption *exempt;
    int     exempt_count;
    struct quarantine *quarantine;	/* quarantine.c */
    int     quarantine_count;
    unsigned long generation;		/* distinct for every load */
    char   *delimiter;			/* recipient_delimiter: "" none */
};

void    ratelimit_load(struct limits *limits, struct config *cfg);
void    ratelimit_load_overrides(struct limits *limits, struct config *cfg);
void    ratelimit_free(struct limits *limits);
const struct limit_rates *ratelimit_rates_for(const struct limit *limit, const char *key);
int     ratelimit_exempt(const struct limits *limits, const struct policy_request *req);
int     ratelimit_unless(const struct limit *limit, const struct policy_request *req);
int     ratelimit_key(const struct limit *limit, const struct policy_request *req,
		           char *buf, size_t len);
void    ratelimit_canon(const char *value, int lower, char *buf);
int     ratelimit_address(const struct limit *limit, const char *value, char *buf,
			          const char **err);	/* ratelimit_addr.c */
const char *ratelimit_parse_key(struct limit *limit, const char *spec);
void    ratelimit_attribute_check(const struct config *cfg, int line, const char *what,
				          const char *attr);
const char *ratelimit_value(const struct limit *limit, const char *value, char *buf);
const char *ratelimit_parse_rates(const char *text, struct limit_rates *rates);
const char *ratelimit_count_name(enum limit_count count);
const char *ratelimit_action_name(enum limit_action action);

#endif
