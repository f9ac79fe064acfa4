#ifndef LMTP_WEBHOOK_AUTHRES_H
#define LMTP_WEBHOOK_AUTHRES_H

/* authres.h - the event's "authentication", from the trusted A-R header */

#include <stddef.h>

struct dkimsig_msg;

struct authres_prop {
    char   *name;			/* "ptype.property" or "reason" */
    char   *value;
};

struct authres_resinfo {
    char   *method, *result;		/* lower case */
    struct authres_prop *props;
    int     nprops;
};

struct authres {
    char    authserv_id[256];
    struct authres_resinfo *res;	/* none: "; none" */
    int     count;
};

int     authres_trusted(const char *value, size_t len, const char *trusted_id);
const char *authres_parse(const char *value, struct authres *ar);
void    authres_free(struct authres *ar);
int     authres_aligned(const char *domain, const char *from_domain);
char   *authres_authentication(const char *trusted_value, const char *from_value,
				       int from_count, const char *trusted_id,
				       const struct dkimsig_msg *sigs);

#endif
