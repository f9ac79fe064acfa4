/* mime_pyhdr_test - unit tests for lmtp-webhook/mime_pyhdr.c: where
 * Python's feedparser ends a header block and begins the body. Each
 * expected body is what Python 3.11's email.message_from_bytes() gives
 * as the payload of the same bytes; "-" where the body begins after the
 * empty line, as Dovecot's parser begins it. Every case is fed in blocks
 * of every size from 1 byte up: a block may end anywhere. */

#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include "mime_pyhdr.h"
#include "tap.h"

struct hdr_case {
    const char *data, *body;
};

static const struct hdr_case cases[] = {
    {"Content-Type: text/plain\r\n\r\nbody", "-"},
    /* a line that is no header: the body, with every header after it */
    {"--b1\t \t\r\nContent-Type: application/octet-stream\r\n\r\nDATA",
     "--b1\t \t\r\nContent-Type: application/octet-stream\r\n\r\nDATA"},
    {"Content-Type: application/pdf\r\nContent Type: x\r\n\r\nDATA", "Content Type: x\r\n\r\nDATA"},
    {"Content-Type: application/zip\r\nX-\xe9: y\r\n\r\nDATA", "X-\xe9: y\r\n\r\nDATA"},
    {"Content-Type: application/zip\nno header\nX: y\n\nDATA", "no header\nX: y\n\nDATA"},
    {"Content-Type: application/zip\r\nlast", "last"},
    /* white space first, an empty name: ignored, as Dovecot's are */
    {" Content-Type: application/pdf\r\nContent-Type: application/zip\r\n\r\nDATA", "-"},
    {"Content-Type: application/zip\r\n:empty\r\nX-A: b\r\n\r\nDATA", "-"},
    /* "From ": the envelope's first; last, the body's (the empty line lost) */
    {"From x\r\nContent-Type: application/zip\r\n\r\nDATA", "-"},
    {"Content-Type: application/zip\r\nFrom x\r\n\r\nDATA", "From x\r\nDATA"},
    {"Content-Type: application/zip\r\nFrom x\r\n folded\r\n\r\nDATA", "-"},
    {"Content-Type: application/zip\r\nFrom x\r\nX-A: b\r\n\r\nDATA", "-"},
    {"Content-Type: application/zip\r\nFrom x\r\njunk\r\n\r\nDATA", "From x\r\njunk\r\n\r\nDATA"},
    {"Content-Type: application/zip\r\nFrom x\r\n", "From x\r\n"},
    {"Content-Type: application/zip\r\nFrom x", "From x"},
    {"Content-Type: application/zip\r\nFrom: a@b\r\n\r\nDATA", "-"},
    {"Content-Type: application/zip\r\nFrom:x\r\nFrom\r\n\r\nDATA", "From\r\n\r\nDATA"},
    {"Content-Type: application/zip\r\nFrom x\r\nFrom y\n\nDATA", "From y\nDATA"},
    /* a CR alone first on a line: Python's empty line */
    {"Content-Type: application/zip\r\n\rjunk: x\r\n\r\nDATA", "junk: x\r\n\r\nDATA"},
    {"Content-Type: application/zip\r\n\r\n", "-"},
    {"", "-"},
};

/* body - the body the plugin gives Dovecot's parser, data fed in blocks */

static const char *body(const char *data, size_t block)
{
    static char out[4096];
    size_t  len = strlen(data), pos = 0;
    struct mime_pyhdr h;
    struct mime_pyhdr_end end;

    mime_pyhdr_init(&h, 0);
    while (pos < len && !h.done) {
	size_t  n = len - pos < block ? len - pos : block;
	size_t  took = mime_pyhdr_feed(&h, (const unsigned char *) data + pos, n, &end);

	if (took != n && !h.done)
	    return ("short");
	pos += took;
    }
    mime_pyhdr_finish(&h, &end);
    if (!end.moved)
	return ("-");
    if (end.drop_len > 0 && end.drop >= end.body)
	snprintf(out, sizeof(out), "%.*s%s", (int) (end.drop - end.body), data + end.body,
		 data + end.drop + end.drop_len);
    else
	snprintf(out, sizeof(out), "%s", data + end.body);
    return (out);
}

int     main(void)
{
    static const struct {
	const char *line;
	enum mime_pyhdr_kind kind;
    } lines[] = {
	{"Subject: x", MIME_PYHDR_HEADER}, {"\tfolded", MIME_PYHDR_HEADER},
	{":x", MIME_PYHDR_HEADER}, {"From x", MIME_PYHDR_FROM}, {"From: x", MIME_PYHDR_HEADER},
	{"Content Type: x", MIME_PYHDR_BAD}, {"--b1", MIME_PYHDR_BAD},
	{"Subject : x", MIME_PYHDR_BAD}, {"X-\x7f: y", MIME_PYHDR_BAD}, {"", MIME_PYHDR_BAD},
    };

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
	is_int(mime_pyhdr_line((const unsigned char *) lines[i].line, strlen(lines[i].line)),
	       lines[i].kind, "line \"%s\": as headerRE reads it", lines[i].line);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	const struct hdr_case *c = &cases[i];
	size_t  len = strlen(c->data), bad = 0;
	char    first[4096];

	snprintf(first, sizeof(first), "%s", body(c->data, len + 1));
	is_str(first, c->body, "case %zu: the body Python reads", i);
	for (size_t block = 1; block <= len; block++)
	    if (strcmp(body(c->data, block), c->body) != 0)
		bad = block;
	ok(bad == 0, "case %zu: the same fed in blocks of every size (differs at %zu)", i, bad);
    }
    return (tap_done());
}
