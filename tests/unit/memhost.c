/* memhost.c -- see memhost.h. */
#include "memhost.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static pw_str save(mh_stream *s, pw_str v) {
    if (s->used + v.len > sizeof s->strings)
        return (pw_str){"", 0};
    memcpy(s->strings + s->used, v.data, v.len);
    pw_str r = {s->strings + s->used, v.len};
    s->used += v.len;
    return r;
}

void mh_stream_init(mh_stream *s) {
    memset(s, 0, sizeof *s);
}

void mh_add(mh_map *m, const char *k, const char *v) {
    if (m->n < MH_MAX_HEADERS)
        m->kv[m->n++] = (pw_kv){{k, strlen(k)}, {v, strlen(v)}};
}

const char *mh_get(const mh_map *m, const char *k) {
    static char buf[1024];
    for (size_t i = 0; i < m->n; i++)
        if (m->kv[i].key.len == strlen(k) &&
            !strncasecmp(m->kv[i].key.data, k, m->kv[i].key.len)) {
            snprintf(buf, sizeof buf, "%.*s", (int)m->kv[i].value.len, m->kv[i].value.data);
            return buf;
        }
    return NULL;
}

static mh_map *map_of(void *stream, proxy_map_type_t map) {
    mh_stream *s = stream;
    switch (map) {
    case PROXY_MAP_HTTP_REQUEST_HEADERS:
        return &s->req;
    case PROXY_MAP_HTTP_REQUEST_TRAILERS:
        return &s->req_trailers;
    case PROXY_MAP_HTTP_RESPONSE_HEADERS:
        return &s->resp;
    default:
        return &s->resp_trailers;
    }
}

void mh_body_set(mh_body *b, const char *s) {
    b->len = strlen(s);
    memcpy(b->data, s, b->len);
    b->available = 1;
}

static mh_body *body_of(void *stream, proxy_buffer_type_t type) {
    mh_stream *s = stream;
    /* a TCP stream's downstream data is the request body's buffer, its
     * upstream data the response body's */
    mh_body *b = type == PROXY_BUFFER_HTTP_REQUEST_BODY || type == PROXY_BUFFER_DOWNSTREAM_DATA
                     ? &s->req_body
                     : &s->resp_body;
    return b->available ? b : NULL;
}

static proxy_status_t mbody_size(void *host, void *stream, proxy_buffer_type_t type,
                                 size_t *size) {
    (void)host;
    mh_body *b = body_of(stream, type);
    if (!b)
        return PROXY_RESULT_NOT_FOUND;
    *size = b->len;
    return PROXY_RESULT_OK;
}

static proxy_status_t mbody_copy(void *host, void *stream, proxy_buffer_type_t type, size_t start,
                                 size_t len, void *dst) {
    (void)host;
    mh_body *b = body_of(stream, type);
    if (!b || start + len > b->len)
        return PROXY_RESULT_NOT_FOUND;
    memcpy(dst, b->data + start, len);
    return PROXY_RESULT_OK;
}

static proxy_status_t mbody_replace(void *host, void *stream, proxy_buffer_type_t type,
                                    size_t start, size_t len, pw_str data) {
    (void)host;
    ((mh_stream *)stream)->hook_bytes += data.len;
    mh_body *b = body_of(stream, type);
    if (!b || start + len > b->len || b->len - len + data.len > sizeof b->data)
        return PROXY_RESULT_BAD_ARGUMENT;
    memmove(b->data + start + data.len, b->data + start + len, b->len - start - len);
    memcpy(b->data + start, data.data, data.len);
    b->len = b->len - len + data.len;
    return PROXY_RESULT_OK;
}

static void event(void *stream, const char *fmt, const char *a, int n) {
    mh_stream *s = stream;
    int w = snprintf(s->events + s->events_len, sizeof s->events - s->events_len, fmt, a, n);
    if (w > 0 && s->events_len + (size_t)w < sizeof s->events)
        s->events_len += (size_t)w;
}

/* pw_host_stream_ops.wake: recorded. */
static void mwake(void *host, void *stream) {
    (void)host;
    event(stream, "%swake ", "", 0);
}

static void mdiscarded(void *host) {
    ((mh_host *)host)->discarded++;
}

static proxy_status_t mset_property(void *host, void *stream, const pw_str *path, size_t n,
                                    pw_str value) {
    (void)host;
    if (!stream)
        return PROXY_RESULT_NOT_FOUND; /* no stream properties outside one */
    ((mh_stream *)stream)->hook_bytes += value.len;
    char p[256] = "";
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof p - 1; i++) {
        int w = snprintf(p + o, sizeof p - o, "%s%.*s", i ? "." : "", (int)path[i].len,
                         path[i].data);
        o = w < 0 || o + (size_t)w >= sizeof p ? sizeof p - 1 : o + (size_t)w;
    }
    event(stream, "setprop:%s=%d ", p, (int)value.len);
    return PROXY_RESULT_OK;
}

static void mtrace(void *host, void *stream, pw_str plugin, const char *module, const char *name,
                   const uint64_t *args, size_t nargs, uint64_t result) {
    (void)stream;
    (void)plugin;
    mh_host *h = host;
    char line[512];
    size_t o = (size_t)snprintf(line, sizeof line, "%s.%s(", module, name);
    for (size_t i = 0; i < nargs && o < sizeof line; i++)
        o += (size_t)snprintf(line + o, sizeof line - o, "%s%llu", i ? ", " : "",
                              (unsigned long long)args[i]);
    if (o < sizeof line)
        o +=
            (size_t)snprintf(line + o, sizeof line - o, ") -> %llu\n", (unsigned long long)result);
    if (o < sizeof line && h->trace_len + o < sizeof h->trace_log) {
        memcpy(h->trace_log + h->trace_len, line, o);
        h->trace_len += o;
        h->trace_log[h->trace_len] = 0;
    }
}

static int keq(pw_str a, pw_str b) {
    return a.len == b.len && !strncasecmp(a.data, b.data, a.len);
}

static void mlog(void *host, void *stream, pw_str name, proxy_log_level_t l, pw_str msg) {
    (void)stream;
    mh_host *h = host;
    int n = snprintf(h->log + h->log_len, sizeof h->log - h->log_len, "%.*s|%d|%.*s\n",
                     (int)name.len, name.data, (int)l, (int)msg.len, msg.data);
    if (n > 0 && h->log_len + (size_t)n < sizeof h->log)
        h->log_len += (size_t)n;
}

static proxy_log_level_t mlevel(void *host) {
    return ((mh_host *)host)->level;
}

static proxy_status_t mpairs(void *host, void *stream, proxy_map_type_t map, pw_kv **pairs,
                             size_t *n) {
    (void)host;
    mh_map *m = map_of(stream, map);
    *pairs = m->kv;
    *n = m->n;
    return PROXY_RESULT_OK;
}

static proxy_status_t mget(void *host, void *stream, proxy_map_type_t map, pw_str key,
                           pw_str *value) {
    (void)host;
    mh_map *m = map_of(stream, map);
    for (size_t i = 0; i < m->n; i++)
        if (keq(m->kv[i].key, key)) {
            *value = m->kv[i].value;
            return PROXY_RESULT_OK;
        }
    return PROXY_RESULT_NOT_FOUND;
}

static proxy_status_t madd(void *host, void *stream, proxy_map_type_t map, pw_str key,
                           pw_str value) {
    (void)host;
    ((mh_stream *)stream)->hook_bytes += key.len + value.len;
    mh_map *m = map_of(stream, map);
    if (m->n == MH_MAX_HEADERS)
        return PROXY_RESULT_INTERNAL_FAILURE;
    m->kv[m->n++] = (pw_kv){save(stream, key), save(stream, value)};
    return PROXY_RESULT_OK;
}

static proxy_status_t mremove(void *host, void *stream, proxy_map_type_t map, pw_str key) {
    (void)host;
    mh_map *m = map_of(stream, map);
    size_t o = 0;
    for (size_t i = 0; i < m->n; i++)
        if (!keq(m->kv[i].key, key))
            m->kv[o++] = m->kv[i];
    m->n = o;
    return PROXY_RESULT_OK;
}

static proxy_status_t mreplace(void *host, void *stream, proxy_map_type_t map, pw_str key,
                               pw_str value) {
    mremove(host, stream, map, key);
    return madd(host, stream, map, key, value);
}

static proxy_status_t mset(void *host, void *stream, proxy_map_type_t map, const pw_kv *pairs,
                           size_t n) {
    (void)host;
    map_of(stream, map)->n = 0;
    for (size_t i = 0; i < n; i++)
        madd(host, stream, map, pairs[i].key, pairs[i].value);
    return PROXY_RESULT_OK;
}

static proxy_status_t mprop(void *host, void *stream, const pw_str *path, size_t n,
                            pw_str *value) {
    (void)host;
    mh_stream *s = stream;
    if (s && n == 2 && path[0].len == 7 && !memcmp(path[0].data, "request", 7) &&
        path[1].len == 4 && !memcmp(path[1].data, "path", 4)) {
        for (size_t i = 0; i < s->req.n; i++)
            if (s->req.kv[i].key.len == 5 && !memcmp(s->req.kv[i].key.data, ":path", 5)) {
                *value = s->req.kv[i].value;
                return PROXY_RESULT_OK;
            }
    }
    return PROXY_RESULT_NOT_FOUND;
}

static const pw_host_log_ops mh_log_ops = {.log = mlog, .log_level = mlevel};

static const pw_host_property_ops mh_property_ops = {
    .get_property = mprop,
    .set_property = mset_property,
};

const pw_host_http_ops mh_http_ops = {
    .map_pairs = mpairs,
    .map_get = mget,
    .map_add = madd,
    .map_replace = mreplace,
    .map_remove = mremove,
    .map_set_pairs = mset,
    .body_size = mbody_size,
    .body_copy = mbody_copy,
    .body_replace = mbody_replace,
};

static const pw_host_stream_ops mh_stream_ops = {.wake = mwake};

const pw_host_network_ops mh_network_ops = {
    .data_size = mbody_size,
    .data_copy = mbody_copy,
    .data_replace = mbody_replace,
};

static const pw_host_observe_ops mh_observe_ops = {.vm_discarded = mdiscarded};
static const pw_host_observe_ops mh_observe_traced_ops = {
    .trace = mtrace,
    .vm_discarded = mdiscarded,
};

#define MH_OPS                                                                                    \
    .size = sizeof(pw_host_ops), .log = &mh_log_ops, .property = &mh_property_ops,                \
    .http = &mh_http_ops, .stream = &mh_stream_ops, .network = &mh_network_ops

const pw_host_ops mh_ops = {MH_OPS, .observe = &mh_observe_ops};
const pw_host_ops mh_ops_traced = {MH_OPS, .observe = &mh_observe_traced_ops};
