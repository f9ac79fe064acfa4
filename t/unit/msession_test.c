/* msession_test - milter-dkim's milter protocol engine: mproto framing,
 * msession's negotiation, replies, macros, state machine and header
 * edits, and mengine over a real UNIX socket (oversized packets, a peer
 * that never reads, stop with sessions open). */

#include "build_config.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mengine.h"
#include "msession.h"
#include "tap.h"

static struct {
    int     connect, helo, mail, header, eoh, body, eom, abort_, close_, data;
    int     eoh_result, eom_result, header_result;
    char    last_i[64], last_user[64], last_host[64], mail_arg[64], last_value[64];
    int     family, early_edit;
    unsigned long offered_p;
} seen;

static sfsistat t_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			            unsigned long f2, unsigned long f3, unsigned long *pf0,
			            unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void) ctx, (void) f2, (void) f3;
    seen.offered_p = f1;
    *pf0 = (SMFIF_ADDHDRS | SMFIF_CHGHDRS) & f0;
    *pf1 = (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NORCPT | SMFIP_NR_HDR
	    | SMFIP_NR_BODY | SMFIP_NODATA | SMFIP_HDR_LEADSPC) & f1;
    *pf2 = *pf3 = 0;
    return (SMFIS_CONTINUE);
}

static sfsistat t_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
    (void) ctx;
    seen.connect++;
    snprintf(seen.last_host, sizeof(seen.last_host), "%s", host);
    seen.family = sa ? sa->sa_family : -1;
    return (SMFIS_NOREPLY);
}

static sfsistat t_helo(SMFICTX *ctx, char *name)
{
    (void) ctx, (void) name;
    seen.helo++;
    return (SMFIS_CONTINUE);			/* NR: must not be sent */
}

static sfsistat t_mail(SMFICTX *ctx, char **argv)
{
    const char *u = smfi_getsymval(ctx, "{auth_authen}");
    const char *i = smfi_getsymval(ctx, "i");

    seen.mail++;
    snprintf(seen.last_user, sizeof(seen.last_user), "%s", u ? u : "(none)");
    snprintf(seen.last_i, sizeof(seen.last_i), "%s", i ? i : "(none)");
    snprintf(seen.mail_arg, sizeof(seen.mail_arg), "%s|%s", argv[0], argv[1] ? argv[1] : "");
    return (SMFIS_NOREPLY);
}

static sfsistat t_header(SMFICTX *ctx, char *name, char *value)
{
    (void) ctx, (void) name;
    seen.header++;
    snprintf(seen.last_value, sizeof(seen.last_value), "%s", value);
    return (seen.header_result);
}

static sfsistat t_eoh(SMFICTX *ctx)
{
    const char *i = smfi_getsymval(ctx, "{i}");

    seen.eoh++;
    snprintf(seen.last_i, sizeof(seen.last_i), "%s", i ? i : "(none)");
    if (seen.eoh_result == SMFIS_REJECT)
	smfi_setreply(ctx, "550", "5.7.1", "Go away");
    if (seen.eoh_result == SMFIS_TEMPFAIL)	/* a 5xx text: not sent with a 4xx */
	smfi_setreply(ctx, "550", "5.7.1", "Mismatch");
    seen.early_edit = smfi_insheader(ctx, 0, "X-Early", "v");
    return (seen.eoh_result);
}

static sfsistat t_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    (void) ctx, (void) chunk, (void) len;
    seen.body++;
    return (SMFIS_NOREPLY);
}

static sfsistat t_eom(SMFICTX *ctx)
{
    seen.eom++;
    smfi_chgheader(ctx, "Authentication-Results", 2, NULL);
    smfi_insheader(ctx, 0, "DKIM-Signature", " v=1");
    return (seen.eom_result);
}

static sfsistat t_abort(SMFICTX *ctx)
{
    (void) ctx;
    seen.abort_++;
    return (SMFIS_CONTINUE);
}

static sfsistat t_close(SMFICTX *ctx)
{
    (void) ctx;
    seen.close_++;
    return (SMFIS_CONTINUE);
}

static struct smfiDesc t_desc = {
    .xxfi_name = "test", .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
    .xxfi_connect = t_connect, .xxfi_helo = t_helo, .xxfi_envfrom = t_mail,
    .xxfi_header = t_header, .xxfi_eoh = t_eoh, .xxfi_body = t_body, .xxfi_eom = t_eom,
    .xxfi_abort = t_abort, .xxfi_close = t_close, .xxfi_negotiate = t_negotiate,
};

/* packet building */

static struct mproto_buf in;

static void pk(int cmd, const char *data, size_t len)
{
    mproto_put(&in, cmd, data, len);
}

#define PKS(cmd, lit) pk((cmd), (lit), sizeof(lit) - 1)
#define PKZ(cmd, lit) pk((cmd), (lit), sizeof(lit))	/* with its last NUL */

static void optneg(uint32_t version, uint32_t actions, uint32_t proto)
{
    uint32_t v[3] = {htonl(version), htonl(actions), htonl(proto)};

    pk('O', (const char *) v, sizeof(v));
}

/* the envelope and header of one message, as Postfix sends it */

static void message_start(void)
{
    PKS('D', "M{auth_authen}\0alice\0");
    PKS('M', "<a@planapulse.ai>\0SIZE=10\0");
    PKS('L', "From\0 a@planapulse.ai\0");
    PKS('L', "Subject\0 hi\0");
    PKS('D', "Ni\0QID1\0");
}

/* run - feed "in" to the session; replies as "c,a,..." (command letters) */

static int run(struct msession *s, char *replies, size_t size)
{
    size_t  used, off = 0, len, n = 0;
    int     r = msession_input(s, in.data, in.len, &used), cmd;
    char   *d;

    replies[0] = 0;
    while (off < s->out.len && n + 2 < size) {
	if (mproto_frame(s->out.data + off, s->out.len - off, &cmd, &d, &len, &used) || !used)
	    break;
	replies[n++] = (char) cmd;
	off += used;
    }
    replies[n] = 0;
    in.len = 0;
    return (r);
}

static void test_negotiation(void)
{
    struct msession s;
    char    r[64];
    uint32_t v[3];

    msession_init(&s, &t_desc);
    optneg(6, 0x1ff, 0x1fffff);
    is_int(run(&s, r, sizeof(r)), MSESSION_MORE, "negotiation: session goes on");
    is_str(r, "O", "negotiation: one reply");
    memcpy(v, s.out.data + 5, 12);
    is_int(ntohl(v[0]), 6, "negotiation: version 6");
    is_int(ntohl(v[1]), SMFIF_ADDHDRS | SMFIF_CHGHDRS, "negotiation: our actions");
    is_int(ntohl(v[2]), SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NORCPT
	   | SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NODATA | SMFIP_HDR_LEADSPC,
	   "negotiation: exactly the flags the callback took");
    msession_free(&s);

    /* an MTA without no-reply steps: we answer "continue" for them ourselves */
    msession_init(&s, &t_desc);
    optneg(4, 0x1ff, 0x3f | SMFIP_NODATA);
    run(&s, r, sizeof(r));
    memcpy(v, s.out.data + 5, 12);
    is_int(ntohl(v[0]), 4, "old MTA: its version 4");
    is_int(ntohl(v[2]) & (SMFIP_NR_CONN | SMFIP_NR_HDR | SMFIP_NR_BODY), 0,
	   "old MTA: no no-reply flag it did not offer");
    ok(seen.offered_p & SMFIP_NR_HDR, "old MTA: the callback was offered NR_HDR (faked)");
    s.out.len = 0;
    PKS('C', "h\0U");
    PKS('H', "client\0");
    message_start();
    is_int(run(&s, r, sizeof(r)), MSESSION_MORE, "old MTA: envelope taken");
    is_str(r, "ccccc", "old MTA: connect, helo, mail, 2 headers answered 'c' (NR faked)"
	   " and macros not");
    msession_free(&s);

    msession_init(&s, &t_desc);
    PKS('O', "\0\0\0\6");
    is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "a short negotiation ends the session");
    msession_free(&s);
}

static struct msession *session_ready(struct msession *s);

/* t_negotiate_lists - t_negotiate, and the macros milter-dkim asks for */

static sfsistat t_negotiate_lists(SMFICTX *ctx, unsigned long f0, unsigned long f1,
				          unsigned long f2, unsigned long f3, unsigned long *pf0,
				          unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    sfsistat r = t_negotiate(ctx, f0, f1, f2, f3, pf0, pf1, pf2, pf3);

    *pf0 |= SMFIF_SETSYMLIST & f0;
    seen.data = smfi_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen}") == MI_SUCCESS;
    seen.data += smfi_setsymlist(ctx, SMFIM_EOH, "i") == MI_SUCCESS;
    seen.data += smfi_setsymlist(ctx, SMFIM_EOH, "j") == MI_SUCCESS;	/* twice: no */
    seen.data += smfi_setsymlist(ctx, 7, "j") == MI_SUCCESS;	/* no such stage */
    return (r);
}

/*
 * test_lists_leadspc - smfi_setsymlist() in the negotiation reply (helper-119:
 * Postfix's milter_mail_macros without {auth_authen} turned sender_binding
 * off); an MTA that did not agree to SMFIP_HDR_LEADSPC (Postfix's
 * milter_protocol 2-5 strips the space after the colon and adds one to
 * edits): a space is put before each value and taken from each edit
 * (helper-119: every simple-canonicalized signature failed).
 */
static void test_lists_leadspc(void)
{
    static const char want[] = "\0\0\0\2{auth_authen}\0\0\0\0\6i\0";
    struct smfiDesc desc = t_desc;
    struct msession s;
    char    r[64], *d;
    size_t  len, used;
    uint32_t actions;
    int     cmd;

    desc.xxfi_negotiate = t_negotiate_lists;
    memset(&seen, 0, sizeof(seen));
    msession_init(&s, &desc);
    optneg(6, 0x1ff, 0x1fffff);
    run(&s, r, sizeof(r));
    mproto_frame(s.out.data, s.out.len, &cmd, &d, &len, &used);
    is_int(seen.data, 2, "smfi_setsymlist: two stages taken, a second list and stage 7 not");
    ok(len == 12 + sizeof(want) - 1 && memcmp(d + 12, want, sizeof(want) - 1) == 0,
       "the negotiation reply carries both lists (MAIL, end of header)");
    memcpy(&actions, d + 4, 4);
    is_int(ntohl(actions), SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST,
	   "SMFIF_SETSYMLIST among our actions");
    msession_free(&s);

    memset(&seen, 0, sizeof(seen));
    msession_init(&s, &desc);
    optneg(6, 0xff, 0x1fffff);			/* no SMFIF_SETSYMLIST offered */
    run(&s, r, sizeof(r));
    mproto_frame(s.out.data, s.out.len, &cmd, &d, &len, &used);
    ok(seen.data == 0 && len == 12, "an MTA without SMFIF_SETSYMLIST: no list");
    msession_free(&s);

    memset(&seen, 0, sizeof(seen));
    msession_init(&s, &t_desc);
    optneg(6, 0x1ff, 0x1fffff & ~SMFIP_HDR_LEADSPC);
    PKZ('C', "client.example\0" "4\0\031" "203.0.113.5");
    PKS('M', "<a@planapulse.ai>\0");
    PKS('L', "Subject\0hi\0");
    run(&s, r, sizeof(r));
    is_str(seen.last_value, " hi", "no LEADSPC: the header callback gets one space first");
    s.out.len = 0;
    PKS('N', "");
    PKS('E', "");
    run(&s, r, sizeof(r));
    ok(s.out.len > 0 && memmem(s.out.data, s.out.len, "DKIM-Signature\0v=1\0", 19) != NULL,
       "no LEADSPC: an added header is sent without its space (the MTA adds one)");
    msession_free(&s);

    memset(&seen, 0, sizeof(seen));
    session_ready(&s);
    PKS('M', "<a@planapulse.ai>\0");
    PKS('L', "Subject\0 hi\0");
    PKS('N', "");
    PKS('E', "");
    run(&s, r, sizeof(r));
    ok(strcmp(seen.last_value, " hi") == 0
       && memmem(s.out.data, s.out.len, "DKIM-Signature\0 v=1\0", 20) != NULL,
       "LEADSPC: values as they are, both ways");
    msession_free(&s);
}

static struct msession *session_ready(struct msession *s)
{
    char    r[16];

    memset(&seen, 0, sizeof(seen));
    msession_init(s, &t_desc);
    optneg(6, 0x1ff, 0x1fffff);
    PKS('D', "Cj\0mx.example\0");
    PKZ('C', "client.example\0" "4\0\031" "203.0.113.5");
    PKS('H', "client.example\0");
    run(s, r, sizeof(r));
    s->out.len = 0;
    return (s);
}

static void test_message(void)
{
    struct msession s;
    char    r[64];

    session_ready(&s);
    is_int(seen.family, AF_INET, "connect: an IPv4 address");
    is_str(seen.last_host, "client.example", "connect: the host name");
    is_int(seen.helo, 1, "helo callback ran");
    message_start();
    PKS('N', "");
    PKS('B', "Hello\r\n");
    PKS('D', "Ei\0QID1\0");
    PKS('E', "");
    seen.eoh_result = SMFIS_CONTINUE;
    seen.eom_result = SMFIS_ACCEPT;
    run(&s, r, sizeof(r));
    is_str(r, "cmia", "a message: EOH 'c', then at EOM the edits in order, then 'a'");
    is_str(seen.last_user, "alice", "MAIL sees {auth_authen}");
    is_str(seen.mail_arg, "<a@planapulse.ai>|SIZE=10", "MAIL's arguments");
    is_str(seen.last_i, "QID1", "EOH finds \"{i}\" sent as \"i\"");
    is_int(seen.early_edit, MI_FAILURE, "no header edit before EOM");
    ok(memmem(s.out.data, s.out.len, "DKIM-Signature\0 v=1\0", 20) != NULL,
       "the inserted header's name and value");
    is_int(seen.header + seen.body + seen.eom, 4, "2 headers, 1 body chunk, 1 EOM");
    s.out.len = 0;

    /* the next message: MAIL clears the later stages' macros */
    PKS('M', "<b@planapulse.ai>\0");
    run(&s, r, sizeof(r));
    is_str(seen.last_i, "(none)", "a new MAIL does not see the last message's \"i\"");
    is_str(seen.last_user, "alice", "MAIL macros stay until the MTA sends new ones");
    msession_free(&s);
    is_int(seen.abort_, 1, "free mid-message: abort callback");
    is_int(seen.close_, 1, "and close, once");
}

static void test_refusals(void)
{
    struct msession s;
    char    r[64];

    session_ready(&s);
    message_start();
    PKS('N', "");
    seen.eoh_result = SMFIS_REJECT;
    PKS('B', "ignored\r\n");
    PKS('E', "");
    PKS('A', "");
    run(&s, r, sizeof(r));
    is_str(r, "y", "reject at EOH with a reply set: one 'y', body and EOM ignored");
    ok(memmem(s.out.data, s.out.len, "550 5.7.1 Go away", 18) != NULL,
       "the reply text: \"550 5.7.1 Go away\"");
    is_int(seen.body + seen.eom + seen.abort_, 0, "no body, EOM or abort callback after it");
    s.out.len = 0;
    message_start();
    PKS('N', "");
    seen.eoh_result = SMFIS_TEMPFAIL;
    run(&s, r, sizeof(r));
    is_str(r, "t", "tempfail with a 5xx reply set: plain 't'");
    s.out.len = 0;
    seen.header_result = SMFIS_REJECT;
    message_start();
    run(&s, r, sizeof(r));
    is_str(r, "", "reject from a no-reply header: nothing sent");
    msession_free(&s);
    ok(smfi_setreply(&s, "250", NULL, "x") == MI_FAILURE, "setreply refuses a 2xx");
    ok(smfi_setreply(&s, "550", "5.7", "x") == MI_FAILURE, "setreply refuses \"5.7\"");
    ok(smfi_setreply(&s, "550", "5.7.1", "a\r\nb") == MI_FAILURE, "setreply refuses CRLF");
    ok(smfi_setreply(&s, "451", "4.7.0", "ok") == MI_SUCCESS, "setreply takes 451 4.7.0");
    free(s.reply);
}

/* abort in every stage: the callback, and the next message works */

static void test_aborts(void)
{
    static const char *stage[] = {"MAIL", "header", "EOH", "body"};
    struct msession s;
    char    r[64];

    for (int k = 0; k < 4; k++) {
	session_ready(&s);
	seen.eom_result = SMFIS_ACCEPT;
	PKS('M', "<a@planapulse.ai>\0");
	if (k >= 1)
	    PKS('L', "From\0 a@planapulse.ai\0");
	if (k >= 2)
	    PKS('N', "");
	if (k >= 3)
	    PKS('B', "x");
	PKS('A', "");
	message_start();
	PKS('N', "");
	PKS('E', "");
	run(&s, r, sizeof(r));
	is_int(seen.abort_, 1, "abort after %s: callback once", stage[k]);
	ok(strlen(r) >= 2 && r[strlen(r) - 1] == 'a', "abort after %s: the next message "
	   "is accepted (%s)", stage[k], r);
	msession_free(&s);
    }
    session_ready(&s);
    s.pflags |= SMFIP_NOUNKNOWN;		/* as milter.c negotiates */
    message_start();
    PKS('N', "");
    PKS('A', "");
    PKS('B', "x");
    PKS('L', "From\0 b@planapulse.ai\0");
    PKS('N', "");
    PKS('E', "");
    run(&s, r, sizeof(r));
    is_str(r, "c", "after an abort, a body chunk, a header, EOH and EOM: no reply (%s)", r);
    is_int(seen.body * 100 + seen.eoh * 10 + seen.eom, 10, "and no callback but the first EOH");
    msession_free(&s);
    session_ready(&s);
    PKS('A', "");
    run(&s, r, sizeof(r));
    is_int(seen.abort_, 0, "abort outside a message: ignored");
    PKS('M', "<a@planapulse.ai>\0");
    PKS('Q', "");
    is_int(run(&s, r, sizeof(r)), MSESSION_END, "QUIT ends the session");
    msession_free(&s);
    is_int(seen.abort_ * 10 + seen.close_, 11, "QUIT mid-message: abort, then close");
    session_ready(&s);
    message_start();
    PKS('N', "");
    PKS('E', "");				/* EOM continues: QUIT_NC may follow */
    PKS('K', "");
    PKS('C', "again\0U");
    run(&s, r, sizeof(r));
    is_int(seen.close_ * 10 + seen.connect, 12, "QUIT_NC: close, then a new CONNECT");
    msession_free(&s);
    is_int(seen.close_, 2, "and close again at the end");
    for (int k = 0; k < 2; k++) {		/* after HELO, mid-message */
	session_ready(&s);
	if (k)
	    message_start();
	PKS('K', "");
	PKS('C', "again\0U");
	run(&s, r, sizeof(r));
	is_int(seen.abort_ * 100 + seen.close_ * 10 + seen.connect, k * 100 + 12,
	       "QUIT_NC %s: %sclose, then the new CONNECT is taken",
	       k ? "mid-message" : "after HELO", k ? "abort, " : "");
	msession_free(&s);
    }
}

static void test_framing(void)
{
    struct msession s;
    char    r[64], *d;
    size_t  used, len;
    int     cmd;
    uint32_t n = htonl(MPROTO_DATA_MAX + 2);

    session_ready(&s);
    PKS('M', "<a@planapulse.ai>\0");
    in.len -= 3;				/* truncated */
    is_int(run(&s, r, sizeof(r)), MSESSION_MORE, "a truncated packet waits for more");
    ok(mproto_frame("\0\0\0\5Mab", 7, &cmd, &d, &len, &used) == NULL && used == 0,
       "mproto_frame: part of a packet: used 0");
    ok(mproto_frame((char *) &n, 4, &cmd, &d, &len, &used) != NULL,
       "mproto_frame: a length past the limit is an error from its 4 bytes alone");
    ok(mproto_frame("\0\0\0\0", 4, &cmd, &d, &len, &used) != NULL, "a length of 0: error");
    pk('M', (char *) &n, 0);
    memcpy(in.data, &n, 4);
    is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "oversized packet ends the session");
    ok(s.error && strstr(s.error, "limit"), "with a reason: %s", s.error ? s.error : "");
    msession_free(&s);
    session_ready(&s);
    PKS('Z', "");
    is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "an unknown command ends the session");
    msession_free(&s);
    session_ready(&s);
    PKS('M', "<a>\0");
    PKS('L', "From-without-value");
    is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "a header without NULs ends it");
    msession_free(&s);
    is_int(seen.abort_, 1, "and the message under way is aborted");
    session_ready(&s);
    PKS('M', "<a>\0");
    PKZ('L', "\0 a@planapulse.ai");
    is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "a header with an empty name ends it");
    is_int(seen.header, 0, "without a header callback");
    msession_free(&s);
    session_ready(&s);
    {
	static char big[MSESSION_MACRO_MAX + 1];

	memset(big, 'x', sizeof(big));
	memcpy(big, "M{big}", 7);
	big[sizeof(big) - 1] = 0;
	pk('D', big, sizeof(big) - 1);
	is_int(run(&s, r, sizeof(r)), MSESSION_MORE, "a macro packet of 64 KB is taken");
	pk('D', big, sizeof(big));
	is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "one byte more ends the session");
	ok(s.error && strstr(s.error, "64 KB"), "with a reason: %s", s.error ? s.error : "");
    }
    msession_free(&s);
    msession_init(&s, &t_desc);
    optneg(6, 0x1ff, 0x1fffff);
    PKZ('C', "h\0" "4\0\031" "999.1.2.3");
    is_int(run(&s, r, sizeof(r)), MSESSION_ERROR, "connect with a bad address ends it");
    msession_free(&s);
}

/* mengine over a UNIX socket */

static const char *sock_path = "/tmp/msession_test.sock";
static int listen_fd;

static void *t_run(void *arg)
{
    (void) arg;
    mengine_run(listen_fd, &t_desc);
    return (NULL);
}

static int t_connect_sock(void)
{
    union {
	struct sockaddr sa;
	struct sockaddr_un sun;
    }       u = {.sun = {.sun_family = AF_UNIX}};
    int     fd = socket(AF_UNIX, SOCK_STREAM, 0);

    strcpy(u.sun.sun_path, sock_path);
    if (connect(fd, &u.sa, sizeof(u.sun)) < 0)
	return (-1);
    return (fd);
}

static int t_closed_within(int fd, int seconds)
{
    struct timeval tv = {seconds, 0};
    char    buf[4096];
    ssize_t n;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while ((n = read(fd, buf, sizeof(buf))) > 0)
	 /* void */ ;
    return (n == 0);
}

static void *t_flood(void *arg)
{
    struct mproto_buf flood = {0};
    int     fd = *(int *) arg;
    ssize_t n;

    for (int i = 0; i < 20000; i++) {
	mproto_put(&flood, 'M', "<a@planapulse.ai>", 18);
	mproto_put(&flood, 'N', NULL, 0);
	mproto_put(&flood, 'E', NULL, 0);
    }
    for (size_t off = 0; off < flood.len; off += n)
	if ((n = write(fd, flood.data + off, flood.len - off)) <= 0)
	    break;				/* closed by the other end */
    mproto_buf_free(&flood);
    return (NULL);
}

static int t_negotiated(int fd)
{
    char    buf[17];

    in.len = 0;
    optneg(6, 0x1ff, 0x1fffff);
    return (write(fd, in.data, in.len) == (ssize_t) in.len && read(fd, buf, 17) == 17
	    && buf[4] == 'O');
}

static void test_engine(void)
{
    const char *err;
    pthread_t tid, flooder;
    int     fd, other, closes;
    uint32_t n = htonl(MPROTO_DATA_MAX + 2);

    signal(SIGPIPE, SIG_IGN);
    unlink(sock_path);
    mengine_timeout = 2;
    listen_fd = mengine_open("unix:/nonexistent-dir/x.sock", &err);
    ok(listen_fd < 0 && err, "mengine_open: a bad path fails with a reason");
    listen_fd = mengine_open(sock_path, &err);
    ok(listen_fd >= 0, "mengine_open: a UNIX socket");
    pthread_create(&tid, NULL, t_run, NULL);
    memset(&seen, 0, sizeof(seen));
    fd = t_connect_sock();
    ok(t_negotiated(fd), "engine: negotiation answered");
    ok(write(fd, &n, 4) == 4 && t_closed_within(fd, 5), "engine: an oversized length: closed");
    close(fd);

    /* a peer that floods and never reads: closed after the timeout */
    fd = t_connect_sock();
    ok(t_negotiated(fd), "engine: the flooder negotiates");
    in.len = 0;
    PKS('C', "h\0U");
    ok(write(fd, in.data, in.len) == (ssize_t) in.len, "engine: and connects");
    closes = __atomic_load_n(&seen.close_, __ATOMIC_SEQ_CST);
    pthread_create(&flooder, NULL, t_flood, &fd);
    sleep(1);
    other = t_connect_sock();
    ok(t_negotiated(other), "engine: another session is served while the flooder is stuck");
    close(other);
    for (int i = 0; i < 50 && __atomic_load_n(&seen.close_, __ATOMIC_SEQ_CST) < closes + 2; i++)
	usleep(100 * 1000);
    is_int(__atomic_load_n(&seen.close_, __ATOMIC_SEQ_CST), closes + 2,
	   "engine: the flooder was closed after the timeout (and the other session ended)");
    pthread_join(flooder, NULL);
    close(fd);
    other = t_connect_sock();
    ok(t_negotiated(other), "engine: new sessions still served");
    closes = __atomic_load_n(&seen.close_, __ATOMIC_SEQ_CST);
    mengine_stop();
    pthread_join(tid, NULL);
    is_int(seen.close_, closes + 1, "engine: stop ends the open session (close callback)");
    close(other);
    unlink(sock_path);
}

int     main(void)
{
    test_negotiation();
    test_lists_leadspc();
    test_message();
    test_refusals();
    test_aborts();
    test_framing();
    test_engine();
    mproto_buf_free(&in);
    return (tap_done());
}
