#ifndef MXKIT_MDNS_H
#define MXKIT_MDNS_H

/* mdns - milter-dkim's DNS: the operator's servers (or a test file), one budget per message. */

#include <opendkim/dkim.h>

#include "dns.h"

struct mdns;

const char *mdns_create(const char *servers, int timeout_ms, const char *test_file,
			        struct mdns **out);
void    mdns_free(struct mdns **dns);
int     mdns_lookup(struct mdns *dns, const char *name, int rrtype, struct dns_answer **answer);
void    mdns_budget_start(int budget_ms);
void    mdns_budget_end(void);
int     mdns_budget_spent(void);
void    mdns_guard_set(const char *const *domains, int count);
int     mdns_guarded(const char *name);
void    mdns_budget_favour(int on);
void    mdns_budget_share(int parts);
void    mdns_dkim_hooks(struct mdns *dns, DKIM_LIB *lib);

enum { MDNS_KEYREC_NONE, MDNS_KEYREC_INVALID, MDNS_KEYREC_TOOSMALL };
int     mdns_keyrec_verdict(const char *selector, const char *domain, const char **why);

#endif
