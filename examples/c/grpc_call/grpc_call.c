/*
 * grpc_call: asks a gRPC service about each request before letting it
 * through. Plugin configuration: `TARGET [TIMEOUT_MS]` -- the target of
 * the calls (an nginx upstream{} block, or an allowed host:port; an Envoy
 * cluster) and the timeout of each call (default 1000).
 *
 * For each request, on_request_headers sends check.Check/Allow (see
 * check.proto) a CheckRequest { method, path, authorization } made from the
 * request's headers, and pauses the request. The answer decides:
 *   CheckResponse.allowed true    the request continues, with
 *                                 `x-check-reason: REASON` when a reason
 *                                 was given;
 *   allowed false                 a local 403, body "denied: REASON\n";
 *   any gRPC status but OK        a local 503, body "check failed: STATUS
 *   (timeout, unavailable, ...)   MESSAGE\n" (fail closed).
 * A target the host does not know answers 503 at once.
 *
 * The protobuf messages are small enough to encode and decode by hand: a
 * field is a tag (number << 3 | wire type), then a varint, or for strings
 * a varint length and the bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

struct config {
    char *target;
    uint32_t timeout_ms;
};

/* One request waiting for its answer. */
struct check {
    int allowed;
    char *reason;
};

static size_t put_varint(char *p, uint64_t v) {
    size_t n = 0;
    do {
        unsigned char b = v & 0x7f;
        v >>= 7;
        p[n++] = (char)(v ? b | 0x80 : b);
    } while (v);
    return n;
}

static size_t put_string(char *p, unsigned field, const char *s, size_t len) {
    size_t n = put_varint(p, field << 3 | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, s, len);
    return n + len;
}

static int get_varint(const char *p, size_t len, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *i < len && shift < 64; shift += 7) {
        unsigned char b = (unsigned char)p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

/* CheckResponse { bool allowed = 1; string reason = 2; } into c. */
static int decode_response(const char *p, size_t len, struct check *c) {
    size_t i = 0;
    while (i < len) {
        uint64_t tag, v;
        if (!get_varint(p, len, &i, &tag) || !get_varint(p, len, &i, &v))
            return 0;
        if ((tag & 7) == 0) {
            if (tag >> 3 == 1)
                c->allowed = v != 0;
        } else if ((tag & 7) == 2) {
            if (v > len - i)
                return 0;
            if (tag >> 3 == 2) {
                free(c->reason);
                c->reason = strndup(p + i, v);
            }
            i += v;
        } else {
            return 0; /* no other wire types in this message */
        }
    }
    return 1;
}

static int on_configure(uint32_t root_id, size_t size) {
    (void)size;
    char *text = NULL;
    size_t len = 0;
    unsigned long ms = 1000;
    pw_get_plugin_config(&text, &len);
    char *t = text ? pw_trim(text) : NULL, *sp = t ? strpbrk(t, " \t") : NULL, *end = "";
    if (sp) {
        *sp++ = '\0';
        ms = strtoul(pw_trim(sp), &end, 10);
    }
    struct config *c = calloc(1, sizeof *c);
    const char *why = !c                                  ? "out of memory"
                      : !t || !*t                         ? "expected `TARGET [TIMEOUT_MS]`"
                      : *end || ms == 0 || ms > 3600000 ? "TIMEOUT_MS: expected 1 to 3600000"
                                                          : NULL;
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "grpc_call: %s", why);
        free(text);
        free(c);
        return 0;
    }
    c->target = strdup(t);
    c->timeout_ms = (uint32_t)ms;
    free(text);
    pw_set_context_data(root_id, c);
    pw_logf(PROXY_LOG_INFO, "grpc_call: checking requests with %s (timeout %u ms)", c->target,
            c->timeout_ms);
    return 1;
}

static void on_root_delete(uint32_t root_id) {
    struct config *c = pw_get_context_data(root_id);
    if (c)
        free(c->target);
    free(c);
}

static void answer(uint32_t status, const char *what, const char *detail) {
    size_t a = strlen(what), b = detail ? strlen(detail) : 0;
    char *body = malloc(a + b + 2);
    if (!body)
        return;
    memcpy(body, what, a);
    if (b)
        memcpy(body + a, detail, b);
    body[a + b] = '\n';
    pw_pair_t ct = pw_pair("content-type", "text/plain");
    pw_send_local_response(status, body, a + b + 1, &ct, 1);
    free(body);
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int eos) {
    (void)nheaders;
    (void)eos;
    struct config *c = pw_get_context_data(pw_get_root_id(ctx));
    const char *names[3] = {":method", ":path", "authorization"};
    char *values[3] = {0};
    size_t lens[3] = {0}, total = 0;
    for (int i = 0; i < 3; i++) {
        pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, names[i], &values[i], &lens[i]);
        total += lens[i] + 11; /* tag, length varint */
    }
    char *msg = malloc(total + 1);
    size_t n = 0;
    uint32_t token;
    proxy_status_t s = PROXY_RESULT_INTERNAL_FAILURE;
    if (c && msg) {
        for (int i = 0; i < 3; i++)
            if (lens[i])
                n += put_string(msg + n, i + 1, values[i], lens[i]);
        s = pw_grpc_call(c->target, "check.Check", "Allow", NULL, 0, msg, n, c->timeout_ms,
                         &token);
    }
    free(msg);
    for (int i = 0; i < 3; i++)
        free(values[i]);
    if (s != PROXY_RESULT_OK) {
        pw_logf(PROXY_LOG_WARN, "grpc_call: cannot call %s (status %d)", c ? c->target : "?",
                (int)s);
        answer(503, "check failed: no such target", NULL);
        return PROXY_ACTION_PAUSE;
    }
    pw_set_context_data(ctx, calloc(1, sizeof(struct check)));
    return PROXY_ACTION_PAUSE;
}

static void on_grpc_receive(uint32_t ctx, uint32_t token, size_t size) {
    (void)token;
    struct check *c = pw_get_context_data(ctx);
    char *data = NULL;
    size_t len = 0;
    if (!c)
        return;
    pw_get_buffer(PROXY_BUFFER_GRPC_RECEIVE_BUFFER, 0, (uint32_t)size, &data, &len);
    if (!decode_response(data, len, c))
        c->allowed = 0, c->reason = strdup("malformed answer");
    free(data);
}

static void on_grpc_close(uint32_t ctx, uint32_t token, uint32_t status) {
    (void)token;
    struct check *c = pw_get_context_data(ctx);
    if (!c)
        return;
    if (status != 0) {
        char *message = NULL, detail[256];
        size_t len = 0;
        uint32_t st;
        pw_get_status(&st, &message, &len);
        snprintf(detail, sizeof detail, "%u %.*s", status, (int)len, message ? message : "");
        answer(503, "check failed: ", detail);
        free(message);
    } else if (c->allowed) {
        if (c->reason && *c->reason)
            pw_add_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-check-reason", c->reason);
        pw_continue_request();
    } else {
        answer(403, "denied: ", c->reason ? c->reason : "");
    }
}

static void on_delete(uint32_t ctx) {
    struct check *c = pw_get_context_data(ctx);
    if (c)
        free(c->reason);
    free(c);
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = on_root_delete,
    .on_request_headers = on_request_headers,
    .on_grpc_receive = on_grpc_receive,
    .on_grpc_close = on_grpc_close,
    .on_delete = on_delete,
};
