#ifndef MXKIT_METRICS_HTTP_H
#define MXKIT_METRICS_HTTP_H

/* metrics_http - serve metrics_render() on GET /metrics, probes on /healthz, /readyz */

const char *metrics_http_bind(const char *listen);
const char *metrics_http_start(const char *listen);
void    metrics_http_readiness(const char *(*check) (void));
void    metrics_http_serving(int on);
void    metrics_http_stop(void);

#endif
