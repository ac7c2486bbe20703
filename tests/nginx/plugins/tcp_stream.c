/*
 * tcp_stream.c -- a network filter for the nginx stream tests (C SDK
 * dispatch). The plugin configuration is a list of words:
 *
 *   hold=N      on_downstream_data / on_upstream_data hold (Pause) until N
 *               bytes are held (or the side ended), then read them all,
 *               add them to a running sum and continue; on_done logs
 *               "sum down=<bytes>/<sum> up=<bytes>/<sum>"
 *   upper       downstream bytes upper-cased; upstream chunks prefixed "<"
 *   wrap        each downstream chunk as "[" chunk "]" (prepend + append)
 *   drain=N     the first N bytes of each downstream chunk dropped
 *   tick        on_new_connection pauses; the root's tick (50 ms) continues
 *               the oldest paused connection (proxy_continue_stream from
 *               another context: the wake path)
 *   route       on_new_connection pauses; on_downstream_data waits for a
 *               first line "ROUTE host:port\n", sets
 *               envoy.tcp_proxy.cluster with set_envoy_filter_state,
 *               removes the line and continues the downstream
 *   close       downstream bytes starting "close" close the connection
 *   trap        downstream bytes starting "trap" trap the plugin
 *   props       on_new_connection and on_upstream_data log properties
 *   events      every callback logs "ev <callback> ..."
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static size_t hold_bytes;
static int upper, wrap, tick, route, do_close, do_trap, props, events;
static size_t drain;

#define MAXPAUSED 64
static uint32_t paused[MAXPAUSED];
static int npaused;

typedef struct {
    uint64_t n[2], sum[2];
    int routed;
} conn_t;

static conn_t *conn(uint32_t ctx) {
    conn_t *c = pw_get_context_data(ctx);
    if (!c) {
        c = calloc(1, sizeof *c);
        pw_set_context_data(ctx, c);
    }
    return c;
}

static int on_configure(uint32_t root_id, size_t size) {
    char *cfg = NULL;
    size_t len;
    if (size && pw_get_plugin_config(&cfg, &len) == PROXY_RESULT_OK && cfg) {
        for (char *w = strtok(cfg, " "); w; w = strtok(NULL, " ")) {
            if (!strncmp(w, "hold=", 5))
                hold_bytes = strtoul(w + 5, NULL, 10);
            else if (!strncmp(w, "drain=", 6))
                drain = strtoul(w + 6, NULL, 10);
            else if (!strcmp(w, "upper"))
                upper = 1;
            else if (!strcmp(w, "wrap"))
                wrap = 1;
            else if (!strcmp(w, "tick"))
                tick = 1;
            else if (!strcmp(w, "route"))
                route = 1;
            else if (!strcmp(w, "close"))
                do_close = 1;
            else if (!strcmp(w, "trap"))
                do_trap = 1;
            else if (!strcmp(w, "props"))
                props = 1;
            else if (!strcmp(w, "events"))
                events = 1;
        }
    }
    free(cfg);
    if (tick)
        proxy_set_tick_period_milliseconds(50);
    (void)root_id;
    return 1;
}

static void on_tick(uint32_t root_id) {
    (void)root_id;
    if (!npaused)
        return;
    uint32_t ctx = paused[0];
    memmove(paused, paused + 1, (size_t)(npaused - 1) * sizeof paused[0]);
    npaused--;
    proxy_set_effective_context(ctx);
    pw_logf(PROXY_LOG_INFO, "tick continues ctx=%u: %d", ctx,
            pw_continue_stream(PROXY_STREAM_DOWNSTREAM));
}

static void log_prop(const char *a, const char *b) {
    char *v = NULL;
    size_t len = 0;
    proxy_status_t st = pw_get_property(PW_PATH(a, b), &v, &len);
    if (st != PROXY_RESULT_OK) {
        pw_logf(PROXY_LOG_INFO, "prop %s.%s status=%d", a, b, (int)st);
    } else if (len == 8 && (!strcmp(b, "port") || !strcmp(b, "id"))) {
        uint64_t n = 0;
        memcpy(&n, v, 8);
        pw_logf(PROXY_LOG_INFO, "prop %s.%s=%llu", a, b, (unsigned long long)n);
    } else if (len == 1 && !strcmp(b, "mtls")) {
        pw_logf(PROXY_LOG_INFO, "prop %s.%s=%d", a, b, v[0]);
    } else {
        pw_logf(PROXY_LOG_INFO, "prop %s.%s=%.*s", a, b, (int)len, v ? v : "");
    }
    free(v);
}

static proxy_action_t on_new_connection(uint32_t ctx) {
    conn(ctx);
    if (events)
        pw_logf(PROXY_LOG_INFO, "ev on_new_connection ctx=%u", ctx);
    if (props) {
        log_prop("source", "address");
        log_prop("source", "port");
        log_prop("destination", "address");
        log_prop("destination", "port");
        log_prop("connection", "id");
        log_prop("connection", "mtls");
        log_prop("connection", "requested_server_name");
        log_prop("ngx", "server_port");
        log_prop("ngx", "remote_addr");
        log_prop("plugin_name", "x");
    }
    if (tick && npaused < MAXPAUSED) {
        paused[npaused++] = ctx;
        return PROXY_ACTION_PAUSE;
    }
    if (route)
        return PROXY_ACTION_PAUSE;
    return PROXY_ACTION_CONTINUE;
}

static uint64_t sum_bytes(const char *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += (unsigned char)p[i];
    return s;
}

static proxy_action_t data(uint32_t ctx, int dir, size_t size, int eos) {
    proxy_buffer_type_t type = dir ? PROXY_BUFFER_UPSTREAM_DATA : PROXY_BUFFER_DOWNSTREAM_DATA;
    conn_t *c = conn(ctx);
    if (events)
        pw_logf(PROXY_LOG_INFO, "ev on_%s_data ctx=%u size=%zu eos=%d", dir ? "upstream" : "downstream",
                ctx, size, eos);
    if (hold_bytes) {
        if (size < hold_bytes && !eos)
            return PROXY_ACTION_PAUSE;
        char *p = NULL;
        size_t len = 0;
        pw_get_buffer(type, 0, (uint32_t)size, &p, &len);
        c->n[dir] += len;
        c->sum[dir] += sum_bytes(p, len);
        free(p);
        return PROXY_ACTION_CONTINUE;
    }
    if (dir) {
        if (props) {
            log_prop("upstream", "address");
            /* ssl_preread's name: known once the preread phase is over */
            log_prop("connection", "requested_server_name");
        }
        if (upper && size)
            pw_prepend_buffer(type, "<", 1);
        return PROXY_ACTION_CONTINUE;
    }
    char *p = NULL;
    size_t len = 0;
    pw_get_buffer(type, 0, (uint32_t)size, &p, &len);
    proxy_action_t a = PROXY_ACTION_CONTINUE;
    if (route && !c->routed) {
        char *nl = p ? memchr(p, '\n', len) : NULL;
        if (!nl) {
            free(p);
            return eos ? PROXY_ACTION_CONTINUE : PROXY_ACTION_PAUSE;
        }
        if (len > 6 && !memcmp(p, "ROUTE ", 6)) {
            *nl = '\0';
            pw_logf(PROXY_LOG_INFO, "route %s: %d", p + 6, pw_set_envoy_filter_state("envoy.tcp_proxy.cluster", p + 6));
        }
        c->routed = 1;
        pw_set_buffer(type, 0, (uint32_t)(nl - p + 1), "", 0);
        pw_logf(PROXY_LOG_INFO, "continue %d", pw_continue_stream(PROXY_STREAM_DOWNSTREAM));
        free(p);
        return PROXY_ACTION_CONTINUE;
    }
    if (do_close && len >= 5 && !memcmp(p, "close", 5)) {
        pw_logf(PROXY_LOG_INFO, "close %d", pw_close_stream(PROXY_STREAM_DOWNSTREAM));
    } else if (do_trap && len >= 4 && !memcmp(p, "trap", 4)) {
        __builtin_trap();
    } else if (upper) {
        for (size_t i = 0; i < len; i++)
            if (p[i] >= 'a' && p[i] <= 'z')
                p[i] = (char)(p[i] - 'a' + 'A');
        pw_replace_buffer(type, p, len);
    } else if (drain) {
        pw_set_buffer(type, 0, (uint32_t)(drain < len ? drain : len), "", 0);
    }
    if (wrap && len) {
        pw_prepend_buffer(type, "[", 1);
        pw_append_buffer(type, "]", 1);
    }
    free(p);
    return a;
}

static proxy_action_t on_downstream_data(uint32_t ctx, size_t size, int eos) {
    return data(ctx, 0, size, eos);
}

static proxy_action_t on_upstream_data(uint32_t ctx, size_t size, int eos) {
    return data(ctx, 1, size, eos);
}

static void on_downstream_close(uint32_t ctx, proxy_peer_type_t peer) {
    if (events)
        pw_logf(PROXY_LOG_INFO, "ev on_downstream_close ctx=%u peer=%d", ctx, (int)peer);
}

static void on_upstream_close(uint32_t ctx, proxy_peer_type_t peer) {
    if (events)
        pw_logf(PROXY_LOG_INFO, "ev on_upstream_close ctx=%u peer=%d", ctx, (int)peer);
}

static int on_done(uint32_t ctx) {
    conn_t *c = conn(ctx);
    if (hold_bytes)
        pw_logf(PROXY_LOG_INFO, "sum down=%llu/%llu up=%llu/%llu", (unsigned long long)c->n[0],
                (unsigned long long)c->sum[0], (unsigned long long)c->n[1],
                (unsigned long long)c->sum[1]);
    if (events)
        pw_logf(PROXY_LOG_INFO, "ev on_done ctx=%u", ctx);
    return 1;
}

static void on_log(uint32_t ctx) {
    if (events)
        pw_logf(PROXY_LOG_INFO, "ev on_log ctx=%u", ctx);
}

static void on_delete(uint32_t ctx) {
    free(pw_get_context_data(ctx));
    pw_set_context_data(ctx, NULL);
    for (int i = 0; i < npaused; i++)
        if (paused[i] == ctx) {
            memmove(paused + i, paused + i + 1, (size_t)(npaused - i - 1) * sizeof paused[0]);
            npaused--;
            break;
        }
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_tick = on_tick,
    .on_new_connection = on_new_connection,
    .on_downstream_data = on_downstream_data,
    .on_upstream_data = on_upstream_data,
    .on_downstream_close = on_downstream_close,
    .on_upstream_close = on_upstream_close,
    .on_done = on_done,
    .on_log = on_log,
    .on_delete = on_delete,
};
