#ifndef MXKIT_CTL_H
#define MXKIT_CTL_H

/* ctl - the operator's control socket: show, reset, top, release. */

#include "policy_request.h"
#include "ratelimit.h"
#include "store.h"

#define CTL_CONFIG_SPECS \
    {"control_socket", CONFIG_STRING, NULL, CONFIG_RESTART}, \
    {"control_group", CONFIG_STRING, NULL, CONFIG_RESTART}, \
    {"notify_timeout", CONFIG_DURATION, "30s", CONFIG_RESTART}, \
    {"quarantine", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT}

#define CTL_LINE_MAX	(POLICY_LINE_MAX + 64)	/* a key as long as a request's */
#define CTL_TOP_MAX	1000
#define CTL_TOP_DEFAULT	10

enum ctl_verb { CTL_SHOW, CTL_RESET, CTL_TOP, CTL_RELEASE };

struct ctl_request {
    enum ctl_verb verb;
    char   *value;			/* show, reset, release */
    int     top;			/* top */
};

/* A growing output text. */
struct ctl_out {
    char   *text;
    size_t  len;
    size_t  cap;
};

void    ctl_printf(struct ctl_out *out, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));
const char *ctl_request_parse(const char *line, size_t len, struct ctl_request *req);
void    ctl_request_free(struct ctl_request *req);
void    ctl_config_check(struct config *cfg, int starting);
#define CTL_KEYS_RATES		1
#define CTL_KEYS_LOCKS		2
#define CTL_KEYS_STRIKES	4
#define CTL_KEYS_ALL		7

void    ctl_keys(const struct limits *limits, const char *value, int what,
		         struct store_admin *adm);
void    ctl_show(const struct limits *limits, const struct ctl_request *req,
		         const struct store_admin *adm, struct ctl_out *out);
void    ctl_release_report(const struct limits *limits, unsigned long long released,
			           struct ctl_out *out);

struct ctl_top;
struct ctl_top *ctl_top_create(int n);
void    ctl_top_add(struct ctl_top *top, const struct limits *limits,
		            const struct store_admin *adm);
void    ctl_top_finish(struct ctl_top **top, struct ctl_out *out);

/* The daemon's side (ctl.c) and the command (ctl_main.c). */
struct server;
struct ctl_server;
struct ctl_server *ctl_start(struct server *srv);
void    ctl_stop(struct ctl_server **ctl);
int     ctl_main(int argc, char **argv, const char *default_config,
		         const struct config_spec *specs);

#endif
