/* memhost.h -- an in-memory embedder of the pwasm library for tests: one
 * HTTP exchange (request/response header maps, properties), plugin log
 * lines collected into a buffer. */
#ifndef PW_MEMHOST_H
#define PW_MEMHOST_H
#include "pwasm.h"

#define MH_MAX_HEADERS 64

typedef struct mh_map {
    pw_kv kv[MH_MAX_HEADERS];
    size_t n;
} mh_map;

typedef struct mh_body {
    char data[4096];
    size_t len;
    int available;
} mh_body;

typedef struct mh_stream {
    mh_map req, resp, req_trailers, resp_trailers;
    mh_body req_body, resp_body;
    char strings[8192]; /* copies of keys/values set by plugins */
    size_t used;
    char events[1024]; /* "wake setprop:my.key=v " */
    size_t events_len;
    /* Bytes of header names and values, body data and property values
     * that reached the hooks (kept or not). */
    unsigned long long hook_bytes;
} mh_stream;

typedef struct mh_host {
    char log[65536]; /* "<plugin>|<level>|<message>\n" lines */
    size_t log_len;
    proxy_log_level_t level;
    char trace_log[65536]; /* "env.proxy_log(2, 1024, 5) -> 0\n" */
    size_t trace_len;
    unsigned discarded; /* vm_discarded calls */
} mh_host;

/* Sets a body's bytes (and makes it available). */
void mh_body_set(mh_body *b, const char *s);

extern const pw_host_ops mh_ops;
/* The same with the trace hook set. */
extern const pw_host_ops mh_ops_traced;
/* Their HTTP area, for a test that replaces one hook (copy it, change the
 * hook, point a copy of mh_ops at the copy). */
extern const pw_host_http_ops mh_http_ops;
/* TCP streams: downstream data in req_body, upstream data in resp_body. */
extern const pw_host_network_ops mh_network_ops;

void mh_stream_init(mh_stream *s);
void mh_add(mh_map *m, const char *k, const char *v);
/* First value of key or NULL (static buffer). */
const char *mh_get(const mh_map *m, const char *k);
#endif
