/* keys_test - unit tests for milter-dkim/keys.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "keys.h"
#include "tap.h"

static const char *mode_check(mode_t mode, gid_t gid, gid_t ours)
{
    struct stat st = {.st_mode = S_IFREG | mode, .st_gid = gid};
    struct keys_policy kp = {.require_safe = 1, .groups = &ours, .ngroups = 1};

    return (keys_safe(&st, &kp));
}

/* safety - opendkim's RequireSafeKeys, and the daemon's group as the way out */

static void safety(void)
{
    char    path[] = "/tmp/keys_test.XXXXXX";
    int     fd = mkstemp(path);
    struct dkim_key key, gen;
    gid_t   mine = getegid();
    struct keys_policy strict = {.require_safe = 1, .groups = &mine, .ngroups = 1};
    const char *err;

    is_str(mode_check(0600, 5, 7), NULL, "0600: safe");
    is_str(mode_check(0400, 5, 7), NULL, "0400: safe");
    ok(mode_check(0644, 5, 7) != NULL, "0644 (readable by others): refused");
    ok(mode_check(0602, 5, 7) != NULL, "0602 (writable by others): refused");
    ok(mode_check(0620, 5, 7) != NULL, "0620 (writable by the group): refused");
    ok(mode_check(0640, 5, 7) != NULL, "0640 of another group: refused");
    is_str(mode_check(0640, 7, 7), NULL, "0640 of the daemon's group: safe");
    is_str(mode_check(0440, 7, 7), NULL, "0440 of the daemon's group (a Kubernetes Secret "
	   "with fsGroup): safe");
    ok(mode_check(0660, 7, 7) != NULL, "0660 of the daemon's group: refused (writable)");
    keys_generate(KEY_ED25519, 0, &gen);
    ok(fd >= 0 && write(fd, gen.pem, strlen(gen.pem)) == (ssize_t) strlen(gen.pem),
       "key file written");
    close(fd);
    chmod(path, 0644);
    err = keys_load(path, &key, &strict);
    ok(err && strstr(err, "others") && key.pkey == NULL, "keys_load refuses a 0644 file: %s",
       err ? err : "accepted");
    strict.require_safe = 0;
    ok(keys_load(path, &key, &strict) == NULL && key.pkey && !key.pem,
       "require_safe_keys = no: loaded, an EVP_PKEY and no PEM copy");
    is_str(key.public_b64, gen.public_b64, "the same key");
    keys_free(&key);
    strict.require_safe = 1;
    chmod(path, 0600);
    ok(keys_load(path, &key, &strict) == NULL && key.pkey, "0600: loaded");
    keys_free(&key);
    ok(key.pkey == NULL && key.public_b64 == NULL, "keys_free clears the structure");
    ok(keys_load("/tmp", &key, NULL) != NULL, "a directory is refused");
    keys_free(&gen);
    unlink(path);
}

/* a key in a directory others may write to: refused unless it is sticky */

static void unsafe_dir(void)
{
    char    dir[] = "/tmp/keys_dir.XXXXXX", path[64];
    gid_t   mine = getegid();
    struct keys_policy strict = {.require_safe = 1, .groups = &mine, .ngroups = 1};
    struct dkim_key gen, key;
    const char *err;
    FILE   *fp;

    ok(mkdtemp(dir) != NULL && keys_generate(KEY_ED25519, 0, &gen) == NULL, "a key directory");
    snprintf(path, sizeof(path), "%s/k.private", dir);
    if ((fp = fopen(path, "w")) != NULL) {
	fputs(gen.pem, fp);
	fclose(fp);
    }
    chmod(path, 0600);
    chmod(dir, 0777);
    err = keys_load(path, &key, &strict);
    ok(err && strstr(err, "writable by others") && strstr(err, dir), "a 0777 key directory: "
       "refused: %s", err ? err : "loaded");
    keys_free(&key);
    chmod(dir, 01777);
    is_str(keys_load(path, &key, &strict), NULL, "a sticky 01777 one (as /tmp): loaded");
    keys_free(&key);
    chmod(dir, 0700);
    is_str(keys_load(path, &key, &strict), NULL, "a 0700 one: loaded");
    keys_free(&key);
    keys_free(&gen);
    unlink(path);
    rmdir(dir);
}

/* keys_share: a second row of the same file outlives the first */

static void share(void)
{
    struct dkim_key key, copy;

    for (int t = 0; t < 2; t++) {
	ok(keys_generate(t ? KEY_ED25519 : KEY_RSA, 1024, &key) == NULL, "a key to share");
	keys_share(&key, &copy);
	ok(copy.pkey == key.pkey && copy.type == key.type && copy.public_b64
	   && strcmp(copy.public_b64, key.public_b64) == 0
	   && (t ? copy.ed_sign != NULL : copy.rsa_sign != NULL),
	   "%s: shared: the same key, its own signing template", t ? "Ed25519" : "RSA");
	keys_free(&key);
	ok(EVP_PKEY_get_bits(copy.pkey) == (t ? 256 : 1024), "%s: the copy outlives the "
	   "original (%d bits)", t ? "Ed25519" : "RSA", EVP_PKEY_get_bits(copy.pkey));
	keys_free(&copy);
    }
}

/* an encrypted PEM: refused as such, never a pass phrase prompt */

static void encrypted(void)
{
    struct dkim_key key;
    const char *err;
    BIO    *bio = BIO_new(BIO_s_mem());
    char   *text;
    long    len;

    ok(keys_generate(KEY_ED25519, 0, &key) == NULL, "a key to encrypt");
    PEM_write_bio_PrivateKey(bio, key.pkey, EVP_aes_256_cbc(), (unsigned char *) "pw", 2,
			     NULL, NULL);
    keys_free(&key);
    len = BIO_get_mem_data(bio, &text);
    err = keys_from_text(text, (size_t) len, &key);
    ok(err && strstr(err, "an encrypted private key") != NULL, "an encrypted PEM is refused "
       "as encrypted: %s", err ? err : "(loaded)");
    BIO_free(bio);
}

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
    encrypted();
    share();
    unsafe_dir();
    ok(keys_load("/nonexistent/key", &key, NULL) != NULL, "missing file refused");
    safety();
    return (tap_done());
}
