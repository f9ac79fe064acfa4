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
 *	lmtp_webhook_route:
 *
 *	1. the message is read with Dovecot's MIME parser and the event
 *	   built (mime.c, payload.c);
 *	2. the event is reserved in the spool (tmp/, no fsync): if that
 *	   fails, the recipient is tempfailed and nothing is saved, so
 *	   Postfix keeps the mail and retries;
 *	3. the mail is saved (the previous hook, else the default mailbox);
 *	   nothing saved (e.g. a Sieve discard): no event;
 *	4. the first POST is made here, synchronously, bounded by
 *	   lmtp_webhook_timeout; 2xx drops the reservation, anything else
 *	   commits it (fsync, rename, fsync dir) for lmtp-webhook-spool,
 *	   before LMTP answers. If even that fails (an I/O error, active/
 *	   made unwritable), the recipient is tempfailed although its mail
 *	   is saved: Postfix's retry may leave a second copy in the
 *	   mailbox, but the event (same webhook-id) is not lost.
 *
 *	Other recipients go straight to the previous hook.
 * DIAGNOSTICS
 *	Errors in the Dovecot log; a configuration error or an unusable
 *	spool tempfails routed recipients (never a silent drop).
 */

#include "lib.h"
#include "str.h"
#include "istream.h"
#include "ioloop.h"
#include "settings-parser.h"
#include "smtp-address.h"
#include "mail-storage.h"
#include "mail-user.h"
#include "mail-deliver.h"
#include "module-dir.h"

#include <sys/stat.h>

#include <openssl/evp.h>

#include "mime.h"
#include "payload.h"
#include "post.h"
#include "route.h"
#include "sign.h"
#include "spool.h"

#define WEBHOOK_TEMPFAIL "Webhook spool unavailable, try again later"

const char *lmtp_webhook_plugin_version = DOVECOT_ABI_VERSION;
/* an array, not a pointer: Dovecot compares the symbol itself */
const char lmtp_webhook_plugin_binary_dependency[] = "lmtp";

void    lmtp_webhook_plugin_init(struct module *module);
void    lmtp_webhook_plugin_deinit(void);

static deliver_mail_func_t *next_deliver_mail;

/*
 * Kept for the life of the lmtp process: a curl handle (keep-alive to the
 * receivers), the spool reservation file, and the secret (re-read when
 * its file changes).
 */
static CURL *webhook_curl;
static struct spool_keeper webhook_keeper = SPOOL_KEEPER_INIT;
static struct webhook_key webhook_secret;
static struct stat webhook_secret_stat;

static const char *webhook_secret_get(const char *path, const struct webhook_key **key)
{
    struct stat st;
    const char *err;

    if (stat(path, &st) < 0)
	return (t_strdup_printf("%s: %m", path));
    if (st.st_ino != webhook_secret_stat.st_ino || st.st_dev != webhook_secret_stat.st_dev
	|| st.st_mtime != webhook_secret_stat.st_mtime || st.st_size != webhook_secret_stat.st_size
	|| webhook_secret.len == 0) {
	if ((err = sign_key_load(path, &webhook_secret)) != NULL) {
	    webhook_secret.len = 0;
	    return (err);
	}
	webhook_secret_stat = st;
    }
    *key = &webhook_secret;
    return (NULL);
}

struct webhook_settings {
    const char *spool_dir, *ca_file, *secret_file;
    unsigned int timeout_ms;
    uoff_t  max_attachment;
};

/* webhook_route_for - the first route matching the recipient, if any */

static int webhook_route_for(struct mail_user *user, const char *rcpt,
			             char **url_r, char **workspace_r, const char **error_r)
{
    for (unsigned int i = 1;; i++) {
	const char *name = i == 1 ? "lmtp_webhook_route"
	    : t_strdup_printf("lmtp_webhook_route%u", i);
	const char *value = mail_user_plugin_getenv(user, name);
	struct webhook_route route;
	const char *err;
	int     hit;

	if (value == NULL || *value == '\0')
	    return (0);
	if ((err = route_parse(value, &route)) != NULL) {
	    *error_r = t_strdup_printf("%s: %s", name, err);
	    return (-1);
	}
	hit = route_match(&route, rcpt, url_r, workspace_r);
	route_free(&route);
	if (hit)
	    return (1);
    }
}

static int webhook_settings_get(struct mail_user *user, struct webhook_settings *set,
				        const char **error_r)
{
    const char *value, *err;

    i_zero(set);
    set->spool_dir = mail_user_plugin_getenv(user, "lmtp_webhook_spool_dir");
    set->secret_file = mail_user_plugin_getenv(user, "lmtp_webhook_secret_file");
    set->ca_file = mail_user_plugin_getenv(user, "lmtp_webhook_ca_file");
    if (set->spool_dir == NULL || *set->spool_dir == '\0'
	|| set->secret_file == NULL || *set->secret_file == '\0') {
	*error_r = "lmtp_webhook_spool_dir and lmtp_webhook_secret_file must be set";
	return (-1);
    }
    value = mail_user_plugin_getenv(user, "lmtp_webhook_timeout");
    if (settings_get_time_msecs(value && *value ? value : "5s", &set->timeout_ms, &err) < 0) {
	*error_r = t_strdup_printf("lmtp_webhook_timeout: %s", err);
	return (-1);
    }
    value = mail_user_plugin_getenv(user, "lmtp_webhook_max_attachment_size");
    if (settings_get_size(value && *value ? value : "25M", &set->max_attachment, &err) < 0) {
	*error_r = t_strdup_printf("lmtp_webhook_max_attachment_size: %s", err);
	return (-1);
    }
    return (0);
}

/*
 * webhook_id - stable for one message and recipient, also when Postfix
 * delivers it again (Dovecot's own Received: line differs then, so the
 * raw bytes cannot be used): recipient, Message-ID, Date, From, Subject.
 */
static const char *webhook_id(const char *rcpt, const struct payload_message *msg)
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    string_t *id = t_str_new(40);

    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
	i_panic("SHA-256 unavailable");
    EVP_DigestUpdate(ctx, rcpt, strlen(rcpt) + 1);
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++) {
	if (i == PAYLOAD_TO || i == PAYLOAD_CC)
	    continue;
	EVP_DigestUpdate(ctx, msg->header[i].data ? msg->header[i].data : "",
			 msg->header[i].len);
	EVP_DigestUpdate(ctx, "\n", 1);
    }
    if (msg->header[PAYLOAD_MESSAGE_ID].data == NULL)	/* then size too */
	EVP_DigestUpdate(ctx, &msg->size, sizeof(msg->size));
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    str_append(id, "msg_");
    for (int i = 0; i < 16; i++)
	str_printfa(id, "%02x", md[i]);
    return (str_c(id));
}

/* webhook_event - read the message and build the spool event */

static int webhook_event(struct mail_deliver_context *ctx, const struct webhook_settings *set,
			         const char *rcpt, const char *workspace,
			         struct spool_event *ev, const char **error_r)
{
    struct payload_message msg;
    struct payload_envelope env;
    struct istream *input;
    const char *from;

    if (mail_get_stream(ctx->src_mail, NULL, NULL, &input) < 0) {
	*error_r = t_strdup_printf("cannot read the message: %s",
			 mailbox_get_last_internal_error(ctx->src_mail->box, NULL));
	return (-1);
    }
    i_zero(&msg);
    if (mime_read(input, set->max_attachment, &msg, error_r) < 0) {
	payload_message_free(&msg);
	return (-1);
    }
    from = ctx->mail_from == NULL ? "" : smtp_address_encode(ctx->mail_from);
    i_zero(&env);
    env.id = webhook_id(rcpt, &msg);
    env.workspace = workspace;
    env.mail_from = from;
    env.rcpt_to = rcpt;
    env.timestamp = (long long) ioloop_time;
    ev->id = i_strdup(env.id);
    ev->body = payload_build(&msg, &env, &ev->body_len);
    ev->created = (long long) ioloop_time;
    /* written as if the first attempt had failed: if it succeeds the
       file is removed, and if not it is already right for the spool */
    ev->attempts = 1;
    ev->next_attempt = ev->created + 5;
    payload_message_free(&msg);
    return (0);
}

/* webhook_save - what delivery would have done without us */

static int webhook_save(struct mail_deliver_context *ctx, struct mail_storage **storage_r)
{
    int     ret = next_deliver_mail ? next_deliver_mail(ctx, storage_r) : -1;

    if (ret <= 0 && !ctx->saved_mail && !ctx->tried_default_save
	&& ctx->tempfail_error == NULL)
	ret = mail_deliver_save(ctx, ctx->rcpt_default_mailbox, 0, NULL, storage_r) < 0 ? -1 : 1;
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

/* webhook_first_attempt - 0, or -1: the event could not be kept */

static int webhook_first_attempt(struct mail_deliver_context *ctx,
				          const struct webhook_settings *set,
				          struct spool_event *ev, struct spool_reservation *res)
{
    const struct webhook_key *key;
    struct post_request req;
    struct post_result result;
    const char *err;

    if ((err = webhook_secret_get(set->secret_file, &key)) != NULL) {
	e_error(ctx->event, "lmtp_webhook: %s; event %s left in the spool", err, ev->id);
	result.outcome = POST_RETRY;
	i_strocpy(result.why, err, sizeof(result.why));
    } else {
	i_zero(&req);
	req.url = ev->url;
	req.id = ev->id;
	req.body = ev->body;
	req.body_len = ev->body_len;
	req.key = key;
	req.timeout_ms = set->timeout_ms;
	req.ca_file = set->ca_file;
	if (webhook_curl == NULL && (webhook_curl = curl_easy_init()) == NULL)
	    i_fatal_status(FATAL_OUTOFMEM, "curl_easy_init() failed");
	post_send(webhook_curl, &req, (long long) time(NULL), &result);
    }
    if (result.outcome == POST_DELIVERED) {
	spool_discard(res);
	e_info(ctx->event, "lmtp_webhook: event %s posted to %s (%s)", ev->id, ev->url,
	       result.why);
	return (0);
    }
    if (result.outcome == POST_GONE) {
	spool_discard(res);
	e_warning(ctx->event, "lmtp_webhook: event %s dropped: %s answered 410 Gone",
		  ev->id, ev->url);
	return (0);
    }
    if ((err = spool_commit_why(res, result.why)) != NULL) {
	e_error(ctx->event, "lmtp_webhook: event %s NOT spooled: %s; tempfailing the "
		"recipient although its mail was saved", ev->id, err);
	return (-1);
    }
    e_info(ctx->event, "lmtp_webhook: event %s spooled after %s from %s",
	   ev->id, result.why, ev->url);
    return (0);
}

static int webhook_deliver_mail(struct mail_deliver_context *ctx,
				        struct mail_storage **storage_r)
{
    struct webhook_settings set;
    struct spool_event ev;
    struct spool_reservation res;
    const char *rcpt, *error = NULL;
    char   *url = NULL, *workspace = NULL;
    int     ret;

    rcpt = ctx->rcpt_to == NULL ? "" : smtp_address_encode(ctx->rcpt_to);
    ret = webhook_route_for(ctx->rcpt_user, rcpt, &url, &workspace, &error);
    if (ret == 0)
	return (next_deliver_mail ? next_deliver_mail(ctx, storage_r) : -1);
    i_zero(&ev);
    if (ret < 0 || webhook_settings_get(ctx->rcpt_user, &set, &error) < 0
	|| webhook_event(ctx, &set, rcpt, workspace, &ev, &error) < 0) {
	e_error(ctx->event, "lmtp_webhook: %s: %s", rcpt, error);
	ctx->tempfail_error = WEBHOOK_TEMPFAIL;
	free(url);
	free(workspace);
	i_free(ev.id);
	free(ev.body);
	return (-1);
    }
    ev.url = url;
    if ((error = spool_reserve_kept(set.spool_dir, &ev, &res, &webhook_keeper)) != NULL) {
	e_error(ctx->event, "lmtp_webhook: %s: %s", rcpt, error);
	ctx->tempfail_error = WEBHOOK_TEMPFAIL;
	ret = -1;
    } else {
	ret = webhook_save(ctx, storage_r);
	if (ctx->saved_mail) {
	    if (webhook_first_attempt(ctx, &set, &ev, &res) < 0) {
		webhook_unsave(ctx);
		ret = -1;
	    }
	} else
	    spool_discard(&res);
    }
    free(url);
    free(workspace);
    i_free(ev.id);
    free(ev.body);
    return (ret);
}

void    lmtp_webhook_plugin_init(struct module *module ATTR_UNUSED)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    next_deliver_mail = mail_deliver_hook_set(webhook_deliver_mail);
}

void    lmtp_webhook_plugin_deinit(void)
{
    mail_deliver_hook_set(next_deliver_mail);
    spool_keeper_close(&webhook_keeper);
    if (webhook_curl != NULL)
	curl_easy_cleanup(webhook_curl);
    webhook_curl = NULL;
    curl_global_cleanup();
}
