/*
 * store.wasm -- shared data, shared queues, metrics and ticks for the nginx
 * tests (raw exports, the C SDK's helpers and hostcalls only).
 *
 * Plugin configuration, space-separated:
 *   tick=MS      proxy_set_tick_period_milliseconds(MS) in on_configure
 *   queue=NAME   proxy_register_shared_queue(NAME) in on_configure
 *   trap_tick=N  the N-th on_tick of this instance traps
 *   refuse_if=K  on_configure returns false (refuses) when shared data
 *                key K exists (a start-up failure of a rebuilt VM)
 *
 * A request whose header `x-store` holds commands, separated by ';', is
 * answered locally (200) with one line per command:
 *
 *   get K              get <status> <cas> <value>
 *   set K V CAS        set <status>           (CAS decimal; 0: unconditional)
 *   del K CAS          del <status>           (value NULL)
 *   incr K             incr <status> <new> <retries>: get, then set value+1
 *                      with the CAS it read, until Ok (at most 100000 tries)
 *   fill P N SIZE      sets keys P0..P<N-1> to SIZE bytes, cas 0:
 *                      fill ok=<n> mismatch=<n> other=<n>
 *   count P N          count found=<n> (of keys P0..P<N-1>)
 *   reg NAME           reg <status> <queue id>   (for this root context)
 *   enq NAME V         enq <status>           (resolve in this vm_id, enqueue)
 *   deq NAME           deq <status> <value>
 *   counter NAME D     counter <status>       (define, increment by D)
 *   gauge NAME V       gauge <status>         (define, record V)
 *   hist NAME V        hist <status>          (define, record V)
 *   mget T NAME        mget <status> <value>  (define type T, get)
 *   trap               traps (wasm `unreachable`): the VM is discarded
 *
 * As a network filter (nginx stream{}), each chunk of downstream bytes
 * holds such commands (a final newline is ignored), and is replaced by the
 * answer lines, which go on to the upstream (an echo server sends them
 * back to the client).
 *
 * Root context log lines (INFO):
 *   store: tick root=<id> n=<count>
 *   store: queue_ready root=<id> queue=<id> <status> <value>  (one dequeue;
 *          the value "trap" then traps)
 *   store: registered <name> <status> <queue id>
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define LOG(...) pw_logf(PROXY_LOG_INFO, "store: " __VA_ARGS__)

static uint32_t ticks, trap_tick;

static uint64_t parse_u64(const char *s, size_t len) {
    uint64_t n = 0;
    for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) n = n * 10 + (s[i] - '0');
    return n;
}

static int64_t parse_i64(const char *s, size_t len) {
    if (len && s[0] == '-') return -(int64_t)parse_u64(s + 1, len - 1);
    return (int64_t)parse_u64(s, len);
}

/* The next space-separated word of [*p, end): its start and length. */
static size_t word(const char **p, const char *end, const char **w) {
    while (*p < end && **p == ' ') (*p)++;
    *w = *p;
    while (*p < end && **p != ' ') (*p)++;
    return (size_t)(*p - *w);
}

static int is(const char *w, size_t len, const char *s) {
    return len == strlen(s) && memcmp(w, s, len) == 0;
}

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {
    (void)ctx, (void)parent;
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
    (void)root, (void)size;
    return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root, uint32_t size) {
    (void)size;
    char *config;
    size_t len;
    if (pw_get_plugin_config(&config, &len) != PROXY_RESULT_OK || !config) return 1;
    const char *p = config, *end = config + len, *w;
    size_t n;
    while ((n = word(&p, end, &w)) > 0) {
        if (n > 5 && memcmp(w, "tick=", 5) == 0) {
            proxy_status_t st = proxy_set_tick_period_milliseconds((uint32_t)parse_u64(w + 5, n - 5));
            LOG("tick period root=%u %.*s %d", root, (int)(n - 5), w + 5, st);
        } else if (n > 10 && memcmp(w, "refuse_if=", 10) == 0) {
            char *v = NULL;
            size_t vlen = 0;
            uint32_t cas = 0;
            if (proxy_get_shared_data(w + 10, n - 10, &v, &vlen, &cas) == PROXY_RESULT_OK) {
                LOG("refusing the configuration: %.*s is set", (int)(n - 10), w + 10);
                free(v);
                free(config);
                return 0;
            }
        } else if (n > 10 && memcmp(w, "trap_tick=", 10) == 0) {
            trap_tick = (uint32_t)parse_u64(w + 10, n - 10);
        } else if (n > 6 && memcmp(w, "queue=", 6) == 0) {
            uint32_t id = 0;
            proxy_status_t st = proxy_register_shared_queue(w + 6, n - 6, &id);
            LOG("registered %.*s %d %u", (int)(n - 6), w + 6, st, id);
        }
    }
    free(config);
    return 1;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) {
    ticks++;
    LOG("tick root=%u n=%u", root, ticks);
    if (ticks == trap_tick) __builtin_trap();
}

EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root, uint32_t queue_id) {
    char *v = NULL;
    size_t len = 0;
    proxy_status_t st = proxy_dequeue_shared_queue(queue_id, &v, &len);
    LOG("queue_ready root=%u queue=%u %d %.*s", root, queue_id, st, (int)len, v ? v : "");
    if (len == 4 && memcmp(v, "trap", 4) == 0) __builtin_trap();
    free(v);
}

/* Appends to the response body. */
static char out[65536];
static size_t outlen;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = pw_vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
    va_end(ap);
    if (n > 0) outlen += (size_t)n < sizeof out - outlen ? (size_t)n : sizeof out - outlen - 1;
}

static proxy_status_t resolve(const char *name, size_t len, uint32_t *id) {
    return proxy_resolve_shared_queue("", 0, name, len, id);
}

static void incr(const char *k, size_t klen) {
    uint32_t tries = 0;
    for (;;) {
        char *v = NULL;
        size_t vlen = 0;
        uint32_t cas = 0;
        proxy_status_t st = proxy_get_shared_data(k, klen, &v, &vlen, &cas);
        if (st != PROXY_RESULT_OK && st != PROXY_RESULT_NOT_FOUND) {
            say("incr %d 0 %u\n", st, tries);
            free(v);
            return;
        }
        uint64_t n = (st == PROXY_RESULT_OK && v) ? parse_u64(v, vlen) : 0;
        free(v);
        char buf[24];
        int blen = pw_snprintf(buf, sizeof buf, "%llu", (unsigned long long)(n + 1));
        st = proxy_set_shared_data(k, klen, buf, (size_t)blen, cas);
        if (st == PROXY_RESULT_OK) {
            say("incr 0 %llu %u\n", (unsigned long long)(n + 1), tries);
            return;
        }
        if (st != PROXY_RESULT_CAS_MISMATCH || ++tries >= 100000) {
            say("incr %d 0 %u\n", st, tries);
            return;
        }
    }
}

static void command(const char *p, const char *end) {
    const char *cmd, *a, *b, *c;
    size_t cn = word(&p, end, &cmd), an = word(&p, end, &a), bn = word(&p, end, &b),
           cnn = word(&p, end, &c);
    proxy_status_t st;
    char key[64];

    if (is(cmd, cn, "get")) {
        char *v = NULL;
        size_t vlen = 0;
        uint32_t cas = 0;
        st = proxy_get_shared_data(a, an, &v, &vlen, &cas);
        say("get %d %u %.*s\n", st, cas, (int)vlen, v ? v : "");
        free(v);
    } else if (is(cmd, cn, "set")) {
        st = proxy_set_shared_data(a, an, b, bn, (uint32_t)parse_u64(c, cnn));
        say("set %d\n", st);
    } else if (is(cmd, cn, "del")) {
        st = proxy_set_shared_data(a, an, NULL, 0, (uint32_t)parse_u64(b, bn));
        say("del %d\n", st);
    } else if (is(cmd, cn, "incr")) {
        incr(a, an);
    } else if (is(cmd, cn, "fill") || is(cmd, cn, "count")) {
        uint64_t n = parse_u64(b, bn), size = parse_u64(c, cnn);
        uint32_t ok = 0, mismatch = 0, other = 0;
        char *value = is(cmd, cn, "fill") ? malloc(size ? size : 1) : NULL;
        if (value) memset(value, 'x', size);
        for (uint64_t i = 0; i < n; i++) {
            int klen = pw_snprintf(key, sizeof key, "%.*s%llu", (int)an, a, (unsigned long long)i);
            if (value) {
                st = proxy_set_shared_data(key, (size_t)klen, value, size, 0);
            } else {
                char *v = NULL;
                size_t vlen;
                uint32_t cas;
                st = proxy_get_shared_data(key, (size_t)klen, &v, &vlen, &cas);
                free(v);
            }
            if (st == PROXY_RESULT_OK) ok++;
            else if (st == PROXY_RESULT_CAS_MISMATCH) mismatch++;
            else other++;
        }
        if (value) say("fill ok=%u mismatch=%u other=%u\n", ok, mismatch, other);
        else say("count found=%u\n", ok);
        free(value);
    } else if (is(cmd, cn, "reg")) {
        uint32_t id = 0;
        st = proxy_register_shared_queue(a, an, &id);
        say("reg %d %u\n", st, id);
    } else if (is(cmd, cn, "enq")) {
        uint32_t id = 0;
        st = resolve(a, an, &id);
        if (st == PROXY_RESULT_OK) st = proxy_enqueue_shared_queue(id, b, bn);
        say("enq %d\n", st);
    } else if (is(cmd, cn, "deq")) {
        uint32_t id = 0;
        char *v = NULL;
        size_t vlen = 0;
        st = resolve(a, an, &id);
        if (st == PROXY_RESULT_OK) st = proxy_dequeue_shared_queue(id, &v, &vlen);
        say("deq %d %.*s\n", st, (int)vlen, v ? v : "");
        free(v);
    } else if (is(cmd, cn, "counter") || is(cmd, cn, "gauge") || is(cmd, cn, "hist")) {
        proxy_metric_type_t type = is(cmd, cn, "counter") ? PROXY_METRIC_COUNTER
                                   : is(cmd, cn, "gauge") ? PROXY_METRIC_GAUGE
                                                          : PROXY_METRIC_HISTOGRAM;
        uint32_t id = 0;
        st = proxy_define_metric(type, a, an, &id);
        if (st == PROXY_RESULT_OK) {
            if (type == PROXY_METRIC_COUNTER)
                st = proxy_increment_metric(id, parse_i64(b, bn));
            else
                st = proxy_record_metric(id, parse_u64(b, bn));
        }
        say("%.*s %d\n", (int)cn, cmd, st);
    } else if (is(cmd, cn, "mget")) {
        uint32_t id = 0;
        uint64_t v = 0;
        st = proxy_define_metric((proxy_metric_type_t)parse_u64(a, an), b, bn, &id);
        if (st == PROXY_RESULT_OK) st = proxy_get_metric(id, &v);
        say("mget %d %llu\n", st, (unsigned long long)v);
    } else if (is(cmd, cn, "trap")) {
        __builtin_trap();
    } else if (cn) {
        say("unknown %.*s\n", (int)cn, cmd);
    }
}

/* Runs the ';'-separated commands of [cmds, cmds + len) into out. */
static void run(const char *cmds, size_t len) {
    outlen = 0;
    out[0] = 0;
    while (len && (cmds[len - 1] == '\n' || cmds[len - 1] == '\r')) len--;
    const char *p = cmds, *end = cmds + len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        command(p, stop);
        p = semi ? semi + 1 : end;
    }
}

EXPORT(proxy_on_request_headers) uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n,
                                                                   uint32_t eos) {
    (void)ctx, (void)n, (void)eos;
    char *cmds;
    size_t len;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-store", &cmds, &len) != PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    run(cmds, len);
    free(cmds);
    pw_send_local_response(200, out, outlen, NULL, 0);
    return PROXY_ACTION_PAUSE;
}

EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t ctx) {
    (void)ctx;
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_downstream_data) uint32_t proxy_on_downstream_data(uint32_t ctx, uint32_t size,
                                                                   uint32_t eos) {
    (void)ctx, (void)eos;
    char *cmds = NULL;
    size_t len = 0;
    if (!size ||
        pw_get_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, 0, size, &cmds, &len) != PROXY_RESULT_OK ||
        !cmds)
        return PROXY_ACTION_CONTINUE;
    run(cmds, len);
    free(cmds);
    pw_replace_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, out, outlen);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_upstream_data) uint32_t proxy_on_upstream_data(uint32_t ctx, uint32_t size,
                                                               uint32_t eos) {
    (void)ctx, (void)size, (void)eos;
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
    (void)ctx;
    return 1;
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {
    (void)ctx;
}
