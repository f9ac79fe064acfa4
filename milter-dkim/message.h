#ifndef MXKIT_MESSAGE_H
#define MXKIT_MESSAGE_H

/* message - header bookkeeping and Authentication-Results text for one message. */

#include <stddef.h>

#include <opendkim/dkim.h>

#include "sigtags.h"

#define MESSAGE_BADSIG_MAX 8		/* invalid signatures the A-R names */

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
    size_t  body_line;			/* octets of the body line so far */
    int     body_cr;			/* ... whose last octet was CR */
    size_t  body_longest;		/* longest body line, CRLF excluded */
    int     badsig_count;		/* DKIM-Signatures sigtags(3) refused */
    struct sigtags_result badsig[MESSAGE_BADSIG_MAX];	/* the first of them */
    int     sig_count;			/* DKIM-Signatures given to libopendkim */
    char    sig_domain[MESSAGE_BADSIG_MAX][254];	/* their d= when read for sure */
    DKIM_STAT eoh_status;		/* what dkim_eoh() said of them */
};

/*
 * RFC 5322 2.1.1: a line is at most 998 octets. Postfix's smtp client
 * breaks longer ones (smtp_line_length_limit, CRLF SPACE inserted), after
 * the milter signed them: no signature over such a line survives.
 */
#define MESSAGE_LINE_MAX	998

#define MESSAGE_HEADER_BYTES_MAX (8 * 1024 * 1024)

/*
 * With milters, Postfix's cleanup cuts a header at 60,000 bytes (below
 * its header_size_limit, for libmilter's 64 KB packets), as measured with
 * Postfix 3.7 and message_largest_header(): as the mail arrives, the last
 * line that fits within 60,000 is kept (what the milter and the
 * recipient both get: harmless); as it hands the stored header to the
 * milters, lines are added until it holds 60,000 or more. A header its
 * rewriting made longer in between (@$myorigin appended, canonical_maps,
 * masquerading) reaches the milter so cut and is delivered longer, and
 * every signature fails (helper-126). A header of 60,000 may be cut, so
 * it is not signed; the check starts 2 bytes below, a margin against
 * Postfix counting a byte we do not.
 */
#define MESSAGE_POSTFIX_HEADER_CUT 59998

const char *message_add_header(struct message *m, const char *name, const char *value,
			               const char *authserv_id);
const char *message_parse_address(const char *value, char *buf, size_t len);
int     message_ar_claims(const char *value, const char *authserv_id, int *unreadable);
char   *message_auth_results(DKIM *dkim, DKIM_STAT eom_status, const char *authserv_id,
			             const struct message *m);
const char *message_sig_result(DKIM *dkim, DKIM_SIGINFO *sig, const struct message *m,
			               const char **reason);
int     message_ignored(DKIM *dkim);
int     message_signature_ok(struct message *m, const char *name, const char *value);
size_t  message_longest_header(const struct message *m, char **names, char **more,
			               const char **which);
size_t  message_largest_header(const struct message *m, char **names, char **more,
			               const char **which);
void    message_add_body(struct message *m, const unsigned char *chunk, size_t len);
size_t  message_longest_body(const struct message *m);
void    message_reset(struct message *m);

#endif
