/*
 * sni_router: a network (TCP) filter for TLS passthrough that picks the
 * upstream of a connection by the server name (SNI) of the client's TLS
 * ClientHello. It holds (Pause) the client's first bytes until the whole
 * ClientHello is there (it may span TCP segments and TLS records), reads its
 * server_name extension, and sets Envoy's filter state
 * "envoy.tcp_proxy.cluster" (pw_set_envoy_filter_state) to the upstream of
 * that name; then the bytes go on unchanged. The TLS stays end to end.
 *
 * The proxy must not connect before the choice: on_new_connection pauses
 * the connection and the choice continues it (proxy_continue_stream), as
 * Envoy's tcp_proxy and nginx's stream module (proxy_pass
 * $proxy_wasm_upstream, in the preread phase) both need.
 *
 * Plugin configuration, a JSON object:
 *
 *   {"routes": {"a.example": "backend_a",     exact names (case-insensitive)
 *               "*.b.example": "backend_b"},  any name under b.example
 *    "default": "backend_a",                  no SNI, not TLS, no route;
 *                                             without it those are closed
 *    "max_hello_bytes": 65536}                bytes held for the ClientHello
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#include "../json_lite.h"

#define NAME_MAX_LEN 255

typedef struct {
    char *name; /* lower case; "*.suffix" for a wildcard */
    char *upstream;
} route_t;

static struct {
    route_t *routes;
    size_t nroutes;
    char *dflt;
    uint64_t max_hello_bytes;
} cfg;

/* Connections decided so far are remembered by context id. */
static void *const DECIDED = (void *)1;

/* --------------------------------------------------------- ClientHello */

enum { HELLO_SNI, HELLO_NO_SNI, HELLO_MORE, HELLO_NOT_TLS, HELLO_BAD };

typedef struct {
    const unsigned char *p, *end;
} rd_t;

static int take(rd_t *r, size_t n, const unsigned char **out) {
    if ((size_t)(r->end - r->p) < n)
        return 0;
    if (out)
        *out = r->p;
    r->p += n;
    return 1;
}

static int u8(rd_t *r, size_t *v) {
    const unsigned char *b;
    if (!take(r, 1, &b))
        return 0;
    *v = b[0];
    return 1;
}

static int u16(rd_t *r, size_t *v) {
    const unsigned char *b;
    if (!take(r, 2, &b))
        return 0;
    *v = (size_t)b[0] << 8 | b[1];
    return 1;
}

/* A sub-reader over the next (u8 or u16) length-prefixed block. */
static int block(rd_t *r, int wide, rd_t *sub) {
    size_t n;
    const unsigned char *b;
    if (!(wide ? u16(r, &n) : u8(r, &n)) || !take(r, n, &b))
        return 0;
    *sub = (rd_t){b, b + n};
    return 1;
}

/* The host_name of a server_name extension's data into name (lower case). */
static int server_name(rd_t ext, char *name) {
    rd_t list, host;
    size_t type;
    if (!block(&ext, 1, &list))
        return HELLO_BAD;
    while (list.p < list.end) {
        if (!u8(&list, &type) || !block(&list, 1, &host))
            return HELLO_BAD;
        if (type != 0)
            continue;
        size_t n = (size_t)(host.end - host.p);
        if (n && host.p[n - 1] == '.')
            n--; /* "a.example." is "a.example" */
        if (!n || n > NAME_MAX_LEN)
            return HELLO_BAD;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = host.p[i];
            if (ch >= 'A' && ch <= 'Z')
                ch = (unsigned char)(ch + 32);
            else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                       ch == '.' || ch == '_'))
                return HELLO_BAD;
            name[i] = (char)ch;
        }
        name[n] = 0;
        return HELLO_SNI;
    }
    return HELLO_NO_SNI;
}

/* A ClientHello handshake message's body (after type and length). */
static int parse_hello(rd_t r, char *name) {
    rd_t skip, exts, ext;
    size_t type;
    if (!take(&r, 2 + 32, NULL) || !block(&r, 0, &skip) /* version, random, session id */
        || !block(&r, 1, &skip) || !block(&r, 0, &skip)) /* cipher suites, compression */
        return HELLO_BAD;
    if (r.p == r.end)
        return HELLO_NO_SNI; /* no extensions at all */
    if (!block(&r, 1, &exts))
        return HELLO_BAD;
    while (exts.p < exts.end) {
        if (!u16(&exts, &type) || !block(&exts, 1, &ext))
            return HELLO_BAD;
        if (type == 0)
            return server_name(ext, name);
    }
    return HELLO_NO_SNI;
}

/* Looks at the bytes so far: HELLO_MORE until the ClientHello is whole (its
 * handshake message may be split over several records). *why for the rest
 * but HELLO_SNI. */
static int read_hello(const unsigned char *d, size_t n, char *name, const char **why) {
    unsigned char *hs = NULL; /* the handshake message, reassembled */
    size_t hs_len = 0;
    int rc = HELLO_MORE;
    *why = "incomplete";
    if (n && d[0] != 0x16)
        return *why = "not TLS", HELLO_NOT_TLS;
    while (rc == HELLO_MORE && n >= 5) {
        size_t len = (size_t)d[3] << 8 | d[4];
        if (d[0] != 0x16 || d[1] != 3 || !len || len > 16384 + 2048) {
            rc = HELLO_BAD;
            *why = "not a TLS handshake record";
            break;
        }
        if (n < 5 + len)
            break;
        unsigned char *more = realloc(hs, hs_len + len);
        if (!more) {
            rc = HELLO_BAD;
            *why = "out of memory";
            break;
        }
        hs = more;
        memcpy(hs + hs_len, d + 5, len);
        hs_len += len;
        d += 5 + len;
        n -= 5 + len;
        if (hs_len < 4)
            continue;
        size_t msg_len = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
        if (hs[0] != 1) {
            rc = HELLO_BAD;
            *why = "the first handshake message is not a ClientHello";
        } else if (hs_len >= 4 + msg_len) {
            rc = parse_hello((rd_t){hs + 4, hs + 4 + msg_len}, name);
            *why = rc == HELLO_BAD ? "a malformed ClientHello" : "no server_name";
        }
    }
    free(hs);
    return rc;
}

/* --------------------------------------------------------------- routes */

static const char *route(const char *name) {
    const route_t *best = NULL;
    size_t nlen = strlen(name), best_len = 0;
    for (size_t i = 0; i < cfg.nroutes; i++) {
        const char *r = cfg.routes[i].name;
        size_t rlen = strlen(r);
        if (!strcmp(r, name))
            return cfg.routes[i].upstream;
        /* "*.b.example" matches x.b.example and x.y.b.example */
        if (r[0] == '*' && nlen > rlen - 1 && !strcmp(name + nlen - (rlen - 1), r + 1) &&
            rlen > best_len) {
            best = &cfg.routes[i];
            best_len = rlen;
        }
    }
    return best ? best->upstream : NULL;
}

static proxy_action_t decide(uint32_t ctx, const char *name, const char *why) {
    pw_set_context_data(ctx, DECIDED);
    const char *upstream = name ? route(name) : NULL;
    const char *via = upstream ? "route" : "default";
    if (!upstream)
        upstream = cfg.dflt;
    if (!upstream) {
        pw_logf(PROXY_LOG_WARN, "sni_router: context %u: %s%s: no route and no default: closing",
                ctx, name ? "sni " : "", name ? name : why);
        pw_replace_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, NULL, 0);
        pw_close_stream(PROXY_STREAM_DOWNSTREAM);
        return PROXY_ACTION_CONTINUE;
    }
    proxy_status_t st = pw_set_envoy_filter_state("envoy.tcp_proxy.cluster", upstream);
    if (st != PROXY_RESULT_OK) {
        pw_logf(PROXY_LOG_ERROR, "sni_router: context %u: cannot set the upstream (status %d): closing",
                ctx, st);
        pw_replace_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, NULL, 0);
        pw_close_stream(PROXY_STREAM_DOWNSTREAM);
        return PROXY_ACTION_CONTINUE;
    }
    pw_continue_stream(PROXY_STREAM_DOWNSTREAM); /* the Pause of on_new_connection */
    if (name)
        pw_logf(PROXY_LOG_INFO, "sni_router: context %u: sni %s -> %s (%s)", ctx, name, upstream,
                via);
    else
        pw_logf(PROXY_LOG_INFO, "sni_router: context %u: %s -> %s (default)", ctx, why, upstream);
    return PROXY_ACTION_CONTINUE;
}

/* Held until the ClientHello chose the upstream (decide continues it). */
static proxy_action_t on_new_connection(uint32_t ctx) {
    (void)ctx;
    return PROXY_ACTION_PAUSE;
}

static proxy_action_t on_downstream_data(uint32_t ctx, size_t size, int eos) {
    if (pw_get_context_data(ctx) == DECIDED)
        return PROXY_ACTION_CONTINUE;
    char *d = NULL, name[NAME_MAX_LEN + 1];
    size_t n = 0;
    const char *why;
    pw_get_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, 0, (uint32_t)size, &d, &n);
    int rc = read_hello((const unsigned char *)d, n, name, &why);
    free(d);
    if (rc == HELLO_MORE && n > cfg.max_hello_bytes) {
        rc = HELLO_BAD;
        why = "a ClientHello over max_hello_bytes";
    }
    if (rc == HELLO_MORE && !eos)
        return PROXY_ACTION_PAUSE; /* the rest of the ClientHello is on its way */
    if (rc == HELLO_MORE)
        why = "the client closed before a whole ClientHello";
    return decide(ctx, rc == HELLO_SNI ? name : NULL, why);
}

static void on_delete(uint32_t ctx) {
    pw_set_context_data(ctx, NULL);
}

/* ------------------------------------------------------- configuration */

static const char *parse_config(const char *text) {
    jl_t j = jl_start(text);
    for (int first = 1; jl_more(&j, '}', &first);) {
        char *key = jl_key(&j);
        if (!key)
            break;
        if (!strcmp(key, "routes")) {
            jl_expect(&j, '{', "routes: expected an object of \"name\": \"upstream\"");
            for (int f = 1; jl_more(&j, '}', &f);) {
                char *name = jl_key(&j), *up = name ? jl_string(&j) : NULL;
                route_t *n = up ? realloc(cfg.routes, (cfg.nroutes + 1) * sizeof *n) : NULL;
                if (n)
                    cfg.routes = n;
                if (!n || !name[0] || !up[0] || (name[0] == '*' && name[1] != '.')) {
                    jl_fail(&j, "routes: expected \"name\" or \"*.domain\": \"upstream\"");
                    free(name);
                    free(up);
                    break;
                }
                for (char *c = name; *c; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c + 32);
                cfg.routes[cfg.nroutes++] = (route_t){name, up};
            }
        } else if (!strcmp(key, "default")) {
            free(cfg.dflt);
            if ((cfg.dflt = jl_string(&j)) && !cfg.dflt[0])
                jl_fail(&j, "default: expected an upstream name");
        } else if (!strcmp(key, "max_hello_bytes")) {
            jl_uint(&j, 1 << 24, &cfg.max_hello_bytes);
        } else {
            jl_fail(&j, "unknown key");
        }
        free(key);
    }
    jl_end(&j);
    return j.err;
}

static int on_configure(uint32_t root_id, size_t size) {
    char *text = NULL;
    size_t len = 0;
    if (size)
        pw_get_plugin_config(&text, &len);
    for (size_t i = 0; i < cfg.nroutes; i++) {
        free(cfg.routes[i].name);
        free(cfg.routes[i].upstream);
    }
    cfg.nroutes = 0;
    free(cfg.dflt);
    cfg.dflt = NULL;
    cfg.max_hello_bytes = 64 * 1024;
    const char *why = !text || strlen(text) != len ? "expected a JSON object" : parse_config(text);
    free(text);
    if (!why && !cfg.nroutes && !cfg.dflt)
        why = "routes or default: required";
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "sni_router: bad configuration: %s", why);
        return 0;
    }
    pw_logf(PROXY_LOG_INFO, "sni_router: root %u: %zu routes, default %s", root_id, cfg.nroutes,
            cfg.dflt ? cfg.dflt : "none (close)");
    return 1;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_new_connection = on_new_connection,
    .on_downstream_data = on_downstream_data,
    .on_delete = on_delete,
};
