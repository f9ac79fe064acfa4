#ifndef MXKIT_SPF_H
#define MXKIT_SPF_H

/* spf - RFC 7208 check_host() through libspf2, on milter-dkim's DNS. */

#include "mdns.h"

struct spf_checker;

struct spf_result {
    const char *result;			/* RFC 8601 spelling: pass, fail, ... */
    int     helo;			/* the identity is the HELO name */
    char   *identity;			/* MAIL FROM address or HELO name */
    char   *domain;			/* its domain (NULL: none to check) */
    char    comment[200];		/* why, for the A-R comment */
};

struct spf_checker *spf_checker_create(struct mdns *dns);
void    spf_checker_free(struct spf_checker **checker);
void    spf_check(struct spf_checker *checker, const char *client, const char *helo,
		          const char *mail_from, struct spf_result *out);
void    spf_result_free(struct spf_result *out);
int     spf_domain_ok(const char *domain);

#endif
