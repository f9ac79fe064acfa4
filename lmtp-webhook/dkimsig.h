#ifndef LMTP_WEBHOOK_DKIMSIG_H
#define LMTP_WEBHOOK_DKIMSIG_H

/* dkimsig.h - does a DKIM signature cover how the message's content reads? */

#include <stddef.h>

/*
 * the top-level headers that decide how the body reads as MIME, and to
 * whom the bill is addressed (a consumer checks its address in To:/Cc:)
 */
enum {
    DKIMSIG_CONTENT_TYPE, DKIMSIG_CTE, DKIMSIG_DISPOSITION, DKIMSIG_MIME_VERSION,
    DKIMSIG_TO, DKIMSIG_CC,
    DKIMSIG_MIME_COUNT
};

struct dkimsig_msg {
    char  **sig;			/* top-level DKIM-Signature values */
    int     nsig;
    int     mime[DKIMSIG_MIME_COUNT];	/* how many of each top-level header */
};

void    dkimsig_header(struct dkimsig_msg *m, const char *name, const char *value,
		               size_t len);
void    dkimsig_free(struct dkimsig_msg *m);
int     dkimsig_covers(const char *sig, const struct dkimsig_msg *m);
int     dkimsig_b_begins(const char *sig, const char *header_b);
int     dkimsig_content(const struct dkimsig_msg *m, const char *domain, const char *header_b);

#endif
