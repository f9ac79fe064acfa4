#ifndef MXKIT_TAP_H
#define MXKIT_TAP_H

/* tap - a tiny Test Anything Protocol producer for unit tests. */

void    tap_plan(int count);
int     tap_ok(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int     tap_is_int(long long got, long long want, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int     tap_is_str(const char *got, const char *want, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void    tap_skip(int count, const char *reason);
void    tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int     tap_done(void);

#define ok      tap_ok
#define is_int  tap_is_int
#define is_str  tap_is_str
#define diag    tap_diag

#endif
