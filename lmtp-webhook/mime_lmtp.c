/*
 * NAME
 *	mime_lmtp 3
 * SUMMARY
 *	the client's message in what Dovecot's lmtp hands to delivery
 * SYNOPSIS
 *	#include "lib.h"
 *	#include "mime.h"
 *
 *	uoff_t	mime_lmtp_data_offset(input, session_id, rcpt, &proxy_unknown)
 *	const char *mime_lmtp_suffix(id, tag)
 *	int	mime_digest(input, prefix, prefix_len, md, &size, &error)
 * DESCRIPTION
 *	mime_lmtp_data_offset() finds where the message the LMTP client
 *	sent starts in the stream Dovecot's lmtp gives to delivery: lmtp
 *	puts its own Return-Path:, Delivered-To: (one recipient only) and
 *	Received: (with "id TRANSACTION") before it, and these differ
 *	from one attempt to the next while the client's bytes (Postfix's
 *	queue file) do not. A stream that does not start with Return-Path:
 *	is taken as it is (offset 0). A header that the end of the stream
 *	cuts before its newline is not lmtp's (lmtp ends each line it
 *	writes): the client's message starts there, so the offset is
 *	always a line's start. Without lmtp's Received:
 *	(lmtp_add_received_header = no) only one Delivered-To: that names
 *	rcpt, the address lmtp wrote there (lmtp_hdr_delivery_address:
 *	the recipient, its ORCPT), is taken for lmtp's; with rcpt NULL
 *	(lmtp wrote none) none is: the client's own Delivered-To: lines
 *	were dropped before, and two mails that differ only in them
 *	shared one id. Behind Dovecot's lmtp_proxy (session id
 *	"PROXY_ID:P<n>", per hop), the Received: of each proxy below
 *	lmtp's own is left out too: it differs per attempt as lmtp's does.
 *	A proxy that passed no XCLIENT leaves a "with LMTP id" Received:
 *	of an id the session does not name: it is left out as well, and
 *	*proxy_unknown says so (its client's address is not known here).
 *
 *	mime_lmtp_suffix() is a session id without its last ":<tag><digits>"
 *	(lmtp's ":R<n>" per recipient, lmtp_proxy's ":P<n>" per hop), in
 *	data stack memory, or NULL when it ends otherwise.
 *
 *	mime_digest() is the SHA-256 of prefix_len bytes of prefix and a
 *	NUL (prefix may hold NULs of its own) and of the message, and its size, both with CRLF line ends (decode_crlf():
 *	the same whichever copy of the message Dovecot hands over).
 * DIAGNOSTICS
 *	mime_digest(): -1 with error_r when the stream cannot be read.
 */

#include "lib.h"

#include "array.h"
#include "str.h"
#include "istream.h"
#include "message-header-parser.h"

#include <openssl/evp.h>

#include "decode.h"
#include "mime.h"

/* mime_dovecot_received - lmtp's own trace header for this transaction */

static bool mime_dovecot_received(const struct message_header_line *hdr, const char *trans_id)
{
    const char *value = t_strndup(hdr->full_value, hdr->full_value_len);
    const char *want = t_strconcat("id ", trans_id, NULL), *p = value;
    size_t  len = strlen(want);

    if (strcasecmp(hdr->name, "Received") != 0 || strstr(value, " with LMTP") == NULL)
	return (FALSE);
    while ((p = strstr(p, want)) != NULL) {
	if (p[len] == '\0' || p[len] == '\r' || p[len] == '\n' || p[len] == ' '
	    || p[len] == ';')
	    return (TRUE);
	p += len;
    }
    return (FALSE);
}

/* mime_lmtp_is_rcpt - a Delivered-To: naming the recipient, as lmtp writes it */

static bool mime_lmtp_is_rcpt(const struct message_header_line *hdr, const char *rcpt)
{
    const unsigned char *v = hdr->value;
    size_t  len = hdr->value_len;

    if (rcpt == NULL)
	return (FALSE);				/* lmtp wrote none */
    while (len > 0 && (*v == ' ' || *v == '\t'))
	v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r'))
	len--;
    return (len == strlen(rcpt) && strncasecmp((const char *) v, rcpt, len) == 0);
}

/* mime_lmtp_suffix - the id without its last ":<tag><digits>", or NULL */

const char *mime_lmtp_suffix(const char *id, char tag)
{
    const char *r = strrchr(id, ':');

    if (r == NULL || r[1] != tag || r[2] == '\0'
	|| strspn(r + 2, "0123456789") != strlen(r + 2))
	return (NULL);
    return (t_strdup_until(id, r));
}

/*
 * mime_lmtp_traces - the ids of lmtp's trace headers, this one's first:
 * behind Dovecot's lmtp_proxy the session id is the proxy's and ":P<n>"
 * (per hop), and each proxy put its own Received: (with LMTP id ITS_ID)
 * below ours; they too differ per attempt (helper-127: a new
 * webhook-id per retry, the front's header in raw_message).
 */
static const char *const *mime_lmtp_traces(const char *session_id)
{
    ARRAY_TYPE(const_string) ids;
    const char *id = session_id ? session_id : "", *up;

    t_array_init(&ids, 4);
    /* a recipient's session id is the transaction's, or it and ":R<n>" */
    if ((up = mime_lmtp_suffix(id, 'R')) != NULL)
	id = up;
    if (*id != '\0')
	array_push_back(&ids, &id);
    for (; (up = mime_lmtp_suffix(id, 'P')) != NULL && *up != '\0'; id = up)
	array_push_back(&ids, &up);
    array_append_zero(&ids);
    return (array_front(&ids));
}

/*
 * mime_lmtp_dovecot_id - an id as Dovecot's lmtp writes one: 22 base64
 * characters (a GUID), then ":<tag><digits>" parts, then white space,
 * '(' or the end. Other text is a sender's, not a proxy's (helper-128).
 */
static bool mime_lmtp_dovecot_id(const char *p)
{
    size_t  n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

    if (n != 22)
	return (FALSE);
    for (p += n; *p == ':' && p[1] >= 'A' && p[1] <= 'Z' && p[2] >= '0' && p[2] <= '9';)
	for (p += 2; *p >= '0' && *p <= '9'; p++)
	     /* void */ ;
    return (*p == '\0' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '('
	    || *p == ';');
}

/*
 * mime_lmtp_trace - the next trace header: of this lmtp or a proxy after
 * *next, or (*unknown set) of a Dovecot LMTP proxy that passed no
 * session with XCLIENT: its "with LMTP id" is none of ours.
 */
static bool mime_lmtp_trace(const struct message_header_line *hdr,
			            const char *const *ids, unsigned int *next, bool *unknown)
{
    for (unsigned int i = *next; ids[i] != NULL; i++) {
	if (mime_dovecot_received(hdr, ids[i])) {
	    *next = i + 1;
	    return (TRUE);
	}
    }
    const char *p = strcasecmp(hdr->name, "Received") != 0 ? NULL
	: strstr(t_strndup(hdr->full_value, hdr->full_value_len), " with LMTP");

    if (p == NULL)
	return (FALSE);
    /* LMTPS, LMTPA, LMTPSA (RFC 3848): a client chose TLS (helper-128) */
    for (p += strlen(" with LMTP"); *p == 'S' || *p == 'A'; p++)
	 /* void */ ;
    for (; *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'; p++)
	 /* lmtp folds before "id" */ ;
    if (strncmp(p, "id ", 3) != 0 || !mime_lmtp_dovecot_id(p + 3))
	return (FALSE);
    *unknown = TRUE;
    return (TRUE);
}

uoff_t  mime_lmtp_data_offset(struct istream *input, const char *session_id, const char *rcpt,
			              bool *proxy_unknown)
{
    struct message_header_parser_ctx *hp;
    struct message_header_line *hdr;
    const char *const *ids = mime_lmtp_traces(session_id);
    unsigned int next = 0;
    uoff_t  start = 0, offset, dt_start = 0;
    bool    dt_is_rcpt = FALSE;
    /* 0: Return-Path, 1: a Delivered-To, 2: after one, 3: done */
    int     stage = 0, ret;

    *proxy_unknown = FALSE;
    i_stream_seek(input, 0);
    hp = message_parse_header_init(input, NULL, 0);
    while ((ret = message_parse_header_next(hp, &hdr)) > 0) {
	if (!hdr->continued)
	    start = hdr->name_offset;
	if (hdr->no_newline)
	    break;				/* lmtp ends each line it writes */
	if (hdr->continues) {
	    hdr->use_full_value = TRUE;
	    continue;
	}
	if (hdr->eoh)
	    break;
	if (stage == 0 && strcasecmp(hdr->name, "Return-Path") == 0)
	    stage = 1;
	else if (stage == 1 && strcasecmp(hdr->name, "Delivered-To") == 0) {
	    dt_start = start;			/* lmtp writes one at most */
	    dt_is_rcpt = mime_lmtp_is_rcpt(hdr, rcpt);
	    stage = 2;
	} else if (stage >= 1 && mime_lmtp_trace(hdr, ids, &next, proxy_unknown))
	    stage = 3;
	else
	    break;
    }
    /* the first header (or the empty line) that is not lmtp's */
    offset = stage == 0 ? 0 : ret > 0 ? start : input->v_offset;
    /* no Received: of lmtp's (lmtp_add_received_header = no) after a
       Delivered-To: lmtp's own names the recipient; another is the
       client's (lmtp wrote none: several recipients), and its bytes */
    if (stage == 2 && !dt_is_rcpt)
	offset = dt_start;
    message_parse_header_deinit(&hp);
    i_stream_seek(input, 0);
    return (offset);
}

int     mime_digest(struct istream *input, const char *prefix, size_t prefix_len,
		            unsigned char md[32], uoff_t *size_r, const char **error_r)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const unsigned char *data;
    unsigned int len = 0;
    size_t  size;
    int     last_cr = 0;

    *size_r = 0;
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
	i_panic("SHA-256 unavailable");
    (void) EVP_DigestUpdate(ctx, prefix, prefix_len + 1);	/* and its NUL */
    i_stream_seek(input, 0);
    while (i_stream_read_more(input, &data, &size) > 0) {
	T_BEGIN {
	    unsigned char *crlf = t_malloc_no0(DECODE_CRLF_MAX(size));
	    size_t  n = decode_crlf(&last_cr, data, size, crlf);

	    (void) EVP_DigestUpdate(ctx, crlf, n);
	    *size_r += n;
	} T_END;
	i_stream_skip(input, size);
    }
    (void) EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (input->stream_errno != 0) {
	*error_r = t_strdup_printf("read(%s) failed: %s", i_stream_get_name(input),
				   i_stream_get_error(input));
	return (-1);
    }
    i_stream_seek(input, 0);
    return (0);
}
