#ifndef LMTP_WEBHOOK_MIME_INT_H
#define LMTP_WEBHOOK_MIME_INT_H

/* mime_int.h - what mime.c and mime_sub.c share: the walk of one message */

#include "array.h"
#include "str.h"
#include "message-parser.h"

#include <openssl/evp.h>

#include "decode.h"
#include "dkimsig.h"
#include "mime_delim.h"

#define MIME_HEADER_LIMIT (64 * 1024)

enum mime_kind { MIME_SKIP, MIME_TEXT, MIME_HTML, MIME_ATTACHMENT };

/*
 * a message/rfc822 part, read when the parse is over; or a multipart
 * part, listed then only if Dovecot did not split it (no children)
 */
struct mime_embedded {
    struct message_part *part;
    char   *filename, *content_type;
    char   *boundary;			/* a multipart's, as Python reads it */
    bool    reparse;			/* Dovecot read another one */
    enum decode_cte cte;
    bool    body_ok;			/* its parts may be the text (mime_body.c) */
    int     related;			/* a multipart/related's number, or -1 */
};
ARRAY_DEFINE_TYPE(mime_embedded, struct mime_embedded);

/* a multipart/related of the walk (mime_body.c), by number */
struct mime_related {
    char   *start;			/* its start= parameter, or NULL */
    bool    matched;			/* a part's Content-ID was it */
    bool    first;			/* none was, last time: the first part */
};
ARRAY_DEFINE_TYPE(mime_related, struct mime_related);

/* a multipart of the parse under way, for its parts (mime_body.c) */
struct mime_box {
    struct message_part *part;
    bool    ok;				/* its parts may be the text */
    int     related;			/* its number, or -1: not a related */
    unsigned int index;			/* of its next part */
    bool    fixed;			/* ours: index is the sender's part's */
};
ARRAY_DEFINE_TYPE(mime_box, struct mime_box);
ARRAY_DEFINE_TYPE(mime_part_ptr, struct message_part *);

/* multiparts parsed again (mime_subparse()), one inside another */
#define MIME_SUBPARSE_MAX 8
/* Dovecot's BOUNDARY_STRING_MAX_LEN: it cuts a longer boundary there */
#define MIME_BOUNDARY_CUT 80

enum mime_text_charset {
    MIME_TEXT_AS_IS,			/* UTF-8, none, unknown: the writer cleans it */
    MIME_TEXT_ASCII,			/* each 8-bit byte is U+FFFD */
    MIME_TEXT_CONVERTED,		/* by Dovecot's decoder */
};

struct mime_walk {
    struct payload_message *msg;
    const struct payload_envelope *env;
    struct payload_writer *out;		/* where the event goes */
    uoff_t  max_attachment;
    struct message_part *part;
    /* the current part's headers */
    string_t *content_type;
    char   *disp_filename, *ct_name;
    char   *content_id, *related_start;	/* Content-ID:, a related's start= */
    bool    disposition_attachment, cte_seen;
    bool    ct_seen, cd_seen;		/* the first of each is the one read */
    enum mime_text_charset text_charset;	/* how its text is read */
    enum decode_cte cte;
    /* its body */
    enum mime_kind kind;
    bool    text_seen, html_seen, begun;
    size_t  att_size;			/* the current attachment's bytes */
    bool    att_kept;			/* and whether they are still sent */
    struct decode_state dec;
    int     last_cr;			/* for decode_crlf() */
    unsigned char held[2];		/* a leaf's last line end, held back */
    size_t  held_len;
    EVP_MD_CTX *sha;
    ARRAY_TYPE(mime_embedded) embedded;	/* of the parse under way */
    char   *boundary;			/* the current part's, as Python reads it */
    bool    reparse;			/* and Dovecot read another one */
    ARRAY_TYPE(mime_part_ptr) unsplit;	/* reparsed: not split here */
    ARRAY_TYPE(mime_box) boxes;		/* of the parse under way */
    struct mime_box sub_box;		/* for a subparse's own multipart */
    ARRAY_TYPE(mime_related) *related;	/* of the walk, kept across walks */
    unsigned int related_next;		/* the next one's number */
    /* Dovecot's split against Python's (mime_check_block()) */
    bool    strict;			/* every multipart split by mime_split */
    bool    differs;			/* Dovecot split one where Python does not */
    pool_t  pool;			/* of the parse under way */
    size_t  dc_len;			/* the current part's boundary, as Dovecot matches it */
    struct message_part *line_part;	/* the multipart whose boundary line is read */
    struct mime_delim line;		/* and how Python reads that line */
    bool    line_close;			/* Dovecot took it for the closing one */
    unsigned int depth;			/* of mime_subparse() */
    bool    under_embedded;		/* it parses inside message/rfc822 */
    char   *error;			/* a read failed in a subparse */
    size_t  hdr_block, hdr_all;		/* header bytes, as Dovecot counts */
    unsigned int hdr_lines;		/* the part's header lines so far */
    bool    hdr_cut;			/* past its limits: values lost */
    ARRAY_TYPE(uint) fold_tabs;		/* the header's TABs Dovecot made spaces */
    /* for "authentication": raw values of top-level headers */
    const char *trusted_id;
    char   *trusted_ar, *from_raw;	/* the first trusted A-R, From: */
    int     from_count;
    struct dkimsig_msg sigs;		/* DKIM-Signatures, MIME header counts */
};

/*
 * a multipart's boundary line, as Python reads it (part->context of a
 * multipart Dovecot splits; mime_check.c)
 */
struct mime_bound {
    char   *sep;			/* "--" and Python's boundary */
    size_t  dc_len;			/* the prefix Dovecot matches */
    bool    seen_line;			/* one of its delimiter lines came */
    bool    child_seen;			/* and a part's bytes since */
    bool    closed;			/* its closing line came */
};

/* mime_auth.c */
struct message_header_line;
void    mime_raw_top(struct mime_walk *w, const struct message_header_line *hdr);
void    mime_begin(struct mime_walk *w);
void    mime_auth_free(struct mime_walk *w);

/* mime.c */
void    mime_attachment(struct mime_walk *w, const char *name, const char *ctype,
			        enum decode_cte cte);
void    mime_attachment_raw(struct mime_walk *w, const unsigned char *data, size_t size);
void    mime_attachment_done(struct mime_walk *w);
bool    mime_in_embedded(const struct mime_walk *w, const struct message_part *part);
void    mime_parse(struct mime_walk *w, struct istream *input);
void    mime_limit(struct mime_walk *w, const char *what);

/* mime_charset.c */
struct rfc822_parser_context;
enum mime_text_charset mime_charset_read(const struct rfc822_parser_context *params,
				                 const char *type, const char **decoder_value);

/* mime_sub.c */
void    mime_embedded_read(struct mime_walk *w, struct istream *input);
void    mime_sub_top(struct mime_walk *w, struct istream *input);

/* mime_body.c */
bool    mime_body_part(struct mime_walk *w, const char *ctype);
void    mime_body_sub(struct mime_walk *w, const struct mime_embedded *e, unsigned int index);
bool    mime_body_again(ARRAY_TYPE(mime_related) *related);
void    mime_body_free(ARRAY_TYPE(mime_related) *related);

/* mime_check.c */
void    mime_check_multipart(struct mime_walk *w);
void    mime_check_block(struct mime_walk *w, const struct message_block *raw);
void    mime_check_end(struct mime_walk *w);
struct message_header_line;
void    mime_check_header(struct mime_walk *w, const struct message_header_line *hdr);

/* mime_fold.c */
void    mime_fold_note(struct mime_walk *w, const struct message_header_line *hdr);
struct message_header_line *mime_fold_restore(struct mime_walk *w,
					              struct message_header_line *hdr,
					              struct message_header_line *copy);

#endif
