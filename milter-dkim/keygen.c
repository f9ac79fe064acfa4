/*
 * NAME
 *	milter-dkim-keygen 8
 * SUMMARY
 *	generate a DKIM key pair and its DNS record
 * SYNOPSIS
 *	milter-dkim-keygen -d DOMAIN -s SELECTOR [-t rsa|ed25519] [-b BITS] [-D DIR]
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
#include "msg.h"
#include "xalloc.h"

static void keygen_usage(void)
{
    fprintf(stderr, "usage: milter-dkim-keygen -d DOMAIN -s SELECTOR [-t rsa|ed25519] "
	    "[-b BITS] [-D DIR]\n");
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

static void keygen_write(const char *path, const char *text, int mode)
{
    int     fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    size_t  len = strlen(text);

    if (fd < 0)
	msg_fatal("%s: %m%s", path, errno == EEXIST ? " (not overwriting a key)" : "");
    if (write(fd, text, len) != (ssize_t) len || fsync(fd) != 0 || close(fd) != 0)
	msg_fatal("%s: write: %m", path);
}

int     main(int argc, char **argv)
{
    const char *domain = NULL, *selector = NULL, *type = "rsa", *dir = ".";
    int     bits = 2048, ch;
    struct dkim_key key;
    const char *err;
    char   *value, *record, *path;

    msg_init(argv[0], MSG_STDERR);
    while ((ch = getopt(argc, argv, "b:d:D:s:t:")) > 0) {
	switch (ch) {
	case 'b':
	    bits = atoi(optarg);
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
    if (strcmp(type, "rsa") == 0 && (bits < 1024 || bits > 8192))
	msg_fatal("-b %d: RSA keys must have 1024 to 8192 bits (2048 recommended)", bits);
    if ((err = keys_generate(strcmp(type, "rsa") == 0 ? KEY_RSA : KEY_ED25519, bits, &key)))
	msg_fatal("%s", err);
    value = keys_dns_record(&key);
    record = keygen_record(selector, domain, value);
    path = xasprintf("%s/%s.private", dir, selector);
    keygen_write(path, key.pem, 0600);
    free(path);
    path = xasprintf("%s/%s.txt", dir, selector);
    keygen_write(path, record, 0644);
    free(path);
    fputs(record, stdout);
    keys_free(&key);
    free(value);
    free(record);
    return (0);
}
