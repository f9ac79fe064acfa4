#ifndef MXKIT_MESSAGE_H
#define MXKIT_MESSAGE_H

/* message - header bookkeeping and Authentication-Results text for one message. */

#include <stddef.h>

#include <opendkim/dkim.h>

struct message_header {
    char   *name;
    char   *value;			/* with its leading space */
};

struct message {
    struct message_header *hdr;
    int     count;
    size_t  bytes;
    int     from_count;
    char    from[512];			/* address of the (last) From: */
    const char *from_error;		/* NULL: from is what every parser reads */
    int     ar_count;			/* Authentication-Results seen */
    int    *forged;			/* positions of those claiming our id */
    int     forged_count;		/* ... or unreadable; no limit */
    int     forged_alloc;
    int     unreadable;			/* how many of them were unreadable */
};

#define MESSAGE_HEADER_BYTES_MAX (8 * 1024 * 1024)

const char *message_add_header(struct message *m, const char *name, const char *value,
			               const char *authserv_id);
const char *message_parse_address(const char *value, char *buf, size_t len);
int     message_ar_claims(const char *value, const char *authserv_id, int *unreadable);
char   *message_auth_results(DKIM *dkim, DKIM_STAT eom_status, const char *authserv_id);
int     message_ignored(DKIM *dkim);
void    message_reset(struct message *m);

#endif
