/* payload_test - unit tests for lmtp-webhook/payload.c */

#include "build_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "payload.h"
#include "sign.h"
#include "tap.h"

static char *clean(const char *in, size_t len)
{
    static char out[256];
    size_t  n;
    char   *c = payload_utf8_clean(in, len, &n);

    memcpy(out, c, n + 1);
    free(c);
    return (out);
}

static json_t *build(struct payload_message *msg)
{
    struct payload_envelope env = {"msg_1", "acme", "a@b", "bills@acme.planapulse.app", 42};
    size_t  len;
    char   *text = payload_build(msg, &env, &len);
    json_t *j = json_loadb(text, len, 0, NULL);

    ok(j != NULL, "payload is valid JSON (%zu bytes)", len);
    free(text);
    return (j);
}

/* a sink that fails after limit bytes, as a full disk does */
struct full_disk {
    int     fd;
    off_t   limit;
};

static ssize_t full_pwrite(void *ctx, const void *buf, size_t len, off_t off)
{
    struct full_disk *d = ctx;

    if (off + (off_t) len > d->limit) {
	errno = ENOSPC;
	return (-1);
    }
    return (pwrite(d->fd, buf, len, off));
}

/*
 * test_stream - the writer as the plugin uses it: an attachment given a
 * byte at a time, one dropped when over the limit, text with a UTF-8
 * character cut between two blocks and html after the attachments, all
 * into a file after a header slot; then a disk that fills up.
 */
static void test_stream(void)
{
    struct payload_message msg;
    struct payload_envelope env = {"msg_2", "acme", "a@b", "bills@acme.planapulse.app", 7};
    struct payload_writer *w = malloc(sizeof(*w));
    struct payload_sink out, scratch;
    FILE   *fo = tmpfile(), *fs = tmpfile();
    int     ofd = fileno(fo), sfd = fileno(fs);
    unsigned char bin[1000], sha[32] = {1};
    char   *text, *b64;
    size_t  len = 0;
    json_t *j, *atts;
    struct full_disk disk;

    for (size_t i = 0; i < sizeof(bin); i++)
	bin[i] = (unsigned char) (i * 7);
    memset(&msg, 0, sizeof(msg));
    payload_bytes_append(&msg.header[PAYLOAD_FROM], "A <a@b>", 7, 100);
    payload_fd_sink(&out, &ofd);
    payload_fd_sink(&scratch, &sfd);
    ok(pwrite(ofd, "HEADER\n", 7, 0) == 7, "a header slot before the event");
    payload_writer_init(w, &out, 7, &scratch);
    payload_text_begin(w, 0);
    payload_text_data(w, "caf\xc3", 4);		/* e-acute cut in two */
    payload_text_data(w, "\xa9 \"q\"\n", 6);
    payload_text_end(w);
    payload_begin(w, &msg, &env);
    payload_attachment_begin(w, "a.bin", "application/octet-stream");
    for (size_t i = 0; i < sizeof(bin); i++)
	payload_attachment_data(w, bin + i, 1);
    payload_attachment_end(w, 1, sizeof(bin), sha);
    payload_attachment_begin(w, "big.bin", "application/pdf");
    payload_attachment_data(w, bin, 500);
    payload_attachment_drop(w);
    payload_attachment_end(w, 0, 99999, sha);
    payload_text_begin(w, 1);
    payload_text_data(w, "<p>\xe2\x82", 5);		/* cut, and never completed */
    payload_text_end(w);
    ok(payload_finish(w, 4242, &len) == 0, "stream written (%zu bytes)", len);
    text = calloc(1, len + 1);
    ok(pread(ofd, text, len, 7) == (ssize_t) len, "read back");
    j = json_loadb(text, len, 0, NULL);
    ok(j != NULL, "the streamed event is valid JSON");
    {
	json_t *data = json_object_get(j, "data");

	atts = json_object_get(data, "attachments");
	b64 = sign_base64(bin, sizeof(bin));
	is_str(json_string_value(json_object_get(json_array_get(atts, 0), "content_base64")),
	       b64, "byte-at-a-time attachment: the same base64 as in one piece");
	free(b64);
	ok(json_is_null(json_object_get(json_array_get(atts, 1), "content_base64"))
	   && json_integer_value(json_object_get(json_array_get(atts, 1), "size")) == 99999,
	   "a dropped attachment: content null, size kept");
	is_str(json_string_value(json_object_get(data, "text")), "caf\xc3\xa9 \"q\"\n",
	       "a UTF-8 character cut between blocks is whole; quotes, newline escaped");
	is_str(json_string_value(json_object_get(data, "html")), "<p>\xef\xbf\xbd",
	       "a sequence never completed: one U+FFFD");
	is_int(json_integer_value(json_object_get(data, "size")), 4242, "size");
	is_str(json_string_value(json_object_get(json_object_get(data, "headers"), "from")),
	       "A <a@b>", "headers");
    }
    json_decref(j);
    free(text);
    ok(pread(ofd, bin, 7, 0) == 7 && memcmp(bin, "HEADER\n", 7) == 0,
       "the header slot is untouched");

    disk.fd = ofd;
    disk.limit = 200000;
    out.pwrite = full_pwrite;
    out.ctx = &disk;
    payload_writer_init(w, &out, 0, &scratch);
    payload_begin(w, &msg, &env);
    payload_attachment_begin(w, "x", "application/pdf");
    for (int i = 0; i < 300; i++)
	payload_attachment_data(w, bin, sizeof(bin));
    payload_attachment_end(w, 1, 300 * sizeof(bin), sha);
    errno = 0;
    ok(payload_finish(w, 1, &len) < 0 && errno == ENOSPC,
       "a full disk: payload_finish fails with ENOSPC");
    payload_message_free(&msg);
    free(w);
    fclose(fo);
    fclose(fs);
}

static int spill_opened;

static int spill_open(void *ctx)
{
    spill_opened++;
    return (fileno((FILE *) ctx));
}

/* the scratch sink: memory up to its limit, then the file, same bytes */
static void test_spill(void)
{
    FILE   *f = tmpfile();
    struct payload_spill sp = {NULL, 0, 10, -1, spill_open, f};
    struct payload_sink sink;
    char    back[32] = "";

    payload_spill_sink(&sink, &sp);
    ok(sink.pwrite(sink.ctx, "0123456", 7, 0) == 7 && spill_opened == 0,
       "spill: 7 bytes stay in memory");
    ok(sink.pread(sink.ctx, back, 32, 2) == 5 && memcmp(back, "23456", 5) == 0,
       "spill: read back from memory");
    ok(sink.pwrite(sink.ctx, "789abc", 6, 7) == 6 && spill_opened == 1,
       "spill: past the limit, the file is opened once");
    ok(sink.pread(sink.ctx, back, 32, 0) == 13 && memcmp(back, "0123456789abc", 13) == 0,
       "spill: every byte in the file, in order");
    sp.fd = -1;					/* tmpfile's, closed by fclose */
    payload_spill_free(&sp);
    fclose(f);
}

/*
 * test_random_blocks - the writer's fast paths (whole base64 groups from
 * the input, runs of printable ASCII copied as they are) against what
 * must come out, for random bytes cut into random blocks: the
 * attachment's base64 is sign_base64() of the bytes, the text is
 * payload_utf8_clean() of them (quotes, backslashes, control bytes,
 * UTF-8 and invalid bytes mixed in).
 */
static int random_once(void)
{
    static const unsigned char pick[] = "ab \"\\\n\t\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\x84\xff";
    struct payload_message msg;
    struct payload_envelope env = {"msg_3", "acme", "a@b", "r@x", 7};
    struct payload_writer *w = malloc(sizeof(*w));
    struct payload_sink out, scratch;
    FILE   *fo = tmpfile(), *fs = tmpfile();
    int     ofd = fileno(fo), sfd = fileno(fs), same = 0;
    unsigned char bin[3000], txt[3000];
    size_t  blen = (size_t) rand() % sizeof(bin), tlen = (size_t) rand() % sizeof(txt);
    size_t  len = 0, at, n, clen;
    char   *text, *b64, *want;
    json_t *j;

    for (size_t i = 0; i < blen; i++)
	bin[i] = (unsigned char) rand();
    for (size_t i = 0; i < tlen; i++)
	txt[i] = rand() % 3 ? (unsigned char) ('0' + rand() % 70)
	    : pick[(size_t) rand() % (sizeof(pick) - 1)];
    memset(&msg, 0, sizeof(msg));
    payload_fd_sink(&out, &ofd);
    payload_fd_sink(&scratch, &sfd);
    payload_writer_init(w, &out, 0, &scratch);
    payload_text_begin(w, 0);
    for (at = 0; at < tlen; at += n) {
	n = 1 + (size_t) rand() % (rand() % 2 ? 5 : 5000);
	n = n > tlen - at ? tlen - at : n;
	payload_text_data(w, txt + at, n);
    }
    payload_text_end(w);
    payload_begin(w, &msg, &env);
    payload_attachment_begin(w, "r.bin", "application/octet-stream");
    for (at = 0; at < blen; at += n) {
	n = 1 + (size_t) rand() % (rand() % 2 ? 5 : 5000);
	n = n > blen - at ? blen - at : n;
	payload_attachment_data(w, bin + at, n);
    }
    payload_attachment_end(w, 1, blen, bin);
    if (payload_finish(w, 1, &len) == 0 && (text = calloc(1, len + 1)) != NULL) {
	if (pread(ofd, text, len, 0) == (ssize_t) len
	    && (j = json_loadb(text, len, 0, NULL)) != NULL) {
	    json_t *data = json_object_get(j, "data");
	    json_t *att = json_array_get(json_object_get(data, "attachments"), 0);
	    json_t *t = json_object_get(data, "text");

	    b64 = sign_base64(bin, blen);
	    want = payload_utf8_clean((const char *) txt, tlen, &clen);
	    same = json_is_string(t) && json_string_length(t) == clen
		&& memcmp(json_string_value(t), want, clen) == 0
		&& strcmp(json_string_value(json_object_get(att, "content_base64")), b64) == 0;
	    free(b64);
	    free(want);
	    json_decref(j);
	}
	free(text);
    }
    fclose(fo);
    fclose(fs);
    free(w);
    return (same);
}

static void test_random_blocks(void)
{
    int     same = 0, tries = 400;

    srand(7);
    for (int i = 0; i < tries; i++)
	same += random_once();
    is_int(same, tries, "random bytes in random blocks: base64 and escaped text exact");
}

int     main(void)
{
    struct payload_message msg;
    struct payload_attachment *a;
    json_t *j;

    is_str(clean("plain", 5), "plain", "ASCII unchanged");
    is_str(clean("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x84", 14), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x84",
	   "valid 2-, 3- and 4-byte sequences unchanged");
    is_str(clean("caf\xe9!", 5), "caf\xef\xbf\xbd!", "Latin-1 byte becomes U+FFFD");
    is_str(clean("\xc0\xaf", 2), "\xef\xbf\xbd\xef\xbf\xbd", "overlong '/' rejected");
    is_str(clean("\xed\xa0\x80", 3), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	   "UTF-16 surrogate rejected");
    is_str(clean("\xf4\x90\x80\x80", 4), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	   "beyond U+10FFFF rejected");
    is_str(clean("\xe2\x82", 2), "\xef\xbf\xbd", "truncated sequence at the end: one U+FFFD");
    /* each as Python's bytes.decode("utf-8", "replace") gives it */
    is_str(clean("\xe2\x82" "A", 3), "\xef\xbf\xbd" "A", "a cut 3-byte character, then ASCII");
    is_str(clean("\xf0\x9f\x92\xe2\x82\xac", 6), "\xef\xbf\xbd\xe2\x82\xac",
	   "a cut 4-byte character, then a whole one");
    is_str(clean("\xe0\x80\xaf", 3), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	   "overlong 3-byte: no valid start, one U+FFFD a byte");
    is_str(clean("\xf4\x8f\xbf", 3), "\xef\xbf\xbd", "U+10FFFF cut short: one");
    is_str(clean("\xc3", 1), "\xef\xbf\xbd", "a lone lead byte");
    is_str(clean("\xff\xfe", 2), "\xef\xbf\xbd\xef\xbf\xbd", "bytes that start nothing");
    is_str(clean("\xf0\x9f" "A\x92", 4), "\xef\xbf\xbd" "A\xef\xbf\xbd",
	   "a cut character, ASCII, a stray continuation");

    memset(&msg, 0, sizeof(msg));
    payload_bytes_append(&msg.header[PAYLOAD_SUBJECT], "Invoice \xff", 9, 65536);
    payload_bytes_append(&msg.text, "hello", 5, 3);
    msg.size = 1234;
    a = payload_attachment_add(&msg);
    a->filename = strdup("a.pdf");
    a->content_type = strdup("application/pdf");
    a->size = 3;
    a->content_kept = 1;
    payload_bytes_append(&a->content, "abc", 3, 100);
    a = payload_attachment_add(&msg);
    a->content_type = strdup("application/zip");
    a->size = 99999999;
    j = build(&msg);
    is_str(json_string_value(json_object_get(j, "type")), "message.received", "type");
    is_int(json_integer_value(json_object_get(j, "timestamp")), 42, "timestamp");
    {
	json_t *data = json_object_get(j, "data"), *headers = json_object_get(data, "headers");
	json_t *atts = json_object_get(data, "attachments");

	is_str(json_string_value(json_object_get(data, "workspace")), "acme", "workspace");
	is_str(json_string_value(json_object_get(headers, "subject")), "Invoice \xef\xbf\xbd",
	       "a non-UTF-8 header is cleaned, not dropped");
	ok(json_is_null(json_object_get(headers, "from")), "absent header is null");
	is_str(json_string_value(json_object_get(data, "text")), "hel",
	       "payload_bytes_append keeps to its limit");
	ok(json_is_null(json_object_get(data, "html")), "absent html is null");
	is_int(json_integer_value(json_object_get(data, "size")), 1234, "size");
	is_int((long long) json_array_size(atts), 2, "two attachments");
	is_str(json_string_value(json_object_get(json_array_get(atts, 0), "content_base64")),
	       "YWJj", "kept content in base64");
	is_str(json_string_value(json_object_get(json_array_get(atts, 0), "sha256")),
	       "0000000000000000000000000000000000000000000000000000000000000000",
	       "sha256 as 64 hex digits");
	ok(json_is_null(json_object_get(json_array_get(atts, 1), "content_base64")),
	   "an attachment over the limit is listed without content");
	ok(json_is_null(json_object_get(json_array_get(atts, 1), "filename")),
	   "no filename: null");
	is_int(json_integer_value(json_object_get(json_array_get(atts, 1), "size")), 99999999,
	       "but with its size");
	ok(json_is_array(json_object_get(data, "authentication_results")),
	   "authentication_results is an array, even empty");
    }
    json_decref(j);
    payload_message_free(&msg);
    ok(msg.attachments == NULL && msg.text.data == NULL, "payload_message_free resets");
    test_stream();
    test_random_blocks();
    test_spill();
    return (tap_done());
}
