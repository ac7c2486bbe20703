/*
 * host.c -- the CLI's embedder: pw_host_ops over in-memory maps, bodies and
 * properties, and the replay of one HTTP exchange through a plugin.
 *
 * The exchange follows what the nginx module does (docs/DIRECTIVES.md) and
 * docs/ABI.md §8.2/§8.7/§8.8: request headers, body chunks, trailers, then
 * the response (the fixture's, or the plugin's local response), then
 * on_log/on_done/on_delete. A Pause that nothing resumes stops the exchange
 * (a proxy would wait forever); a trap fails closed with a 503.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"

static const char *const phase_names[PH_COUNT] = {"start",
                                                  "create",
                                                  "request_headers",
                                                  "request_body",
                                                  "request_trailers",
                                                  "response_headers",
                                                  "response_body",
                                                  "response_trailers",
                                                  "new_connection",
                                                  "downstream_data",
                                                  "upstream_data",
                                                  "downstream_close",
                                                  "upstream_close",
                                                  "end",
                                                  "tick",
                                                  "queue_ready",
                                                  "callout",
                                                  "step"};

const char *phase_name(enum phase p) {
    return (unsigned)p < PH_COUNT ? phase_names[p] : "?";
}

int phase_parse(const char *s) {
    for (int i = 0; i < PH_COUNT; i++)
        if (!strcmp(s, phase_names[i]))
            return i;
    return -1;
}

const char *outcome_name(enum outcome o) {
    static const char *const n[] = {"complete", "local_response", "paused",
                                    "closed",   "failed",         "start_failed"};
    return (unsigned)o < 6 ? n[o] : "?";
}

/* ---------------------------------------------------------- recording */

static void add_event(exchange *x, enum ev_kind kind, int level, const char *text, size_t len) {
    if (!x->record)
        return;
    if (x->nevents == x->capevents) {
        x->capevents = x->capevents ? x->capevents * 2 : 64;
        x->events = xrealloc(x->events, x->capevents * sizeof *x->events);
    }
    pw_str t = arena_dup(&x->mem, text, len);
    x->events[x->nevents++] = (event){kind, x->cur, level, 0, (char *)t.data, t.len};
}

void host_note(exchange *x, const char *fmt, ...) {
    char msg[PW_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    add_event(x, EV_NOTE, 0, msg, strlen(msg));
}

#define note host_note

static call *begin_call(exchange *x, enum phase ph, size_t n, int eos) {
    if (x->ncalls == x->capcalls) {
        x->capcalls = x->capcalls ? x->capcalls * 2 : 16;
        x->calls = xrealloc(x->calls, x->capcalls * sizeof *x->calls);
    }
    call *c = &x->calls[x->ncalls];
    memset(c, 0, sizeof *c);
    c->phase = ph;
    c->size = n;
    c->eos = eos;
    x->cur = (int)x->ncalls++;
    x->cur_phase = ph;
    return c;
}

call *host_begin_call(exchange *x, enum phase ph, size_t n, int eos) {
    return begin_call(x, ph, n, eos);
}

/* ----------------------------------------------------------- the maps */

static hlist *map_of(exchange *x, proxy_map_type_t map) {
    switch (map) {
    case PROXY_MAP_HTTP_REQUEST_HEADERS:
        return &x->req_h;
    case PROXY_MAP_HTTP_REQUEST_TRAILERS:
        return x->req_t_on ? &x->req_t : NULL;
    case PROXY_MAP_HTTP_RESPONSE_HEADERS:
        return x->resp_h_on ? &x->resp_h : NULL;
    case PROXY_MAP_HTTP_RESPONSE_TRAILERS:
        return x->resp_t_on ? &x->resp_t : NULL;
    default:
        return NULL;
    }
}

/* Every hook receives the hvm of the VM that called. */
#define HOST (((hvm *)hp)->h)
#define XS(stream) ((exchange *)(stream))

static int keq(pw_str a, pw_str b) {
    return a.len == b.len && !strncasecmp(a.data, b.data, a.len);
}

static void h_log(void *hp, void *stream, pw_str name, proxy_log_level_t level, pw_str msg) {
    (void)stream;
    (void)name;
    exchange *x = HOST->x;
    if (x)
        add_event(x, EV_LOG, (int)level, msg.data, msg.len);
}

static proxy_log_level_t h_log_level(void *hp) {
    return (proxy_log_level_t)HOST->level;
}

static proxy_status_t h_map_pairs(void *hp, void *stream, proxy_map_type_t map, pw_kv **pairs,
                                  size_t *n) {
    (void)hp;
    hlist *h = map_of(XS(stream), map);
    if (!h)
        return PROXY_RESULT_NOT_FOUND;
    *pairs = h->kv;
    *n = h->n;
    return PROXY_RESULT_OK;
}

static proxy_status_t h_map_get(void *hp, void *stream, proxy_map_type_t map, pw_str key,
                                pw_str *value) {
    (void)hp;
    hlist *h = map_of(XS(stream), map);
    if (!h)
        return PROXY_RESULT_NOT_FOUND;
    for (size_t i = 0; i < h->n; i++)
        if (keq(h->kv[i].key, key)) {
            *value = h->kv[i].value;
            return PROXY_RESULT_OK;
        }
    return PROXY_RESULT_NOT_FOUND;
}

/* Header names are stored lower-cased, as HTTP/2 and Envoy have them. */
static pw_str lower(arena *a, pw_str k) {
    pw_str r = arena_dup(a, k.data, k.len);
    for (size_t i = 0; i < r.len; i++)
        if (r.data[i] >= 'A' && r.data[i] <= 'Z')
            ((char *)r.data)[i] = (char)(r.data[i] + 32);
    return r;
}

static proxy_status_t h_map_add(void *hp, void *stream, proxy_map_type_t map, pw_str key,
                                pw_str value) {
    (void)hp;
    exchange *x = XS(stream);
    hlist *h = map_of(x, map);
    if (!h)
        return PROXY_RESULT_NOT_FOUND;
    hlist_add(h, &x->mem, lower(&x->mem, key), value);
    return PROXY_RESULT_OK;
}

static proxy_status_t h_map_remove(void *hp, void *stream, proxy_map_type_t map, pw_str key) {
    (void)hp;
    hlist *h = map_of(XS(stream), map);
    if (!h)
        return PROXY_RESULT_NOT_FOUND;
    size_t o = 0;
    for (size_t i = 0; i < h->n; i++)
        if (!keq(h->kv[i].key, key))
            h->kv[o++] = h->kv[i];
    h->n = o;
    return PROXY_RESULT_OK;
}

/* Keeps the first header's position, drops the other values (as nginx). */
static proxy_status_t h_map_replace(void *hp, void *stream, proxy_map_type_t map, pw_str key,
                                    pw_str value) {
    exchange *x = XS(stream);
    hlist *h = map_of(x, map);
    if (!h)
        return PROXY_RESULT_NOT_FOUND;
    for (size_t i = 0; i < h->n; i++)
        if (keq(h->kv[i].key, key)) {
            h->kv[i].value = arena_dup(&x->mem, value.data, value.len);
            size_t o = i + 1;
            for (size_t j = i + 1; j < h->n; j++)
                if (!keq(h->kv[j].key, key))
                    h->kv[o++] = h->kv[j];
            h->n = o;
            return PROXY_RESULT_OK;
        }
    return h_map_add(hp, stream, map, key, value);
}

static proxy_status_t h_map_set_pairs(void *hp, void *stream, proxy_map_type_t map,
                                      const pw_kv *pairs, size_t n) {
    (void)hp;
    exchange *x = XS(stream);
    hlist *h = map_of(x, map);
    if (!h)
        return PROXY_RESULT_NOT_FOUND;
    h->n = 0;
    for (size_t i = 0; i < n; i++)
        hlist_add(h, &x->mem, lower(&x->mem, pairs[i].key), pairs[i].value);
    return PROXY_RESULT_OK;
}

/* ----------------------------------------------------------- the bodies */

/* The request body is also a connection's DownstreamData, the response
 * body its UpstreamData (the core gives each kind of stream its own). */
static buf *body_of(exchange *x, proxy_buffer_type_t type) {
    if (type == PROXY_BUFFER_HTTP_REQUEST_BODY || type == PROXY_BUFFER_DOWNSTREAM_DATA)
        return x->req_body_on ? &x->req_body : NULL;
    if (type == PROXY_BUFFER_HTTP_RESPONSE_BODY || type == PROXY_BUFFER_UPSTREAM_DATA)
        return x->resp_body_on ? &x->resp_body : NULL;
    return NULL;
}

static proxy_status_t h_body_size(void *hp, void *stream, proxy_buffer_type_t type, size_t *size) {
    (void)hp;
    buf *b = body_of(XS(stream), type);
    if (!b)
        return PROXY_RESULT_NOT_FOUND;
    *size = b->len;
    return PROXY_RESULT_OK;
}

static proxy_status_t h_body_copy(void *hp, void *stream, proxy_buffer_type_t type, size_t start,
                                  size_t len, void *dst) {
    (void)hp;
    buf *b = body_of(XS(stream), type);
    if (!b)
        return PROXY_RESULT_NOT_FOUND;
    if (start > b->len || len > b->len - start)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (len)
        memcpy(dst, b->p + start, len);
    return PROXY_RESULT_OK;
}

static proxy_status_t h_body_replace(void *hp, void *stream, proxy_buffer_type_t type,
                                     size_t start, size_t len, pw_str data) {
    (void)hp;
    buf *b = body_of(XS(stream), type);
    if (!b)
        return PROXY_RESULT_NOT_FOUND;
    if (start > b->len || len > b->len - start)
        return PROXY_RESULT_BAD_ARGUMENT;
    buf nb = {0};
    buf_put(&nb, b->p, start);
    buf_put(&nb, data.data, data.len);
    buf_put(&nb, b->p + start + len, b->len - start - len);
    buf_free(b);
    *b = nb;
    return PROXY_RESULT_OK;
}

/* ---------------------------------------------------------- properties */

static void join_path(buf *b, const pw_str *path, size_t nseg) {
    buf_clear(b);
    for (size_t i = 0; i < nseg; i++) {
        if (i)
            buf_puts(b, ".");
        buf_put(b, path[i].data, path[i].len);
    }
}

/* A connection's addresses and id unless the fixture gives them
 * (docs/CLI.md "Connections"); a port follows its address when only the
 * address is given. */
static int derived_tcp(exchange *x, const char *p, pw_str *value) {
    static const char *const addr[2][2] = {{"source.address", "127.0.0.1:40000"},
                                           {"destination.address", "127.0.0.1:9000"}};
    for (int i = 0; i < 2; i++) {
        const char *a = addr[i][0];
        size_t al = strlen(a), pre = al - strlen("address");
        if (!strcmp(p, a)) {
            *value = (pw_str){addr[i][1], strlen(addr[i][1])};
            return 1;
        }
        if (strncmp(p, a, pre) || strcmp(p + pre, "port"))
            continue;
        const prop *given = props_get(&x->props, a, al);
        pw_str s = given ? given->value : (pw_str){addr[i][1], strlen(addr[i][1])};
        const char *colon = s.len ? memrchr(s.data, ':', s.len) : NULL;
        uint64_t port = colon ? strtoull(colon + 1, NULL, 10) : 0;
        uint8_t le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(port >> (8 * b));
        *value = arena_dup(&x->mem, (const char *)le, 8);
        return 1;
    }
    if (!strcmp(p, "connection.id")) {
        uint8_t le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(x->conn_id >> (8 * b));
        *value = arena_dup(&x->mem, (const char *)le, 8);
        return 1;
    }
    return 0;
}

/* What the nginx module derives from the request (docs/DIRECTIVES.md). */
static int derived(exchange *x, const char *p, pw_str *value) {
    const pw_str *v;
    if (x->tcp)
        return derived_tcp(x, p, value);
#define HDR(name) ((v = hlist_get(&x->req_h, name, sizeof(name) - 1)) ? (*value = *v, 1) : 0)
    if (!strcmp(p, "request.path"))
        return HDR(":path");
    if (!strcmp(p, "request.method"))
        return HDR(":method");
    if (!strcmp(p, "request.host"))
        return HDR(":authority");
    if (!strcmp(p, "request.scheme"))
        return HDR(":scheme");
    if (!strcmp(p, "request.id"))
        return HDR("x-request-id");
    if (!strcmp(p, "request.protocol")) {
        *value = (pw_str){"HTTP/1.1", 8};
        return 1;
    }
#undef HDR
    int url = !strcmp(p, "request.url_path"), query = !strcmp(p, "request.query");
    if ((url || query) && (v = hlist_get(&x->req_h, ":path", 5))) {
        const char *q = memchr(v->data, '?', v->len);
        size_t at = q ? (size_t)(q - v->data) : v->len;
        *value = url ? (pw_str){v->data, at} : (pw_str){q ? q + 1 : "", q ? v->len - at - 1 : 0};
        return 1;
    }
    return 0;
}

static proxy_status_t h_get_property(void *hp, void *stream, const pw_str *path, size_t nseg,
                                     pw_str *value) {
    exchange *x = stream ? XS(stream) : HOST->x;
    if (!x)
        return PROXY_RESULT_NOT_FOUND;
    buf b = {0};
    join_path(&b, path, nseg);
    const prop *p = props_get(&x->props, b.p, b.len);
    proxy_status_t st = PROXY_RESULT_NOT_FOUND;
    if (p) {
        *value = p->value;
        st = PROXY_RESULT_OK;
    } else if (stream && derived(x, b.p, value)) {
        st = PROXY_RESULT_OK;
    }
    buf_free(&b);
    return st;
}

/* Envoy keeps what a plugin sets and returns it to later reads (§3.3). */
static proxy_status_t h_set_property(void *hp, void *stream, const pw_str *path, size_t nseg,
                                     pw_str value) {
    exchange *x = stream ? XS(stream) : HOST->x;
    if (!x)
        return PROXY_RESULT_NOT_FOUND;
    buf b = {0};
    join_path(&b, path, nseg);
    props_set(&x->props, &x->mem, b.p, b.len, value);
    buf_free(&b);
    return PROXY_RESULT_OK;
}

/* The fixture's clock, else the real one, moved on by `advance` steps. */
static uint64_t h_now(void *hp) {
    host *h = HOST;
    uint64_t base = h->clock_base_ns;
    if (!h->fixed_clock) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        base = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    return base + h->now_ms * 1000000u;
}

/* ------------------------------------------------------ timers, store */

static hplugin *plugin_of(host *h, pw_plugin *p) {
    for (size_t i = 0; i < h->nplugins; i++)
        if (h->plugins[i].plugin == p)
            return &h->plugins[i];
    return NULL;
}

/* proxy_set_tick_period_milliseconds: the next tick is one period from
 * now on the virtual clock (host_advance fires it). */
static void h_set_tick(void *hp, pw_plugin *plugin, uint32_t period_ms) {
    host *h = HOST;
    hplugin *p = plugin_of(h, plugin);
    if (!p && h->starting && !h->starting->plugin) {
        /* From on_vm_start / on_configure: pw_plugin_new has not returned
         * the plugin yet. */
        p = h->starting;
        p->plugin = plugin;
    }
    if (!p || h->stopping)
        return;
    if (h->x && period_ms != p->tick_ms)
        note(h->x, "%s: tick period %u ms%s", p->name, period_ms, period_ms ? "" : " (stopped)");
    p->tick_ms = period_ms;
    p->next_tick_ms = h->now_ms + period_ms;
}

static pw_store *h_store(void *hp) {
    return HOST->store;
}

/* One process: whoever registered the queue is this one; delivery comes
 * after the plugin call that enqueued returns. */
static void h_queue_ready(void *hp, uint32_t owner_slot) {
    (void)owner_slot;
    HOST->queues_due = 1;
}

/* Calls into v's VM come from its worker: the store counts its metrics
 * and hands it its queues in that slot. Returns the previous worker. */
static uint32_t set_worker(host *h, uint32_t worker) {
    uint32_t was = h->worker;
    h->worker = worker;
    if (h->store)
        pw_store_set_slot(h->store, worker);
    return was;
}

/* The store's memory: malloc'ed blocks on a list, all freed at the end of
 * the test. One process: the lock is a no-op. */
struct store_block {
    struct store_block *prev, *next;
    max_align_t align[]; /* the caller's bytes */
};

static void *region_alloc(void *region, size_t size) {
    store_region *r = region;
    if (size > SIZE_MAX - sizeof(struct store_block))
        return NULL;
    struct store_block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->prev = NULL;
    b->next = r->blocks;
    if (r->blocks)
        r->blocks->prev = b;
    r->blocks = b;
    return b->align;
}

static void region_free(void *region, void *p) {
    store_region *r = region;
    if (!p)
        return;
    struct store_block *b =
        (struct store_block *)((char *)p - offsetof(struct store_block, align));
    if (b->prev)
        b->prev->next = b->next;
    else
        r->blocks = b->next;
    if (b->next)
        b->next->prev = b->prev;
    free(b);
}

static void region_nolock(void *region) {
    (void)region;
}

static void region_release(store_region *r) {
    while (r->blocks) {
        struct store_block *b = r->blocks;
        r->blocks = b->next;
        free(b);
    }
}

/* ----------------------------------------------------------- callouts */

/* The calls plugins make are recorded in the exchange (x->callouts), each
 * answered by the first entry of the fixture's `callouts:` that matches it
 * and has answers left, or, when none does, with a failure (an unexpected
 * call: `pwasm test` fails). Answers are delivered by deliver(), after the
 * plugin call that made the call returned, once the virtual clock reached
 * their time: at once for no delay, else when an `advance` step or a
 * stream waiting for them moves the clock on. */

/* src's pairs from index `from` on, names lower-cased (as an HTTP/2
 * answer has them). */
static void lower_pairs(arena *a, hlist *dst, const hlist *src, size_t from) {
    for (size_t i = from; i < src->n; i++)
        hlist_add(dst, a, lower(a, src->kv[i].key), src->kv[i].value);
}

static int str_is(pw_str s, const char *z) {
    return z && s.len == strlen(z) && !memcmp(s.data, z, s.len);
}

static pw_str keep(exchange *x, pw_str s) {
    return arena_dup(&x->mem, s.data ? s.data : "", s.len);
}

static const char *plugin_name(host *h, pw_plugin *plugin) {
    hplugin *p = plugin_of(h, plugin);
    if (!p && h->starting)
        p = h->starting;
    return p ? p->name : "?";
}

static callout *new_callout(host *h, hvm *v, pw_plugin *plugin, uint32_t token,
                            enum callout_kind kind) {
    exchange *x = h->x;
    if (x->ncallouts == x->capcallouts) {
        x->capcallouts = x->capcallouts ? x->capcallouts * 2 : 16;
        x->callouts = xrealloc(x->callouts, x->capcallouts * sizeof *x->callouts);
    }
    callout *c = &x->callouts[x->ncallouts++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->v = v;
    c->token = token;
    c->plugin = plugin_name(h, plugin);
    c->made_in = x->cur_phase;
    c->made_ms = h->now_ms;
    c->entry = -1;
    return c;
}

/* The outstanding call `token` of VM v, or NULL. */
static callout *find_callout(host *h, hvm *v, uint32_t token) {
    exchange *x = h->x;
    for (size_t i = x ? x->ncallouts : 0; i-- > 0;) {
        callout *c = &x->callouts[i];
        if (c->v == v && c->token == token && !c->done && !c->cancelled)
            return c;
    }
    return NULL;
}

static void sent_add(exchange *x, callout *c, pw_str msg) {
    if (c->nsent == c->capsent) {
        c->capsent = c->capsent ? c->capsent * 2 : 4;
        c->sent = xrealloc(c->sent, c->capsent * sizeof *c->sent);
    }
    c->sent[c->nsent++] = keep(x, msg);
}

const char *callout_title(arena *a, const callout *c) {
    buf b = {0};
    if (c->kind == CO_HTTP) {
        buf_puts(&b, "http_call \"");
        buf_escape(&b, c->upstream.data, c->upstream.len, 100);
        buf_puts(&b, "\" ");
        buf_escape(&b, c->method.data, c->method.len, 20);
        buf_puts(&b, " ");
        buf_escape(&b, c->path.data, c->path.len, 200);
    } else {
        buf_printf(&b, "%s \"", c->stream ? "grpc_stream" : "grpc_call");
        buf_escape(&b, c->upstream.data, c->upstream.len, 100);
        buf_puts(&b, "\" ");
        buf_escape(&b, c->service.data, c->service.len, 100);
        buf_puts(&b, "/");
        buf_escape(&b, c->method.data, c->method.len, 100);
    }
    const char *r = arena_strdup(a, b.p);
    buf_free(&b);
    return r;
}

const char *callout_state(arena *a, const fixture *fx, const callout *c) {
    char s[256];
    const callout_spec *e = c->entry >= 0 && fx && (size_t)c->entry < fx->ncallouts
                                ? &fx->callouts[c->entry]
                                : NULL;
    if (c->cancelled)
        snprintf(s, sizeof s, "cancelled");
    else if (c->done && c->failure)
        snprintf(s, sizeof s, "failed (%s) at %llu ms", c->failure,
                 (unsigned long long)c->due_ms);
    else if (c->done && c->kind == CO_HTTP && e)
        snprintf(s, sizeof s, "answered %.*s at %llu ms", (int)e->headers.kv[0].value.len,
                 e->headers.kv[0].value.data, (unsigned long long)c->due_ms);
    else if (c->done && e)
        snprintf(s, sizeof s, "closed with grpc-status %u", e->grpc_status);
    else
        snprintf(s, sizeof s, "waiting (answer due at %llu ms)", (unsigned long long)c->due_ms);
    return arena_strdup(a, s);
}

/* Finds the entry that answers c and when: the first of the fixture's
 * callouts that matches it and answers more calls; the answer comes after
 * its delay, or a failure after the call's timeout when that is shorter
 * (or after its delay when the entry fails). Notes what it found. */
static void schedule(host *h, callout *c) {
    exchange *x = h->x;
    const fixture *fx = h->fx;
    for (size_t i = 0; fx && i < fx->ncallouts && c->entry < 0; i++) {
        const callout_spec *e = &fx->callouts[i];
        if (e->kind != c->kind || (e->upstream && !str_is(c->upstream, e->upstream)) ||
            (e->method && !str_is(c->method, e->method)) ||
            (e->path && !str_is(c->path, e->path)) ||
            (e->service && !str_is(c->service, e->service)))
            continue;
        uint32_t used = 0;
        for (size_t j = 0; j < x->ncallouts; j++)
            used += x->callouts[j].entry == (int)i;
        if (used < e->times)
            c->entry = (int)i;
    }
    const char *title = callout_title(&x->mem, c);
    if (c->entry < 0) {
        c->failure = "unexpected call";
        c->due_ms = h->now_ms;
        note(x, "%s (token %u): unexpected: no entry of callouts: answers it; it fails", title,
             c->token);
        return;
    }
    const callout_spec *e = &fx->callouts[c->entry];
    c->due_ms = h->now_ms + e->delay_ms;
    if (e->fail) {
        c->failure = e->fail;
        if (!strcmp(e->fail, "timeout") && c->timeout_ms)
            c->due_ms = h->now_ms + c->timeout_ms;
    } else if (c->timeout_ms && e->delay_ms > c->timeout_ms) {
        c->failure = "timeout";
        c->due_ms = h->now_ms + c->timeout_ms;
    }
    note(x, "%s (token %u): callouts[%d] (line %zu) %s at %llu ms", title, c->token, c->entry,
         e->line, c->failure ? "fails" : "answers", (unsigned long long)c->due_ms);
}

static void copy_pairs(exchange *x, hlist *dst, const pw_kv *kv, size_t n) {
    for (size_t i = 0; i < n; i++)
        hlist_add(dst, &x->mem, kv[i].key, kv[i].value);
}

static proxy_status_t h_http_call(void *hp, pw_plugin *plugin, uint32_t token,
                                  const pw_http_callout *call) {
    host *h = HOST;
    exchange *x = h->x;
    if (!x)
        return PROXY_RESULT_INTERNAL_FAILURE;
    callout *c = new_callout(h, hp, plugin, token, CO_HTTP);
    c->upstream = keep(x, call->upstream);
    c->method = keep(x, call->method);
    c->path = keep(x, call->path);
    c->body = keep(x, call->body);
    c->timeout_ms = call->timeout_ms;
    copy_pairs(x, &c->headers, call->headers, call->nheaders);
    copy_pairs(x, &c->trailers, call->trailers, call->ntrailers);
    schedule(h, c);
    return PROXY_RESULT_OK;
}

static proxy_status_t h_grpc_call(void *hp, pw_plugin *plugin, uint32_t token,
                                  const pw_grpc_callout *call) {
    host *h = HOST;
    exchange *x = h->x;
    if (!x)
        return PROXY_RESULT_INTERNAL_FAILURE;
    callout *c = new_callout(h, hp, plugin, token, CO_GRPC);
    c->stream = call->stream;
    c->upstream = keep(x, call->upstream);
    c->service = keep(x, call->service);
    c->method = keep(x, call->method);
    c->timeout_ms = call->timeout_ms;
    copy_pairs(x, &c->headers, call->metadata, call->nmetadata);
    if (!call->stream)
        sent_add(x, c, call->message);
    schedule(h, c);
    return PROXY_RESULT_OK;
}

static void half_close(host *h, callout *c) {
    if (c->half_closed)
        return;
    c->half_closed = 1;
    c->half_ms = h->now_ms;
}

static proxy_status_t h_grpc_send(void *hp, uint32_t token, pw_str message, int end_of_stream) {
    host *h = HOST;
    callout *c = find_callout(h, hp, token);
    if (!c)
        return PROXY_RESULT_NOT_FOUND;
    if (c->half_closed)
        return PROXY_RESULT_BAD_ARGUMENT;
    sent_add(h->x, c, message);
    if (end_of_stream)
        half_close(h, c);
    return PROXY_RESULT_OK;
}

static proxy_status_t h_grpc_close(void *hp, uint32_t token) {
    host *h = HOST;
    callout *c = find_callout(h, hp, token);
    if (!c)
        return PROXY_RESULT_NOT_FOUND;
    half_close(h, c);
    return PROXY_RESULT_OK;
}

static void h_callout_cancel(void *hp, uint32_t token) {
    host *h = HOST;
    callout *c = find_callout(h, hp, token);
    if (!c)
        return;
    c->cancelled = 1;
    if (!h->stopping)
        note(h->x, "%s (token %u): cancelled", callout_title(&h->x->mem, c), c->token);
}

/* gRPC events of entry e: initial metadata (when given), the messages,
 * trailing metadata (when given), the close. */
static uint32_t grpc_events(const callout_spec *e) {
    return (uint32_t)e->nmessages + (e->has_initial ? 1 : 0) + (e->has_trailing ? 1 : 0) + 1;
}

/* When c delivers its next event; UINT64_MAX: nothing to deliver (yet). A
 * stream's close waits until the plugin half-closed it, unless it fails. */
static uint64_t callout_due(const host *h, const callout *c) {
    if (c->done || c->cancelled)
        return UINT64_MAX;
    if (c->kind == CO_HTTP || c->failure || !c->stream)
        return c->due_ms;
    const callout_spec *e = &h->fx->callouts[c->entry];
    if (c->next_ev + 1 < grpc_events(e))
        return c->due_ms;
    if (!c->half_closed)
        return UINT64_MAX;
    return c->half_ms > c->due_ms ? c->half_ms : c->due_ms;
}

/* The call whose next event comes first (by time, then call order), or
 * -1; its time in *when. */
static int callout_next(const host *h, uint64_t *when) {
    const exchange *x = h->x;
    int best = -1;
    *when = UINT64_MAX;
    for (size_t i = 0; x && i < x->ncallouts; i++) {
        uint64_t t = callout_due(h, &x->callouts[i]);
        if (t < *when) {
            *when = t;
            best = (int)i;
        }
    }
    return best;
}

/* Delivers the next event of call i (its time has come). */
static void callout_deliver(host *h, size_t i) {
    exchange *x = h->x;
    callout *c = &x->callouts[i];
    hvm *v = c->v;
    const callout_spec *e = c->entry >= 0 ? &h->fx->callouts[c->entry] : NULL;
    int saved = x->cur;
    enum phase saved_phase = x->cur_phase;
    call *k = begin_call(x, PH_CALLOUT, c->token, 0);
    k->plugin = c->plugin;
    k->at_ms = h->now_ms;
    uint32_t token = c->token;
    buf d = {0};
    int rc;
    hlist pairs = {0};
    uint32_t was = set_worker(h, v->worker);
    if (c->kind == CO_HTTP) {
        c->done = 1;
        if (c->failure) {
            buf_printf(&d, "proxy_on_http_call_response(token=%u, headers=0, body_size=0, "
                           "trailers=0): failure \"%s\"",
                       token, c->failure);
            k->detail = arena_strdup(&x->mem, d.p);
            rc = pw_vm_http_call_response(v->vm, token, NULL,
                                          (pw_str){c->failure, strlen(c->failure)});
        } else {
            lower_pairs(&x->mem, &pairs, &e->headers, 0);
            hlist trailers = {0};
            lower_pairs(&x->mem, &trailers, &e->trailers, 0);
            buf_printf(&d,
                       "proxy_on_http_call_response(token=%u, headers=%zu, body_size=%zu, "
                       "trailers=%zu): %.*s from callouts[%d]",
                       token, pairs.n, e->body.len, trailers.n, (int)pairs.kv[0].value.len,
                       pairs.kv[0].value.data, c->entry);
            k->detail = arena_strdup(&x->mem, d.p);
            pw_http_response r = {.headers = pairs.kv,
                                  .nheaders = pairs.n,
                                  .body = e->body,
                                  .trailers = trailers.kv,
                                  .ntrailers = trailers.n};
            rc = pw_vm_http_call_response(v->vm, token, &r, (pw_str){"", 0});
            hlist_free(&trailers);
        }
    } else {
        pw_grpc_event ev = {.kind = PW_GRPC_CLOSE};
        uint32_t n = e ? grpc_events(e) : 1, at = c->next_ev++;
        if (c->failure || at + 1 >= n) {
            c->done = 1;
            int timeout = c->failure && !strcmp(c->failure, "timeout");
            ev.status = c->failure ? (timeout ? 4u : 14u) : e->grpc_status;
            ev.message = c->failure ? (pw_str){c->failure, strlen(c->failure)} : e->grpc_message;
            buf_printf(&d, "proxy_on_grpc_close(token=%u, status=%u)", token, ev.status);
            if (c->failure)
                buf_printf(&d, ": failure \"%s\"", c->failure);
        } else if (e->has_initial && at == 0) {
            ev.kind = PW_GRPC_INITIAL_METADATA;
            lower_pairs(&x->mem, &pairs, &e->initial, 0);
            buf_printf(&d, "proxy_on_grpc_receive_initial_metadata(token=%u, headers=%zu)", token,
                       pairs.n);
        } else if (at - (e->has_initial ? 1 : 0) < e->nmessages) {
            ev.kind = PW_GRPC_MESSAGE;
            ev.message = e->messages[at - (e->has_initial ? 1 : 0)];
            buf_printf(&d, "proxy_on_grpc_receive(token=%u, size=%zu)", token, ev.message.len);
        } else {
            ev.kind = PW_GRPC_TRAILING_METADATA;
            lower_pairs(&x->mem, &pairs, &e->trailing, 0);
            buf_printf(&d, "proxy_on_grpc_receive_trailing_metadata(token=%u, trailers=%zu)",
                       token, pairs.n);
        }
        ev.metadata = pairs.kv;
        ev.nmetadata = pairs.n;
        k->detail = arena_strdup(&x->mem, d.p);
        rc = pw_vm_grpc_event(v->vm, token, &ev);
    }
    set_worker(h, was);
    hlist_free(&pairs);
    buf_free(&d);
    if (rc != PW_OK)
        note(x, "the callout callback (token %u) failed: %s%s%s", token, pw_strerror(rc),
             v->vm && *pw_vm_last_error(v->vm) ? ": " : "",
             v->vm ? pw_vm_last_error(v->vm) : "");
    x->cur = saved;
    x->cur_phase = saved_phase;
}

/* -------------------------------------------------------------- trace */

static void h_trace(void *hp, void *stream, pw_str plugin, const char *module, const char *name,
                    const uint64_t *args, size_t nargs, uint64_t result) {
    (void)stream;
    (void)plugin;
    host *h = HOST;
    pw_vm *vm = ((hvm *)hp)->vm;
    exchange *x = h->x;
    if (!x)
        return;
    if (x->cur >= 0 && (size_t)x->cur < x->ncalls)
        x->calls[x->cur].hostcalls++;
    if (x->cur_phase == PH_START)
        x->start_hostcalls++;
    else if (x->cur_phase >= PH_TICK)
        x->other_hostcalls++;
    else
        x->hostcalls++;
    if (h->trace < 2 || !x->record)
        return;
    buf b = {0};
    trace_format(&b, vm, module, name, args, nargs, result);
    add_event(x, EV_TRACE, 0, b.p, b.len);
    if (!strcmp(module, "env") && result == PROXY_RESULT_UNIMPLEMENTED)
        x->events[x->nevents - 1].unimplemented = 1;
    if (!strcmp(name, "proxy_get_property")) {
        buf_clear(&b);
        trace_property(&b, vm, args, result);
        add_event(x, EV_PROPERTY, 0, b.p, b.len);
    }
    buf_free(&b);
}

/* ------------------------------------------------------------ exchange */

void exchange_init(exchange *x, const fixture *fx, int record) {
    memset(x, 0, sizeof *x);
    x->fx = fx;
    x->record = record;
    x->cur = -1;
}

void exchange_next(exchange *x) {
    x->req_h.n = x->req_t.n = x->resp_h.n = x->resp_t.n = 0;
    x->req_t_on = x->resp_t_on = x->resp_h_on = 0;
    buf_clear(&x->req_body);
    buf_clear(&x->resp_body);
    buf_clear(&x->req_sent);
    buf_clear(&x->resp_sent);
    x->req_body_on = x->resp_body_on = 0;
    x->props.n = 0;
    x->lr.present = 0;
    x->lr.headers.n = 0;
    x->outcome = OUT_COMPLETE;
    x->stopped_in = PH_START;
    x->error[0] = 0;
    x->hostcalls = 0;
    x->cur = -1;
    x->tcp = 0;
    x->ds = x->us = (tcp_side){0};
    x->plugin_closed = 0;
    x->closed_ms = 0;
}

static void callouts_clear(exchange *x) {
    for (size_t i = 0; i < x->ncallouts; i++) {
        hlist_free(&x->callouts[i].headers);
        hlist_free(&x->callouts[i].trailers);
        free(x->callouts[i].sent);
    }
    x->ncallouts = 0;
}

void exchange_reset(exchange *x) {
    callouts_clear(x);
    arena_reset(&x->mem);
    exchange_next(x);
    x->ncalls = x->nevents = 0;
    x->start_hostcalls = x->other_hostcalls = 0;
}

void exchange_free(exchange *x) {
    hlist_free(&x->req_h);
    hlist_free(&x->req_t);
    hlist_free(&x->resp_h);
    hlist_free(&x->resp_t);
    hlist_free(&x->lr.headers);
    buf_free(&x->req_body);
    buf_free(&x->resp_body);
    buf_free(&x->req_sent);
    buf_free(&x->resp_sent);
    free(x->props.v);
    callouts_clear(x);
    free(x->callouts);
    free(x->calls);
    free(x->events);
    arena_free(&x->mem);
    memset(x, 0, sizeof *x);
}

static const pw_host_log_ops log_ops = {.log = h_log, .log_level = h_log_level};

static const pw_host_clock_ops clock_ops = {.now_ns = h_now};

static const pw_host_timer_ops timer_ops = {.set_tick = h_set_tick};

static const pw_host_shared_ops shared_ops = {.store = h_store, .queue_ready = h_queue_ready};

static const pw_host_property_ops property_ops = {
    .get_property = h_get_property,
    .set_property = h_set_property,
};

static const pw_host_http_ops http_ops = {
    .map_pairs = h_map_pairs,
    .map_get = h_map_get,
    .map_add = h_map_add,
    .map_replace = h_map_replace,
    .map_remove = h_map_remove,
    .map_set_pairs = h_map_set_pairs,
    .body_size = h_body_size,
    .body_copy = h_body_copy,
    .body_replace = h_body_replace,
};

/* A connection's DownstreamData / UpstreamData: the bodies' hooks. */
static const pw_host_network_ops network_ops = {
    .data_size = h_body_size,
    .data_copy = h_body_copy,
    .data_replace = h_body_replace,
};

static const pw_host_callout_ops callout_ops = {
    .http_call = h_http_call,
    .grpc_call = h_grpc_call,
    .grpc_send = h_grpc_send,
    .grpc_close = h_grpc_close,
    .cancel = h_callout_cancel,
};

/* Only when hostcalls are recorded (o->trace). */
static const pw_host_observe_ops observe_ops = {.trace = h_trace};

/* Delivers what the queues hold (pw_vm_deliver_queues on every VM) for as
 * long as deliveries enqueue more, each VM's round recorded as one
 * PH_QUEUE call. */
static void deliver_queues(host *h) {
    exchange *x = h->x;
    for (int round = 0; h->queues_due; round++) {
        h->queues_due = 0;
        if (round == 100) {
            note(x, "queue deliveries keep enqueueing: stopped after 100 rounds");
            return;
        }
        for (size_t i = 0; i < h->nvms; i++) {
            size_t ev = x->nevents;
            int saved = x->cur;
            enum phase saved_phase = x->cur_phase;
            call *c = begin_call(x, PH_QUEUE, 0, 0);
            if (h->vms[i].worker) {
                char who[PW_ERRLEN];
                snprintf(who, sizeof who, "%s, worker %u", h->vms[i].vm_id, h->vms[i].worker);
                c->plugin = arena_dup(&x->mem, who, strlen(who) + 1).data;
            } else if (h->nplugins > 1) {
                c->plugin = h->vms[i].vm_id;
            }
            uint32_t was = set_worker(h, h->vms[i].worker);
            int rc = pw_vm_deliver_queues(h->vms[i].vm);
            set_worker(h, was);
            c = &x->calls[x->cur];
            c->size = rc > 0 ? (size_t)rc : 0;
            x->cur = saved;
            x->cur_phase = saved_phase;
            if (rc < 0)
                note(x, "proxy_on_queue_ready failed: %s", pw_strerror(rc));
            else if (rc == 0 && x->nevents == ev && !c->hostcalls)
                x->ncalls--; /* nothing for this VM */
        }
    }
}

/* After a plugin call returned: queue deliveries, then the answers of
 * callouts whose time has come (each may enqueue or call again). */
static void deliver(host *h) {
    for (uint32_t n = 0;; n++) {
        deliver_queues(h);
        uint64_t when;
        int i = callout_next(h, &when);
        if (i < 0 || when > h->now_ms)
            return;
        if (n == 100000) {
            note(h->x, "callout answers keep coming: stopped after 100000 at %llu ms",
                 (unsigned long long)h->now_ms);
            return;
        }
        callout_deliver(h, (size_t)i);
    }
}

void host_deliver(host *h) {
    deliver(h);
}

uint64_t host_next_answer(host *h) {
    uint64_t when;
    callout_next(h, &when);
    return when;
}

/* The name a plugin of the test goes by: plugin_name, else its root_id,
 * else the module's name. */
static const char *spec_name(const plugin_spec *ps, pw_module *m) {
    if (ps->name)
        return ps->name;
    if (ps->root_id && *ps->root_id)
        return ps->root_id;
    return pw_module_name(m);
}

/* Starts plugin `ps` (its unset keys from `first`) on its VM, creating the
 * VM unless one of the same module and vm_id exists. */
static int start_plugin(host *h, const plugin_spec *ps, const plugin_spec *first, pw_module *m,
                        const run_opts *o, char *err, size_t errlen) {
    exchange *x = h->x;
    if (ps != first && ps->path && (!first->path || strcmp(ps->path, first->path))) {
        if (!o->load) {
            snprintf(err, errlen, "plugins: %s: another module is not supported here", ps->path);
            return -1;
        }
        if (!(m = o->load(o->load_data, ps->path, err, errlen)))
            return -1;
    }
    const char *vm_id = ps->vm_id ? ps->vm_id : first->vm_id ? first->vm_id : "";
    const plugin_spec *vc = ps->has_vm_config ? ps : first;
    const char *vm_config = vc->vm_config ? vc->vm_config : "";
    size_t vm_config_len = vc->vm_config ? vc->vm_config_len : 0;
    hplugin *p = &h->plugins[h->nplugins++];
    p->name = spec_name(ps, m);
    hvm *v = NULL;
    for (size_t i = 0; i < h->nvms; i++)
        if (h->vms[i].m == m && !strcmp(h->vms[i].vm_id, vm_id) && h->vms[i].worker == ps->worker)
            v = &h->vms[i];
    set_worker(h, ps->worker);
    call *c = begin_call(x, PH_START, 0, 0);
    c->plugin = p->name;
    if (!v) {
        v = &h->vms[h->nvms++];
        /* this test's limits (modules are shared by the tests of a run) */
        pw_module_set_limits(m, &x->fx->limits, 0, 0);
        *v = (hvm){.h = h,
                   .m = m,
                   .vm_id = vm_id,
                   .vm_config = vm_config,
                   .vm_config_len = vm_config_len,
                   .worker = ps->worker};
        if (pw_vm_new(m, (pw_str){vm_id, strlen(vm_id)}, (pw_str){vm_config, vm_config_len},
                      &h->ops, v, &v->vm, err, errlen) != PW_OK) {
            h->nvms--;
            return -1;
        }
    } else if (ps->has_vm_config && (vm_config_len != v->vm_config_len ||
                                     memcmp(vm_config, v->vm_config, vm_config_len))) {
        snprintf(err, errlen,
                 "plugin \"%s\": vm_config differs from that of its VM (vm_id \"%s\"), which "
                 "its first plugin created",
                 p->name, vm_id);
        return -1;
    }
    p->v = v;
    const char *root_id = ps->root_id ? ps->root_id : "";
    h->starting = p;
    int rc = pw_plugin_new(
        v->vm, (pw_str){p->name, strlen(p->name)}, (pw_str){root_id, strlen(root_id)},
        (pw_str){ps->config ? ps->config : "", ps->config_len}, &p->plugin, err, errlen);
    h->starting = NULL;
    x->cur = -1;
    if (rc == PW_OK)
        deliver(h);
    return rc == PW_OK ? 0 : -1;
}

int host_start(host *h, pw_module *m, const fixture *fx, exchange *x, const run_opts *o) {
    memset(h, 0, sizeof *h);
    h->x = x;
    h->fx = fx;
    h->level = o->log_level >= 0    ? o->log_level
               : fx->log_level >= 0 ? fx->log_level
                                    : o->default_level;
    h->trace = o->trace;
    h->fixed_clock = fx->has_clock;
    h->clock_base_ns = fx->has_clock ? fx->clock_ns : 0;
    h->ops = (pw_host_ops){
        .size = sizeof(pw_host_ops),
        .log = &log_ops,
        .clock = &clock_ops,
        .property = &property_ops,
        .http = &http_ops,
        .observe = o->trace ? &observe_ops : NULL,
        .timers = &timer_ops,
        .shared = &shared_ops,
        .callouts = &callout_ops,
        .network = &network_ops,
    };
    /* One store for every plugin of the test, on the heap. Without it
     * (the library cannot open one) the shared hostcalls answer
     * Unimplemented. */
    pw_store_mem mem = {.region = &h->region,
                        .alloc = region_alloc,
                        .free = region_free,
                        .lock = region_nolock,
                        .unlock = region_nolock};
    /* A slot per worker of the test (plugins with `worker: N`). */
    uint32_t workers = fx->plugin.worker + 1;
    for (size_t i = 0; i < fx->nplugins; i++)
        if (fx->plugins[i].worker + 1 > workers)
            workers = fx->plugins[i].worker + 1;
    pw_store_quota quota = {{"", 0}, fx->shm_quota};
    pw_store_config scfg = {.slots = workers,
                            .evict_lru = fx->shm_lru,
                            .quota = &quota,
                            .nquota = fx->shm_quota ? 1 : 0};
    char err[PW_ERRLEN];
    if (pw_store_open(&mem, &scfg, NULL, &h->store, err, sizeof err) != PW_OK)
        h->store = NULL;
    /* Properties from the fixture are readable from on_vm_start on. */
    x->props.n = 0;
    for (size_t i = 0; i < fx->props.n; i++)
        props_set(&x->props, &x->mem, fx->props.v[i].path, strlen(fx->props.v[i].path),
                  fx->props.v[i].value);
    size_t n = 1 + fx->nplugins;
    h->vms = xmalloc(n * sizeof *h->vms);
    h->plugins = xmalloc(n * sizeof *h->plugins);
    memset(h->vms, 0, n * sizeof *h->vms);
    memset(h->plugins, 0, n * sizeof *h->plugins);
    int rc = start_plugin(h, &fx->plugin, &fx->plugin, m, o, err, sizeof err);
    for (size_t i = 0; rc == 0 && i < fx->nplugins; i++)
        rc = start_plugin(h, &fx->plugins[i], &fx->plugin, m, o, err, sizeof err);
    x->cur = -1;
    if (rc != 0) {
        x->outcome = OUT_START_FAILED;
        snprintf(x->error, sizeof x->error, "%s", err);
        note(x, "the plugin did not start: %s", err);
        host_stop(h);
        return -1;
    }
    h->vm = h->vms[0].vm;
    h->plugin = h->plugins[0].plugin;
    set_worker(h, h->plugins[0].v->worker);
    return 0;
}

void host_stop(host *h) {
    /* set_tick(0) arrives while the VMs are freed: ignored. */
    h->stopping = 1;
    for (size_t i = 0; i < h->nvms; i++)
        if (h->vms[i].vm) {
            set_worker(h, h->vms[i].worker);
            pw_vm_free(h->vms[i].vm);
        }
    free(h->vms);
    free(h->plugins);
    h->vms = NULL;
    h->plugins = NULL;
    h->nvms = h->nplugins = 0;
    h->vm = NULL;
    h->plugin = NULL;
    if (h->store)
        pw_store_close(h->store);
    h->store = NULL;
    region_release(&h->region);
    h->stopping = 0;
}

void host_advance(host *h, uint64_t ms) {
    exchange *x = h->x;
    uint64_t until = h->now_ms + ms;
    for (uint32_t fired = 0;; fired++) {
        hplugin *next = NULL;
        for (size_t i = 0; i < h->nplugins; i++) {
            hplugin *p = &h->plugins[i];
            if (p->tick_ms && p->plugin && p->next_tick_ms <= until &&
                (!next || p->next_tick_ms < next->next_tick_ms))
                next = p;
        }
        uint64_t answer;
        callout_next(h, &answer);
        if (!next && answer > until)
            break;
        if (fired == 100000) {
            note(x, "more than 100000 ticks and answers in one advance: the clock jumps to "
                    "the end");
            break;
        }
        if (answer <= until && (!next || answer < next->next_tick_ms)) {
            /* An answer comes first (at a tick's time: after the tick). */
            h->now_ms = answer > h->now_ms ? answer : h->now_ms;
            deliver(h);
            continue;
        }
        h->now_ms = next->next_tick_ms;
        /* The period stays unless the plugin sets another in on_tick. */
        next->next_tick_ms += next->tick_ms;
        call *c = begin_call(x, PH_TICK, 0, 0);
        c->plugin = next->name;
        c->at_ms = h->now_ms;
        uint32_t was = set_worker(h, next->v->worker);
        int rc = pw_plugin_on_tick(next->plugin);
        set_worker(h, was);
        x->cur = -1;
        if (rc != PW_OK)
            note(x, "%s: proxy_on_tick failed: %s%s%s", next->name, pw_strerror(rc),
                 next->v->vm && *pw_vm_last_error(next->v->vm) ? ": " : "",
                 next->v->vm ? pw_vm_last_error(next->v->vm) : "");
        deliver(h);
    }
    h->now_ms = until;
}

int host_step(host *h, exchange *x, const fixture *fx, size_t index) {
    const step *s = &fx->steps[index];
    h->x = x;
    call *c = begin_call(x, PH_STEP, index, 0);
    c->at_ms = h->now_ms;
    x->cur = -1;
    if (s->kind == STEP_ADVANCE) {
        host_advance(h, s->advance_ms);
        return 0;
    }
    hplugin *p = &h->plugins[0];
    if (s->through) {
        p = NULL;
        for (size_t i = 0; i < h->nplugins && !p; i++)
            if (!strcmp(h->plugins[i].name, s->through))
                p = &h->plugins[i];
        if (!p) {
            snprintf(x->error, sizeof x->error, "step %zu (line %zu): no plugin named \"%s\"",
                     index + 1, s->line, s->through);
            return -1;
        }
    }
    set_worker(h, p->v->worker);
    fixture sf;
    fixture_for_step(&sf, fx, s);
    const fixture *saved = x->fx;
    for (uint32_t i = 0; i < s->repeat; i++) {
        exchange_next(x);
        x->fx = &sf;
        h->plugin = p->plugin;
        host_exchange(h, x);
    }
    /* x->fx must not outlive sf; the live state is the last exchange's. */
    x->fx = saved;
    h->plugin = h->plugins[0].plugin;
    set_worker(h, h->plugins[0].v->worker);
    fixture_free(&sf);
    return 0;
}

uint64_t host_guest_memory(host *h) {
    uint64_t size = 0;
    if (h->vm)
        guest_memory(h->vm, &size);
    return size;
}

/* NONE: nothing asked (pending()). */
enum flow { GO, STOP, LOCAL, HELD, BUFFER, NONE };

static void snapshot(exchange *x, call *c) {
    if (!x->record)
        return;
    if (c->phase == PH_DOWNSTREAM_DATA || c->phase == PH_UPSTREAM_DATA) {
        const buf *d = c->phase == PH_DOWNSTREAM_DATA ? &x->req_body : &x->resp_body;
        c->has_map = 1;
        c->body_after = arena_dup(&x->mem, d->p ? d->p : "", d->len);
        return;
    }
    const hlist *maps[PH_COUNT] = {[PH_REQ_HEADERS] = &x->req_h,
                                   [PH_REQ_TRAILERS] = &x->req_t,
                                   [PH_RESP_HEADERS] = &x->resp_h,
                                   [PH_RESP_TRAILERS] = &x->resp_t};
    const buf *b = c->phase == PH_REQ_BODY    ? &x->req_body
                   : c->phase == PH_RESP_BODY ? &x->resp_body
                                              : NULL;
    const hlist *src = maps[c->phase];
    if (!b && !src)
        return;
    c->has_map = 1;
    if (b) {
        c->body_after = arena_dup(&x->mem, b->p ? b->p : "", b->len);
        return;
    }
    /* Values are never changed in place, so the pairs can be shared. */
    c->map_after.n = c->map_after.cap = src->n;
    c->map_after.kv = arena_alloc(&x->mem, (src->n + 1) * sizeof(pw_kv));
    if (src->n)
        memcpy(c->map_after.kv, src->kv, src->n * sizeof(pw_kv));
}

static void take_local_response(host *h, exchange *x, pw_stream *s, call *c) {
    const pw_local_response *r = pw_stream_local_response(s);
    if (!r)
        return;
    if (x->lr.present) {
        note(x, "a second local response (%u) is ignored: one per request", r->status);
        return;
    }
    (void)h;
    c->lr = 1;
    local_resp *l = &x->lr;
    l->present = 1;
    l->status = r->status;
    l->details = arena_dup(&x->mem, r->details.data, r->details.len);
    l->body = arena_dup(&x->mem, r->body.data, r->body.len);
    l->grpc_status = r->grpc_status;
    l->phase = c->phase;
    l->headers.n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        hlist_add(&l->headers, &x->mem, r->headers[i].key, r->headers[i].value);
}

/* What another context asked of stream s since its last callback (a
 * callout's callback, a tick, with the stream as its effective context):
 * STOP (closed, or its VM discarded), LOCAL (a local response), GO (the
 * direction of ph continued) or NONE. */
static enum flow pending(host *h, exchange *x, pw_stream *s, enum phase ph) {
    unsigned bits = pw_stream_take(s, PW_PENDING_ALL);
    if (bits & PW_PENDING_CLOSE) {
        x->outcome = OUT_CLOSED;
        x->stopped_in = ph;
        note(x, "proxy_close_stream from another context: the stream is reset");
        return STOP;
    }
    if (bits & PW_PENDING_FAILED) {
        x->outcome = OUT_FAILED;
        x->stopped_in = ph;
        snprintf(x->error, sizeof x->error, "its VM was discarded after a trap elsewhere");
        note(x, "the stream failed: %s; failing closed (503)", x->error);
        return STOP;
    }
    if (bits & PW_PENDING_LOCAL_RESPONSE) {
        /* Shown under the callback that asked for it: the last one that
         * was not the stream's own. */
        size_t at = x->ncalls;
        while (at > 0 && x->calls[at - 1].phase >= PH_CREATE &&
               x->calls[at - 1].phase <= PH_END)
            at--;
        call *c = &x->calls[at > 0 ? at - 1 : (size_t)x->last_call];
        take_local_response(h, x, s, c);
        if (c->lr) {
            x->lr.phase = ph;
            return LOCAL;
        }
    }
    unsigned own =
        ph >= PH_RESP_HEADERS ? PW_PENDING_CONTINUE_RESPONSE : PW_PENDING_CONTINUE_REQUEST;
    return bits & own ? GO : NONE;
}

/* Calls one stream callback through the chain (one plugin, failure policy
 * closed: the CLI fails as nginx does by default) and says what the
 * exchange does next. */
static enum flow call_one(host *h, exchange *x, pw_chain *ch, enum phase ph, size_t n, int eos) {
    call *c = begin_call(x, ph, n, eos);
    char why[PW_ERRLEN];
    pw_action a = pw_chain_call(ch, 0, (pw_event)(ph - PH_REQ_HEADERS), n, eos, why, sizeof why);
    pw_stream *s = ch->links[0].stream;
    c = &x->calls[x->cur]; /* the array may have moved */
    /* The record shows what the plugin returned; `a` is what the core made
     * of it with what the plugin queued (a close, a continue of the
     * direction it paused). The exchange runs one callback at a time, so
     * whatever else is pending is taken now: a continue of this direction
     * also resumes what an earlier callback of it paused; one of the other
     * direction, nothing paused yet, means nothing. */
    unsigned applied;
    c->action = pw_stream_returned(s, &applied);
    unsigned own =
        ph >= PH_RESP_HEADERS ? PW_PENDING_CONTINUE_RESPONSE : PW_PENDING_CONTINUE_REQUEST;
    c->resumed = ((applied | pw_stream_take(s, PW_PENDING_ALL)) & own) != 0;
    c->closed = a == PW_ACTION_CLOSE;
    snapshot(x, c);
    x->last_call = x->cur;
    x->cur = -1;
    deliver(h);
    c = &x->calls[x->last_call]; /* deliveries add calls: the array may move */
    if (a == PW_ACTION_CLOSE) {
        x->outcome = OUT_CLOSED;
        x->stopped_in = ph;
        note(x, "proxy_close_stream in %s: the stream is reset", phase_name(ph));
        return STOP;
    }
    if (a == PW_ACTION_ERROR) {
        x->outcome = OUT_FAILED;
        x->stopped_in = ph;
        snprintf(x->error, sizeof x->error, "%s", why);
        note(x, "the plugin failed in %s: %s; failing closed (503)", phase_name(ph), x->error);
        return STOP;
    }
    /* What the answers delivered since asked (a callout made here and
     * answered at once may have continued the stream). */
    enum flow late = pending(h, x, s, ph);
    c = &x->calls[x->last_call];
    if (late == STOP)
        return STOP;
    if (a == PW_ACTION_LOCAL_RESPONSE) {
        take_local_response(h, x, s, c);
        if (c->lr)
            return LOCAL;
        return GO; /* a second local response is ignored, its Pause too */
    }
    if (late == LOCAL)
        return LOCAL;
    if (a == PW_ACTION_CONTINUE) {
        if (applied)
            note(x, "paused, then resumed by proxy_continue_stream during the callback");
        return GO;
    }
    if (late == GO) {
        c->resumed = 1;
        note(x, "paused, then resumed from another context (a callout's answer) right after");
        return GO;
    }
    return a == PW_ACTION_PAUSE_NO_BUFFER ? HELD : BUFFER;
}

/* The direction is held at its end. A proxy would wait: while callouts
 * are outstanding, the virtual clock moves on to their answers (ticks
 * come on the way), whose callbacks may continue, answer or close the
 * stream. Returns GO, LOCAL, STOP, or NONE (nothing more will come). */
static enum flow wait_answers(host *h, exchange *x, pw_chain *ch, enum phase ph) {
    pw_stream *s = ch->links[0].stream;
    for (uint32_t n = 0;; n++) {
        enum flow f = pending(h, x, s, ph);
        if (f == GO && x->ncalls) {
            x->cur = (int)x->ncalls - 1; /* under the callback that resumed it */
            note(x, "paused in %s, resumed at %llu ms from another context", phase_name(ph),
                 (unsigned long long)h->now_ms);
            x->cur = -1;
        }
        if (f != NONE)
            return f;
        uint64_t when;
        if (callout_next(h, &when) < 0 || when == UINT64_MAX)
            return NONE;
        if (n == 100000) {
            note(x, "waited for 100000 callout answers: giving up");
            return NONE;
        }
        if (n == 0) {
            x->cur = x->last_call; /* said under the callback that paused */
            note(x, "paused in %s: waiting for callout answers (the clock moves on)",
                 phase_name(ph));
            x->cur = -1;
        }
        host_advance(h, when > h->now_ms ? when - h->now_ms : 0);
    }
}

static void stall(exchange *x, enum phase ph) {
    x->outcome = OUT_PAUSED;
    x->stopped_in = ph;
    note(x, "paused in %s and nothing resumed it: the exchange stops here (a proxy would wait)",
         phase_name(ph));
}

/* The response a local reply makes (docs/DIRECTIVES.md "Local responses"). */
static void local_as_response(exchange *x, side *out) {
    local_resp *l = &x->lr;
    char num[16];
    snprintf(num, sizeof num, "%u", l->status);
    x->resp_h.n = 0;
    hlist_add(&x->resp_h, &x->mem, (pw_str){":status", 7}, (pw_str){num, strlen(num)});
    int has_type = 0;
    for (size_t i = 0; i < l->headers.n; i++) {
        pw_str k = lower(&x->mem, l->headers.kv[i].key);
        has_type |= keq(k, (pw_str){"content-type", 12});
        if (!keq(k, (pw_str){"content-length", 14}))
            hlist_add(&x->resp_h, &x->mem, k, l->headers.kv[i].value);
    }
    if (l->body.len && !has_type)
        hlist_add(&x->resp_h, &x->mem, (pw_str){"content-type", 12}, (pw_str){"text/plain", 10});
    snprintf(num, sizeof num, "%zu", l->body.len);
    hlist_add(&x->resp_h, &x->mem, (pw_str){"content-length", 14}, (pw_str){num, strlen(num)});
    if (l->grpc_status >= 0 && l->grpc_status <= 16) {
        snprintf(num, sizeof num, "%d", l->grpc_status);
        hlist_add(&x->resp_h, &x->mem, (pw_str){"grpc-status", 11}, (pw_str){num, strlen(num)});
    }
    memset(out, 0, sizeof *out);
    out->present = 1;
    out->nchunks = l->body.len ? 1 : 0;
    out->chunks = &l->body;
}

/* One direction: headers, body chunks, trailers (§8.7). A Pause from the
 * headers holds the direction, but the body still reaches the plugin (as in
 * pwasm's nginx module), which may resume it from there; a body callback's
 * Pause keeps buffering (the next call sees everything so far), a no-buffer
 * pause holds the chunk. Whatever is still held at the end of the direction
 * stalls the exchange. Returns GO, LOCAL or STOP. */
static enum flow direction(host *h, exchange *x, pw_chain *ch, const side *sd, int resp,
                           int trailers) {
    enum phase ph = resp ? PH_RESP_HEADERS : PH_REQ_HEADERS, paused = PH_COUNT;
    hlist *map = resp ? &x->resp_h : &x->req_h;
    buf *cur = resp ? &x->resp_body : &x->req_body;
    buf *sent = resp ? &x->resp_sent : &x->req_sent;
    int *body_on = resp ? &x->resp_body_on : &x->req_body_on;
    int *trailers_on = resp ? &x->resp_t_on : &x->req_t_on;
    enum flow r = call_one(h, x, ch, ph, map->n, !sd->nchunks && !trailers);
    if (r == STOP || r == LOCAL)
        return r;
    if (r != GO)
        paused = ph;
    buf held = {0};
    buf_clear(cur);
    for (size_t i = 0; i < sd->nchunks; i++) {
        int eos = i + 1 == sd->nchunks && !trailers;
        buf_put(cur, sd->chunks[i].data, sd->chunks[i].len);
        if (eos)
            *trailers_on = 1; /* §8.6: trailers may be added at the end */
        *body_on = 1;
        r = call_one(h, x, ch, ph + 1, cur->len, eos);
        *body_on = 0;
        if (r == STOP || r == LOCAL) {
            buf_free(&held);
            return r;
        }
        if (x->calls[x->last_call].resumed)
            paused = PH_COUNT;
        if (r == GO) {
            buf_put(sent, held.p, held.len);
            buf_put(sent, cur->p, cur->len);
            buf_clear(&held);
            buf_clear(cur);
        } else if (r == HELD) {
            buf_put(&held, cur->p, cur->len);
            buf_clear(cur);
        }
        if (r != GO && eos && paused == PH_COUNT)
            paused = ph + 1;
    }
    if (trailers) {
        *trailers_on = 1;
        r = call_one(h, x, ch, ph + 2, (resp ? &x->resp_t : &x->req_t)->n, 0);
        if (r == STOP || r == LOCAL) {
            buf_free(&held);
            return r;
        }
        if (x->calls[x->last_call].resumed)
            paused = PH_COUNT;
        if (r != GO && paused == PH_COUNT)
            paused = ph + 2;
    }
    if (paused != PH_COUNT) {
        r = wait_answers(h, x, ch, paused);
        if (r == STOP || r == LOCAL) {
            buf_free(&held);
            return r;
        }
        if (r != GO) {
            buf_free(&held);
            stall(x, paused);
            return STOP;
        }
    }
    /* Trailers went on: so does what the body callbacks still held. */
    buf_put(sent, held.p, held.len);
    buf_put(sent, cur->p, cur->len);
    buf_clear(cur);
    buf_free(&held);
    return GO;
}

/* The response: the fixture's, or the local response made in a request
 * callback (then `is_local`). */
static void response(host *h, exchange *x, pw_chain *ch, const side *sd, int is_local) {
    if (!is_local)
        hlist_copy(&x->resp_h, &x->mem, &sd->headers);
    x->resp_h_on = 1;
    x->resp_t.n = 0;
    if (sd->has_trailers)
        hlist_copy(&x->resp_t, &x->mem, &sd->trailers);
    if (direction(h, x, ch, sd, 1, sd->has_trailers && !is_local) == LOCAL) {
        /* §8.8: the upstream response is replaced by the local one and the
         * rest of the response callbacks are skipped. */
        side lr;
        local_as_response(x, &lr);
        buf_clear(&x->resp_sent);
        buf_put(&x->resp_sent, x->lr.body.data, x->lr.body.len);
        x->outcome = OUT_LOCAL;
    }
}

/* The request; returns GO (send it upstream), LOCAL or STOP. */
static enum flow request(host *h, exchange *x, pw_chain *ch, const side *sd) {
    if (sd->has_trailers)
        hlist_copy(&x->req_t, &x->mem, &sd->trailers);
    return direction(h, x, ch, sd, 0, sd->has_trailers);
}

void host_snapshot(exchange *x, call *c) {
    snapshot(x, c);
}

int host_open_stream(host *h, exchange *x, pw_link *link, int tcp) {
    const fixture *fx = x->fx;
    h->x = x;
    x->outcome = OUT_COMPLETE;
    if (x->props.n == 0)
        for (size_t i = 0; i < fx->props.n; i++)
            props_set(&x->props, &x->mem, fx->props.v[i].path, strlen(fx->props.v[i].path),
                      fx->props.v[i].value);
    begin_call(x, PH_CREATE, 0, 0);
    /* The stream context is created here rather than by the first call,
     * so that the record shows creation on its own. */
    *link = (pw_link){.plugin = h->plugin, .host_stream = x};
    char err[PW_ERRLEN];
    int rc = (tcp ? pw_stream_new_tcp : pw_stream_new)(h->plugin, x, &link->stream, err,
                                                       sizeof err);
    x->cur = -1;
    deliver(h);
    if (rc != PW_OK) {
        x->outcome = OUT_FAILED;
        x->stopped_in = PH_CREATE;
        snprintf(x->error, sizeof x->error, "%s", err);
        note(x, "the stream could not be created: %s", err);
        return -1;
    }
    return 0;
}

void host_exchange(host *h, exchange *x) {
    const fixture *fx = x->fx;
    if (fx->conn.present) {
        host_connection(h, x);
        return;
    }
    /* The live maps start as the fixture's. */
    hlist_copy(&x->req_h, &x->mem, &fx->req.headers);
    x->resp_h.n = x->req_t.n = x->resp_t.n = 0;
    pw_link link;
    pw_chain ch = {.links = &link, .n = 1, .policy = PW_FAIL_CLOSED};
    if (host_open_stream(h, x, &link, 0)) {
        /* no stream context (e.g. the VM is taken out by the crash-loop
         * brake): fail closed, as nginx does */
        hlist_add(&x->resp_h, &x->mem, (pw_str){":status", 7}, (pw_str){"503", 3});
        x->resp_h_on = 1;
        return;
    }
    enum flow r = request(h, x, &ch, &fx->req);
    if (r == GO) {
        response(h, x, &ch, &fx->resp, 0);
    } else if (r == LOCAL) {
        side lr;
        local_as_response(x, &lr);
        response(h, x, &ch, &lr, 1);
        if (x->outcome == OUT_COMPLETE)
            x->outcome = OUT_LOCAL;
    }
    if (x->outcome == OUT_FAILED && x->stopped_in < PH_RESP_BODY) {
        /* Fail closed: the client gets a 503 (the response headers have not
         * gone out yet). */
        x->resp_h.n = 0;
        hlist_add(&x->resp_h, &x->mem, (pw_str){":status", 7}, (pw_str){"503", 3});
        buf_clear(&x->resp_sent);
        x->resp_h_on = 1;
    }
    /* on_log sees every map (§8.6). */
    x->req_t_on = x->req_t_on || fx->req.has_trailers;
    begin_call(x, PH_END, 0, 0);
    pw_chain_end(&ch, 0); /* on_log, on_done, on_delete */
    x->cur = -1;
    deliver(h);
}
