/* milter_proto_fuzz - libFuzzer target for milter-dkim's milter protocol
 * code (mproto.c, msession.c): the input is a byte stream from an MTA,
 * given to a session whose callbacks use every smfi_* call with values
 * taken from the stream. Checked: no memory error or leak; the stream
 * fed whole and fed in pieces (as reads return it) gives the same
 * replies, byte for byte, and the same end; every reply is a well-formed
 * packet of a command the protocol has; nothing is buffered past one
 * packet's limit. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msession.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_pick(const char *text)
{
    return (text && *text ? (unsigned char) *text % 11 : 0);
}

static sfsistat fuzz_result(SMFICTX *ctx, const char *text)
{
    static const int results[] = {SMFIS_CONTINUE, SMFIS_REJECT, SMFIS_DISCARD, SMFIS_ACCEPT,
    SMFIS_TEMPFAIL, SMFIS_NOREPLY, SMFIS_SKIP, SMFIS_CONTINUE, SMFIS_CONTINUE, 99, -5};
    int     n = fuzz_pick(text);

    if (n == 1)
	(void) smfi_setreply(ctx, "550", "5.7.1", (char *) text);
    if (n == 4)
	(void) smfi_setreply(ctx, "451", NULL, (char *) text);
    return (results[n]);
}

static sfsistat fuzz_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
    (void) sa;
    return (fuzz_result(ctx, host));
}

static sfsistat fuzz_helo(SMFICTX *ctx, char *name)
{
    return (fuzz_result(ctx, name));
}

static sfsistat fuzz_argv(SMFICTX *ctx, char **argv)
{
    const char *i = smfi_getsymval(ctx, "i"), *u = smfi_getsymval(ctx, "{auth_authen}");

    if ((i && strlen(i) > 8 * 1024 * 1024) || (u && strlen(u) > 8 * 1024 * 1024))
	abort();
    return (fuzz_result(ctx, argv[0]));
}

static sfsistat fuzz_header(SMFICTX *ctx, char *name, char *value)
{
    (void) value;
    return (fuzz_result(ctx, name));
}

static sfsistat fuzz_plain(SMFICTX *ctx)
{
    return (fuzz_result(ctx, smfi_getsymval(ctx, "{j}")));
}

static sfsistat fuzz_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    char    text[2] = {len ? (char) chunk[0] : 0, 0};

    return (fuzz_result(ctx, text));
}

static sfsistat fuzz_eom(SMFICTX *ctx)
{
    char   *v = smfi_getsymval(ctx, "i");

    (void) smfi_insheader(ctx, 0, "DKIM-Signature", v ? v : "x");
    (void) smfi_chgheader(ctx, "Authentication-Results", 1, NULL);
    return (fuzz_result(ctx, v));
}

static sfsistat fuzz_close(SMFICTX *ctx)
{
    free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return (SMFIS_CONTINUE);
}

static sfsistat fuzz_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			               unsigned long f2, unsigned long f3, unsigned long *pf0,
			               unsigned long *pf1, unsigned long *pf2,
			               unsigned long *pf3)
{
    (void) f2, (void) f3;
    free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, malloc(16));		/* the leak check sees a lost one */
    *pf0 = (SMFIF_ADDHDRS | SMFIF_CHGHDRS) & f0;
    *pf1 = (SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NR_CONN | SMFIP_NORCPT | SMFIP_HDR_LEADSPC) & f1;
    *pf2 = *pf3 = 0;
    return ((f1 & 1) ? SMFIS_ALL_OPTS : (f1 & 2) ? SMFIS_REJECT : SMFIS_CONTINUE);
}

static struct smfiDesc fuzz_desc = {
    .xxfi_name = "fuzz",
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
    .xxfi_connect = fuzz_connect,
    .xxfi_helo = fuzz_helo,
    .xxfi_envfrom = fuzz_argv,
    .xxfi_envrcpt = fuzz_argv,
    .xxfi_header = fuzz_header,
    .xxfi_eoh = fuzz_plain,
    .xxfi_body = fuzz_body,
    .xxfi_eom = fuzz_eom,
    .xxfi_abort = fuzz_plain,
    .xxfi_close = fuzz_close,
    .xxfi_data = fuzz_plain,
    .xxfi_negotiate = fuzz_negotiate,
};

/* fuzz_feed - the stream in pieces of "step" bytes, as mengine buffers it */

static int fuzz_feed(const uint8_t *data, size_t size, size_t step, struct mproto_buf *out)
{
    struct msession s;
    char   *buf = malloc(size + 1);
    size_t  have = 0, fed = 0, used;
    int     r = MSESSION_MORE;

    msession_init(&s, &fuzz_desc);
    while (r == MSESSION_MORE && fed < size) {
	size_t  n = size - fed < step ? size - fed : step;

	memcpy(buf + have, data + fed, n);
	fed += n;
	have += n;
	r = msession_input(&s, buf, have, &used);
	memmove(buf, buf + used, have - used);
	have -= used;
	if (have > MPROTO_DATA_MAX + 5)
	    abort();				/* more buffered than one packet */
	if (s.out.len) {
	    mproto_reserve(out, s.out.len);
	    memcpy(out->data + out->len, s.out.data, s.out.len);
	    out->len += s.out.len;
	    s.out.len = 0;
	}
    }
    msession_free(&s);
    free(buf);
    return (r);
}

static void fuzz_check_replies(const struct mproto_buf *out)
{
    size_t  off = 0, used, len;
    char   *d;
    int     cmd;

    while (off < out->len) {
	if (mproto_frame(out->data + off, out->len - off, &cmd, &d, &len, &used) || used == 0)
	    abort();				/* not a whole packet */
	if (strchr("acdrstymiO", cmd) == NULL)
	    abort();
	off += used;
    }
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mproto_buf whole = {0}, pieces = {0};
    size_t  step = size ? 1 + data[0] % 7 : 1;
    int     r1 = fuzz_feed(data, size, size ? size : 1, &whole);
    int     r2 = fuzz_feed(data, size, step, &pieces);

    if (r1 != r2 || whole.len != pieces.len
	|| (whole.len && memcmp(whole.data, pieces.data, whole.len) != 0))
	abort();
    fuzz_check_replies(&whole);
    mproto_buf_free(&whole);
    mproto_buf_free(&pieces);
    return (0);
}
