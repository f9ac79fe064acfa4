#ifndef MXKIT_CONFIG_H
#define MXKIT_CONFIG_H

/* config - one configuration format for every mxkit daemon. */

#include <stddef.h>

#define CONFIG_LINE_MAX 4096

enum config_type {
    CONFIG_STRING,
    CONFIG_BOOL,
    CONFIG_INT,
    CONFIG_DURATION,		/* milliseconds */
    CONFIG_SIZE,		/* bytes */
    CONFIG_LIST,		/* comma or space separated words */
    CONFIG_DIRECTIVE,		/* "name rest of line"; '=' optional */
};

#define CONFIG_REPEAT	(1 << 0)	/* may appear several times */
#define CONFIG_RESTART	(1 << 1)	/* a reload cannot apply a change */

struct config_spec {
    const char *name;
    enum config_type type;
    const char *default_value;		/* NULL: unset */
    int     flags;
};

struct config_entry {
    const struct config_spec *spec;
    char   *value;
    int     line;
    struct config_entry *next;
};

struct config {
    char   *path;
    const struct config_spec *specs;
    struct config_entry *head;
    struct config_entry *tail;
    char  **errors;
    int     error_count;
};

int     config_open_regular(const char *path, const char **why);
struct config *config_read(const char *path, const struct config_spec *specs);
struct config *config_read_buffer(const char *name, const char *buf, size_t len,
				          const struct config_spec *specs);
void    config_free(struct config **cfg);
void    config_add_error(struct config *cfg, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void    config_add_file_error(struct config *cfg, const char *file, int line,
			              const char *fmt,...)
	__attribute__((format(printf, 4, 5)));
void    config_print_errors(const struct config *cfg);
void    config_merge_errors(struct config *dst, const struct config *src);

const struct config_entry *config_lookup(const struct config *cfg, const char *name);
const struct config_entry *config_next(const struct config *cfg,
				               const struct config_entry *prev,
				               const char *name);
int     config_line(const struct config *cfg, const char *name);
const char *config_get_str(const struct config *cfg, const char *name);
int     config_get_bool(const struct config *cfg, const char *name);
long long config_get_int(const struct config *cfg, const char *name);
long long config_get_duration(const struct config *cfg, const char *name);
long long config_get_size(const struct config *cfg, const char *name);

const char *config_parse_bool(const char *text, int *result);
const char *config_parse_int(const char *text, long long *result);
const char *config_parse_duration(const char *text, long long *millis);
const char *config_parse_size(const char *text, long long *bytes);
char  **config_split_list(const char *text, int *count);
char  **config_split_words(const char *text, int *count);
void    config_list_free(char ***list);

#endif
