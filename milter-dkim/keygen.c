/*
 * NAME
 *	milter-dkim-keygen 8
 * SUMMARY
 *	generate a DKIM key pair and its DNS record
 * SYNOPSIS
 *	milter-dkim-keygen -d DOMAIN -s SELECTOR [-t rsa|ed25519] [-b BITS] [-D DIR]
 *
 *	milter-dkim-keygen rotate ... (rotate(3))
 * DESCRIPTION
 *	Writes DIR/SELECTOR.private (mode 0600, PKCS#8 PEM) and
 *	DIR/SELECTOR.txt, and prints the TXT record in BIND format with
 *	the value split into strings of at most 255 bytes, as
 *	opendkim-genkey does:
 *
 *	SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; " "p=..." )
 * DIAGNOSTICS
 *	Exit status 1 with a message on stderr; an existing key file is
 *	never overwritten.
 */

#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keys.h"
#include "rotate.h"
#include "tables.h"
#include "msg.h"
#include "xalloc.h"

static void keygen_usage(void)
{
    fprintf(stderr, "usage: milter-dkim-keygen -d DOMAIN -s SELECTOR [-t rsa|ed25519] "
	    "[-b BITS] [-D DIR]\n"
	    "       milter-dkim-keygen rotate [--activate | --retire] -d DOMAIN ...\n");
    exit(2);
}

/* keygen_record - "name. IN TXT ( "..." "..." )", strings <= 255 bytes */

static char *keygen_record(const char *selector, const char *domain, const char *value)
{
    size_t  len = strlen(value), cap = len + len / 255 * 8 + 256, used;
    char   *out = xmalloc(cap);

    used = snprintf(out, cap, "%s._domainkey.%s.\tIN\tTXT\t(", selector, domain);
    for (size_t off = 0; off < len; off += 255)
	used += snprintf(out + used, cap - used, " \"%.*s\"", (int) (len - off > 255 ? 255
								       : len - off),
			 value + off);
    snprintf(out + used, cap - used, " )\n");
    return (out);
}

/* keygen_write - create path (never overwriting), owned by uid:gid, mode exactly */

static const char *keygen_write(const char *path, const char *text, int mode, uid_t uid,
				        gid_t gid)
{
    static char err[512];
    int     fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    size_t  len = strlen(text);

    if (fd < 0) {
	snprintf(err, sizeof(err), "%s: %s%s", path, strerror(errno),
		 errno == EEXIST ? " (not overwriting a key)" : "");
	return (err);
    }
    /* fchmod: open()'s mode went through the umask */
    if ((uid != (uid_t) -1 && fchown(fd, uid, gid) != 0) || fchmod(fd, (mode_t) mode) != 0
	|| write(fd, text, len) != (ssize_t) len || fsync(fd) != 0) {
	snprintf(err, sizeof(err), "%s: write: %s", path, strerror(errno));
	close(fd);
	unlink(path);
	return (err);
    }
    if (close(fd) != 0) {
	snprintf(err, sizeof(err), "%s: close: %s", path, strerror(errno));
	unlink(path);
	return (err);
    }
    return (NULL);
}

/* keygen_sync_dir - the new names on disk before a table refers to them */

static const char *keygen_sync_dir(const char *dir)
{
    static char err[512];
    int     fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
	snprintf(err, sizeof(err), "%s: fsync of the directory: %s", dir, strerror(errno));
	if (fd >= 0)
	    close(fd);
	return (err);
    }
    close(fd);
    return (NULL);
}

/* keygen_bits - -b as a whole number ("2048x" was 2048), else 0 */

int     keygen_bits(const char *text)
{
    char   *end;
    long    n;

    errno = 0;
    n = strtol(text, &end, 10);
    return (*text == 0 || *end != 0 || errno || n < 0 || n > 1 << 20 ? 0 : (int) n);
}

const char *keygen_files(const char *domain, const char *selector, int ed25519, int bits,
			         const char *dir, uid_t uid, gid_t gid, int group_reads,
			         char **record)
{
    struct dkim_key key;
    const char *err;
    char   *value, *path, *txt;

    *record = NULL;
    /* both name files and go into the TXT name as they are: "-s
       ../x" wrote the private key outside the directory */
    if (!tables_dns_name(domain, 0))
	return ("-d: not a DNS name (letters, digits, '-', '_', dots between labels)");
    if (!tables_dns_name(selector, 0))
	return ("-s: not a selector (letters, digits, '-', '_', dots between labels)");
    if ((err = keys_generate(ed25519 ? KEY_ED25519 : KEY_RSA, bits, &key)) != NULL)
	return (err);
    value = keys_dns_record(&key);
    *record = keygen_record(selector, domain, value);
    free(value);
    path = xasprintf("%s/%s.private", dir, selector);
    txt = xasprintf("%s/%s.txt", dir, selector);
    if ((err = keygen_write(path, key.pem, group_reads ? 0640 : 0600, uid, gid)) == NULL
	&& (err = keygen_write(txt, *record, 0644, uid, gid)) != NULL)
	unlink(path);				/* both or neither */
    keys_free(&key);
    free(path);
    free(txt);
    if (err == NULL && (err = keygen_sync_dir(dir)) != NULL) {
	unlink(path = xasprintf("%s/%s.private", dir, selector));
	free(path);
	unlink(path = xasprintf("%s/%s.txt", dir, selector));
	free(path);
    }
    if (err) {
	free(*record);
	*record = NULL;
    }
    return (err);
}

int     main(int argc, char **argv)
{
    const char *domain = NULL, *selector = NULL, *type = "rsa", *dir = ".";
    int     bits = 2048, ch;
    const char *err;
    char   *record;

    msg_init(argv[0], MSG_STDERR);
    if (argc > 1 && strcmp(argv[1], "rotate") == 0)
	return (rotate_main(argc - 1, argv + 1));
    while ((ch = getopt(argc, argv, "b:d:D:s:t:")) > 0) {
	switch (ch) {
	case 'b':
	    if ((bits = keygen_bits(optarg)) == 0)
		msg_fatal("-b %s: not a whole number of bits", optarg);
	    break;
	case 'd':
	    domain = optarg;
	    break;
	case 'D':
	    dir = optarg;
	    break;
	case 's':
	    selector = optarg;
	    break;
	case 't':
	    type = optarg;
	    break;
	default:
	    keygen_usage();
	}
    }
    if (!domain || !selector || optind != argc
	|| (strcmp(type, "rsa") != 0 && strcmp(type, "ed25519") != 0))
	keygen_usage();
    if (strcmp(type, "rsa") == 0 && (bits < 1024 || bits > KEYS_RSA_MAX_BITS))
	msg_fatal("-b %d: RSA keys must have 1024 to %d bits (2048 recommended; for a "
		  "larger key %s)", bits, KEYS_RSA_MAX_BITS, KEYS_RSA_MAX_WHY);
    if ((err = keygen_files(domain, selector, strcmp(type, "ed25519") == 0, bits, dir,
			    (uid_t) -1, (gid_t) -1, 0, &record)) != NULL)
	msg_fatal("%s", err);
    fputs(record, stdout);
    free(record);
    return (0);
}
