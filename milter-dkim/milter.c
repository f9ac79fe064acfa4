/*
 * NAME
 *	milter 3
 * SUMMARY
 *	milter callbacks (smfi.h, served by mengine(3)): sign outbound,
 *	verify inbound
 * SYNOPSIS
 *	#include "milter.h"
 *
 *	smfi_register(milter_desc)
 * DESCRIPTION
 *	Per message: the configuration set is acquired at MAIL FROM and
 *	released when the message ends. Headers are collected; at the end
 *	of the header the message is classified:
 * .IP sign
 *	mode includes sign and the client is in internal_hosts, or
 *	authenticated ({auth_authen}) with sign_authenticated. There must
 *	be one From: header whose one mailbox rfc5322(3) reads strictly;
 *	for a user in sender_binding it must match one of its patterns,
 *	and a From: the binding cannot prove (none, several, a group, an
 *	unreadable one) is a violation too (550 5.7.1, or unsigned).
 *	Every SigningTable match adds one signature, however many; the
 *	message is canonicalized once for all of them (dkim_sign(3),
 *	OpenSSL with keys loaded at start-up; libopendkim only verifies).
 *	A line past 998 octets in a signed header (at end
 *	of header), a header name past 998 octets in any header, or such a
 *	line in the body (at end of message) refuses the message
 *	(550 5.6.0): Postfix breaks such lines after us; so does a signed
 *	header of 60,000 bytes, which Postfix may have cut for us.
 * .IP verify
 *	mode includes verify and the message is not signed here.
 * .PP
 *	The body streams into the signer or libopendkim's verifier chunk
 *	by chunk (nothing is
 *	buffered here, so a 50 MB body costs no memory). At the end,
 *	DKIM-Signature headers are inserted at the top, or one
 *	Authentication-Results header is inserted at the top.
 *
 *	On every message, signed, verified or passed, every
 *	Authentication-Results header that claims our authserv-id or
 *	cannot be read is deleted at end of message (a message that would
 *	otherwise be accepted at end of header stays for that), with one
 *	log line giving the count. More than MILTER_FORGED_MAX (1000) of
 *	them: 550 5.7.1 at end of header.
 *
 *	A signing failure tempfails the message: unsigned mail from our
 *	domains would fail DMARC at the receiver, while a 4xx keeps it
 *	queued in Postfix.
 * DIAGNOSTICS
 *	One log line per message: queue id, action, domains and
 *	selectors signed or verification results; problems as warnings.
 */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>


#include "addr.h"
#include "dkim_sign.h"
#include "auth.h"
#include "lenient.h"
#include "message.h"
#include "milter.h"
#include "msg.h"
#include "policy.h"
#include "sigtags.h"
#include "smfi.h"
#include "xalloc.h"

struct milter_ctx {
    char    client[64];			/* address, for internal_hosts */
    struct dkim_policy *policy;
    struct message msg;
    char   *auth_user;
    char    qid[32];
    struct dkim_sign *sign;		/* canonical message, for every key */
    const struct key_entry **sign_key;	/* one per SigningTable key: no limit */
    char  **sign_domain;
    int     nsign;
    DKIM   *verify;
    unsigned long quiet;		/* SMFIP_NR_* negotiated */
    const char *header_error;		/* a refused header, told at EOH */
    char   *helo;			/* HELO name, for SPF (auth.c) */
    char   *mail_from;			/* MAIL FROM without <>, for SPF */
};

int     milter_local_socket;

/*
 * Forged A-R headers are deleted one smfi_chgheader() each, and Postfix
 * scans the queue file for each: 4,000 took 3 s, 16,000 45 s and a
 * timeout. No honest message carries more than a few of ours (a mail loop
 * is stopped by Postfix's hop count first), so beyond this it is refused.
 */
#define MILTER_FORGED_MAX	1000

/*
 * Steps we skip or answer silently. Every reply saved is a round trip
 * through two processes (smtpd or cleanup, and us) saved: Postfix's
 * milter8 buffers an event that expects no reply and sends it with the
 * next one that does. We decide nothing before the end of the header
 * (a failure at MAIL is told there), so only EOH, EOM and, over TCP,
 * DATA answer.
 *
 * Over TCP, DATA answers: Postfix sets no TCP_NODELAY on milter
 * connections, and smtpd flushes its buffer when it hands the milter
 * to cleanup after DATA. Had that buffer held a silent event (skipped
 * RCPT or DATA macros), cleanup's first write would wait in Nagle for
 * our delayed ACK of it: 40 ms per message (measured with
 * t/bench/milter-bench). A DATA reply empties the buffer first. A UNIX
 * socket has no Nagle.
 */
#define MILTER_QUIET_FLAGS (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL \
	| SMFIP_NORCPT | SMFIP_NOUNKNOWN | SMFIP_NR_HDR | SMFIP_NR_BODY)
#define MILTER_LOCAL_FLAGS (MILTER_QUIET_FLAGS | SMFIP_NODATA)
#define MILTER_TCP_FLAGS MILTER_QUIET_FLAGS

#define MILTER_NR_FLAGS (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_HDR \
	| SMFIP_NR_BODY)

/* milter_reply - SMFIS_CONTINUE, or no reply where one was negotiated away */

static sfsistat milter_reply(const struct milter_ctx *c, unsigned long nr_flag)
{
    return ((c->quiet & nr_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE);
}

static void milter_end_message(struct milter_ctx *c)
{
    for (int i = 0; i < c->nsign; i++)
	free(c->sign_domain[i]);
    if (c->sign)
	dkim_sign_free(c->sign);
    free(c->sign);
    free(c->sign_key);
    free(c->sign_domain);
    c->sign = NULL;
    c->sign_key = NULL;
    c->sign_domain = NULL;
    c->nsign = 0;
    if (c->verify) {
	dkim_free(c->verify);
	auth_end();				/* an abort between the two ends */
    }
    c->verify = NULL;
    message_reset(&c->msg);
    c->header_error = NULL;
    free(c->auth_user);
    c->auth_user = NULL;
    free(c->mail_from);
    c->mail_from = NULL;
    c->qid[0] = 0;
    policy_release(&c->policy);
}

static struct milter_ctx *milter_ctx(SMFICTX *ctx)
{
    return (smfi_getpriv(ctx));
}

static sfsistat milter_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
				         unsigned long f2, unsigned long f3,
				         unsigned long *pf0, unsigned long *pf1,
				         unsigned long *pf2, unsigned long *pf3)
{
    unsigned long want = SMFIP_HDR_LEADSPC
	| (milter_local_socket ? MILTER_LOCAL_FLAGS : MILTER_TCP_FLAGS);
    struct milter_ctx *c = xcalloc(1, sizeof(*c));

    *pf0 = (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST) & f0;
    *pf1 = want & f1;				/* what this MTA offers */
    *pf2 = *pf3 = 0;
    /* signing hangs on {auth_authen}: asked for, whatever milter_mail_macros */
    (void) smfi_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen}");
    (void) smfi_setsymlist(ctx, SMFIM_EOH, "i");
    c->quiet = *pf1 & MILTER_NR_FLAGS;
    smfi_setpriv(ctx, c);
    return (SMFIS_CONTINUE);
}

static sfsistat milter_connect(SMFICTX *ctx, char *name, _SOCK_ADDR *sa)
{
    struct milter_ctx *c = milter_ctx(ctx);

    if (c == NULL) {				/* a new connection after QUIT_NC */
	c = xcalloc(1, sizeof(*c));
	c->quiet = smfi_getpflags(ctx) & MILTER_NR_FLAGS;
	smfi_setpriv(ctx, c);
    }
    if (sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
	addr_format_host(sa, c->client, sizeof(c->client));
    return (milter_reply(c, SMFIP_NR_CONN));
}

/* milter_helo - the name SPF checks when MAIL FROM is null (RFC 7208 2.3) */

static sfsistat milter_helo(SMFICTX *ctx, char *name)
{
    struct milter_ctx *c = milter_ctx(ctx);

    if (c == NULL)				/* connect made it */
	return (SMFIS_TEMPFAIL);
    free(c->helo);
    c->helo = xstrdup(name ? name : "");
    return (milter_reply(c, SMFIP_NR_HELO));
}

static sfsistat milter_envfrom(SMFICTX *ctx, char **argv)
{
    struct milter_ctx *c = milter_ctx(ctx);
    const char *user = smfi_getsymval(ctx, "{auth_authen}");

    if (c == NULL)
	return (SMFIS_TEMPFAIL);
    milter_end_message(c);
    /* no configuration: 451 at end of header (milter_eoh), told there */
    if ((c->policy = policy_acquire()) == NULL)
	return ((c->quiet & SMFIP_NR_MAIL) ? SMFIS_NOREPLY : SMFIS_TEMPFAIL);
    c->auth_user = user && *user ? xstrdup(user) : NULL;
    if (argv && argv[0]) {			/* "<addr>", as Postfix sends it */
	size_t  len = strlen(argv[0]);
	int     angle = len >= 2 && argv[0][0] == '<' && argv[0][len - 1] == '>';

	c->mail_from = angle ? xstrndup(argv[0] + 1, len - 2) : xstrdup(argv[0]);
    }
    return (milter_reply(c, SMFIP_NR_MAIL));
}

/* milter_data - over TCP, DATA answers (MILTER_TCP_FLAGS says why) */

static sfsistat milter_data(SMFICTX *ctx)
{
    (void) ctx;
    return (SMFIS_CONTINUE);
}

static sfsistat milter_header(SMFICTX *ctx, char *name, char *value)
{
    struct milter_ctx *c = milter_ctx(ctx);
    const char *err;

    /*
     * A silent stage must answer SMFIS_NOREPLY whatever happens: msession(3),
     * like libmilter, sends nothing for another answer but still acts on it, and after a
     * TEMPFAIL here it would ignore the rest of the message, EOH
     * included, and Postfix would wait for a reply until its timeout.
     */
    if (c == NULL)
	return (SMFIS_TEMPFAIL);
    if (c->policy == NULL)			/* 451 at EOH */
	return (c->quiet & SMFIP_NR_HDR ? SMFIS_NOREPLY : SMFIS_TEMPFAIL);
    if (c->header_error == NULL
	&& (err = message_add_header(&c->msg, name, value, c->policy->authserv_id)) != NULL) {
	/* the same bytes fail the same way on every retry: refuse for good */
	msg_warn("%s: %s; message rejected", c->qid[0] ? c->qid : "NOQUEUE", err);
	if (!(c->quiet & SMFIP_NR_HDR)) {
	    smfi_setreply(ctx, "552", "5.3.4", (char *) err);
	    return (SMFIS_REJECT);
	}
	c->header_error = err;			/* no reply now: refuse at EOH */
    }
    return (milter_reply(c, SMFIP_NR_HDR));
}

/*
 * milter_feed_headers - "Name:value" to libopendkim, folded lines with
 * CRLF: Postfix hands folded header values to milters with bare LF, and
 * libopendkim's header parser wants the wire form. A DKIM-Signature
 * whose tag-list is invalid is not fed (message_signature_ok(): the A-R
 * calls it permerror).
 */
static void milter_feed_headers(struct milter_ctx *c, DKIM *dkim)
{
    for (int i = 0; i < c->msg.count; i++) {
	const char *value = c->msg.hdr[i].value;
	size_t  len = strlen(c->msg.hdr[i].name) + 1, cap = len + 2 * strlen(value) + 1;
	char   *line;

	if (!message_signature_ok(&c->msg, c->msg.hdr[i].name, value))
	    continue;
	line = xmalloc(cap);

	memcpy(line, c->msg.hdr[i].name, len - 1);
	line[len - 1] = ':';
	for (const char *cp = value; *cp; cp++) {
	    if (*cp == '\n' && (cp == value || cp[-1] != '\r'))
		line[len++] = '\r';
	    line[len++] = *cp;
	}
	dkim_header(dkim, (u_char *) line, len);
	free(line);
    }
    /* refused (a From: it cannot read): the A-R says so of each signature */
    c->msg.eoh_status = dkim_eoh(dkim);
}

/* milter_domain - KeyTable domain with '%' replaced by the From domain */

static char *milter_domain(const char *pattern, const char *from_domain)
{
    size_t  n = 1;
    char   *buf, *out;

    for (const char *cp = pattern; *cp; cp++)	/* sized, never truncated */
	n += *cp == '%' ? strlen(from_domain) : 1;
    out = buf = xmalloc(n);
    for (const char *cp = pattern; *cp; cp++) {
	if (*cp == '%')
	    out = stpcpy(out, from_domain);
	else
	    *out++ = *cp;
    }
    *out = 0;
    return (buf);
}

/*
 * milter_signing_as - whether this message is already to be signed as
 * domain/selector: several matching SigningTable rows (a sender's own
 * row and a *@domain one) often name the same key, and a second,
 * identical signature would only cost another private-key operation.
 */
static int milter_signing_as(const struct milter_ctx *c, const char *domain,
			             const char *selector)
{
    for (int j = 0; j < c->nsign; j++)
	if (strcasecmp(c->sign_domain[j], domain) == 0
	    && strcmp(c->sign_key[j]->selector, selector) == 0)
	    return (1);
    return (0);
}

/*
 * milter_aligned - d= is the From: domain, a parent of it or (a '%' key
 * such as "mail.%") below it: the relaxed alignment without which a
 * signature is no use to DMARC and vouches for a domain that is not
 * ours. -t and every load refuse a table that could match otherwise
 * (policy(3)); this is the last guard, said once per loaded
 * configuration so that a stream of such mail cannot flood the log.
 */
static int milter_aligned(struct milter_ctx *c, const char *d, const char *from_domain,
			          const char *key_name)
{
    if (tables_aligned(from_domain, d) || tables_aligned(d, from_domain))
	return (1);
    if (__atomic_exchange_n(&c->policy->unaligned_said, 1, __ATOMIC_RELAXED) == 0)
	msg_warn("%s: key \"%s\" not used for From: domain %s: its d=%s does not align "
		 "(said once until the configuration is reloaded)", c->qid, key_name,
		 from_domain, d);
    return (0);
}

/*
 * milter_dns_name - can d= and s._domainkey.d be looked up? A '%' row
 * makes d= of the From: domain, which may have a 64-octet label or make
 * a key name past 253 octets: every verifier (ours: "d= is not a DNS
 * name") fails such a signature, so the key is not used, as for a
 * domain no row matches; said once per message.
 */
static int milter_dns_name(struct milter_ctx *c, const char *d, const char *s, int *said)
{
    if (sigtags_name_ok(d, strlen(d)) && strlen(s) + sizeof("._domainkey.") - 1
	+ strlen(d) <= 253)
	return (1);
    if ((*said)++ == 0)
	msg_warn("%s: not signed as %.300s (s=%s): it is not a DNS name, or "
		 "s._domainkey.d is longer than 253 octets; no verifier could look the key up",
		 c->qid, d, s);
    return (0);
}

/*
 * milter_start_signing - the keys of every SigningTable match, and the
 * message canonicalized once for all of them (dkim_sign(3)); -1 on failure.
 */
static int milter_start_signing(struct milter_ctx *c)
{
    const char *at = strrchr(c->msg.from, '@'), *from_domain = at ? at + 1 : "";
    int     n = at ? tables_signers(&c->policy->tables, c->msg.from, NULL, 0) : 0;
    const struct key_entry **keys = xcalloc(n + 1, sizeof(*keys));
    struct dkim_policy *p = c->policy;
    int     said = 0;

    tables_signers(&p->tables, c->msg.from, keys, n);
    c->sign_key = xcalloc(n + 1, sizeof(*c->sign_key));
    c->sign_domain = xcalloc(n + 1, sizeof(*c->sign_domain));
    for (int i = 0; i < n; i++) {
	const struct dkim_key *key = policy_key(p, keys[i]);
	char   *domain = milter_domain(keys[i]->domain, from_domain);

	if (key->pkey == NULL || !*keys[i]->selector || !*domain) {
	    msg_warn("%s: cannot sign as %s/%s: no key or an empty domain", c->qid,
		     domain, keys[i]->selector);
	    free(domain);
	    n = -1;
	    break;
	}
	if (milter_signing_as(c, domain, keys[i]->selector)
	    || !milter_aligned(c, domain, from_domain, keys[i]->name)
	    || !milter_dns_name(c, domain, keys[i]->selector, &said)) {
	    free(domain);			/* a second row naming it, unaligned, no name */
	    continue;
	}
	c->sign_domain[c->nsign] = domain;
	c->sign_key[c->nsign++] = keys[i];
    }
    free(keys);
    if (n > 0 && c->nsign == 0)
	n = 0;					/* every key unaligned */
    if (n > 0) {
	c->sign = xmalloc(sizeof(*c->sign));
	dkim_sign_start(c->sign, &c->msg, p->sign_headers, p->oversign_headers,
			p->header_canon == DKIM_CANON_RELAXED, p->body_canon == DKIM_CANON_RELAXED);
    }
    return (n);
}

/*
 * milter_pass - let the message go unsigned and unverified, but never
 * with a forged A-R: then stay until end of message, the only stage
 * where a milter may delete headers.
 */
static sfsistat milter_pass(struct milter_ctx *c)
{
    return (c->msg.forged_count ? SMFIS_CONTINUE : SMFIS_ACCEPT);
}

/* milter_from_value - the value of the (one) From: header */

static const char *milter_from_value(const struct milter_ctx *c)
{
    for (int i = 0; i < c->msg.count; i++)
	if (strcasecmp(c->msg.hdr[i].name, "From") == 0)
	    return (c->msg.hdr[i].value);
    return ("");
}

/*
 * milter_check_sender - the From: is one address, read as every parser
 * reads it, that the SASL user may use. For a bound user, a From: the
 * binding cannot prove (none, several, a group, unreadable, a display
 * name a reader shows as another address: lenient(3)) is a violation
 * like a foreign address; anyone else just goes unsigned.
 * 1: sign; 0: pass unsigned; -1: rejected (the reply is set).
 */
static int milter_check_sender(SMFICTX *ctx, struct milter_ctx *c)
{
    int     bound = c->auth_user && tables_bound(&c->policy->tables, c->auth_user);
    const char *why = c->msg.from_count != 1 ? NULL : c->msg.from_error;
    int     readable = c->msg.from_count == 1 && why == NULL;

    if (readable && bound && lenient_display_address(milter_from_value(c))) {
	readable = 0;				/* "ceo@x" <billing@y>: shows ceo@x */
	why = "an address in the display name or a comment";
    }
    if (readable && (!bound || tables_binding_allows(&c->policy->tables, c->auth_user,
						       c->msg.from, &bound)))
	return (1);
    if (!bound) {
	msg_info("%s: not signed: %d From: headers%s%s%s", c->qid, c->msg.from_count,
		 why ? " (" : "", why ? why : "", why ? ")" : "");
	return (0);
    }
    milter_metrics_count(MILTER_BINDING);
    if (readable)
	msg_warn("%s: sender_binding: %s may not send as %s%s", c->qid, c->auth_user,
		 c->msg.from, c->policy->binding_reject ? "; rejected" : "; not signed");
    else
	msg_warn("%s: sender_binding: %s may not send with %d From: headers%s%s%s%s",
		 c->qid, c->auth_user, c->msg.from_count, why ? " (" : "", why ? why : "",
		 why ? ")" : "", c->policy->binding_reject ? "; rejected" : "; not signed");
    if (!c->policy->binding_reject)
	return (0);
    smfi_setreply(ctx, "550", "5.7.1", "Sender address not allowed for this login");
    return (-1);
}

/*
 * milter_long_line - refuse what we would sign but Postfix will change:
 * its smtp client breaks a line past 998 octets with CRLF SPACE
 * (smtp_line_length_limit), after us, so the receiver would see a
 * signature that fails (and DMARC with it). The same bytes fail the same
 * way on every retry: 550, for the sender to see, not a broken signature.
 */
static sfsistat milter_long_line(SMFICTX *ctx, struct milter_ctx *c, const char *where,
				         size_t longest)
{
    if (longest <= MESSAGE_LINE_MAX)
	return (SMFIS_CONTINUE);
    msg_warn("%s: a line of %zu octets in the %s%s (more than %d) would be broken in "
	     "transit, and the DKIM signature with it; message rejected", c->qid, longest,
	     where ? where : "body", where ? " header" : "", MESSAGE_LINE_MAX);
    smfi_setreply(ctx, "550", "5.6.0", "Line longer than 998 octets (RFC 5322 2.1.1): "
		  "it cannot be signed and delivered intact");
    return (SMFIS_REJECT);
}

/*
 * milter_signable - refuse what cannot be signed and delivered intact: a
 * line Postfix will break (above), or a header Postfix may have cut: with
 * milters it hands over some 60,000 bytes of one header at most, and one
 * its own rewriting lengthened is delivered longer than we saw (message.h).
 */
static sfsistat milter_signable(SMFICTX *ctx, struct milter_ctx *c)
{
    const char *which;
    size_t  n = message_longest_header(&c->msg, c->policy->sign_headers,
				       c->policy->oversign_headers, &which);

    if (n > MESSAGE_LINE_MAX)
	return (milter_long_line(ctx, c, which, n));
    n = message_largest_header(&c->msg, c->policy->sign_headers,
			       c->policy->oversign_headers, &which);
    if (n < MESSAGE_POSTFIX_HEADER_CUT)
	return (SMFIS_CONTINUE);
    msg_warn("%s: a %s header of %zu bytes reaches the size at which Postfix cuts headers "
	     "for milters (60,000): it may not be delivered as signed; message rejected",
	     c->qid, which, n);
    smfi_setreply(ctx, "550", "5.6.0", "Header too long to be signed and delivered intact");
    return (SMFIS_REJECT);
}

static sfsistat milter_eoh(SMFICTX *ctx)
{
    struct milter_ctx *c = milter_ctx(ctx);
    const char *qid = smfi_getsymval(ctx, "i");
    struct dkim_policy *p;
    DKIM_STAT status;
    int     internal, n;

    if (c == NULL || (p = c->policy) == NULL) {
	msg_warn("%s: no configuration loaded; message deferred",
		 qid && *qid ? qid : "NOQUEUE");
	smfi_setreply(ctx, "451", "4.7.0", "DKIM milter not ready; try again later");
	return (SMFIS_TEMPFAIL);
    }
    if (c->header_error) {
	smfi_setreply(ctx, "552", "5.3.4", (char *) c->header_error);
	return (SMFIS_REJECT);
    }
    snprintf(c->qid, sizeof(c->qid), "%s", qid && *qid ? qid : "NOQUEUE");
    if (c->msg.forged_count > MILTER_FORGED_MAX) {
	msg_warn("%s: %d Authentication-Results headers claim %s (more than %d); "
		 "message rejected", c->qid, c->msg.forged_count, p->authserv_id,
		 MILTER_FORGED_MAX);
	smfi_setreply(ctx, "550", "5.7.1", "Too many forged Authentication-Results headers");
	return (SMFIS_REJECT);
    }
    internal = c->client[0] && cidr_list_match_str(p->internal, c->client);
    if (p->sign && (internal || (p->sign_authenticated && c->auth_user))) {
	if ((n = milter_check_sender(ctx, c)) <= 0)
	    return (n < 0 ? SMFIS_REJECT : milter_pass(c));
	if ((n = milter_start_signing(c)) < 0) {
	    smfi_setreply(ctx, "451", "4.7.0", "DKIM signing failed; try again later");
	    return (SMFIS_TEMPFAIL);
	}
	if (n == 0) {
	    msg_info("%s: not signed: no SigningTable entry for %s", c->qid, c->msg.from);
	    return (milter_pass(c));
	}
	return (milter_signable(ctx, c));
    }
    if (!p->verify)
	return (milter_pass(c));
    if ((c->verify = dkim_verify(p->lib, (u_char *) c->qid, NULL, &status)) == NULL) {
	msg_warn("%s: dkim_verify: %s", c->qid, dkim_getresultstr(status));
	return (milter_pass(c));
    }
    dkim_set_user_context(c->verify, p);	/* for policy_prescreen() */
    /* one DNS budget: the keys (dkim_eoh() fetches them), SPF, DMARC */
    auth_begin(p->auth, &c->msg);
    milter_feed_headers(c, c->verify);
    return (SMFIS_CONTINUE);
}

static sfsistat milter_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct milter_ctx *c = milter_ctx(ctx);

    if (c == NULL)
	return (SMFIS_TEMPFAIL);
    if (c->sign) {
	message_add_body(&c->msg, chunk, len);
	dkim_sign_body(c->sign, chunk, len);
    }
    if (c->verify)
	dkim_body(c->verify, chunk, len);
    return (milter_reply(c, SMFIP_NR_BODY));
}

static sfsistat milter_eom_sign(SMFICTX *ctx, struct milter_ctx *c)
{
    char   *done = xstrdup(""), *more;
    time_t  now = time(NULL);

    dkim_sign_end_body(c->sign);
    for (int i = 0; i < c->nsign; i++) {
	const char *err = NULL;
	char   *value = dkim_sign_header(c->sign, policy_key(c->policy, c->sign_key[i]),
					 c->sign_domain[i], c->sign_key[i]->selector, now,
					 c->policy->signature_ttl, &err);
	int     inserted;

	if (value == NULL) {
	    milter_metrics_count(MILTER_SIGN_FAILED);
	    msg_warn("%s: signing as %s/%s failed: %s", c->qid, c->sign_domain[i],
		     c->sign_key[i]->selector, err);
	    smfi_setreply(ctx, "451", "4.7.0", "DKIM signing failed; try again later");
	    free(done);
	    return (SMFIS_TEMPFAIL);
	}
	/* the value has its leading space (SMFIP_HDR_LEADSPC) */
	inserted = smfi_insheader(ctx, 0, DKIM_SIGNHEADER, value);
	free(value);
	if (inserted != MI_SUCCESS) {
	    msg_warn("%s: the MTA refused the DKIM-Signature header", c->qid);
	    free(done);
	    return (SMFIS_TEMPFAIL);
	}
	milter_metrics_count(MILTER_SIGNED);
	more = xasprintf("%s%s%s/%s", done, i ? ", " : "", c->sign_domain[i],
			 c->sign_key[i]->selector);
	free(done);
	done = more;
    }
    msg_info("%s: signed: %s (From %s%s%s)", c->qid, done, c->msg.from,
	     c->auth_user ? ", sasl_username=" : "", c->auth_user ? c->auth_user : "");
    free(done);
    return (SMFIS_ACCEPT);
}

static sfsistat milter_eom_verify(SMFICTX *ctx, struct milter_ctx *c)
{
    struct auth_session session = {c->client[0] ? c->client : NULL, c->helo, c->mail_from};
    const char *code, *dsn, *reply;
    enum auth_verdict verdict;
    DKIM_STAT status;
    char   *results;
    int     ignored;

    status = dkim_eom(c->verify, NULL);	/* the budget began at the headers */
    results = message_auth_results(c->verify, status, c->policy->authserv_id, &c->msg);
    verdict = auth_evaluate(c->policy->auth, c->verify, status, &c->msg, &session, &results,
			    &code, &dsn, &reply);
    auth_end();
    if (verdict != AUTH_ACCEPT) {
	for (char *cp = results; *cp; cp++)
	    if (*cp == '\n' || *cp == '\t')
		*cp = ' ';
	msg_info("%s: %s by dmarc_reject: %s", c->qid, verdict == AUTH_REJECT ? "rejected"
		 : "deferred", results);
	smfi_setreply(ctx, (char *) code, (char *) dsn, (char *) reply);
	free(results);
	return (verdict == AUTH_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL);
    }
    smfi_insheader(ctx, 0, "Authentication-Results", results);
    milter_metrics_results(results);
    for (char *cp = results; *cp; cp++)		/* one log line */
	if (*cp == '\n' || *cp == '\t')
	    *cp = ' ';
    msg_info("%s: verified: %s", c->qid, results);
    if ((ignored = message_ignored(c->verify)) > 0)
	msg_warn("%s: %d more DKIM signatures not verified (verify_signatures_max = %d)",
		 c->qid, ignored, c->policy->verify_max);
    free(results);
    return (SMFIS_ACCEPT);
}

/*
 * milter_remove_forged - delete every A-R that claims our authserv-id or
 * cannot be read, last first (the protocol numbers headers of one name from
 * 1, and a deletion renumbers those after it). -1 if the MTA refused.
 */
static int milter_remove_forged(SMFICTX *ctx, struct milter_ctx *c)
{
    int     removed = 0;

    for (int i = c->msg.forged_count - 1; i >= 0; i--) {
	if (smfi_chgheader(ctx, "Authentication-Results", c->msg.forged[i], NULL)
	    != MI_SUCCESS) {
	    msg_warn("%s: the MTA refused to delete a forged Authentication-Results "
		     "header; message deferred", c->qid);
	    return (-1);
	}
	removed++;
	milter_metrics_count(MILTER_FORGED);
    }
    if (removed)
	msg_warn("%s: removed %d forged Authentication-Results header%s claiming %s "
		 "(%d of them unreadable)", c->qid, removed, removed > 1 ? "s" : "",
		 c->policy->authserv_id, c->msg.unreadable);
    return (removed);
}

static sfsistat milter_eom(SMFICTX *ctx)
{
    struct milter_ctx *c = milter_ctx(ctx);
    sfsistat verdict = SMFIS_ACCEPT;
    struct timespec t0, t1;
    int     timed;

    if (c == NULL)
	return (SMFIS_TEMPFAIL);
    timed = c->nsign > 0 || c->verify;		/* not a message only stripped */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (c->nsign > 0 && message_longest_body(&c->msg) > MESSAGE_LINE_MAX)
	verdict = milter_long_line(ctx, c, NULL, message_longest_body(&c->msg));
    else if (milter_remove_forged(ctx, c) < 0)
	verdict = SMFIS_TEMPFAIL;
    else if (c->nsign > 0)
	verdict = milter_eom_sign(ctx, c);
    else if (c->verify)
	verdict = milter_eom_verify(ctx, c);
    milter_end_message(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (timed)
	milter_metrics_eom(&t0, &t1);
    return (verdict);
}

static sfsistat milter_abort(SMFICTX *ctx)
{
    struct milter_ctx *c = milter_ctx(ctx);

    if (c)
	milter_end_message(c);
    return (SMFIS_CONTINUE);
}

static sfsistat milter_close(SMFICTX *ctx)
{
    struct milter_ctx *c = milter_ctx(ctx);

    if (c) {
	milter_end_message(c);
	free(c->helo);
	free(c);
	smfi_setpriv(ctx, NULL);
    }
    return (SMFIS_CONTINUE);
}

struct smfiDesc milter_desc = {
    .xxfi_name = "milter-dkim",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
    .xxfi_connect = milter_connect,
    .xxfi_helo = milter_helo,
    .xxfi_envfrom = milter_envfrom,
    .xxfi_data = milter_data,
    .xxfi_header = milter_header,
    .xxfi_eoh = milter_eoh,
    .xxfi_body = milter_body,
    .xxfi_eom = milter_eom,
    .xxfi_abort = milter_abort,
    .xxfi_close = milter_close,
    .xxfi_negotiate = milter_negotiate,
};
