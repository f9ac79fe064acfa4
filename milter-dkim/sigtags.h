#ifndef MXKIT_SIGTAGS_H
#define MXKIT_SIGTAGS_H

/* sigtags - is a DKIM-Signature's tag-list one a verifier may read? */

#include <stddef.h>

#define SIGTAGS_TAGS_MAX 64		/* RFC 6376 defines 14 */

struct sigtags_result {
    char    domain[254];		/* d= when read for sure, else "" */
    char    why[96];			/* why the signature is invalid */
};

int     sigtags_check(const char *value, struct sigtags_result *out);
int     sigtags_name_ok(const char *name, size_t len);
int     sigtags_value(const char *value, const char *name, const char **start, size_t *len);

#endif
