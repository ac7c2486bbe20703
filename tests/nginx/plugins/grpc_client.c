/*
 * grpc_client: the test plugin of tests/nginx/test_grpc.py. Each request is
 * paused while the plugin makes gRPC calls to the service of the test's
 * .proto (package pwtest, service Echo, message Msg { string text = 1; })
 * and is then answered locally with a report of what the plugin saw, one
 * line per event:
 *
 *   call STATUS TOKEN?       what pw_grpc_call / pw_grpc_stream returned
 *   initial KEY=VALUE        each initial metadata entry
 *   msg TEXT                 each message (Msg.text), or "msg len=N" for
 *                            texts longer than 64 bytes
 *   trailer KEY=VALUE        each trailing metadata entry
 *   close STATUS MESSAGE     on_grpc_close, with pw_get_status's message
 *
 * Plugin configuration: the default target (e.g. "127.0.0.1:50051").
 * Request headers choose what to do:
 *
 *   x-mode     unary (Echo/Unary), server (Echo/ServerStream), bidi
 *              (Echo/Bidi: x-count messages sent at once, then a
 *              half-close), pingpong (Echo/Bidi: one message, the next one
 *              after each answer, then a half-close), fail (Echo/Fail),
 *              slow (Echo/Slow), big (Echo/Big: x-text is the size of
 *              the answer), cancel (a Slow call cancelled at once,
 *              then a second Slow call whose events are reported)
 *   x-text     the request message's text (default "hello")
 *   x-count    messages for bidi / pingpong (default 3)
 *   x-timeout  the unary timeout in ms (default 0: none)
 *   x-target   the target instead of the configured one
 *   x-meta     one initial metadata entry "key=value" sent with the call
 *
 * A Msg is encoded by hand: tag 0x0a, varint length, the bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

/* Per stream context: the report so far and the bidi state. */
struct req {
    char *report;
    size_t len, cap;
    uint32_t token;
    int count, sent;
    int pingpong;
};

static char *target;

static void add(struct req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct req *r, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    if (r->len + n + 2 > r->cap) {
        size_t cap = (r->cap ? r->cap * 2 : 256) + n;
        char *p = realloc(r->report, cap);
        if (!p)
            return;
        r->report = p;
        r->cap = cap;
    }
    memcpy(r->report + r->len, line, n);
    r->len += n;
    r->report[r->len++] = '\n';
}

/* Msg { text } as protobuf. */
static char *encode(const char *text, size_t len, size_t *out_len) {
    char *p = malloc(len + 6);
    size_t i = 0;
    if (!p)
        return NULL;
    p[i++] = 0x0a;
    size_t v = len;
    do {
        unsigned char b = v & 0x7f;
        v >>= 7;
        p[i++] = (char)(v ? b | 0x80 : b);
    } while (v);
    memcpy(p + i, text, len);
    *out_len = i + len;
    return p;
}

/* Msg.text of a message; NULL if malformed. */
static const char *decode(const char *p, size_t n, size_t *len) {
    size_t i = 0;
    while (i < n) {
        unsigned char tag = (unsigned char)p[i++];
        size_t v = 0;
        int shift = 0;
        if ((tag & 7) != 2)
            return NULL;
        while (i < n) {
            unsigned char b = (unsigned char)p[i++];
            v |= (size_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
        }
        if (v > n - i)
            return NULL;
        if (tag == 0x0a) {
            *len = v;
            return p + i;
        }
        i += v;
    }
    *len = 0;
    return "";
}

static proxy_status_t send_text(struct req *r, const char *text, int end) {
    size_t len;
    char *m = encode(text, strlen(text), &len);
    proxy_status_t s = pw_grpc_send(r->token, m, len, end);
    free(m);
    return s;
}

static void answer(uint32_t ctx, struct req *r) {
    pw_set_effective_context(ctx);
    pw_send_local_response(200, r->report, r->len, NULL, 0);
}

static char *header(const char *name) {
    char *v = NULL;
    size_t n = 0;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, name, &v, &n) != PROXY_RESULT_OK) {
        free(v);
        return NULL;
    }
    return v;
}

static int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    (void)size;
    size_t len = 0;
    free(target);
    target = NULL;
    pw_get_plugin_config(&target, &len);
    if (target)
        pw_trim(target);
    return target && *target;
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int eos) {
    (void)nheaders;
    (void)eos;
    struct req *r = calloc(1, sizeof *r);
    char *mode = header("x-mode"), *text = header("x-text"), *count = header("x-count");
    char *timeout = header("x-timeout"), *to = header("x-target"), *meta = header("x-meta");
    const char *up = to ? to : target, *m = mode ? mode : "unary", *t = text ? text : "hello";
    uint32_t ms = timeout ? (uint32_t)strtoul(timeout, NULL, 10) : 0;
    pw_pair_t md[1];
    size_t nmd = 0;
    proxy_status_t s = PROXY_RESULT_OK;
    size_t len;
    char *msg = NULL;

    if (meta && strchr(meta, '=')) {
        char *eq = strchr(meta, '=');
        *eq = '\0';
        md[0] = pw_pair(meta, eq + 1);
        nmd = 1;
    }
    pw_set_context_data(ctx, r);
    r->count = count ? atoi(count) : 3;

    if (!strcmp(m, "unary") || !strcmp(m, "server") || !strcmp(m, "fail") ||
        !strcmp(m, "slow") || !strcmp(m, "big")) {
        const char *method = !strcmp(m, "unary")    ? "Unary"
                             : !strcmp(m, "server") ? "ServerStream"
                             : !strcmp(m, "fail")   ? "Fail"
                             : !strcmp(m, "big")    ? "Big"
                                                    : "Slow";
        msg = encode(t, strlen(t), &len);
        s = pw_grpc_call(up, "pwtest.Echo", method, md, nmd, msg, len, ms, &r->token);
        add(r, "call %d", (int)s);

    } else if (!strcmp(m, "bidi") || !strcmp(m, "pingpong")) {
        s = pw_grpc_stream(up, "pwtest.Echo", "Bidi", md, nmd, &r->token);
        add(r, "call %d", (int)s);
        r->pingpong = !strcmp(m, "pingpong");
        if (s == PROXY_RESULT_OK) {
            char b[32];
            int n = r->pingpong ? 1 : r->count;
            for (int i = 0; i < n; i++) {
                snprintf(b, sizeof b, "b%d", i);
                send_text(r, b, !r->pingpong && i == n - 1);
                r->sent++;
            }
        }

    } else if (!strcmp(m, "cancel")) {
        uint32_t first;
        msg = encode("cancelled:400", 13, &len);
        s = pw_grpc_call(up, "pwtest.Echo", "Slow", md, nmd, msg, len, 0, &first);
        add(r, "call %d", (int)s);
        if (s == PROXY_RESULT_OK)
            add(r, "cancel %d", (int)pw_grpc_cancel(first));
        free(msg);
        msg = encode("second:800", 10, &len);
        s = pw_grpc_call(up, "pwtest.Echo", "Slow", md, nmd, msg, len, 0, &r->token);
        add(r, "call %d", (int)s);
    }

    free(msg);
    free(mode);
    free(text);
    free(count);
    free(timeout);
    free(to);
    free(meta);

    if (s != PROXY_RESULT_OK) {
        answer(ctx, r);
    }
    return PROXY_ACTION_PAUSE;
}

static void on_metadata(uint32_t ctx, proxy_map_type_t map, const char *what) {
    struct req *r = pw_get_context_data(ctx);
    pw_pairs_t p = {0};
    if (!r || pw_get_headers(map, &p) != PROXY_RESULT_OK)
        return;
    for (size_t i = 0; i < p.count; i++)
        add(r, "%s %s=%s", what, p.pairs[i].key, p.pairs[i].value);
    pw_pairs_free(&p);
}

static void on_grpc_initial_metadata(uint32_t ctx, uint32_t token, size_t n) {
    (void)token;
    (void)n;
    on_metadata(ctx, PROXY_MAP_GRPC_RECEIVE_INITIAL_METADATA, "initial");
}

static void on_grpc_trailing_metadata(uint32_t ctx, uint32_t token, size_t n) {
    (void)token;
    (void)n;
    on_metadata(ctx, PROXY_MAP_GRPC_RECEIVE_TRAILING_METADATA, "trailer");
}

static void on_grpc_receive(uint32_t ctx, uint32_t token, size_t size) {
    (void)token;
    struct req *r = pw_get_context_data(ctx);
    char *data = NULL;
    size_t n = 0, len;
    if (!r)
        return;
    pw_get_buffer(PROXY_BUFFER_GRPC_RECEIVE_BUFFER, 0, (uint32_t)size, &data, &n);
    const char *text = decode(data, n, &len);
    if (!text)
        add(r, "msg malformed size=%zu", n);
    else if (len > 64)
        add(r, "msg len=%zu", len);
    else
        add(r, "msg %.*s", (int)len, text);
    free(data);

    if (r->pingpong) {
        if (r->sent < r->count) {
            char b[32];
            snprintf(b, sizeof b, "b%d", r->sent++);
            send_text(r, b, 0);
        } else if (r->sent == r->count) {
            r->sent++;
            add(r, "half-close %d", (int)pw_grpc_close(r->token));
        }
    }
}

static void on_grpc_close(uint32_t ctx, uint32_t token, uint32_t status) {
    (void)token;
    struct req *r = pw_get_context_data(ctx);
    uint32_t code = 0;
    char *message = NULL;
    size_t len = 0;
    if (!r)
        return;
    pw_get_status(&code, &message, &len);
    add(r, "close %u %u %.*s", status, code, (int)len, message ? message : "");
    free(message);
    answer(ctx, r);
}

static void on_delete(uint32_t ctx) {
    struct req *r = pw_get_context_data(ctx);
    if (r) {
        free(r->report);
        free(r);
    }
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_request_headers = on_request_headers,
    .on_grpc_initial_metadata = on_grpc_initial_metadata,
    .on_grpc_receive = on_grpc_receive,
    .on_grpc_trailing_metadata = on_grpc_trailing_metadata,
    .on_grpc_close = on_grpc_close,
    .on_delete = on_delete,
};
