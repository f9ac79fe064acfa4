#ifndef MXKIT_METRICS_HTTP_H
#define MXKIT_METRICS_HTTP_H

/* metrics_http - serve metrics_render() on GET /metrics */

const char *metrics_http_start(const char *listen);

#endif
