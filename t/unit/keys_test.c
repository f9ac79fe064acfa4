/* keys_test - unit tests for milter-dkim/keys.c */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "tap.h"

int     main(void)
{
    struct dkim_key key, again;
    char   *record;
    /* RFC 8463 appendix A: the Ed25519 test key as dkimpy writes it */
    const char *seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n";

    ok(keys_generate(KEY_RSA, 2048, &key) == NULL, "RSA-2048 generated");
    is_int(key.bits, 2048, "2048 bits");
    ok(key.pem && strstr(key.pem, "BEGIN PRIVATE KEY") != NULL, "normalised to PKCS#8 PEM");
    ok(keys_from_text(key.pem, strlen(key.pem), &again) == NULL && again.type == KEY_RSA,
       "the PEM reads back as RSA (type from the file)");
    is_str(again.public_b64, key.public_b64, "same public key");
    record = keys_dns_record(&key);
    ok(strncmp(record, "v=DKIM1; k=rsa; p=MII", 21) == 0, "DNS record v=DKIM1; k=rsa");
    free(record);
    keys_free(&again);
    keys_free(&key);

    ok(keys_from_text(seed, strlen(seed), &key) == NULL && key.type == KEY_ED25519,
       "a raw base64 Ed25519 seed (dkimpy, Rspamd) is accepted");
    is_str(key.public_b64, "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
	   "public key of RFC 8463's test key");
    ok(key.pem && strstr(key.pem, "BEGIN PRIVATE KEY") != NULL, "converted to PEM for libopendkim");
    keys_free(&key);
    ok(keys_generate(KEY_ED25519, 0, &key) == NULL && key.type == KEY_ED25519,
       "Ed25519 generated");
    keys_free(&key);

    ok(keys_generate(KEY_RSA, 512, &key) != NULL, "RSA shorter than 1024 bits refused");
    ok(keys_from_text("garbage\n", 8, &key) != NULL, "garbage refused");
    ok(keys_load("/nonexistent/key", &key) != NULL, "missing file refused");
    return (tap_done());
}
