/*
 * NAME
 *	lmtp-webhook-plugin 7
 * SUMMARY
 *	Dovecot LMTP plugin: a signed webhook for every routed recipient
 * SYNOPSIS
 *	protocol lmtp { mail_plugins = $mail_plugins lmtp_webhook }
 * DESCRIPTION
 *	Wraps Dovecot's deliver_mail hook (after Pigeonhole's, which does
 *	not chain: hence lib95). For a recipient that matches an
 *	lmtp_webhook_route (as given, or else without its detail: the
 *	part after Dovecot's recipient_delimiter, which Dovecot strips to
 *	find the mailbox):
 *
 *	1. the webhook-id is computed (a first pass over the message);
 *	2. the event is written into the spool (spool_ready(), the lmtp
 *	   process's file in tmp/, no fsync) while Dovecot's MIME parser
 *	   reads the message (mime.c, payload.c): memory does not grow
 *	   with the message. If the spool cannot take it (full,
 *	   unwritable, a subdirectory removed and not makeable, active/
 *	   on another mount than tmp/), the
 *	   recipient is tempfailed and nothing is saved, so Postfix keeps
 *	   the mail and retries without leaving a copy behind;
 *	3. the event is named active/ID, held (spool_hold.c): with its
 *	   mtime, its next attempt, SPOOL_HOLD (15 minutes) away, so that
 *	   lmtp-webhook-spool neither posts nor flushes it yet.
 *	   "always" (Dovecot's mail_fsync) syncs it before the rename and
 *	   active/ after it. If that fails (active/ made unwritable,
 *	   on another mount), the recipient is tempfailed, nothing saved;
 *	4. the mail is saved (the previous hook, else the default mailbox),
 *	   and Dovecot syncs it: on ext4, XFS and Btrfs that journal
 *	   commit carries the event's new name too. Nothing saved (a Sieve
 *	   discard, a full quota): the event is removed, no event;
 *	5. the event is released before LMTP answers: "optimized" (the
 *	   default) fsyncs it now (on ext4 nearly free, its commit made),
 *	   "never" does not sync; then its mtime becomes now, which wakes
 *	   lmtp-webhook-spool to post it at once: LMTP never waits for the
 *	   receiver. An event a crash left incomplete is refused by the
 *	   runner (spool_read.c); one a crash left held is posted when
 *	   its hold ends. If the fsync fails after all (an I/O error), the
 *	   recipient is tempfailed although its mail is saved: Postfix's
 *	   retry may leave a second copy in the mailbox, but the event
 *	   (same webhook-id, still held) is not lost.
 *	   When an event with the same webhook-id is in active/ already
 *	   (an earlier delivery of the same bytes), step 3 does not
 *	   replace it: the event is committed after the save instead
 *	   (spool_commit(): rename, synced as mail_fsync says).
 *
 *	Other recipients go straight to the previous hook.
 * DIAGNOSTICS
 *	Errors in the Dovecot log; a configuration error or an unusable
 *	spool tempfails routed recipients (never a silent drop).
 */

#include "lib.h"
#include "str.h"
#include "str-sanitize.h"
#include "hex-binary.h"
#include "istream.h"
#include "ioloop.h"
#include "settings-parser.h"
#include "smtp-address.h"
#include "mail-storage.h"
#include "mail-storage-private.h"		/* the storage's name: "raw" */
#include "mail-storage-settings.h"
#include "mail-user.h"
#include "mail-deliver.h"
#include "lda-settings.h"
#include "lmtp-settings.h"
#include "master-service.h"
#include "mail-storage-service.h"
#include "module-dir.h"
#include "net.h"

#include <openssl/evp.h>

#include "lmtp_peer.h"
#include "lmtp_trust.h"
#include "mime.h"
#include "payload.h"
#include "route.h"
#include "save_watch.h"
#include "spool.h"

#define WEBHOOK_TEMPFAIL "Webhook spool unavailable, try again later"

const char *lmtp_webhook_plugin_version = DOVECOT_ABI_VERSION;
/* an array, not a pointer: Dovecot compares the symbol itself */
const char lmtp_webhook_plugin_binary_dependency[] = "lmtp";

void    lmtp_webhook_plugin_init(struct module *module);
void    lmtp_webhook_plugin_deinit(void);

static deliver_mail_func_t *next_deliver_mail;

/*
 * Kept for the life of the lmtp process: the spool reservation file. The
 * plugin posts nothing itself (lmtp-webhook-spool does), so it needs no
 * HTTP client and never reads the signing secret.
 */
static struct spool_keeper webhook_keeper = SPOOL_KEEPER_INIT;
static int webhook_obsolete_warned;

struct webhook_settings {
    const char *spool_dir;
    struct mime_options mime;		/* sizes, trusted id, raw_message */
};

/*
 * webhook_rcpt_forms - the addresses a route may match, in order: the
 * recipient as given, then without its detail, one recipient_delimiter
 * part at a time from the right, the last being where Dovecot cuts to
 * find the mailbox (bills+tag@x is bills@x; in+acme+ref42@x is
 * in+acme@x, then in@x). A mail Dovecot saves to a route's mailbox must
 * not escape the route by a +tag, nor by a second one after a detail
 * the pattern holds ("in+*@": in+acme+ref42 matched neither as given
 * nor cut at the first '+'). NULL-terminated, on the data stack.
 */
static const char *const *webhook_rcpt_forms(const struct mail_deliver_context *ctx,
					             const char *rcpt)
{
    const char *delims = ctx->set == NULL ? NULL : ctx->set->recipient_delimiter;
    const char *lp = ctx->rcpt_to == NULL ? NULL : ctx->rcpt_to->localpart;
    ARRAY_TYPE(const_string) forms;
    struct smtp_address user;
    const char *form;
    size_t  end = lp == NULL ? 0 : strlen(lp);

    t_array_init(&forms, 4);
    array_push_back(&forms, &rcpt);
    while ((end = route_detail_before(lp, delims, end)) > 0) {
	i_zero(&user);
	user.localpart = t_strndup(lp, end);
	user.domain = ctx->rcpt_to->domain;
	form = smtp_address_encode(&user);
	array_push_back(&forms, &form);
    }
    array_append_zero(&forms);
    return (array_front(&forms));
}

/*
 * webhook_route_unread - routes the numbering never reaches. They are
 * read in order, lmtp_webhook_route, lmtp_webhook_route2, ..., up to the
 * first that is not set (next): a lmtp_webhook_route3 after no route2,
 * or one named lmtp_webhook_route1, was never read, and its bills were
 * saved with no event and no word in the log. A recipient such a route
 * may be meant for is tempfailed (-1) with the reason, as for a route
 * that does not parse; for the others it is a warning, once a process.
 */
static int webhook_route_unread(struct mail_deliver_context *ctx, unsigned int next,
				        const char *const *forms, const char **error_r)
{
    const struct mail_user_settings *set = ctx->rcpt_user->set;
    static bool warned;
    const char *const *envs;
    unsigned int count;
    bool    unread = FALSE;
    char    why[512];

    if (!array_is_created(&set->plugin_envs))
	return (0);
    envs = array_get(&set->plugin_envs, &count);
    for (unsigned int i = 0; i + 1 < count; i += 2) {
	/* the rule check-routes applies too (route.c) */
	if (*envs[i + 1] == '\0' || route_unread(envs[i], next, why, sizeof(why)) == NULL)
	    continue;
	*error_r = t_strdup(why);
	for (const char *const *f = forms; *f != NULL; f++)
	    if (route_could_match(envs[i + 1], *f))
		return (-1);			/* it may be this one's route */
	if (!warned)
	    e_warning(ctx->event, "lmtp_webhook: %s", *error_r);
	unread = TRUE;
    }
    warned = warned || unread;
    return (0);
}

/*
 * webhook_route_for - the first route matching one of the recipient's
 * forms (webhook_rcpt_forms()). The event's rcpt_to stays the address
 * as given. A route that does not parse, or is never read
 * (webhook_route_unread()), is an error (-1: tempfail) for the
 * recipients it may be meant for, and a warning for the others, which
 * go on.
 */
static int webhook_route_for(struct mail_deliver_context *ctx, const char *rcpt,
			             struct webhook_route *route_r, char **url_r,
			             char **workspace_r, const char **error_r)
{
    struct mail_user *user = ctx->rcpt_user;
    const char *const *forms = webhook_rcpt_forms(ctx, rcpt);

    for (unsigned int i = 1;; i++) {
	char    name_buf[sizeof(ROUTE_SETTING) + 12];
	const char *name = route_setting_name(i, name_buf, sizeof(name_buf));
	const char *value = mail_user_plugin_getenv(user, name);
	const char *const *f;
	struct webhook_route route;
	const char *err;

	if (value == NULL || *value == '\0')
	    return (webhook_route_unread(ctx, i, forms, error_r));
	if ((err = route_parse(value, &route)) != NULL) {
	    *error_r = t_strdup_printf("%s: %s", name, err);
	    for (f = forms; *f != NULL; f++)
		if (route_could_match(value, *f))
		    return (-1);		/* it may be this one's route */
	    e_warning(ctx->event, "lmtp_webhook: %s (not %s's route: delivered)",
		      *error_r, rcpt);
	    continue;
	}
	for (f = forms; *f != NULL; f++)
	    if (route_match(&route, *f, url_r, workspace_r)) {
		(void) route_expand_secrets(&route, *f);	/* {N} of secret_file= */
		*route_r = route;		/* its options: the caller's */
		return (1);
	    }
	route_free(&route);
    }
}

/*
 * webhook_obsolete - lmtp_webhook_timeout and lmtp_webhook_secret_file
 * served the POST the plugin used to make; lmtp-webhook-spool's timeout
 * and secret_file apply now. Said once per process, not ignored silently.
 */
static void webhook_obsolete(struct mail_deliver_context *ctx)
{
    static const char *const names[] = {"lmtp_webhook_timeout", "lmtp_webhook_secret_file",
	"lmtp_webhook_ca_file"};

    if (webhook_obsolete_warned)
	return;
    webhook_obsolete_warned = 1;
    for (unsigned int i = 0; i < N_ELEMENTS(names); i++) {
	const char *value = mail_user_plugin_getenv(ctx->rcpt_user, names[i]);

	if (value != NULL && *value != '\0')
	    e_warning(ctx->event, "lmtp_webhook: %s is no longer used: lmtp-webhook-spool "
		      "posts every event (set timeout, secret_file and ca_file in "
		      "lmtp-webhook-spool.conf)", names[i]);
    }
}

static int webhook_settings_get(struct mail_deliver_context *ctx, struct webhook_settings *set,
				        const char **error_r)
{
    struct mail_user *user = ctx->rcpt_user;
    const char *value, *err, *why;
    int     trusted;

    bool    raw = set->mime.raw_message;	/* the route's */

    i_zero(set);
    set->mime.raw_message = raw;
    set->spool_dir = mail_user_plugin_getenv(user, "lmtp_webhook_spool_dir");
    if (set->spool_dir == NULL || *set->spool_dir == '\0') {
	*error_r = "lmtp_webhook_spool_dir must be set";
	return (-1);
    }
    value = mail_user_plugin_getenv(user, "lmtp_webhook_max_attachment_size");
    if (settings_get_size(value && *value ? value : "25M", &set->mime.max_attachment, &err) < 0) {
	*error_r = t_strdup_printf("lmtp_webhook_max_attachment_size: %s", err);
	return (-1);
    }
    value = mail_user_plugin_getenv(user, "lmtp_webhook_max_raw_message_size");
    if (settings_get_size(value && *value ? value : "50M", &set->mime.max_raw, &err) < 0) {
	*error_r = t_strdup_printf("lmtp_webhook_max_raw_message_size: %s", err);
	return (-1);
    }
    /* unset: no header is trusted, every result is "none"; one that can
       never match (not a token, as milter-dkim's authserv_id must be) is
       a configuration error, not a silent "none" on every event */
    value = mail_user_plugin_getenv(user, "lmtp_webhook_trusted_authserv_id");
    if (value != NULL && *value != '\0'
	&& (strlen(value) > 255 || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789.-_!#$%&'*+^`{|}~") != strlen(value))) {
	*error_r = "lmtp_webhook_trusted_authserv_id must be a token (a host name), "
	    "up to 255 characters";
	return (-1);
    }
    set->mime.trusted_id = value;
    value = mail_user_plugin_getenv(user, "lmtp_webhook_trusted_networks");
    if ((trusted = lmtp_trust_client(user, value ? value : LMTP_TRUST_NETWORKS,
				      &why, error_r)) < 0)
	return (-1);
    if (trusted && (why = lmtp_peer_proxy_blind(ctx->session_id)) != NULL)
	trusted = 0;
    if (!trusted && set->mime.trusted_id != NULL) {
	e_warning(ctx->event, "lmtp_webhook: %s: its Authentication-Results are not "
		  "trusted (every result \"none\"); only the MTA that removes forged ones "
		  "may be", why);
	set->mime.trusted_id = NULL;
    }
    return (0);
}

/*
 * webhook_id - this delivery of this content, to this recipient: a hash
 * of the recipient, the envelope sender and every byte the LMTP client
 * sent (not the headers Dovecot's lmtp puts before them, which differ
 * per attempt). Two bills that share Message-ID, Date, From and Subject
 * differ in their bytes; Postfix sends the same bytes of one queue file
 * on each retry, and two queue files differ at least in Postfix's
 * Received:. The sender is in the event (envelope.mail_from): left out,
 * the same bytes from two senders made two events under one id, and the
 * second replaced the first in active/.
 */
static const char *webhook_id(const char *rcpt, const char *mail_from, struct istream *data,
			              uoff_t *size_r, const char **error_r)
{
    unsigned char md[32];
    string_t *id = t_str_new(40);
    size_t  rlen = strlen(rcpt), flen = strlen(mail_from);
    char   *prefix = t_malloc0(rlen + 1 + flen + 1);

    /* NUL-separated: no recipient and sender run into another pair */
    memcpy(prefix, rcpt, rlen);
    memcpy(prefix + rlen + 1, mail_from, flen);
    if (mime_digest(data, prefix, rlen + 1 + flen, md, size_r, error_r) < 0)
	return (NULL);
    str_append(id, "msg_");
    binary_to_hex_append(id, md, 16);	/* lower case, as %02x */
    return (str_c(id));
}

/* webhook_scratch_open - the scratch file, when text and html outgrow memory */

static int webhook_scratch_open(void *ctx)
{
    return (spool_scratch(ctx));
}

#define WEBHOOK_SCRATCH_MEM (256 * 1024)

/*
 * Kept for the life of the lmtp process, as the keeper is: the writer (its
 * 64 KB buffer) and the memory text and html wait in. Taken and given back
 * per delivery, they were a large malloc() each, zeroed, whose pages
 * glibc returned to the system at free() and faulted in again.
 */
static struct payload_writer *webhook_writer;
static struct payload_spill webhook_spill = {NULL, 0, WEBHOOK_SCRATCH_MEM, -1,
    webhook_scratch_open, NULL};

/*
 * webhook_stream - the event, written into the reservation as the message
 * is parsed (payload.c): memory per delivery does not grow with the
 * message. Text and html wait in memory, or past 256 KB in a scratch
 * file in the spool's tmp/.
 */
static int webhook_stream(struct istream *data, const struct webhook_settings *set,
			          const struct payload_envelope *env, size_t size,
			          struct spool_reservation *res, size_t *len_r,
			          const char **limit_r, const char **error_r)
{
    struct payload_message msg;
    struct payload_sink out, scratch;
    int     ret = 0;

    if (webhook_writer == NULL)
	webhook_writer = i_malloc(sizeof(*webhook_writer));
    webhook_spill.ctx = (void *) set->spool_dir;
    payload_fd_sink(&out, &res->fd);
    payload_spill_sink(&scratch, &webhook_spill);
    payload_writer_init(webhook_writer, &out, (off_t) res->meta_len, &scratch);
    i_zero(&msg);
    if (mime_read(data, &set->mime, &msg, env, webhook_writer, error_r) < 0)
	ret = -1;
    else if (payload_finish(webhook_writer, size, len_r) < 0) {
	*error_r = t_strdup_printf("cannot write the event (%s, or a scratch file in "
				   "%s/tmp): %m", res->tmp_path, set->spool_dir);
	ret = -1;
    }
    *limit_r = msg.limit;			/* a static string */
    payload_message_free(&msg);
    payload_spill_reset(&webhook_spill);
    return (ret);
}

/* webhook_sync_mode - Dovecot's mail_fsync, for the event as for the mail */

static enum spool_sync webhook_sync_mode(struct mail_user *user)
{
    switch (mail_user_set_get_storage_set(user)->parsed_fsync_mode) {
    case FSYNC_MODE_NEVER:
	return (SPOOL_SYNC_NEVER);
    case FSYNC_MODE_ALWAYS:
	return (SPOOL_SYNC_ALWAYS);
    default:
	return (SPOOL_SYNC_OPTIMIZED);
    }
}

/*
 * The transaction's message as the client sent it. Dovecot hands the
 * second and later recipients of a transaction the first one's saved
 * copy (lmtp-local.c's first_saved_mail), read back from the mailbox,
 * where a CR before a CRLF is gone: their events, and their
 * webhook-ids, would depend on who came first, and a retry to one of
 * them alone (Postfix's) would make a second event under another id.
 * So every recipient reads the raw mail's stream: the first one's
 * (whatever its route) is remembered for the others of the same
 * delivery session. No reference is taken: lmtp frees the raw mail at
 * the transaction's end and panics when its stream is still referenced.
 * The pointer is valid until then, and never used after: the first
 * recipient of every transaction is handed the raw mail (there is no
 * saved copy yet), passes through here whatever its route, and
 * replaces it before any other recipient looks.
 */
static struct istream *webhook_data;
static const struct mail_deliver_session *webhook_data_session;

static struct istream *webhook_source(struct mail_deliver_context *ctx)
{
    struct istream *input;

    if (strcmp(mailbox_get_storage(ctx->src_mail->box)->name, "raw") == 0) {	/* lmtp's DATA */
	if (mail_get_stream(ctx->src_mail, NULL, NULL, &input) < 0)
	    return (NULL);
	webhook_data = input;
	webhook_data_session = ctx->session;
	return (input);
    }
    if (webhook_data != NULL && webhook_data_session == ctx->session)
	return (webhook_data);
    return (mail_get_stream(ctx->src_mail, NULL, NULL, &input) < 0 ? NULL : input);
}

/*
 * webhook_lmtp_delivered_to - the Delivered-To: lmtp wrote before the
 * message for this recipient (lmtp_hdr_delivery_address: final, the
 * recipient; original, the ORCPT of RCPT TO, none without one; none,
 * none): NULL
 * when lmtp wrote none, so that a client's own Delivered-To: naming the
 * recipient is kept in the message and its id. lmtp's settings are the
 * fourth of the user's settings roots in an lmtp process (as lmtp's own
 * lmtp-local.c reads them); elsewhere the recipient, as before.
 */
static const char *webhook_lmtp_delivered_to(struct mail_deliver_context *ctx,
					             const char *rcpt)
{
    struct mail_storage_service_user *service_user = ctx->rcpt_user->_service_user;
    const struct lmtp_settings *lmtp_set;
    void  **sets;
    int     n = 0;

    if (service_user == NULL || strcmp(master_service_get_name(master_service), "lmtp") != 0)
	return (rcpt);
    sets = mail_storage_service_user_get_set(service_user);
    while (n < 4 && sets[n] != NULL)
	n++;
    if (n < 4)
	return (rcpt);
    lmtp_set = sets[3];
    switch (lmtp_set->parsed_lmtp_hdr_delivery_address) {
    case LMTP_HDR_DELIVERY_ADDRESS_NONE:
	return (NULL);
    case LMTP_HDR_DELIVERY_ADDRESS_ORIGINAL:
	/* the ORCPT of RCPT TO only: without one lmtp fills orcpt.addr
	   for delivery (lda_original_recipient_header, the recipient)
	   but writes no Delivered-To: */
	return (!smtp_params_rcpt_has_orcpt(&ctx->rcpt_params)
		|| ctx->rcpt_params.orcpt.addr == NULL ? NULL
		: smtp_address_encode(ctx->rcpt_params.orcpt.addr));
    default:
	return (rcpt);
    }
}

/*
 * webhook_event - the event of this delivery, in a spool reservation: the
 * id (a first pass over the message), then the body, streamed. -1 with
 * the reservation released when the message cannot be read (input, from
 * webhook_source(), is NULL) or the spool cannot take the event (full,
 * unwritable): nothing is saved then.
 */
static int webhook_event(struct mail_deliver_context *ctx, struct istream *input,
			         struct webhook_settings *set,
			         const char *rcpt, const char *workspace,
			         struct spool_event *ev, struct spool_reservation *res,
			         const char **error_r)
{
    struct payload_envelope env;
    struct istream *data;
    uoff_t  size = 0;
    int     ret = -1;
    bool    proxied;

    if (input == NULL) {
	*error_r = t_strdup_printf("cannot read the message: %s",
			 mailbox_get_last_internal_error(ctx->src_mail->box, NULL));
	return (-1);
    }
    /* the message as the client sent it, without lmtp's own headers */
    data = i_stream_create_range(input, mime_lmtp_data_offset(input, ctx->session_id,
				webhook_lmtp_delivered_to(ctx, rcpt), &proxied), (uoff_t) -1);
    if (proxied && set->mime.trusted_id != NULL) {	/* helper-127 */
	e_warning(ctx->event, "lmtp_webhook: delivered through a Dovecot LMTP proxy that did "
		  "not pass its client's address (XCLIENT: list it in login_trusted_networks): "
		  "Authentication-Results not trusted (every result \"none\")");
	set->mime.trusted_id = NULL;
    }
    i_zero(&env);
    env.mail_from = ctx->mail_from == NULL ? "" : smtp_address_encode(ctx->mail_from);
    if ((env.id = webhook_id(rcpt, env.mail_from, data, &size, error_r)) != NULL) {
	env.workspace = workspace;
	env.rcpt_to = rcpt;
	env.timestamp = (long long) ioloop_time;
	ev->id = i_strdup(env.id);
	ev->created = (long long) ioloop_time;
	ev->attempts = 0;			/* lmtp-webhook-spool posts it */
	ev->next_attempt = ev->created;		/* once released (spool_hold.c) */
	ev->held = 1;
	if ((*error_r = spool_reserve_stream(set->spool_dir, ev, res, &webhook_keeper)) == NULL) {
	    res->sync = webhook_sync_mode(ctx->rcpt_user);
	    const char *limit = NULL;

	    if (webhook_stream(data, set, &env, size, res, &ev->body_len, &limit, error_r) < 0
		|| (*error_r = spool_stream_done(res)) != NULL)
		spool_discard(res);
	    else
		ret = 0;
	    if (ret == 0 && limit != NULL)
		e_warning(ctx->event, "lmtp_webhook: event %s for <%s>: %s", env.id, rcpt, limit);
	}
    }
    i_stream_unref(&data);
    i_stream_seek(input, 0);
    return (ret);
}

/* webhook_tempfailed - a failed save Dovecot answers with a tempfail */

static int webhook_tempfailed(struct mail_deliver_context *ctx, struct mail_storage *storage)
{
    enum mail_error error;

    if (ctx->tempfail_error != NULL)
	return (1);
    if (storage == NULL)
	return (0);
    (void) mail_storage_get_last_error(storage, &error);
    return (error == MAIL_ERROR_TEMP);
}

/*
 * webhook_save - what delivery would have done without us, all of it:
 * the plugins after us (Sieve), the default mailbox, and then, as
 * mail_do_deliver() does when a save to another mailbox fails for
 * good (lmtp_save_to_detail_mailbox: "bills+march" with no such
 * mailbox, or a detail that is no mailbox name), INBOX. Dovecot's own
 * INBOX save came after our hook had returned and withdrawn the event:
 * 250, the mail in INBOX, no event. Done here, the event commits with
 * that save; the default mailbox then reads INBOX, so Dovecot does not
 * save a second time outside the hook.
 */
static int webhook_save(struct mail_deliver_context *ctx, struct mail_storage **storage_r,
			         bool *saved_r)
{
    int     ret;

    save_watch_start();				/* Sieve's saves: save_watch(3) */
    ret = next_deliver_mail ? next_deliver_mail(ctx, storage_r) : -1;
    if (ret <= 0 && !ctx->saved_mail && save_watch_saves() == 0 && !ctx->tried_default_save
	&& ctx->tempfail_error == NULL)
	ret = mail_deliver_save(ctx, ctx->rcpt_default_mailbox, 0, NULL, storage_r) < 0 ? -1 : 1;
    if (ret <= 0 && !ctx->saved_mail && save_watch_saves() == 0
	&& strcasecmp(ctx->rcpt_default_mailbox, "INBOX") != 0
	&& !webhook_tempfailed(ctx, *storage_r)) {
	e_info(ctx->event, "lmtp_webhook: mailbox %s not saved to: saving to INBOX",
	       str_sanitize(ctx->rcpt_default_mailbox, 80));
	ret = mail_deliver_save(ctx, "INBOX", 0, NULL, storage_r) < 0 ? -1 : 1;
	ctx->rcpt_default_mailbox = "INBOX";
    }
    *saved_r = save_watch_stop() > 0 || ctx->saved_mail;
    return (ret);
}

/*
 * webhook_unsave - tempfail a recipient whose mail is already saved: let
 * go of the saved mail LMTP would copy to the next recipients (it only
 * does that after a success), as lmtp-local.c does at the end.
 */
static void webhook_unsave(struct mail_deliver_context *ctx)
{
    ctx->tempfail_error = WEBHOOK_TEMPFAIL;
    /* mail_do_deliver() answers success for any saved mail otherwise */
    ctx->saved_mail = FALSE;
    if (ctx->dest_mail != NULL) {
	struct mailbox_transaction_context *trans = ctx->dest_mail->transaction;
	struct mailbox *box = mailbox_transaction_get_mailbox(trans);

	mail_free(&ctx->dest_mail);
	mailbox_transaction_rollback(&trans);
	mailbox_free(&box);
    }
}

/* webhook_commit - 0, or -1: the event could not be kept */

static int webhook_commit(struct mail_deliver_context *ctx, const char *rcpt,
			          struct spool_event *ev, struct spool_reservation *res)
{
    const char *err;
    char   *shown;

    if ((err = spool_unhold(res)) != NULL) {
	e_error(ctx->event, "lmtp_webhook: event %s NOT spooled: %s; tempfailing the "
		"recipient although its mail was saved", ev->id, err);
	return (-1);
    }
    shown = route_url_redact(ev->url);	/* no secret in a log */
    e_info(ctx->event, "lmtp_webhook: event %s for <%s> spooled for %s", ev->id,
	   rcpt, shown);
    free(shown);
    return (0);
}

static int webhook_deliver_mail(struct mail_deliver_context *ctx,
				        struct mail_storage **storage_r)
{
    struct webhook_settings set;
    struct webhook_route route;
    struct spool_event ev;
    struct spool_reservation res;
    struct istream *input;
    const char *rcpt, *error = NULL;
    char   *url = NULL, *workspace = NULL;
    bool    saved;
    int     ret;

    i_zero(&route);
    input = webhook_source(ctx);		/* for every recipient: see above */
    rcpt = ctx->rcpt_to == NULL ? "" : smtp_address_encode(ctx->rcpt_to);
    ret = webhook_route_for(ctx, rcpt, &route, &url, &workspace, &error);
    if (ret == 0) {
	e_debug(ctx->event, "lmtp_webhook: %s matches no lmtp_webhook_route", rcpt);
	return (next_deliver_mail ? next_deliver_mail(ctx, storage_r) : -1);
    }
    webhook_obsolete(ctx);
    i_zero(&ev);
    ev.url = url;
    /* the paths of the route's secrets: lmtp-webhook-spool reads them */
    for (int i = 0; i < route.secret_count; i++)
	ev.secret_files[ev.secret_count++] = route.secret_files[i];
    set.mime.raw_message = route.raw_message;
    if (ret < 0 || webhook_settings_get(ctx, &set, &error) < 0
	|| webhook_event(ctx, input, &set, rcpt, workspace, &ev, &res, &error) < 0) {
	e_error(ctx->event, "lmtp_webhook: %s: %s", rcpt, error);
	ctx->tempfail_error = WEBHOOK_TEMPFAIL;
	ret = -1;
    } else if ((error = spool_hold(&res)) != NULL) {
	e_error(ctx->event, "lmtp_webhook: %s: event %s not spooled: %s", rcpt, ev.id, error);
	spool_discard(&res);
	ctx->tempfail_error = WEBHOOK_TEMPFAIL;
	ret = -1;
    } else {
	ret = webhook_save(ctx, storage_r, &saved);
	if (saved) {
	    if (webhook_commit(ctx, rcpt, &ev, &res) < 0) {
		webhook_unsave(ctx);
		ret = -1;
	    }
	} else
	    spool_withdraw(&res);
    }
    route_free(&route);
    free(url);
    free(workspace);
    i_free(ev.id);
    free(ev.body);
    return (ret);
}

void    lmtp_webhook_plugin_init(struct module *module)
{
    next_deliver_mail = mail_deliver_hook_set(webhook_deliver_mail);
    save_watch_init(module);
    lmtp_peer_init(module);
}

void    lmtp_webhook_plugin_deinit(void)
{
    lmtp_peer_deinit();
    save_watch_deinit();
    mail_deliver_hook_set(next_deliver_mail);
    spool_keeper_close(&webhook_keeper);
    webhook_data = NULL;
    payload_spill_free(&webhook_spill);
    i_free(webhook_writer);
}
