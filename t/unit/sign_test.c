/* sign_test - unit tests for lmtp-webhook/sign.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "sign.h"
#include "tap.h"

int     main(void)
{
    struct webhook_key key;
    char   *sig, *b64;

    /*
     * The Standard Webhooks specification's own example (its README and
     * every reference library's tests): this secret, id, timestamp and
     * body sign to this value.
     */
    is_str(sign_key_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &key), NULL,
	   "the specification's example secret parses");
    is_int((long long) key.len, 24, "24 key bytes");
    sig = sign_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
			 "{\"test\": 2432232314}", 20);
    is_str(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
	   "the specification's example signature");
    free(sig);

    is_str(sign_key_parse("  MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", &key), NULL,
	   "prefix optional, white space around ignored");
    is_str(sign_key_parse("whsec_", &key), "secret: base64 of 1 to 128 bytes expected",
	   "empty secret");
    is_str(sign_key_parse("whsec_abc", &key), "secret: base64 of 1 to 128 bytes expected",
	   "length not a multiple of 4");
    is_str(sign_key_parse("whsec_ab!d", &key), "secret: not valid base64", "bad character");
    is_str(sign_key_parse("whsec_YWJj whsec_YWJj", &key),
	   "secret: one whsec_<base64> value expected", "two secrets");
    is_str(sign_key_parse("whsec_YQ==", &key), NULL, "padded one-byte key");
    is_int((long long) key.len, 1, "padding removed from the length");
    /* helper-124: these signed as the empty key does (anyone forges them) */
    is_str(sign_key_parse("====", &key), "secret: not valid base64", "==== is no base64");
    is_str(sign_key_parse("whsec_Y===", &key), "secret: not valid base64", "three pads");
    is_str(sign_key_parse("whsec_Y=Q=", &key), "secret: not valid base64", "a pad inside");
    is_str(sign_key_parse("AAAA", &key),
	   "secret: every byte is zero, which signs as an empty key does", "AAAA: zero bytes");
    is_str(sign_key_parse("whsec_AA==", &key),
	   "secret: every byte is zero, which signs as an empty key does", "whsec_AA==");
    is_str(sign_key_parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", &key),
	   "secret: every byte is zero, which signs as an empty key does", "32 zero bytes");
    is_str(sign_key_parse("whsec_AAAB", &key), NULL, "a last byte not zero: a key (weak)");
    ok(sign_key_load("/nonexistent/secret", &key) != NULL
       && strstr(sign_key_load("/nonexistent/secret", &key), "/nonexistent/secret") != NULL,
       "unreadable secret file: the error names it");
    {
	/* the whole file is the secret: nothing past 1 KB or a NUL is
	 * left unread (a second secret there was ignored) */
	char    path[] = "/tmp/sign_test.XXXXXX", big[1200];
	int     fd = mkstemp(path);
	FILE   *fp = fd < 0 ? NULL : fdopen(fd, "w");
	const char *err;

	memset(big, ' ', sizeof(big));
	memcpy(big, "whsec_YQ==", 10);
	memcpy(big + sizeof(big) - 5, "junk\n", 5);
	ok(fp != NULL && fwrite(big, 1, sizeof(big), fp) == sizeof(big) && fclose(fp) == 0,
	   "a 1200-byte secret file written");
	err = sign_key_load(path, &key);
	ok(err != NULL && strstr(err, "larger than 1 KB") != NULL,
	   "a valid secret followed by junk past 1 KB: refused");
	fp = fopen(path, "w");
	ok(fp != NULL && fwrite("whsec_YQ==\0junk\n", 1, 16, fp) == 16 && fclose(fp) == 0,
	   "a secret file with a NUL written");
	err = sign_key_load(path, &key);
	ok(err != NULL && strstr(err, "NUL") != NULL, "a NUL byte in the file: refused");
	fp = fopen(path, "w");
	ok(fp != NULL && fputs("whsec_YQ==\r\n", fp) >= 0 && fclose(fp) == 0,
	   "a secret file with CRLF written");
	is_str(sign_key_load(path, &key), NULL, "whsec_ with CRLF: loaded");
	unlink(path);
	err = sign_key_load("/tmp", &key);
	ok(err != NULL && strstr(err, "/tmp") != NULL, "a directory: refused, named");
	ok(mkfifo(path, 0600) == 0, "a FIFO made");
	err = sign_key_load(path, &key);		/* blocked forever before */
	ok(err != NULL && strstr(err, "not a regular file") != NULL,
	   "a FIFO: refused at once, not waited on");
	unlink(path);
    }

    b64 = sign_base64((const unsigned char *) "", 0);
    is_str(b64, "", "base64 of nothing");
    free(b64);
    b64 = sign_base64((const unsigned char *) "foobar", 6);
    is_str(b64, "Zm9vYmFy", "base64 of foobar (RFC 4648)");
    free(b64);
    b64 = sign_base64((const unsigned char *) "fooba", 5);
    is_str(b64, "Zm9vYmE=", "base64 of fooba");
    free(b64);
    return (tap_done());
}
