/*
 * auth_callout: asks an auth service about each request. The selected
 * request headers go to the service in an HTTP callout; the request waits
 * (Pause) for the answer: 200 lets it through with a header taken from
 * the answer, 401 or 403 is answered to the client (any other status:
 * 403), a failure or a timeout gets 503 (configurable).
 *
 * Plugin configuration, a JSON object (every key but upstream optional):
 *
 *   {"upstream": "auth_service",      the cluster / nginx upstream {} block
 *    "path": "/auth",                 :path of the call
 *    "authority": "auth",             :authority (default: the upstream)
 *    "timeout_ms": 1000,              0: none
 *    "headers": ["authorization", "cookie"],   request headers forwarded
 *    "user_header": "x-auth-user",    answer header copied to the request
 *    "failure_status": 503}           on a failure or timeout
 *
 * The answer's user_header is added to the request under the same name
 * (after removing any the client sent, so it cannot be forged).
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define MAX_FORWARD 16

struct config {
    char *upstream, *path, *authority, *user_header;
    char *forward[MAX_FORWARD];
    size_t nforward;
    uint32_t timeout_ms, failure_status;
};

static struct config cfg;

/* ------------------------------------------------ a small JSON reader:
 * one object of strings, integers and arrays of strings. */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* A JSON string (escapes \" \\ \/ only) into a malloc'ed C string. */
static const char *jstring(const char *p, char **out) {
    if (*p != '"')
        return NULL;
    const char *s = ++p;
    while (*p && *p != '"')
        p += *p == '\\' && p[1] ? 2 : 1;
    if (*p != '"')
        return NULL;
    char *o = malloc((size_t)(p - s) + 1), *w = o;
    for (const char *r = s; r < p; r++)
        *w++ = *r == '\\' ? *++r : *r;
    *w = 0;
    *out = o;
    return p + 1;
}

static const char *set_value(const char *key, const char *p, const char **why) {
    if (!strcmp(key, "timeout_ms") || !strcmp(key, "failure_status")) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v > 86400000) {
            *why = "expected a number";
            return NULL;
        }
        *(!strcmp(key, "timeout_ms") ? &cfg.timeout_ms : &cfg.failure_status) = (uint32_t)v;
        return end;
    }
    if (!strcmp(key, "headers")) {
        if (*p != '[')
            return *why = "headers: expected a list of header names", NULL;
        for (p = ws(p + 1); *p != ']';) {
            char *name;
            if (!(p = jstring(p, &name)) || cfg.nforward == MAX_FORWARD) {
                *why = "headers: expected at most 16 names";
                return NULL;
            }
            for (char *c = name; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c + 32);
            cfg.forward[cfg.nforward++] = name;
            p = ws(p);
            if (*p == ',')
                p = ws(p + 1);
        }
        return p + 1;
    }
    char **dst = !strcmp(key, "upstream")      ? &cfg.upstream
                 : !strcmp(key, "path")        ? &cfg.path
                 : !strcmp(key, "authority")   ? &cfg.authority
                 : !strcmp(key, "user_header") ? &cfg.user_header
                                               : NULL;
    if (!dst) {
        *why = "unknown key";
        return NULL;
    }
    free(*dst);
    if (!(p = jstring(p, dst)))
        *why = "expected a string";
    return p;
}

static const char *parse(const char *p) {
    const char *why = "expected a JSON object";
    if (*(p = ws(p)) != '{')
        return why;
    for (p = ws(p + 1); *p != '}';) {
        char *key;
        if (!(p = jstring(p, &key)) || *(p = ws(p)) != ':')
            return "expected \"key\": value";
        p = set_value(key, ws(p + 1), &why);
        if (!p) {
            pw_logf(PROXY_LOG_ERROR, "auth_callout: %s: %s", key, why);
            free(key);
            return why;
        }
        free(key);
        p = ws(p);
        if (*p == ',')
            p = ws(p + 1);
        else if (*p != '}')
            return "expected , or }";
    }
    return cfg.upstream ? NULL : "upstream: required";
}

static char *or_default(char *v, const char *dflt) {
    return v ? v : strdup(dflt);
}

static int on_configure(uint32_t root_id, size_t size) {
    (void)size;
    char *text = NULL;
    size_t len = 0;
    pw_get_plugin_config(&text, &len);
    cfg.timeout_ms = 1000;
    cfg.failure_status = 503;
    const char *why = text && strlen(text) == len ? parse(text) : "expected a JSON object";
    free(text);
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "auth_callout: bad configuration: %s", why);
        return 0;
    }
    cfg.path = or_default(cfg.path, "/auth");
    cfg.authority = or_default(cfg.authority, cfg.upstream);
    cfg.user_header = or_default(cfg.user_header, "x-auth-user");
    if (!cfg.nforward) {
        cfg.forward[cfg.nforward++] = strdup("authorization");
        cfg.forward[cfg.nforward++] = strdup("cookie");
    }
    pw_logf(PROXY_LOG_INFO, "auth_callout: root %u asks %s%s (%zu headers, timeout %u ms)",
            root_id, cfg.upstream, cfg.path, cfg.nforward, cfg.timeout_ms);
    return 1;
}

/* ------------------------------------------------------------ requests */

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int eos) {
    (void)nheaders;
    (void)eos;
    pw_pair_t h[3 + MAX_FORWARD];
    char *values[MAX_FORWARD];
    size_t n = 0, nv = 0;
    h[n++] = pw_pair(":method", "GET");
    h[n++] = pw_pair(":path", cfg.path);
    h[n++] = pw_pair(":authority", cfg.authority);
    for (size_t i = 0; i < cfg.nforward; i++) {
        char *v;
        size_t len;
        if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, cfg.forward[i], &v, &len) !=
            PROXY_RESULT_OK)
            continue;
        values[nv++] = v;
        h[n] = pw_pair(cfg.forward[i], "");
        h[n].value = v ? v : "";
        h[n++].value_len = len;
    }
    /* The client may not choose the user. */
    pw_remove_header(PROXY_MAP_HTTP_REQUEST_HEADERS, cfg.user_header);
    uint32_t token;
    proxy_status_t st = pw_http_call(cfg.upstream, h, n, NULL, 0, cfg.timeout_ms, &token);
    for (size_t i = 0; i < nv; i++)
        free(values[i]);
    if (st != PROXY_RESULT_OK) {
        pw_logf(PROXY_LOG_ERROR, "auth_callout: context %u: cannot call %s: status %d", ctx,
                cfg.upstream, st);
        pw_send_local_response(cfg.failure_status, "auth service unavailable\n", 25, NULL, 0);
        return PROXY_ACTION_PAUSE;
    }
    pw_logf(PROXY_LOG_DEBUG, "auth_callout: context %u: asking %s (token %u)", ctx, cfg.upstream,
            token);
    return PROXY_ACTION_PAUSE;
}

static void on_http_call_response(uint32_t ctx, uint32_t token, size_t nheaders,
                                  size_t body_size, size_t ntrailers) {
    (void)token;
    (void)body_size;
    (void)ntrailers;
    if (!nheaders) {
        uint32_t code;
        char *msg;
        size_t len;
        pw_get_status(&code, &msg, &len);
        pw_logf(PROXY_LOG_WARN, "auth_callout: context %u: auth service failed: %.*s", ctx,
                (int)len, msg ? msg : "");
        free(msg);
        pw_send_local_response(cfg.failure_status, "auth service unavailable\n", 25, NULL, 0);
        return;
    }
    char *status = NULL, *user = NULL;
    size_t slen = 0, ulen = 0;
    pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status", &status, &slen);
    int code = status ? atoi(status) : 0;
    free(status);
    if (code == 200) {
        if (pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, cfg.user_header, &user, &ulen) ==
                PROXY_RESULT_OK &&
            user) {
            user[ulen] = 0;
            pw_replace_header(PROXY_MAP_HTTP_REQUEST_HEADERS, cfg.user_header, user);
        }
        free(user);
        pw_logf(PROXY_LOG_DEBUG, "auth_callout: context %u: allowed", ctx);
        pw_continue_request();
        return;
    }
    uint32_t answer = code == 401 || code == 403 ? (uint32_t)code : 403;
    pw_logf(PROXY_LOG_DEBUG, "auth_callout: context %u: denied (%d), answering %u", ctx, code,
            answer);
    pw_pair_t h[] = {pw_pair("www-authenticate", "Bearer")};
    if (answer == 401)
        pw_send_local_response(401, "unauthorized\n", 13, h, 1);
    else
        pw_send_local_response(403, "forbidden\n", 10, NULL, 0);
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_request_headers = on_request_headers,
    .on_http_call_response = on_http_call_response,
};
