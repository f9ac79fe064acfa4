/* webhook_mime_fuzz - libFuzzer target for lmtp-webhook/mime.c and
 * mime_param.c, the plugin's reader of the vendor's message, on
 * Dovecot's own MIME parser (libdovecot, as in Dovecot's lmtp): any
 * bytes, read as a message, must give an event that Jansson parses
 * back, whose attachments each have a size, a 64-hex sha256 and, when
 * the content is sent, base64 that decodes to exactly size bytes with
 * that sha256. raw_message when the second byte is odd. Multiparts
 * whose boundary only RFC 2231 gives are parsed again
 * (mime_subparse()): the recursion is in reach. The same bytes as what
 * lmtp hands over: mime_lmtp_data_offset() (its own and its proxies'
 * trace headers left out) stays within them, at the start of a line. */

#include "lib.h"
#include "istream.h"

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "mime.h"
#include "payload.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int     LLVMFuzzerInitialize(int *argc, char ***argv);

int     LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    lib_init();
    return (0);
}

/* check_attachment - size, sha256 and content agree */

static void check_attachment(json_t *a)
{
    json_t *size = json_object_get(a, "size"), *sha = json_object_get(a, "sha256");
    json_t *content = json_object_get(a, "content_base64");
    unsigned char md[32], *bytes;
    char    hex[65];
    const char *b64;
    size_t  len;
    int     n;

    if (!json_is_integer(size) || !json_is_string(sha) || strlen(json_string_value(sha)) != 64)
	abort();
    if (json_is_null(content))
	return;
    if (!json_is_string(content))
	abort();
    b64 = json_string_value(content);
    len = strlen(b64);
    bytes = malloc(len / 4 * 3 + 3);
    n = len ? EVP_DecodeBlock(bytes, (const unsigned char *) b64, (int) len) : 0;
    if (n < 0 || len % 4 != 0)
	abort();
    if (len >= 1 && b64[len - 1] == '=')
	n--;
    if (len >= 2 && b64[len - 2] == '=')
	n--;
    if (n != json_integer_value(size))
	abort();				/* content and size disagree */
    EVP_Digest(bytes, (size_t) n, md, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
	snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, json_string_value(sha)) != 0)
	abort();				/* content and sha256 disagree */
    free(bytes);
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct payload_envelope env = {"msg_x", "ws", "a@b", "c@d", 1};
    struct mime_options opt = {.max_attachment = 1 << 20, .max_raw = 1 << 20,
	.raw_message = size > 1 && (data[1] & 1), .trusted_id = "mx.example"};
    struct payload_message msg;
    struct payload_sink out, scratch;
    struct payload_writer *w = malloc(sizeof(*w));
    struct istream *input = i_stream_create_from_data(data, size);
    FILE   *fo = tmpfile(), *fs = tmpfile();
    int     ofd = fileno(fo), sfd = fileno(fs);
    const char *error = NULL;
    json_t *j, *atts;
    size_t  len = 0;
    char   *json;

    memset(&msg, 0, sizeof(msg));
    payload_fd_sink(&out, &ofd);
    payload_fd_sink(&scratch, &sfd);
    payload_writer_init(w, &out, 0, &scratch);
    T_BEGIN {
	if (mime_read(input, &opt, &msg, &env, w, &error) < 0 && error == NULL)
	    abort();				/* a failure says why */
    } T_END;
    if (payload_finish(w, size, &len) < 0)
	abort();
    T_BEGIN {				/* lmtp's and its proxies' headers */
	bool    proxied;
	uoff_t  off = mime_lmtp_data_offset(input, size > 2 && (data[2] & 1) ? "S1:P2:P1:R3"
					    : "S1", "a@b", &proxied);

	/* nothing unless lmtp's Return-Path: leads; then a line's start */
	if (off > size || (off > 0 && (strncasecmp((const char *) data, "Return-Path", 11) != 0
				       || data[off - 1] != '\n')))
	    abort();
    } T_END;
    json = malloc(len + 1);
    if (pread(ofd, json, len, 0) != (ssize_t) len)
	abort();
    json[len] = 0;
    if ((j = json_loadb(json, len, JSON_ALLOW_NUL, NULL)) == NULL)
	abort();				/* the event is always JSON */
    atts = json_object_get(json_object_get(j, "data"), "attachments");
    if (!json_is_array(atts))
	abort();
    for (size_t i = 0; i < json_array_size(atts); i++)
	check_attachment(json_array_get(atts, i));
    json_decref(j);
    free(json);
    payload_message_free(&msg);
    i_stream_unref(&input);
    free(w);
    fclose(fo);
    fclose(fs);
    return (0);
}
