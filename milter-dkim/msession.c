/*
 * NAME
 *	msession 3
 * SUMMARY
 *	one milter protocol session: state, callbacks, replies
 * SYNOPSIS
 *	#include "msession.h"
 *
 *	void	msession_init(s, desc)
 *
 *	int	msession_input(s, buf, have, &used)
 *
 *	int	msession_packet(s, cmd, data, len)
 *
 *	void	msession_free(s)
 *
 *	int	msession_between(s)
 * DESCRIPTION
 *	The milter side of the protocol (version 6, as Postfix's milter8
 *	and Sendmail speak it) over a smfiDesc of callbacks, with no I/O:
 *	packets go in, reply packets are appended to s->out, and mengine(3)
 *	writes them. What the MTA sees is what libmilter would send:
 * .IP \(bu
 *	negotiation: version min(6, the MTA's), the actions and protocol
 *	flags the negotiate callback takes from what the MTA offers (no-reply
 *	flags the MTA lacks are faked: we answer "continue" ourselves);
 * .IP \(bu
 *	a step negotiated without reply never gets one, whatever the
 *	callback returns (the MTA would read it as the next step's reply);
 * .IP \(bu
 *	after accept, reject, discard or tempfail (but for RCPT and unknown
 *	commands) the rest of that message is ignored: the commands the
 *	state machine does not expect there get no callback and no reply,
 *	and a mail transaction cut short gets the abort callback;
 * .IP \(bu
 *	QUIT_NC (a new SMTP connection follows) is taken in every step
 *	after negotiation, a message under way aborted: libmilter ignores
 *	it before end of message, and then the next CONNECT too;
 * .IP \(bu
 *	smfi_setreply() text goes with a matching reject (5xx) or tempfail
 *	(4xx); header edits only at end of message, with the action
 *	negotiated, ahead of the final reply;
 * .IP \(bu
 *	macros per stage, looked up latest stage first, "i" and "{i}"
 *	alike; a stage clears the macros of the stages after it. A macro
 *	packet past MSESSION_MACRO_MAX (64 KB; Postfix's are addresses and
 *	names) ends the session: each of the 7 stages keeps a copy, so up to
 *	the packet limit they cost 56 MB a session, and one dropped could
 *	be {auth_authen}, which decides signing. smfi_setsymlist() (in the
 *	negotiate callback, where the MTA offers SMFIF_SETSYMLIST) asks for
 *	a stage's macros in the negotiation reply, whatever the MTA's own
 *	lists (Postfix's milter_*_macros) say;
 * .IP \(bu
 *	header values always carry their leading white space, both ways:
 *	when the MTA did not agree to SMFIP_HDR_LEADSPC (Postfix's
 *	milter_protocol 2 to 5 strips the white space after the colon, and
 *	writes an added header as "name: value"), one space is put before
 *	each value handed to the header callback and taken from each value
 *	an edit sends. The white space a header really had is then not
 *	known: one space is what nearly every header has.
 * .PP
 *	msession_input() hands every whole packet in buf to
 *	msession_packet() and says how many bytes it took. Both return
 *	MSESSION_MORE, MSESSION_END after QUIT, or MSESSION_ERROR with
 *	s->error set (a bad length, a malformed command, an unknown
 *	command): the stream cannot be trusted after that.
 *
 *	msession_free() ends the session: the abort callback if a message
 *	was under way, the close callback if it has not run.
 *
 *	msession_between() says whether the session is between messages:
 *	one began (MAIL) and ended (end of message answered, aborted,
 *	refused) and the next has not begun. The MTA waits for nothing
 *	from us then; before the first MAIL it may (negotiation, connect).
 */

#include "build_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "msession.h"
#include "msg.h"
#include "xalloc.h"

enum {
    ST_INIT, ST_OPTS, ST_CONN, ST_HELO, ST_MAIL, ST_RCPT, ST_DATA, ST_HDRS, ST_EOHS,
    ST_BODY, ST_ENDM, ST_QUIT, ST_ABRT, ST_UNKN, ST_QNC, ST_COUNT
};

#define BIT(s)	(1U << (s))
#define IN_MAIL(s) ((s) >= ST_MAIL && (s) < ST_ENDM)

/* the steps that may follow each one (the protocol's order) */
static const unsigned msession_next[ST_COUNT] = {
    [ST_INIT] = BIT(ST_OPTS),
    [ST_OPTS] = BIT(ST_CONN) | BIT(ST_UNKN),
    [ST_CONN] = BIT(ST_HELO) | BIT(ST_MAIL) | BIT(ST_UNKN),
    [ST_HELO] = BIT(ST_HELO) | BIT(ST_MAIL) | BIT(ST_UNKN),
    [ST_MAIL] = BIT(ST_RCPT) | BIT(ST_ABRT) | BIT(ST_UNKN),
    [ST_RCPT] = BIT(ST_HDRS) | BIT(ST_EOHS) | BIT(ST_DATA) | BIT(ST_BODY) | BIT(ST_ENDM)
    | BIT(ST_RCPT) | BIT(ST_ABRT) | BIT(ST_UNKN),
    [ST_DATA] = BIT(ST_EOHS) | BIT(ST_HDRS) | BIT(ST_ABRT),
    [ST_HDRS] = BIT(ST_EOHS) | BIT(ST_HDRS) | BIT(ST_ABRT),
    [ST_EOHS] = BIT(ST_BODY) | BIT(ST_ENDM) | BIT(ST_ABRT),
    [ST_BODY] = BIT(ST_ENDM) | BIT(ST_BODY) | BIT(ST_ABRT),
    [ST_ENDM] = BIT(ST_QUIT) | BIT(ST_MAIL) | BIT(ST_UNKN) | BIT(ST_QNC),
    [ST_UNKN] = BIT(ST_HELO) | BIT(ST_MAIL) | BIT(ST_RCPT) | BIT(ST_ABRT) | BIT(ST_DATA)
    | BIT(ST_BODY) | BIT(ST_UNKN) | BIT(ST_QUIT) | BIT(ST_QNC),
    [ST_QNC] = BIT(ST_CONN) | BIT(ST_UNKN),
};

/* the flag that takes each step out, so the state machine steps over it */
static const unsigned long msession_skip[ST_COUNT] = {
    [ST_CONN] = SMFIP_NOCONNECT, [ST_HELO] = SMFIP_NOHELO, [ST_MAIL] = SMFIP_NOMAIL,
    [ST_RCPT] = SMFIP_NORCPT, [ST_DATA] = SMFIP_NODATA, [ST_HDRS] = SMFIP_NOHDRS,
    [ST_EOHS] = SMFIP_NOEOH, [ST_BODY] = SMFIP_NOBODY, [ST_UNKN] = SMFIP_NOUNKNOWN,
};

/* the flag that takes each step's reply out */
static const unsigned long msession_noreply[ST_COUNT] = {
    [ST_CONN] = SMFIP_NR_CONN, [ST_HELO] = SMFIP_NR_HELO, [ST_MAIL] = SMFIP_NR_MAIL,
    [ST_RCPT] = SMFIP_NR_RCPT, [ST_DATA] = SMFIP_NR_DATA, [ST_HDRS] = SMFIP_NR_HDR,
    [ST_EOHS] = SMFIP_NR_EOH, [ST_BODY] = SMFIP_NR_BODY, [ST_UNKN] = SMFIP_NR_UNKN,
};

#define NR_ALL	(SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT \
	| SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)
#define V1_ACTIONS	(SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT)
#define V1_STEPS	0x3fUL
#define INTERNAL_FLAGS	0x70000000UL	/* buffer sizes: never offered */

/* results that are no callback's */
#define R_NONE	(-2)			/* nothing to send */
#define R_FAIL	(-3)			/* malformed: end the session */
#define R_OPTIONS (-4)			/* the negotiation reply */

/* macro slots, searched from the last: EOH, EOM, DATA, RCPT, MAIL, HELO, CONNECT */
static int msession_slot(int cmd)
{
    static const char order[] = {MPROTO_CONNECT, MPROTO_HELO, MPROTO_MAIL, MPROTO_RCPT,
	MPROTO_DATA, MPROTO_BODYEOB, MPROTO_EOH};

    for (int i = 0; i < MSESSION_MACROS; i++)
	if (order[i] == cmd)
	    return (i);
    return (-1);
}

static void msession_clear_macros(struct msession *s, int from)
{
    for (int i = from < 0 ? 0 : from; i < MSESSION_MACROS; i++) {
	free(s->mac_buf[i]);
	free(s->mac_argv[i]);
	s->mac_buf[i] = NULL;
	s->mac_argv[i] = NULL;
    }
}

void    msession_init(struct msession *s, const struct smfiDesc *desc)
{
    memset(s, 0, sizeof(*s));
    s->desc = desc;
    s->state = ST_INIT;
    /* without a negotiate callback: no step a callback would not take */
    s->pflags = (desc->xxfi_connect ? 0 : SMFIP_NOCONNECT)
	| (desc->xxfi_helo ? 0 : SMFIP_NOHELO) | (desc->xxfi_envfrom ? 0 : SMFIP_NOMAIL)
	| (desc->xxfi_envrcpt ? 0 : SMFIP_NORCPT) | (desc->xxfi_header ? 0 : SMFIP_NOHDRS)
	| (desc->xxfi_eoh ? 0 : SMFIP_NOEOH) | (desc->xxfi_body ? 0 : SMFIP_NOBODY)
	| (desc->xxfi_unknown ? 0 : SMFIP_NOUNKNOWN) | (desc->xxfi_data ? 0 : SMFIP_NODATA);
}

/*
 * msession_trans_ok - a step negotiated away is stepped over, but only in
 * the order of a message (connect to end of message): from ABRT the next
 * state in the enum is UNKN, and stepping over it (SMFIP_NOUNKNOWN) let a
 * body chunk or header follow an abort as if a message were under way.
 */
static int msession_trans_ok(const struct msession *s, int from, int to)
{
    for (int st = from; st < ST_COUNT;) {
	if (msession_next[st] & BIT(to))
	    return (1);
	if (st + 1 > ST_ENDM || !(s->pflags & msession_skip[st + 1]))
	    return (0);
	st++;
    }
    return (0);
}

/* msession_macros - one 'D' packet: the stage, then name, value, ... */

static int msession_macros(struct msession *s, char *data, size_t len)
{
    int     slot = len ? msession_slot((unsigned char) data[0]) : -1, count;
    char   *copy;
    char  **argv;

    if (slot < 0 || len < 2)
	return (R_NONE);			/* libmilter drops these too */
    if (len > MSESSION_MACRO_MAX)
	return (R_FAIL);			/* dropped, a decision would miss it */
    copy = xmalloc(len - 1);
    memcpy(copy, data + 1, len - 1);
    if ((argv = mproto_argv(copy, len - 1, &count)) == NULL) {
	free(copy);
	return (R_NONE);
    }
    argv[count & ~1] = NULL;			/* a name without a value */
    free(s->mac_buf[slot]);
    free(s->mac_argv[slot]);
    s->mac_buf[slot] = copy;
    s->mac_argv[slot] = argv;
    return (R_NONE);
}

static atomic_int msession_leadspc_said;	/* the warning: once a process */

/* msession_optneg - the MTA's offer, the negotiate callback's choice */

static int msession_optneg(struct msession *s, const char *data, size_t len)
{
    uint32_t version, aflags, pflags;
    unsigned long m_aflags, m_pflags, f2 = 0, f3 = 0;
    const struct smfiDesc *d = s->desc;
    int     r;

    if (mproto_get32(data, len, 0, &version) || mproto_get32(data, len, 4, &aflags)
	|| mproto_get32(data, len, 8, &pflags) || version < 2)
	return (R_FAIL);
    s->version = version < 6 ? version : 6;
    s->mta_aflags = aflags ? aflags : V1_ACTIONS;
    s->mta_pflags = (pflags ? pflags : V1_STEPS) & ~INTERNAL_FLAGS;
    s->aflags = d->xxfi_flags;
    s->pflags2mta = s->pflags;
    if (d->xxfi_negotiate) {
	m_aflags = s->mta_aflags;
	m_pflags = s->pflags | (s->mta_pflags & SMFIP_SKIP);
	r = d->xxfi_negotiate(s, s->mta_aflags, s->mta_pflags | NR_ALL, 0, 0,
			      &m_aflags, &m_pflags, &f2, &f3);
	if (r == SMFIS_ALL_OPTS) {
	    s->aflags = s->mta_aflags;
	    s->pflags2mta = s->pflags | (s->mta_pflags & SMFIP_SKIP);
	} else if (r != SMFIS_CONTINUE) {
	    return (R_FAIL);
	} else {
	    s->aflags = m_aflags;
	    s->pflags = s->pflags2mta = m_pflags;
	}
	/* no-reply steps the MTA cannot skip: we answer them ourselves */
	s->pflags2mta &= ~(NR_ALL & ~s->mta_pflags);
    }
    if ((s->aflags & s->mta_aflags) != s->aflags)
	return (R_FAIL);
    s->pflags2mta &= ~((SMFIP_NODATA | SMFIP_NOUNKNOWN) & ~s->mta_pflags);
    if ((s->pflags2mta & s->mta_pflags) != s->pflags2mta)
	return (R_FAIL);
    s->pflags2mta &= ~INTERNAL_FLAGS;
    if (!(s->pflags2mta & SMFIP_HDR_LEADSPC) && !atomic_exchange(&msession_leadspc_said, 1))
	msg_warn("the MTA does not offer SMFIP_HDR_LEADSPC (Postfix: milter_protocol below 6): "
		 "each header value is taken to follow one space; a header written with a tab "
		 "or no space after its colon then fails simple canonicalization (set "
		 "milter_protocol = 6, Postfix's default; said once)");
    return (R_OPTIONS);
}

/* msession_connect - host name, family, port and address */

static int msession_connect(struct msession *s, char *data, size_t len)
{
    union {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_un sun;
    }       u;
    size_t  host = strnlen(data, len);
    const char *addr;
    uint16_t port;
    int     family;

    if (host + 1 >= len)			/* a host name, then a family */
	return (R_FAIL);
    family = data[host + 1];
    if (family == 'U')
	return (s->desc->xxfi_connect(s, data, NULL));
    if (host + 4 >= len || data[len - 1] != 0)
	return (R_FAIL);
    memcpy(&port, data + host + 2, 2);		/* network order, as sin_port */
    addr = data + host + 4;
    memset(&u, 0, sizeof(u));
    if (family == '4' && inet_pton(AF_INET, addr, &u.sin.sin_addr) == 1) {
	u.sin.sin_family = AF_INET;
	u.sin.sin_port = port;
    } else if (family == '6' && inet_pton(AF_INET6, addr, &u.sin6.sin6_addr) == 1) {
	u.sin6.sin6_family = AF_INET6;
	u.sin6.sin6_port = port;
    } else if (family == 'L' && strlen(addr) < sizeof(u.sun.sun_path)) {
	u.sun.sun_family = AF_UNIX;
	strcpy(u.sun.sun_path, addr);
    } else {
	return (R_FAIL);
    }
    return (s->desc->xxfi_connect(s, data, &u.sa));
}

/* msession_argv_call - MAIL and RCPT: the address, then ESMTP parameters */

static int msession_argv_call(struct msession *s, sfsistat (*fn) (SMFICTX *, char **),
			              char *data, size_t len)
{
    char  **argv;
    int     r;

    if (fn == NULL)
	return (SMFIS_CONTINUE);
    if ((argv = mproto_argv(data, len, NULL)) == NULL)
	return (R_FAIL);
    r = fn(s, argv);
    free(argv);
    return (r);
}

static int msession_header(struct msession *s, char *data, size_t len)
{
    size_t  name = strnlen(data, len);

    if (s->desc->xxfi_header == NULL)
	return (SMFIS_CONTINUE);
    /* name NUL value NUL; a header name is never empty (RFC 5322 2.2) */
    if (len == 0 || data[len - 1] != 0 || name == 0 || name + 1 >= len)
	return (R_FAIL);
    if (!(s->pflags2mta & SMFIP_HDR_LEADSPC)) {	/* msession(3): one space */
	char   *value = xasprintf(" %s", data + name + 1);
	int     r = s->desc->xxfi_header(s, data, value);

	free(value);
	return (r);
    }
    return (s->desc->xxfi_header(s, data, data + name + 1));
}

/* msession_bodyeob - a last chunk, if the MTA sent one with it, then EOM */

static int msession_bodyeob(struct msession *s, char *data, size_t len)
{
    const struct smfiDesc *d = s->desc;
    int     r = SMFIS_CONTINUE;

    if (len > 0 && d->xxfi_body)
	r = d->xxfi_body(s, (unsigned char *) data, len);
    if (r != SMFIS_CONTINUE && r != SMFIS_NOREPLY)
	return (r);
    return (d->xxfi_eom ? d->xxfi_eom(s) : SMFIS_CONTINUE);
}

static int msession_string(char *data, size_t len)
{
    return (len > 0 && data[len - 1] == 0);
}

/* msession_call - the callback of one command, its macros cleared after */

static int msession_call(struct msession *s, int cmd, char *data, size_t len)
{
    const struct smfiDesc *d = s->desc;

    /* as libmilter: the envelope steps clear the macros of later ones */
    if (cmd == MPROTO_OPTNEG)
	msession_clear_macros(s, 0);
    else if (cmd == MPROTO_CONNECT || cmd == MPROTO_HELO || cmd == MPROTO_MAIL
	     || cmd == MPROTO_RCPT)
	msession_clear_macros(s, msession_slot(cmd) + 1);
    switch (cmd) {
    case MPROTO_OPTNEG:
	return (msession_optneg(s, data, len));
    case MPROTO_CONNECT:
	return (d->xxfi_connect ? msession_connect(s, data, len) : SMFIS_CONTINUE);
    case MPROTO_HELO:
	if (d->xxfi_helo == NULL)
	    return (SMFIS_CONTINUE);
	return (msession_string(data, len) ? d->xxfi_helo(s, data) : R_FAIL);
    case MPROTO_MAIL:
	return (msession_argv_call(s, d->xxfi_envfrom, data, len));
    case MPROTO_RCPT:
	return (msession_argv_call(s, d->xxfi_envrcpt, data, len));
    case MPROTO_DATA:
	return (d->xxfi_data ? d->xxfi_data(s) : SMFIS_CONTINUE);
    case MPROTO_HEADER:
	return (msession_header(s, data, len));
    case MPROTO_EOH:
	return (d->xxfi_eoh ? d->xxfi_eoh(s) : SMFIS_CONTINUE);
    case MPROTO_BODY:
	return (d->xxfi_body ? d->xxfi_body(s, (unsigned char *) data, len) : SMFIS_CONTINUE);
    case MPROTO_BODYEOB:
	return (msession_bodyeob(s, data, len));
    case MPROTO_ABORT:
	if (d->xxfi_abort)
	    (void) d->xxfi_abort(s);
	return (R_NONE);
    case MPROTO_QUIT_NC:
	if (d->xxfi_close)
	    (void) d->xxfi_close(s);
	msession_clear_macros(s, 0);
	return (R_NONE);
    case MPROTO_UNKNOWN:
	if (d->xxfi_unknown == NULL)
	    return (SMFIS_CONTINUE);
	return (msession_string(data, len) ? d->xxfi_unknown(s, data) : R_FAIL);
    }
    return (R_FAIL);
}

/* msession_options_reply - version, actions, steps, then each symlist */

static void msession_options_reply(struct msession *s)
{
    uint32_t v[3] = {htonl(s->version), htonl((uint32_t) s->aflags),
    htonl((uint32_t) s->pflags2mta)};
    size_t  len = sizeof(v);
    char   *buf;

    for (int i = 0; i < MSESSION_MACROS; i++)
	len += s->symlist[i] ? 4 + strlen(s->symlist[i]) + 1 : 0;
    buf = xmalloc(len);
    memcpy(buf, v, sizeof(v));
    len = sizeof(v);
    for (uint32_t i = 0; i < MSESSION_MACROS; i++) {
	uint32_t where = htonl(i);

	if (s->symlist[i] == NULL)
	    continue;
	memcpy(buf + len, &where, 4);
	memcpy(buf + len + 4, s->symlist[i], strlen(s->symlist[i]) + 1);
	len += 4 + strlen(s->symlist[i]) + 1;
    }
    mproto_put(&s->out, MPROTO_OPTNEG, buf, len);
    free(buf);
}

/* msession_reply - what libmilter would send for result r in the current step */

static void msession_reply(struct msession *s, int r)
{
    unsigned long bit = msession_noreply[s->state];

    if (bit && (s->pflags & bit)) {		/* the MTA expects nothing */
	if (r == SMFIS_NOREPLY || r >= SMFIS_CONTINUE)
	    r = (s->mta_pflags & bit) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
    } else if (r == SMFIS_NOREPLY) {
	r = R_NONE;				/* as libmilter: nothing */
    }
    switch (r) {
    case SMFIS_CONTINUE:
	mproto_put(&s->out, MPROTO_R_CONTINUE, NULL, 0);
	break;
    case SMFIS_TEMPFAIL:
    case SMFIS_REJECT:
	if (s->reply && *s->reply == (r == SMFIS_TEMPFAIL ? '4' : '5')) {
	    mproto_put(&s->out, MPROTO_R_REPLYCODE, s->reply, strlen(s->reply) + 1);
	    free(s->reply);
	    s->reply = NULL;
	} else {
	    mproto_put(&s->out, r == SMFIS_REJECT ? MPROTO_R_REJECT : MPROTO_R_TEMPFAIL,
		       NULL, 0);
	}
	break;
    case SMFIS_DISCARD:
	mproto_put(&s->out, MPROTO_R_DISCARD, NULL, 0);
	break;
    case SMFIS_ACCEPT:
	mproto_put(&s->out, MPROTO_R_ACCEPT, NULL, 0);
	break;
    case SMFIS_SKIP:
	mproto_put(&s->out, MPROTO_R_SKIP, NULL, 0);
	break;
    case R_OPTIONS:
	msession_options_reply(s);
	break;
    }
}

/* msession_state - the step cmd moves to; -1 for none (macros) */

static int msession_state(int cmd)
{
    static const struct {
	char    cmd;
	char    state;
    }       map[] = {
	{MPROTO_ABORT, ST_ABRT}, {MPROTO_BODY, ST_BODY}, {MPROTO_CONNECT, ST_CONN},
	{MPROTO_BODYEOB, ST_ENDM}, {MPROTO_HELO, ST_HELO}, {MPROTO_HEADER, ST_HDRS},
	{MPROTO_MAIL, ST_MAIL}, {MPROTO_OPTNEG, ST_OPTS}, {MPROTO_EOH, ST_EOHS},
	{MPROTO_DATA, ST_DATA}, {MPROTO_RCPT, ST_RCPT}, {MPROTO_UNKNOWN, ST_UNKN},
	{MPROTO_QUIT_NC, ST_QNC},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
	if (map[i].cmd == cmd)
	    return (map[i].state);
    return (-1);
}

int     msession_packet(struct msession *s, int cmd, char *data, size_t len)
{
    int     next, r;

    if (cmd == MPROTO_MACRO) {
	if (msession_macros(s, data, len) == R_FAIL) {
	    s->error = "milter macro packet longer than 64 KB";
	    return (MSESSION_ERROR);
	}
	return (MSESSION_MORE);
    }
    if (cmd == MPROTO_QUIT)
	return (MSESSION_END);			/* msession_free() closes */
    if ((next = msession_state(cmd)) < 0) {
	s->error = "unknown milter command";
	return (MSESSION_ERROR);
    }
    if (cmd == MPROTO_QUIT_NC && s->state != ST_INIT) {
	/*
	 * The SMTP client went, in whatever step. Ignored here (as libmilter
	 * does past end of message), the next client's CONNECT would be
	 * ignored too and its mail judged by this one's address.
	 */
	if (IN_MAIL(s->state) && s->desc->xxfi_abort)
	    (void) s->desc->xxfi_abort(s);
    } else if (!msession_trans_ok(s, s->state, next)) {
	if (IN_MAIL(s->state) && s->desc->xxfi_abort)
	    (void) s->desc->xxfi_abort(s);
	s->state = ST_HELO;			/* the rest of the message is ignored */
	if (!msession_trans_ok(s, ST_HELO, next))
	    return (MSESSION_MORE);
    }
    s->state = next;
    if (IN_MAIL(next))
	s->started = 1;
    if ((r = msession_call(s, cmd, data, len)) == R_FAIL) {
	s->error = "malformed milter command";
	return (MSESSION_ERROR);
    }
    if (cmd == MPROTO_QUIT_NC)
	s->closed = s->started = 0;		/* a new connection follows */
    msession_reply(s, r);
    if (r == SMFIS_ACCEPT)
	s->state = ST_HELO;
    else if ((r == SMFIS_REJECT || r == SMFIS_DISCARD || r == SMFIS_TEMPFAIL)
	     && cmd != MPROTO_RCPT && cmd != MPROTO_UNKNOWN)
	s->state = ST_HELO;
    return (MSESSION_MORE);
}

int     msession_input(struct msession *s, char *buf, size_t have, size_t *used)
{
    size_t  off = 0, n, len;
    const char *err;
    char   *data;
    int     cmd, r;

    while ((err = mproto_frame(buf + off, have - off, &cmd, &data, &len, &n)) == NULL
	   && n > 0) {
	off += n;
	if ((r = msession_packet(s, cmd, data, len)) != MSESSION_MORE) {
	    *used = off;
	    return (r);
	}
    }
    *used = off;
    if (err) {
	s->error = err;
	return (MSESSION_ERROR);
    }
    return (MSESSION_MORE);
}

/*
 * msession_between - between messages: one ended (its end of message
 * answered, or aborted, or refused) and the next has not begun, so the
 * MTA waits for nothing from us (mengine(3) closes such a session at a stop).
 */
int     msession_between(const struct msession *s)
{
    return (s->started && !IN_MAIL(s->state));
}

void    msession_free(struct msession *s)
{
    if (IN_MAIL(s->state) && s->desc->xxfi_abort)
	(void) s->desc->xxfi_abort(s);
    if (!s->closed && s->desc->xxfi_close)
	(void) s->desc->xxfi_close(s);
    s->closed = 1;
    s->state = ST_QUIT;
    msession_clear_macros(s, 0);
    for (int i = 0; i < MSESSION_MACROS; i++) {
	free(s->symlist[i]);
	s->symlist[i] = NULL;
    }
    free(s->reply);
    s->reply = NULL;
    mproto_buf_free(&s->out);
}

/*
 * The smfi_* calls milter.c makes (smfi.h), on the session it was
 * called with.
 */

/* msession_enhanced - "C.SSS.DDD" with C 2, 4 or 5 (RFC 3463) */

static int msession_enhanced(const char *x)
{
    size_t  n;

    if ((x[0] != '2' && x[0] != '4' && x[0] != '5') || x[1] != '.')
	return (0);
    x += 2;
    if ((n = strspn(x, "0123456789")) < 1 || n > 3 || x[n] != '.')
	return (0);
    x += n + 1;
    return ((n = strspn(x, "0123456789")) >= 1 && n <= 3 && x[n] == 0);
}

/* smfi_setreply - "rcode xcode message": 4xx or 5xx, one line */

int     smfi_setreply(SMFICTX *s, char *rcode, char *xcode, char *message)
{
    if (s == NULL || rcode == NULL || strlen(rcode) != 3 || (rcode[0] != '4' && rcode[0] != '5')
	|| !isdigit((unsigned char) rcode[1]) || !isdigit((unsigned char) rcode[2]))
	return (MI_FAILURE);
    if (xcode && !msession_enhanced(xcode))
	return (MI_FAILURE);
    if (message && (strpbrk(message, "\r\n") || strlen(message) > 980))
	return (MI_FAILURE);
    free(s->reply);
    s->reply = xasprintf("%s %s%s%s", rcode, xcode ? xcode : "",
			 xcode && message ? " " : "", message ? message : "");
    return (MI_SUCCESS);
}

int     smfi_setpriv(SMFICTX *s, void *priv)
{
    if (s == NULL)
	return (MI_FAILURE);
    s->priv = priv;
    return (MI_SUCCESS);
}

void   *smfi_getpriv(SMFICTX *s)
{
    return (s ? s->priv : NULL);
}

/* smfi_getsymval - "i" finds "{i}" and the other way round */

char   *smfi_getsymval(SMFICTX *s, char *name)
{
    size_t  len = name ? strlen(name) : 0;
    char    alt[4] = "";

    if (s == NULL || len == 0)
	return (NULL);
    if (len == 1)
	snprintf(alt, sizeof(alt), "{%c}", name[0]);
    else if (len == 3 && name[0] == '{' && name[2] == '}')
	snprintf(alt, sizeof(alt), "%c", name[1]);
    for (int i = MSESSION_MACROS - 1; i >= 0; i--)
	for (char **mp = s->mac_argv[i]; mp && mp[0]; mp += 2)
	    if (strcmp(mp[0], name) == 0 || (*alt && strcmp(mp[0], alt) == 0))
		return (mp[1]);
    return (NULL);
}

/* msession_edit_ok - header edits: at end of message, if negotiated */

static int msession_edit_ok(const SMFICTX *s, unsigned long action, const char *name)
{
    return (s && name && *name && s->state == ST_ENDM && (s->aflags & action));
}

/* msession_edit_value - without its leading space if the MTA adds one */

static const char *msession_edit_value(const SMFICTX *s, const char *value)
{
    return (!(s->pflags2mta & SMFIP_HDR_LEADSPC) && *value == ' ' ? value + 1 : value);
}

int     smfi_insheader(SMFICTX *s, int index, char *name, char *value)
{
    if (!msession_edit_ok(s, SMFIF_ADDHDRS, name) || value == NULL || index < 0)
	return (MI_FAILURE);
    mproto_put_edit(&s->out, MPROTO_R_INSHEADER, (uint32_t) index, name,
		    msession_edit_value(s, value));
    return (MI_SUCCESS);
}

int     smfi_chgheader(SMFICTX *s, char *name, int index, char *value)
{
    if (!msession_edit_ok(s, SMFIF_CHGHDRS, name) || index < 0)
	return (MI_FAILURE);
    mproto_put_edit(&s->out, MPROTO_R_CHGHEADER, (uint32_t) index, name,
		    value ? msession_edit_value(s, value) : "");
    return (MI_SUCCESS);
}

/* smfi_setsymlist - in the negotiate callback, once per stage, if offered */

int     smfi_setsymlist(SMFICTX *s, int where, char *macros)
{
    if (s == NULL || s->state != ST_OPTS || where < 0 || where >= MSESSION_MACROS
	|| macros == NULL || *macros == 0 || s->symlist[where] != NULL
	|| !(s->mta_aflags & SMFIF_SETSYMLIST))
	return (MI_FAILURE);
    s->symlist[where] = xstrdup(macros);
    return (MI_SUCCESS);
}

unsigned long smfi_getpflags(SMFICTX *s)
{
    return (s ? s->pflags : 0);
}
