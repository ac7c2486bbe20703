/*
 * callout.wasm -- HTTP callouts for the nginx tests (the C SDK with its
 * dispatch: pw_plugin_t.on_http_call_response).
 *
 * A request carrying `x-call: TARGET` makes, from on_request_headers, one
 * call to TARGET (`x-call-count: N`: N calls at once) and pauses:
 *   x-call-path      :path (default /auth)
 *   x-call-scheme    :scheme (http, https; default none)
 *   x-call-authority :authority (default "auth.test")
 *   x-call-timeout   timeout in ms (default 0: none)
 *   x-call-body      sends this body (POST)
 *   x-call-trailer   `name=value`: sends this request trailer
 *                    (pw_http_call_with_trailers; nginx sends the body
 *                    chunked)
 *   x-call-trap      `1`: the plugin traps in the callback of a failed
 *                    call (its VM is discarded, its other calls cancelled)
 *   authorization    forwarded
 * A refused call is answered locally: 500 "refused <status>\n".
 * One call's answer: 200 -> the request continues with the request headers
 * x-auth-status (the answer's status), x-auth-body (its body) and
 * x-auth-trailer (trailer x-check) when present; 401 and 403 -> a local
 * response of that status, "denied <status>\n"; other statuses -> 502; a
 * failure (callback with zeros) -> 504 "callout failed: <reason>\n".
 * N calls: when all are answered, 200 "answered <n> ok <n200> failed
 * <nfail>\n".
 *
 * A request with `x-read: KEY` is answered 200 with shared data KEY.
 *
 * Plugin configuration (root context): `tick=MS target=T path=P`: on every
 * tick a call to T (authority auth.test); its answer's body goes to shared
 * data "token" (the tick stops after the first answer).
 *
 * Log lines (INFO): "callout: response ctx=<id> token=<t> status=<s>
 * headers=<n> body=<n> trailers=<n>", "callout: failed ctx=<id>
 * token=<t> reason=<r>".
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define UNUSED(x) (void)(x)
#define LOG(...) pw_logf(PROXY_LOG_INFO, "callout: " __VA_ARGS__)

/* Per stream: calls outstanding and their results (N calls). */
typedef struct {
    uint32_t pending, n, ok, failed, trap;
} calls_t;

static char tick_target[128], tick_path[128];
static int tick_done, tick_inflight;

static char *header(const char *name, char *dflt) {
    char *v = NULL;
    size_t n = 0;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, name, &v, &n) != PROXY_RESULT_OK || !v) {
        free(v);
        return dflt ? strdup(dflt) : NULL;
    }
    return v;
}

static void local(uint32_t status, const char *text) {
    pw_send_local_response(status, text, strlen(text), NULL, 0);
}

static proxy_status_t call(const char *target, const char *scheme, const char *path,
                           const char *authority, const char *auth, uint32_t timeout,
                           const char *body, const char *trailer, uint32_t *token) {
    pw_pair_t h[6], t[1];
    size_t nt = 0;
    char tname[128];
    size_t n = 0;
    h[n++] = pw_pair(":method", body ? "POST" : "GET");
    h[n++] = pw_pair(":path", path);
    h[n++] = pw_pair(":authority", authority);
    if (scheme)
        h[n++] = pw_pair(":scheme", scheme);
    if (auth)
        h[n++] = pw_pair("authorization", auth);
    h[n++] = pw_pair("x-from", "pwasm");
    if (trailer && strchr(trailer, '=')) {
        pw_snprintf(tname, sizeof tname, "%.*s", (int)(strchr(trailer, '=') - trailer), trailer);
        t[nt++] = pw_pair(tname, strchr(trailer, '=') + 1);
    }
    return pw_http_call_with_trailers(target, h, n, body, body ? strlen(body) : 0, t, nt, timeout,
                                      token);
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int eos) {
    UNUSED(nheaders), UNUSED(eos);
    char *key = header("x-read", NULL);
    if (key) {
        char *v = NULL;
        size_t n = 0;
        uint32_t cas = 0;
        proxy_status_t st = pw_get_shared_data(key, &v, &n, &cas);
        char out[512];
        pw_snprintf(out, sizeof out, "%s %.*s\n", st == PROXY_RESULT_OK ? "found" : "missing",
                    (int)n, v ? v : "");
        local(200, out);
        free(v);
        free(key);
        return PROXY_ACTION_PAUSE;
    }

    char *target = header("x-call", NULL);
    if (!target)
        return PROXY_ACTION_CONTINUE;
    char *path = header("x-call-path", "/auth");
    char *scheme = header("x-call-scheme", NULL);
    char *authority = header("x-call-authority", "auth.test");
    char *timeout = header("x-call-timeout", "0");
    char *count = header("x-call-count", "1");
    char *body = header("x-call-body", NULL);
    char *trailer = header("x-call-trailer", NULL);
    char *trap = header("x-call-trap", NULL);
    char *auth = header("authorization", NULL);

    calls_t *c = calloc(1, sizeof *c);
    c->n = (uint32_t)atoi(count);
    c->trap = trap != NULL;
    proxy_action_t action = PROXY_ACTION_PAUSE;
    for (uint32_t i = 0; i < c->n; i++) {
        uint32_t token = 0;
        proxy_status_t st = call(target, scheme, path, authority, auth, (uint32_t)atoi(timeout),
                                 body, trailer, &token);
        if (st != PROXY_RESULT_OK) {
            char out[64];
            pw_snprintf(out, sizeof out, "refused %d\n", (int)st);
            LOG("refused ctx=%u status=%d", ctx, (int)st);
            if (c->pending == 0) {
                local(500, out);
                free(c);
                c = NULL;
            }
            break;
        }
        c->pending++;
    }
    if (c)
        pw_set_context_data(ctx, c);
    free(target), free(path), free(scheme), free(authority), free(timeout), free(count);
    free(body), free(auth), free(trailer), free(trap);
    return action;
}

static void on_delete(uint32_t ctx) {
    free(pw_get_context_data(ctx));
}

static void on_http_call_response(uint32_t ctx, uint32_t token, size_t nheaders, size_t body_size,
                                  size_t ntrailers) {
    char *status = NULL, *body = NULL, *trailer = NULL;
    size_t slen = 0, blen = 0, tlen = 0;

    if (nheaders == 0) {
        uint32_t code = 0;
        char *msg = NULL;
        size_t mlen = 0;
        pw_get_status(&code, &msg, &mlen);
        LOG("failed ctx=%u token=%u code=%u reason=%.*s", ctx, token, code, (int)mlen,
            msg ? msg : "");
        if (pw_get_root_id(ctx) == ctx) { /* a tick's call */
            tick_inflight = 0;
            free(msg);
            return;
        }
        calls_t *c = pw_get_context_data(ctx);
        if (c && c->trap)
            __builtin_trap();
        if (c && c->n > 1) {
            c->failed++;
        } else {
            char out[128];
            pw_snprintf(out, sizeof out, "callout failed: %.*s\n", (int)mlen, msg ? msg : "");
            local(504, out);
        }
        free(msg);
        goto summary;
    }

    pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status", &status, &slen);
    pw_get_buffer(PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY, 0, (uint32_t)body_size, &body, &blen);
    if (ntrailers)
        pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS, "x-check", &trailer, &tlen);
    LOG("response ctx=%u token=%u status=%s headers=%zu body=%zu trailers=%zu", ctx, token,
        status ? status : "-", nheaders, body_size, ntrailers);

    if (pw_get_root_id(ctx) == ctx) { /* a tick's call: share the body */
        pw_set_shared_data("token", body ? body : "", blen, 0);
        tick_done = 1;
        tick_inflight = 0;
        pw_set_tick_period(0);
        goto out;
    }

    calls_t *c = pw_get_context_data(ctx);
    int code = status ? atoi(status) : 0;
    if (c && c->n > 1) {
        if (code == 200)
            c->ok++;
        else
            c->failed++;
        goto summary;
    }
    if (code == 200) {
        pw_add_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-auth-status", status);
        if (body) {
            char b[256];
            pw_snprintf(b, sizeof b, "%.*s", (int)(blen < 200 ? blen : 200), body);
            for (char *p = b; *p; p++)
                if (*p == '\n' || *p == '\r')
                    *p = ' ';
            pw_add_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-auth-body", b);
        }
        if (trailer)
            pw_add_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-auth-trailer", trailer);
        pw_continue_request();
    } else {
        char out[64];
        pw_snprintf(out, sizeof out, "denied %d\n", code);
        local(code == 401 || code == 403 ? (uint32_t)code : 502, out);
    }
    goto out;

summary:;
    calls_t *s = pw_get_context_data(ctx);
    if (s && s->n > 1 && --s->pending == 0) {
        char out[96];
        pw_snprintf(out, sizeof out, "answered %u ok %u failed %u\n", s->n, s->ok, s->failed);
        local(200, out);
    }
out:
    free(status);
    free(body);
    free(trailer);
}

/* "key=value" words of the configuration into the tick settings. */
static int on_configure(uint32_t root_id, size_t size) {
    UNUSED(root_id), UNUSED(size);
    char *cfg = NULL;
    size_t n = 0;
    uint32_t tick = 0;
    if (pw_get_plugin_config(&cfg, &n) != PROXY_RESULT_OK || !cfg)
        return 1;
    for (char *w = strtok(cfg, " "); w; w = strtok(NULL, " ")) {
        if (!strncmp(w, "tick=", 5))
            tick = (uint32_t)atoi(w + 5);
        else if (!strncmp(w, "target=", 7))
            pw_snprintf(tick_target, sizeof tick_target, "%s", w + 7);
        else if (!strncmp(w, "path=", 5))
            pw_snprintf(tick_path, sizeof tick_path, "%s", w + 5);
    }
    free(cfg);
    if (tick)
        pw_set_tick_period(tick);
    return 1;
}

static void on_tick(uint32_t root_id) {
    UNUSED(root_id);
    uint32_t token;
    if (tick_done || tick_inflight)
        return;
    proxy_status_t st = call(tick_target, NULL, tick_path[0] ? tick_path : "/token", "auth.test",
                             NULL, 2000, NULL, NULL, &token);
    tick_inflight = st == PROXY_RESULT_OK;
    LOG("tick call status=%d", (int)st);
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_tick = on_tick,
    .on_request_headers = on_request_headers,
    .on_delete = on_delete,
    .on_http_call_response = on_http_call_response,
};
