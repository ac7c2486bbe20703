/*
 * filter.wasm -- a scriptable HTTP filter for the nginx tests (raw exports,
 * the C SDK's helpers and hostcalls only).
 *
 * What it does is a list of space-separated rules, from the plugin
 * configuration and then from the request header `x-pw`:
 *
 *   <callback>.<action>[=<argument>]
 *
 * callbacks: reqh reqb resph respb respt log (request/response headers,
 * bodies, response trailers, on_log). Actions, applied in order:
 *
 *   pause        return Pause (StopIteration / StopIterationAndBuffer)
 *   buffer       bodies: return Pause until end_of_stream (whole body)
 *   upper        upper-case the body buffer (whole buffer, each call)
 *   upper_eos    the same, only at end_of_stream
 *   prepend=S    insert S at offset 0 (set_buffer_bytes(0, 0))
 *   append=S     at end_of_stream, append S (set_buffer_bytes(size, 0))
 *   replace=S    at end_of_stream, replace the whole buffer by S;
 *                before it, replace the chunk by nothing
 *   splice=O,L,S replace L bytes at offset O by S
 *   truncate=N   at end_of_stream, keep the first N bytes
 *   local=CODE   send_local_response(CODE, body "local from <cb>\n",
 *                header x-local: <cb>), return Pause (if it returned Ok)
 *   localhdr=N:V send_local_response(200, body "local\n", header N: V),
 *                return Pause (if it returned Ok)
 *   header=N:V   replace header N of this callback's map (:path, :status,
 *                :authority, :method work too); request map for reqh/reqb
 *   trailer=N:V  at end_of_stream, add a response trailer (map 3)
 *   continue     proxy_continue_stream(this direction), then return Pause
 *   close        proxy_close_stream(this direction)
 *   trap         trap (wasm `unreachable`): the VM is discarded
 *   resume       set_effective_context(request header x-resume-ctx) then
 *                continue_stream(x-resume-dir: 0 request, 1 response)
 *   remote_local=CODE  set_effective_context(x-resume-ctx) then
 *                send_local_response(CODE, "remote\n") for that request
 *   grpc=N       send_local_response(200, body "grpc", grpc_status N; -1:
 *                none), return Pause
 *   prop=PATH    log the property (PATH dotted; split on '.')
 *   setprop=P:V  proxy_set_property(P, V)
 *   body         log the body buffer: size, FNV-1a hash, first 32 bytes
 *   trailers     log the response trailers
 *   headers      log the map of this callback (request for reqh/reqb/log)
 *   bighdr=N,S   replace header x-big of this callback's map N times with
 *                S bytes of 'v'; logs "filter: bighdr ok=<n> bad=<n>"
 *   bigname=S    add a header with an S-byte name (of 'n') to the map
 *   flood=N      proxy_log "filter: flood <i>" N times (INFO)
 *   forge        proxy_log "forged\n<date> [emerg] 1#1: fake\r\0end" (INFO)
 *
 * Log lines (INFO):
 *   filter: <cb> ctx=<id> size=<n> eos=<e>
 *   filter: prop <path> <status> <hex value>
 *   filter: body <cb> ctx=<id> size=<n> hash=<hex> head=<text>
 *   filter: map <map> <k>=<v> ...
 *   filter: action <action> <status>
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define LOG(...) pw_logf(PROXY_LOG_INFO, "filter: " __VA_ARGS__)

enum { REQH, REQB, RESPH, RESPB, RESPT, LOGCB };
static const char *cb_names[] = {"reqh", "reqb", "resph", "respb", "respt", "log"};

/* root configurations, by root context id */
#define MAX_ROOTS 16
static struct { uint32_t id; char *config; } roots[MAX_ROOTS];
/* stream context -> root */
#define MAX_CTX 1024
static struct { uint32_t id, root; } ctxs[MAX_CTX];

static const char *root_config(uint32_t ctx)
{
    uint32_t root = 0;
    for (int i = 0; i < MAX_CTX; i++)
        if (ctxs[i].id == ctx) root = ctxs[i].root;
    for (int i = 0; i < MAX_ROOTS; i++)
        if (roots[i].id == root && root) return roots[i].config ? roots[i].config : "";
    return "";
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {
    if (parent == 0) return;
    for (int i = 0; i < MAX_CTX; i++)
        if (ctxs[i].id == 0) { ctxs[i].id = ctx; ctxs[i].root = parent; return; }
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
    (void)root; (void)size;
    return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
    (void)size;
    char *config; size_t len;
    pw_get_plugin_config(&config, &len);
    for (int i = 0; i < MAX_ROOTS; i++)
        if (roots[i].id == 0 || roots[i].id == root) {
            roots[i].id = root;
            roots[i].config = config;   /* NUL-terminated by the SDK allocator */
            break;
        }
    return 1;
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {
    for (int i = 0; i < MAX_CTX; i++)
        if (ctxs[i].id == ctx) ctxs[i].id = 0;
}

static int streq(const char *a, size_t alen, const char *b) {
    return alen == strlen(b) && memcmp(a, b, alen) == 0;
}

static uint32_t parse_u32(const char *s, size_t len) {
    uint32_t n = 0;
    for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) n = n * 10 + (s[i] - '0');
    return n;
}

static void log_body(int cb, uint32_t ctx, proxy_buffer_type_t type) {
    char *data; size_t size;
    proxy_status_t st = pw_get_buffer(type, 0, 0xFFFFFFFF, &data, &size);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) { h ^= (unsigned char)data[i]; h *= 1099511628211ull; }
    char head[33];
    size_t n = size < 32 ? size : 32;
    for (size_t i = 0; i < n; i++) head[i] = (data[i] >= ' ' && data[i] < 127) ? data[i] : '.';
    head[n] = 0;
    LOG("body %s ctx=%u status=%d size=%zu hash=%016llx head=%s", cb_names[cb], ctx, st, size,
        (unsigned long long)h, head);
    free(data);
}

static void log_map(proxy_map_type_t map) {
    pw_pairs_t p = {0};
    proxy_status_t st = pw_get_headers(map, &p);
    char line[2048]; size_t off = 0;
    off += pw_snprintf(line + off, sizeof line - off, "map %d %d", map, st);
    for (size_t i = 0; i < p.count && off < sizeof line - 1; i++)
        off += pw_snprintf(line + off, sizeof line - off, " %.*s=%.*s", (int)p.pairs[i].key_len,
                           p.pairs[i].key, (int)p.pairs[i].value_len, p.pairs[i].value);
    LOG("%s", line);
    pw_pairs_free(&p);
}

static void log_prop(const char *path, size_t len) {
    char buf[256]; const char *segs[16]; size_t n = 0;
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, path, len); buf[len] = 0;
    segs[n++] = buf;
    for (size_t i = 0; i < len && n < 16; i++)
        if (buf[i] == '.' && !(n == 1 && strcmp(segs[0], "ngx") == 0 && 0)) { buf[i] = 0; segs[n++] = buf + i + 1; }
    /* ngx.<variable>: the variable name never has a dot, keep 2 segments */
    char *value; size_t size;
    proxy_status_t st = pw_get_property(segs, n, &value, &size);
    char hex[513]; size_t m = size < 256 ? size : 256;
    for (size_t i = 0; i < m; i++) pw_snprintf(hex + 2 * i, 3, "%02x", (unsigned char)value[i]);
    hex[2 * m] = 0;
    LOG("prop %.*s %d %s", (int)len, path, st, hex);
    free(value);
}

/* Applies the rules for callback cb; returns the action to return. */
static uint32_t run(int cb, uint32_t ctx, size_t size, int eos, const char *rules) {
    uint32_t ret = PROXY_ACTION_CONTINUE;
    proxy_buffer_type_t buf = (cb == REQB) ? PROXY_BUFFER_HTTP_REQUEST_BODY : PROXY_BUFFER_HTTP_RESPONSE_BODY;
    proxy_map_type_t map = (cb == REQH || cb == REQB || cb == LOGCB) ? PROXY_MAP_HTTP_REQUEST_HEADERS
                                                                     : PROXY_MAP_HTTP_RESPONSE_HEADERS;
    proxy_stream_type_t dir = (cb == REQH || cb == REQB) ? PROXY_STREAM_HTTP_REQUEST : PROXY_STREAM_HTTP_RESPONSE;
    const char *p = rules;
    while (*p) {
        while (*p == ' ') p++;
        const char *tok = p;
        while (*p && *p != ' ') p++;
        size_t toklen = p - tok;
        if (!toklen) continue;
        const char *dot = memchr(tok, '.', toklen);
        if (!dot || !streq(tok, dot - tok, cb_names[cb])) continue;
        const char *act = dot + 1;
        size_t actlen = tok + toklen - act;
        const char *eq = memchr(act, '=', actlen);
        const char *arg = eq ? eq + 1 : "";
        size_t arglen = eq ? (size_t)(tok + toklen - arg) : 0;
        if (eq) actlen = eq - act;
        proxy_status_t st = PROXY_RESULT_OK;

        if (streq(act, actlen, "pause")) {
            ret = PROXY_ACTION_PAUSE;
        } else if (streq(act, actlen, "buffer")) {
            if (!eos) ret = PROXY_ACTION_PAUSE;
        } else if (streq(act, actlen, "upper") || (streq(act, actlen, "upper_eos") && eos)) {
            char *data; size_t n;
            st = pw_get_buffer(buf, 0, 0xFFFFFFFF, &data, &n);
            if (st == PROXY_RESULT_OK && n) {
                for (size_t i = 0; i < n; i++)
                    if (data[i] >= 'a' && data[i] <= 'z') data[i] -= 32;
                st = proxy_set_buffer_bytes(buf, 0, n, data, n);
            }
            free(data);
        } else if (streq(act, actlen, "prepend")) {
            if (size || eos) st = proxy_set_buffer_bytes(buf, 0, 0, arg, arglen);
        } else if (streq(act, actlen, "append")) {
            if (eos) st = proxy_set_buffer_bytes(buf, 0x7FFFFFFF, 0, arg, arglen);
        } else if (streq(act, actlen, "replace")) {
            st = proxy_set_buffer_bytes(buf, 0, 0x7FFFFFFF, eos ? arg : "", eos ? arglen : 0);
        } else if (streq(act, actlen, "splice")) {
            const char *c1 = memchr(arg, ',', arglen);
            const char *c2 = c1 ? memchr(c1 + 1, ',', arg + arglen - c1 - 1) : NULL;
            if (c2)
                st = proxy_set_buffer_bytes(buf, parse_u32(arg, c1 - arg), parse_u32(c1 + 1, c2 - c1 - 1),
                                            c2 + 1, arg + arglen - c2 - 1);
        } else if (streq(act, actlen, "truncate")) {
            if (eos) {
                uint32_t keep = parse_u32(arg, arglen);
                size_t n; uint32_t flags;
                proxy_get_buffer_status(buf, &n, &flags);
                if (keep < n) st = proxy_set_buffer_bytes(buf, keep, n - keep, "", 0);
            }
        } else if (streq(act, actlen, "local")) {
            char body[64];
            int blen = pw_snprintf(body, sizeof body, "local from %s\n", cb_names[cb]);
            pw_pair_t h = pw_pair("x-local", cb_names[cb]);
            st = pw_send_local_response(parse_u32(arg, arglen), body, blen, &h, 1);
            if (st == PROXY_RESULT_OK) ret = PROXY_ACTION_PAUSE;
        } else if (streq(act, actlen, "localhdr")) {
            const char *colon = arglen > 1 ? memchr(arg + 1, ':', arglen - 1) : NULL;
            if (colon) {
                pw_pair_t h = {arg, colon - arg, colon + 1, arg + arglen - colon - 1};
                st = pw_send_local_response(200, "local\n", 6, &h, 1);
                if (st == PROXY_RESULT_OK) ret = PROXY_ACTION_PAUSE;
            }
        } else if (streq(act, actlen, "header") || streq(act, actlen, "trailer")) {
            const char *colon = arglen > 1 ? memchr(arg + 1, ':', arglen - 1) : NULL;
            if (colon) {
                proxy_map_type_t m = streq(act, actlen, "trailer") ? PROXY_MAP_HTTP_RESPONSE_TRAILERS : map;
                if (m == PROXY_MAP_HTTP_RESPONSE_TRAILERS) {
                    if (eos) /* once, with the last body data or in on_response_trailers */
                        st = proxy_add_header_map_value(m, arg, colon - arg, colon + 1,
                                                        arg + arglen - colon - 1);
                } else
                    st = proxy_replace_header_map_value(m, arg, colon - arg, colon + 1, arg + arglen - colon - 1);
            }
        } else if (streq(act, actlen, "continue")) {
            st = proxy_continue_stream(dir);
            ret = PROXY_ACTION_PAUSE;
        } else if (streq(act, actlen, "close")) {
            st = proxy_close_stream(dir);
        } else if (streq(act, actlen, "trap")) {
            __builtin_trap();
        } else if (streq(act, actlen, "resume")) {
            char *id, *d; size_t idlen, dlen;
            if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-resume-ctx", &id, &idlen) == PROXY_RESULT_OK) {
                uint32_t target = parse_u32(id, idlen), rdir = 0;
                if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-resume-dir", &d, &dlen) == PROXY_RESULT_OK) {
                    rdir = parse_u32(d, dlen);
                    free(d);
                }
                st = proxy_set_effective_context(target);
                if (st == PROXY_RESULT_OK) st = proxy_continue_stream(rdir);
                free(id);
            } else {
                st = PROXY_RESULT_NOT_FOUND;
            }
        } else if (streq(act, actlen, "remote_local")) {
            /* answer another request (context id in x-resume-ctx) */
            char *id; size_t idlen;
            st = pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-resume-ctx", &id, &idlen);
            if (st == PROXY_RESULT_OK) {
                st = proxy_set_effective_context(parse_u32(id, idlen));
                if (st == PROXY_RESULT_OK)
                    st = pw_send_local_response(parse_u32(arg, arglen), "remote\n", 7, NULL, 0);
                free(id);
            }
        } else if (streq(act, actlen, "grpc")) {
            /* local response 200 with grpc-status N (-1: none) */
            int32_t g = (arglen && arg[0] == '-') ? -1 : (int32_t)parse_u32(arg, arglen);
            st = proxy_send_local_response(200, "", 0, "grpc", 4, NULL, 0, g);
            ret = PROXY_ACTION_PAUSE;
        } else if (streq(act, actlen, "prop")) {
            log_prop(arg, arglen);
        } else if (streq(act, actlen, "setprop")) {
            const char *colon = memchr(arg, ':', arglen);
            if (colon) {
                char path[128]; size_t plen = colon - arg < 127 ? (size_t)(colon - arg) : 127;
                memcpy(path, arg, plen);
                for (size_t i = 0; i < plen; i++) if (path[i] == '.') path[i] = 0;
                st = proxy_set_property(path, plen, colon + 1, arg + arglen - colon - 1);
            }
        } else if (streq(act, actlen, "bighdr")) {
            const char *c1 = memchr(arg, ',', arglen);
            uint32_t times = parse_u32(arg, arglen), n = c1 ? parse_u32(c1 + 1, arg + arglen - c1 - 1) : 0;
            char *v = malloc(n ? n : 1);
            int ok = 0, bad = 0;
            if (v) memset(v, 'v', n);
            for (uint32_t i = 0; v && i < times; i++) {
                st = proxy_replace_header_map_value(map, "x-big", 5, v, n);
                if (st == PROXY_RESULT_OK) ok++; else bad++;
            }
            free(v);
            LOG("bighdr ok=%d bad=%d", ok, bad);
        } else if (streq(act, actlen, "bigname")) {
            uint32_t n = parse_u32(arg, arglen);
            char *k = malloc(n ? n : 1);
            if (k) {
                memset(k, 'n', n);
                st = proxy_add_header_map_value(map, k, n, "v", 1);
                free(k);
            }
        } else if (streq(act, actlen, "flood")) {
            uint32_t n = parse_u32(arg, arglen);
            char line[48];
            for (uint32_t i = 0; i < n; i++) {
                int len = pw_snprintf(line, sizeof line, "filter: flood %u", i);
                proxy_log(PROXY_LOG_INFO, line, (size_t)len);
            }
        } else if (streq(act, actlen, "forge")) {
            static const char msg[] = "forged\n2024/01/01 00:00:00 [emerg] 1#1: fake\r\0end";
            st = proxy_log(PROXY_LOG_INFO, msg, sizeof msg - 1);
        } else if (streq(act, actlen, "body")) {
            log_body(cb, ctx, buf);
        } else if (streq(act, actlen, "trailers")) {
            log_map(PROXY_MAP_HTTP_RESPONSE_TRAILERS);
        } else if (streq(act, actlen, "headers")) {
            log_map(map);
            if (cb == LOGCB) log_map(PROXY_MAP_HTTP_RESPONSE_HEADERS);
        } else {
            LOG("unknown action %.*s", (int)actlen, act);
        }
        LOG("action %s.%.*s %d", cb_names[cb], (int)(tok + toklen - act), act, st);
    }
    return ret;
}

static uint32_t callback(int cb, uint32_t ctx, size_t size, int eos) {
    LOG("%s ctx=%u size=%zu eos=%d", cb_names[cb], ctx, size, eos);
    uint32_t ret = run(cb, ctx, size, eos, root_config(ctx));
    char *rules; size_t len;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-pw", &rules, &len) == PROXY_RESULT_OK) {
        if (run(cb, ctx, size, eos, rules) == PROXY_ACTION_PAUSE) ret = PROXY_ACTION_PAUSE;
        free(rules);
    }
    return ret;
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
    return callback(REQH, ctx, n, eos);
}
EXPORT(proxy_on_request_body) uint32_t proxy_on_request_body(uint32_t ctx, uint32_t n, uint32_t eos) {
    return callback(REQB, ctx, n, eos);
}
EXPORT(proxy_on_response_headers) uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
    return callback(RESPH, ctx, n, eos);
}
EXPORT(proxy_on_response_body) uint32_t proxy_on_response_body(uint32_t ctx, uint32_t n, uint32_t eos) {
    return callback(RESPB, ctx, n, eos);
}
EXPORT(proxy_on_response_trailers) uint32_t proxy_on_response_trailers(uint32_t ctx, uint32_t n) {
    return callback(RESPT, ctx, n, 1);
}
EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {
    callback(LOGCB, ctx, 0, 1);
}
EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
    (void)ctx;
    return 1;
}
