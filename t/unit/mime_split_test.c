/* mime_split_test - unit tests for lmtp-webhook/mime_delim.c and
 * mime_split.c: the parts of a multipart body where Python's feedparser
 * finds them (the expected parts follow feedparser.py's _parsegen: a
 * delimiter line is "--b", "--" or not, spaces and tabs, the line end;
 * the line end before one is its; delimiter lines in a row make no
 * part). Every case is split with the body fed in blocks of every size
 * from 1 byte up: a block may end anywhere. */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime_delim.h"
#include "mime_split.h"
#include "tap.h"

struct body {
    const char *data;
    size_t  len, block;			/* fed in blocks of this size */
    const char *sep;
    int     finds;
};

/* find - the next delimiter line, the body fed in blocks of b->block bytes */

static int find(void *ctx, uint64_t from, struct mime_delim_line *line)
{
    struct body *b = ctx;
    struct mime_delim d;
    bool    found = false;

    b->finds++;
    mime_delim_init(&d, b->sep, strlen(b->sep), from);
    for (uint64_t pos = from; pos < b->len;) {
	size_t  n = b->len - pos < b->block ? b->len - pos : b->block;
	size_t  took = mime_delim_feed(&d, (const unsigned char *) b->data + pos, n, line, &found);

	if (found)
	    return (1);
	if (took != n)
	    return (-1);
	pos += n;
    }
    return (mime_delim_finish(&d, line) ? 1 : 0);
}

/* split - the parts, "LEAF:" before a leaf's bytes, joined by "|" */

static char *split(const char *sep, const char *data, size_t block)
{
    struct body b = {data, strlen(data), block, sep, 0};
    struct mime_split s;
    uint64_t start, size;
    enum mime_split_next ret;
    static char out[4096];
    size_t  used = 0;
    int     n = 0;

    out[0] = '\0';
    mime_split_init(&s, 0, b.len);
    while ((ret = mime_split_next(&s, find, &b, &start, &size)) > 0) {
	used += (size_t) snprintf(out + used, sizeof(out) - used, "%s%s%.*s", n++ ? "|" : "",
				  ret == MIME_SPLIT_LEAF ? "LEAF:" : "", (int) size, data + start);
	if (used >= sizeof(out))
	    return (strcpy(out, "overflow"));
    }
    if (ret < 0)
	strcpy(out, "error");
    return (out);
}

struct split_case {
    const char *sep, *body, *want;
};

/* each part keeps the line end before the delimiter line that ends it */
static const struct split_case cases[] = {
    /* the common form: preamble, two parts, close, epilogue */
    {"--b", "pre\r\n--b\r\nA\r\n--b\r\nB\r\n--b--\r\nepi\r\n", "A\r\n|B\r\n"},
    {"--b", "--b\nA\n--b\nB\n--b--\n", "A\n|B\n"},		/* LF only */
    /* transport padding: spaces and tabs after the boundary, close or not */
    {"--b", "--b \t\r\nA\r\n--b\t\r\nB\r\n--b-- \r\n", "A\r\n|B\r\n"},
    /* a line that starts with the boundary and goes on is the part's */
    {"--b", "--b\r\nA\r\n--b-more\r\nstill A\r\n--b\r\nB\r\n--b--\r\n",
     "A\r\n--b-more\r\nstill A\r\n|B\r\n"},
    {"--b", "--b\r\nA\r\n--bb\r\n--b--x\r\n--b- \r\n--b--\r\n",
     "A\r\n--bb\r\n--b--x\r\n--b- \r\n"},
    {"--b", "--b\r\nA\r\n --b\r\n--b--\r\n", "A\r\n --b\r\n"},	/* not at line start */
    {"--b", "--b\r\nA\r\n--b\rx\r\n--b--\r\n", "A\r\n--b\rx\r\n"},	/* bare CR: a line */
    /* delimiter lines in a row: no empty part, a close among them skipped */
    {"--b", "--b\r\n--b\r\nA\r\n--b\r\n--b\r\n\r\nB\r\n--b--\r\n", "A\r\n|\r\nB\r\n"},
    {"--b", "--b\r\n--b--\r\nA\r\n--b--\r\n", "A\r\n"},
    /* an empty line between two delimiters is a part */
    {"--b", "--b\r\n\r\n--b\r\nA\r\n--b--\r\n", "\r\n|A\r\n"},
    /* no close: the last part runs to the end */
    {"--b", "--b\r\nA\r\n--b\r\nB\r\n\r\n", "A\r\n|B\r\n\r\n"},
    {"--b", "--b\r\nA\r\n--b\r\nB", "A\r\n|B"},
    {"--b", "--b\r\nA\r\n--b", "A\r\n|"},		/* a delimiter at the end */
    {"--b", "--b\r\nA\r\n--b--", "A\r\n"},
    {"--b", "--b\r\nA\r\n--b \t", "A\r\n|"},
    /* no delimiter at all, or a close first: one leaf */
    {"--b", "just text\r\n--bx\r\n", "LEAF:just text\r\n--bx\r\n"},
    {"--b", "", "LEAF:"},
    {"--b", "pre\r\n--b--\r\nA\r\n--b\r\nB\r\n", "LEAF:pre\r\n"},
    {"--b", "--b--\r\nA\r\n", "LEAF:"},
    /* a boundary whose prefix is another's */
    {"--b1", "--b1\r\nA\r\n--b10\r\n--b1--\r\n", "A\r\n--b10\r\n"},
    {"--b1", "--b1\r\nA\r\n--b\r\n--b1--\r\n", "A\r\n--b\r\n"},
    /* a dash too many or few */
    {"--b", "--b\r\nA\r\n---b\r\n--b-\r\n--b---\r\n--b--\r\n", "A\r\n---b\r\n--b-\r\n--b---\r\n"},
};

/* test_many - MIME_SPLIT_MAX_PARTS: past it the last part holds the rest */

static void test_many(void)
{
    size_t  n = MIME_SPLIT_MAX_PARTS + 50, len = 0;
    char   *data = malloc(n * 8 + 16);
    struct body b = {data, 0, 4096, "--b", 0};
    struct mime_split s;
    uint64_t start, size, last_start = 0, last_size = 0;
    unsigned int parts = 0;
    enum mime_split_next ret;

    for (size_t i = 0; i < n; i++)
	len += (size_t) sprintf(data + len, "--b\r\nx\r\n");
    len += (size_t) sprintf(data + len, "--b--\r\n");
    b.len = len;
    mime_split_init(&s, 0, len);
    while ((ret = mime_split_next(&s, find, &b, &start, &size)) == MIME_SPLIT_PART) {
	parts++;
	last_start = start;
	last_size = size;
    }
    is_int(ret, MIME_SPLIT_DONE, "%zu parts: done, no error", n);
    is_int(parts, MIME_SPLIT_MAX_PARTS, "%zu parts: %d given", n, MIME_SPLIT_MAX_PARTS);
    is_int((long long) (last_start + last_size), (long long) len,
	   "and the last one holds the rest of the body (no byte lost)");
    ok(s.capped, "and says so (capped: the plugin logs it)");
    ok(b.finds <= MIME_SPLIT_MAX_PARTS + 1, "one scan per part (%d)", b.finds);
    free(data);
}

int     main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	const struct split_case *c = &cases[i];
	size_t  len = strlen(c->body), bad = 0;
	char    first[4096];

	snprintf(first, sizeof(first), "%s", split(c->sep, c->body, len + 1));
	is_str(first, c->want, "case %zu: the parts Python finds", i);
	for (size_t block = 1; block <= len; block++)
	    if (strcmp(split(c->sep, c->body, block), c->want) != 0)
		bad = block;
	ok(bad == 0, "case %zu: the same fed in blocks of every size (differs at %zu)", i, bad);
    }
    test_many();
    return (tap_done());
}
