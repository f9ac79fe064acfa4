/*
 * NAME
 *	dkim_verify 1
 * SUMMARY
 *	verify every DKIM signature of a message with libopendkim
 * SYNOPSIS
 *	t/dkim_verify DNS_FILE < message
 * DESCRIPTION
 *	Reads one message (CRLF or LF line ends; LF is turned into CRLF,
 *	as an MTA delivers it) and verifies it with libopendkim, keys from
 *	DNS_FILE (libopendkim's query file: "name value" lines), fed
 *	field by field as milter-dkim feeds it. Prints
 *	one line per signature: "d=D s=S a=A result=pass|fail error=TEXT".
 *	Used by milter_dkim_sign_diff_test.py: the second verifier, beside
 *	dkimpy, of what milter-dkim signs without libopendkim.
 * DIAGNOSTICS
 *	Exit 0 when there is at least one signature and every one passes
 *	(signature and body hash); 1 otherwise; 2 on a usage or read error.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opendkim/dkim.h>

static unsigned char *read_message(size_t *len)
{
    size_t  cap = 1 << 20, n;
    unsigned char *buf = malloc(cap), *out;
    size_t  o = 0;

    *len = 0;
    while (buf && (n = fread(buf + *len, 1, cap - *len, stdin)) > 0)
	if ((*len += n) == cap)
	    buf = realloc(buf, cap *= 2);
    if (buf == NULL || (out = malloc(2 * *len + 1)) == NULL)
	return (NULL);
    for (size_t i = 0; i < *len; i++) {
	if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
	    out[o++] = '\r';
	out[o++] = buf[i];
    }
    free(buf);
    *len = o;
    return (out);
}

/*
 * feed - one dkim_header() per field (folds kept, no final CRLF), then
 * the body: the way milter-dkim feeds its verifier. dkim_chunk() would
 * parse the header itself, into a buffer that truncates fields past
 * 64 KB (see policy.c): that is libopendkim's limit, not the signer's.
 */
static DKIM_STAT feed(DKIM *dkim, unsigned char *msg, size_t len)
{
    size_t  start = 0, i = 0;
    DKIM_STAT status = DKIM_STAT_OK;

    while (i + 1 < len) {
	if (msg[i] == '\r' && msg[i + 1] == '\n') {
	    if (i == start) {			/* the empty line */
		i += 2;
		break;
	    }
	    if (i + 2 < len && (msg[i + 2] == ' ' || msg[i + 2] == '\t')) {
		i += 2;				/* a fold */
		continue;
	    }
	    if ((status = dkim_header(dkim, msg + start, i - start)) != DKIM_STAT_OK)
		return (status);
	    start = i += 2;
	    continue;
	}
	i++;
    }
    if ((status = dkim_eoh(dkim)) != DKIM_STAT_OK)
	return (status);
    return (i < len ? dkim_body(dkim, msg + i, len - i) : DKIM_STAT_OK);
}

int     main(int argc, char **argv)
{
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    dkim_query_t method = DKIM_QUERY_FILE;
    DKIM_STAT status;
    DKIM_SIGINFO **sigs = NULL;
    DKIM   *dkim;
    unsigned char *msg;
    size_t  len;
    int     nsigs = 0, bad = 0;

    if (argc != 2 || lib == NULL || (msg = read_message(&len)) == NULL) {
	fprintf(stderr, "usage: dkim_verify DNS_FILE < message\n");
	return (2);
    }
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &method, sizeof(method));
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, argv[1], strlen(argv[1]));
    if ((dkim = dkim_verify(lib, (unsigned char *) "test", NULL, &status)) == NULL) {
	fprintf(stderr, "dkim_verify: %s\n", dkim_getresultstr(status));
	return (2);
    }
    status = feed(dkim, msg, len);
    if (status == DKIM_STAT_OK || status == DKIM_STAT_NOSIG)
	status = dkim_eom(dkim, NULL);
    printf("status=%s\n", dkim_getresultstr(status));
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK)
	nsigs = 0;
    for (int i = 0; i < nsigs; i++) {
	unsigned flags = dkim_sig_getflags(sigs[i]);
	int     pass = (flags & DKIM_SIGFLAG_PASSED) && dkim_sig_getbh(sigs[i])
	== DKIM_SIGBH_MATCH;
	dkim_alg_t a = 0;

	dkim_sig_getsignalg(sigs[i], &a);
	printf("d=%s s=%s a=%s result=%s error=%s\n", dkim_sig_getdomain(sigs[i]),
	       dkim_sig_getselector(sigs[i]), a == DKIM_SIGN_ED25519SHA256 ? "ed25519-sha256"
	       : "rsa-sha256", pass ? "pass" : "fail",
	       dkim_sig_geterrorstr(dkim_sig_geterror(sigs[i])));
	bad += !pass;
    }
    dkim_free(dkim);
    dkim_close(lib);
    free(msg);
    return (nsigs > 0 && bad == 0 ? 0 : 1);
}
