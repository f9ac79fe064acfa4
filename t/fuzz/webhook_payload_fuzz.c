/* webhook_payload_fuzz - libFuzzer target for lmtp-webhook/payload.c and
 * decode.c: arbitrary bytes (split on NUL into headers, text, html and
 * attachment fields) must always give a payload that Jansson parses
 * back; payload_utf8_clean() must always give valid UTF-8 that it leaves
 * unchanged when cleaned again; the streaming writer given the text in
 * two blocks cut anywhere must write exactly what it writes given it
 * whole (a UTF-8 sequence cut by a block boundary); and decoding base64,
 * quoted-printable or CRLF in two blocks must equal decoding it whole. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include <jansson.h>

#include "decode.h"
#include "payload.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean(const char *in, size_t len)
{
    size_t  n1, n2;
    char   *once = payload_utf8_clean(in, len, &n1);
    char   *twice = payload_utf8_clean(once, n1, &n2);

    if (n1 != n2 || memcmp(once, twice, n1) != 0)
	abort();				/* cleaning is idempotent */
    free(once);
    free(twice);
}

static void check_decode(const uint8_t *data, size_t size, size_t cut)
{
    unsigned char *whole = malloc(DECODE_CRLF_MAX(size) + 8);
    unsigned char *split = malloc(DECODE_CRLF_MAX(size) + 8);

    for (int cte = DECODE_IDENTITY; cte <= DECODE_QP + 1; cte++) {
	struct decode_state st;
	size_t  n1 = 0, n2 = 0;
	int     cr1 = 0, cr2 = 0;

	if (cte <= DECODE_QP) {
	    decode_init(&st, (enum decode_cte) cte);
	    n1 = decode_more(&st, data, size, whole);
	    n1 += decode_finish(&st, whole + n1);
	    decode_init(&st, (enum decode_cte) cte);
	    n2 = decode_more(&st, data, cut, split);
	    n2 += decode_more(&st, data + cut, size - cut, split + n2);
	    n2 += decode_finish(&st, split + n2);
	} else {
	    n1 = decode_crlf(&cr1, data, size, whole);
	    n2 = decode_crlf(&cr2, data, cut, split);
	    n2 += decode_crlf(&cr2, data + cut, size - cut, split + n2);
	}
	if (n1 != n2 || memcmp(whole, split, n1) != 0)
	    abort();				/* a block boundary changed bytes */
    }
    free(whole);
    free(split);
}

/* the writer given text in two blocks writes what payload_build() does */
static void check_stream_split(const struct payload_message *msg,
			               const struct payload_envelope *env, size_t cut)
{
    size_t  len1, len2;
    char   *whole = payload_build(msg, env, &len1);
    FILE   *fo = tmpfile(), *fs = tmpfile();
    int     ofd = fileno(fo), sfd = fileno(fs);
    struct payload_sink out, scratch;
    struct payload_writer *w = malloc(sizeof(*w));
    char   *split;

    if (cut > msg->text.len)
	cut = msg->text.len;
    payload_fd_sink(&out, &ofd);
    payload_fd_sink(&scratch, &sfd);
    payload_writer_init(w, &out, 0, &scratch);
    if (msg->text.data) {
	payload_text_begin(w, 0);
	payload_text_data(w, msg->text.data, cut);
	payload_text_data(w, msg->text.data + cut, msg->text.len - cut);
	payload_text_end(w);
    }
    if (msg->html.data) {
	payload_text_begin(w, 1);
	payload_text_data(w, msg->html.data, msg->html.len);
	payload_text_end(w);
    }
    payload_begin(w, msg, env);
    for (int i = 0; i < msg->attachment_count; i++) {
	const struct payload_attachment *a = &msg->attachments[i];

	payload_attachment_begin(w, a->filename, a->content_type);
	if (a->content_kept)
	    payload_attachment_data(w, a->content.data, a->content.len);
	payload_attachment_end(w, a->content_kept, a->size, a->sha256);
    }
    if (payload_finish(w, msg->size, &len2) < 0 || len1 != len2)
	abort();
    split = malloc(len2 + 1);
    if (pread(ofd, split, len2, 0) != (ssize_t) len2 || memcmp(whole, split, len1) != 0)
	abort();				/* streaming changed the event */
    free(split);
    free(whole);
    free(w);
    fclose(fo);
    fclose(fs);
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct payload_envelope env = {"msg_x", "ws", "a@b", "c@d", 1};
    struct payload_message msg;
    const char *p = (const char *) data, *end = p + size;
    struct payload_bytes *slots[PAYLOAD_HEADER_COUNT + 2];
    size_t  len;
    char   *json;
    json_t *j;
    int     field = 0;

    check_clean((const char *) data, size);
    check_decode(data, size, size ? data[0] % (size + 1) : 0);
    memset(&msg, 0, sizeof(msg));
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++)
	slots[i] = &msg.header[i];
    slots[PAYLOAD_HEADER_COUNT] = &msg.text;
    slots[PAYLOAD_HEADER_COUNT + 1] = &msg.html;
    while (p < end) {
	const char *nul = memchr(p, 0, end - p);
	size_t  n = nul ? (size_t) (nul - p) : (size_t) (end - p);

	if (field < PAYLOAD_HEADER_COUNT + 2) {
	    payload_bytes_append(slots[field], p, n, 4096);
	} else {
	    struct payload_attachment *a = payload_attachment_add(&msg);

	    a->filename = strndup(p, n);
	    a->content_type = strdup("application/octet-stream");
	    a->size = n;
	    a->content_kept = n % 2;
	    payload_bytes_append(&a->content, p, n, 4096);
	}
	field++;
	p += n + 1;
    }
    msg.size = size;
    check_stream_split(&msg, &env, size ? data[size - 1] : 0);
    json = payload_build(&msg, &env, &len);
    if ((j = json_loadb(json, len, 0, NULL)) == NULL)
	abort();				/* always valid JSON */
    json_decref(j);
    free(json);
    payload_message_free(&msg);
    return (0);
}
