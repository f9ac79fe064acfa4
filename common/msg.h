#ifndef MXKIT_MSG_H
#define MXKIT_MSG_H

/* msg - Postfix-style diagnostics: "program[pid]: warning: text". */

#include <stdarg.h>

#define MSG_STDERR  (1 << 0)
#define MSG_SYSLOG  (1 << 1)

#define MSG_PRINTF(f, a) __attribute__((format(printf, f, a)))

extern int msg_verbose;

void msg_init(const char *progname, int outputs);
void msg_set_fd(int fd);
void msg_set_outputs(int outputs);
void msg_set_bounded(int on);
const char *msg_progname(void);
void msg_info(const char *fmt, ...) MSG_PRINTF(1, 2);
void msg_warn(const char *fmt, ...) MSG_PRINTF(1, 2);
void msg_error(const char *fmt, ...) MSG_PRINTF(1, 2);
void msg_fatal(const char *fmt, ...) MSG_PRINTF(1, 2) __attribute__((noreturn));
void msg_panic(const char *fmt, ...) MSG_PRINTF(1, 2) __attribute__((noreturn));
void msg_vlog(int level, const char *fmt, va_list ap) MSG_PRINTF(2, 0);

#endif
