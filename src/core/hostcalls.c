/*
 * hostcalls.c -- the `env` functions a Proxy-Wasm module imports
 * (REFERENCE.md §3), and the registry of every host function (§10).
 *
 * Each hostcall receives the pw_vm as its context. Guest pointers are checked
 * with 64-bit arithmetic before use; misuse returns the ABI status. Functions
 * this version does not implement return Unimplemented (12), never trap.
 */
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include "core/core.h"

typedef uint32_t u32;
typedef uint64_t u64;

#define VM ((pw_vm *)c)
#define OK PROXY_RESULT_OK

/* Takes n bytes of a hostcall from the callback's budget, or refuses. */
static proxy_status_t charge(pw_vm *vm, const char *call, uint64_t n)
{
    return pw_vm_take(vm, call, n) ? OK : PROXY_RESULT_BAD_ARGUMENT;
}

/* ------------------------------------------------------- logging, time */

/* Escaped, truncated and rate-limited in pw_plugin_log (limits.c); a
 * dropped line is still Ok (the Rust SDK panics on anything else). */
static u32 hc_log(void *c, u32 level, u32 ptr, u32 len)
{
    if (level > PROXY_LOG_CRITICAL)
        return PROXY_RESULT_BAD_ARGUMENT;
    pw_str msg;
    PW_GUEST_STR(VM, msg, ptr, len);
    pw_plugin_log(VM, (proxy_log_level_t)level, msg.data, msg.len, msg.len);
    return OK;
}

static u32 hc_get_log_level(void *c, u32 ret)
{
    u32 level = VM->ops->log_level ? (u32)VM->ops->log_level(VM->host)
                                   : PROXY_LOG_INFO;
    if (level > PROXY_LOG_CRITICAL)
        level = PROXY_LOG_CRITICAL; /* §3.2: Rust panics on 6 */
    return pw_mem_put_u32(VM, ret, level) ? PROXY_RESULT_INVALID_MEMORY_ACCESS
                                          : OK;
}

uint64_t pw_vm_now_ns(pw_vm *vm)
{
    if (vm->ops->now_ns)
        return vm->ops->now_ns(vm->host);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static u32 hc_get_current_time(void *c, u32 ret)
{
    return pw_mem_put_u64(VM, ret, pw_vm_now_ns(VM))
               ? PROXY_RESULT_INVALID_MEMORY_ACCESS
               : OK;
}

/* ------------------------------------------------------- configuration */

/* The bytes of a configuration buffer, or NotFound. */
static proxy_status_t config_of(pw_vm *vm, u32 type, pw_str *out)
{
    pw_ctx *ctx = pw_vm_ctx(vm);
    if (type == PROXY_BUFFER_VM_CONFIGURATION) {
        *out = (pw_str){vm->vm_config, vm->vm_config_len};
        return OK;
    }
    /* Envoy limits the plugin configuration to on_configure; any context
     * of the plugin may read it here, which no SDK minds. */
    if (type == PROXY_BUFFER_PLUGIN_CONFIGURATION && ctx && ctx->plugin) {
        *out = (pw_str){ctx->plugin->config, ctx->plugin->config_len};
        return OK;
    }
    return PROXY_RESULT_NOT_FOUND;
}

static int is_body(u32 type)
{
    return type == PROXY_BUFFER_HTTP_REQUEST_BODY ||
           type == PROXY_BUFFER_HTTP_RESPONSE_BODY;
}

/* Size of a buffer: bodies through the embedder, configurations here. */
static proxy_status_t buffer_size(pw_vm *vm, u32 type, void **stream,
                                  size_t *size, pw_str *config)
{
    if (type > PROXY_BUFFER_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (is_body(type)) {
        *stream = pw_ctx_host_stream(pw_vm_ctx(vm));
        if (!*stream || !vm->ops->body_size)
            return PROXY_RESULT_NOT_FOUND;
        return vm->ops->body_size(vm->host, *stream, type, size);
    }
    proxy_status_t st = config_of(vm, type, config);
    *size = config->len;
    return st; /* TCP data, call-out and gRPC buffers: not in this host yet */
}

static u32 hc_get_buffer_bytes(void *c, u32 type, u32 start, u32 max,
                               u32 ret_ptr, u32 ret_size)
{
    void *s = NULL;
    size_t size = 0;
    pw_str cfg = {0};
    proxy_status_t st = buffer_size(VM, type, &s, &size, &cfg);
    if (st != OK)
        return st;
    /* §3.3: 64-bit start + max; past the end is clamped, never refused. */
    uint64_t from = start, end = (uint64_t)start + max;
    if (from > size)
        from = size;
    if (end > size)
        end = size;
    size_t len = (size_t)(end - from);
    if (!is_body(type))
        return pw_out_bytes(VM, cfg.data + from, len, ret_ptr, ret_size);
    if (!VM->ops->body_copy)
        return PROXY_RESULT_UNIMPLEMENTED;
    uint8_t *dst;
    st = pw_out_alloc(VM, len, ret_ptr, ret_size, &dst);
    if (st != OK || !dst)
        return st;
    return VM->ops->body_copy(VM->host, s, type, (size_t)from, len, dst);
}

static u32 hc_get_buffer_status(void *c, u32 type, u32 ret_size, u32 ret_flags)
{
    void *s = NULL;
    size_t size = 0;
    pw_str cfg;
    proxy_status_t st = buffer_size(VM, type, &s, &size, &cfg);
    if (st != OK)
        return st;
    if (pw_mem_put_u32(VM, ret_size, size > UINT32_MAX ? UINT32_MAX : (u32)size) ||
        pw_mem_put_u32(VM, ret_flags, 0))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    return OK;
}

/* §3.3: replace `size` bytes at `start`; prepend (0,0), append (start >=
 * length), replace-all (0, >= length), or any splice in between. */
static u32 hc_set_buffer_bytes(void *c, u32 type, u32 start, u32 size,
                               u32 ptr, u32 len)
{
    pw_str data;
    if (type > PROXY_BUFFER_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    PW_GUEST_STR(VM, data, ptr, len);
    if (!is_body(type))
        return type == PROXY_BUFFER_DOWNSTREAM_DATA ||
                       type == PROXY_BUFFER_UPSTREAM_DATA
                   ? PROXY_RESULT_NOT_FOUND
                   : PROXY_RESULT_BAD_ARGUMENT; /* immutable buffers */
    void *s = pw_ctx_host_stream(pw_vm_ctx(VM));
    size_t cur;
    if (!s || !VM->ops->body_size)
        return PROXY_RESULT_NOT_FOUND;
    proxy_status_t st = VM->ops->body_size(VM->host, s, type, &cur);
    if (st != OK)
        return st;
    if (!VM->ops->body_replace)
        return PROXY_RESULT_UNIMPLEMENTED;
    st = charge(VM, "proxy_set_buffer_bytes", len);
    if (st != OK)
        return st;
    size_t from = start < cur ? start : cur;
    size_t n = size < cur - from ? size : cur - from;
    return VM->ops->body_replace(VM->host, s, type, from, n, data);
}

/* 0.1.0: the VM configuration in on_vm_start, else the plugin's. */
static u32 hc_get_configuration(void *c, u32 ret_ptr, u32 ret_size)
{
    return hc_get_buffer_bytes(c,
                               VM->in_vm_start
                                   ? PROXY_BUFFER_VM_CONFIGURATION
                                   : PROXY_BUFFER_PLUGIN_CONFIGURATION,
                               0, UINT32_MAX, ret_ptr, ret_size);
}

/* ---------------------------------------------------------- header maps */

/* Maps this version serves through the embedder: HTTP headers and trailers
 * of a stream context. Anything else is "not available now". */
static int map_available(pw_vm *vm, u32 map, void **stream)
{
    pw_ctx *ctx = pw_vm_ctx(vm);
    *stream = pw_ctx_host_stream(ctx);
    return *stream && map <= PROXY_MAP_HTTP_RESPONSE_TRAILERS;
}

static u32 hc_get_header_map_pairs(void *c, u32 map, u32 ret_ptr,
                                   u32 ret_size)
{
    void *s;
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (!map_available(VM, map, &s) || !VM->ops->map_pairs)
        return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size); /* §3.3 */
    pw_kv *pairs = NULL;
    size_t n = 0;
    proxy_status_t st = VM->ops->map_pairs(VM->host, s, map, &pairs, &n);
    if (st != OK)
        return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size);
    return pw_out_pairs(VM, pairs, n, ret_ptr, ret_size);
}

static u32 hc_get_header_map_size(void *c, u32 map, u32 ret)
{
    void *s;
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (!pw_mem(VM, ret, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    uint64_t size = 0;
    pw_kv *pairs = NULL;
    size_t n = 0;
    if (map_available(VM, map, &s) && VM->ops->map_pairs &&
        VM->ops->map_pairs(VM->host, s, map, &pairs, &n) == OK && n) {
        size = 4; /* §12: the serialised size */
        for (size_t i = 0; i < n; i++)
            size += 8 + pairs[i].key.len + 1 + pairs[i].value.len + 1;
    }
    pw_mem_put_u32(VM, ret, (u32)size);
    return OK;
}

static u32 hc_get_header_map_value(void *c, u32 map, u32 kptr, u32 klen,
                                   u32 ret_ptr, u32 ret_size)
{
    void *s;
    pw_str key, val = {0};
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    PW_GUEST_STR(VM, key, kptr, klen);
    if (!pw_mem(VM, ret_ptr, 4) || !pw_mem(VM, ret_size, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    proxy_status_t st = PROXY_RESULT_NOT_FOUND; /* §8.6: never BadArgument */
    if (map_available(VM, map, &s) && VM->ops->map_get)
        st = VM->ops->map_get(VM->host, s, map, key, &val);
    if (st == PROXY_RESULT_NOT_FOUND && VM->m->abi == PW_ABI_0_1_0)
        return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size); /* §1.1 */
    if (st != OK)
        return st;
    return pw_out_bytes(VM, val.data, val.len, ret_ptr, ret_size);
}

/* A valid `:status` value: three digits, 200..599 (nginx sends 1xx
 * itself; a plugin's 1xx with a body split the response). */
static int status_ok(u32 status)
{
    return status >= 200 && status <= 599;
}

static int status_str_ok(pw_str v)
{
    if (v.len != 3)
        return 0;
    for (int i = 0; i < 3; i++)
        if (v.data[i] < '0' || v.data[i] > '9')
            return 0;
    return status_ok((u32)((v.data[0] - '0') * 100 + (v.data[1] - '0') * 10 +
                           (v.data[2] - '0')));
}

static int is_status_key(pw_str k)
{
    return k.len == 7 && k.data[0] == ':' && !strncasecmp(k.data, ":status", 7);
}

/* The per-header limits of a write to `map` by hostcall `call` (a local
 * response's headers: map PROXY_MAP_TYPE_MAX + 1). Ok or BadArgument. */
static proxy_status_t header_ok(pw_vm *vm, const char *call, u32 map,
                                pw_str key, pw_str val)
{
    if (key.len > vm->lim.max_header_name_bytes)
        return pw_vm_refuse(vm, "%s: header name of %zu bytes (limit %u)", call,
                            key.len, vm->lim.max_header_name_bytes);
    if (val.len > vm->lim.max_header_value_bytes)
        return pw_vm_refuse(vm, "%s: header value of %zu bytes (limit %u)",
                            call, val.len, vm->lim.max_header_value_bytes);
    if (map == PROXY_MAP_HTTP_RESPONSE_HEADERS && is_status_key(key) &&
        !status_str_ok(val))
        return pw_vm_refuse(vm, "%s: :status \"%.*s\" (200..599 only)", call,
                            val.len <= 16 ? (int)val.len : 16, val.data);
    return OK;
}

enum map_op { MAP_ADD, MAP_REPLACE, MAP_REMOVE };

static u32 map_modify(pw_vm *vm, enum map_op op, u32 map, u32 kptr, u32 klen,
                      u32 vptr, u32 vlen)
{
    void *s;
    pw_str key, val = {0};
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    PW_GUEST_STR(vm, key, kptr, klen);
    if (op != MAP_REMOVE)
        PW_GUEST_STR(vm, val, vptr, vlen);
    if (!map_available(vm, map, &s))
        return PROXY_RESULT_NOT_FOUND;
    if (op != MAP_REMOVE) {
        const char *call = op == MAP_ADD ? "proxy_add_header_map_value"
                                         : "proxy_replace_header_map_value";
        proxy_status_t st = header_ok(vm, call, map, key, val);
        if (st == OK)
            st = charge(vm, call, (uint64_t)key.len + val.len);
        if (st != OK)
            return st;
    }
    const pw_host_ops *o = vm->ops;
    switch (op) {
    case MAP_ADD:
        return o->map_add ? o->map_add(vm->host, s, map, key, val)
                          : PROXY_RESULT_UNIMPLEMENTED;
    case MAP_REPLACE:
        return o->map_replace ? o->map_replace(vm->host, s, map, key, val)
                              : PROXY_RESULT_UNIMPLEMENTED;
    case MAP_REMOVE:
        return o->map_remove ? o->map_remove(vm->host, s, map, key)
                             : PROXY_RESULT_UNIMPLEMENTED;
    }
    return PROXY_RESULT_BAD_ARGUMENT;
}

static u32 hc_add_header_map_value(void *c, u32 map, u32 kp, u32 kl, u32 vp,
                                   u32 vl)
{
    return map_modify(VM, MAP_ADD, map, kp, kl, vp, vl);
}

static u32 hc_replace_header_map_value(void *c, u32 map, u32 kp, u32 kl,
                                       u32 vp, u32 vl)
{
    return map_modify(VM, MAP_REPLACE, map, kp, kl, vp, vl);
}

static u32 hc_remove_header_map_value(void *c, u32 map, u32 kp, u32 kl)
{
    return map_modify(VM, MAP_REMOVE, map, kp, kl, 0, 0);
}

/* header_ok for every pair, then charges them all. */
static proxy_status_t pairs_ok(pw_vm *vm, const char *call, u32 map,
                               const pw_kv *pairs, size_t n)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        proxy_status_t st = header_ok(vm, call, map, pairs[i].key, pairs[i].value);
        if (st != OK)
            return st;
        bytes += pairs[i].key.len + pairs[i].value.len;
    }
    return charge(vm, call, bytes);
}

static u32 hc_set_header_map_pairs(void *c, u32 map, u32 ptr, u32 len)
{
    void *s;
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    pw_kv *pairs;
    size_t n;
    proxy_status_t st = pw_parse_pairs(VM, ptr, len, &pairs, &n);
    if (st != OK)
        return st;
    if (!map_available(VM, map, &s))
        st = PROXY_RESULT_NOT_FOUND;
    else if (!VM->ops->map_set_pairs)
        st = PROXY_RESULT_UNIMPLEMENTED;
    else if ((st = pairs_ok(VM, "proxy_set_header_map_pairs", map, pairs, n)) == OK)
        st = VM->ops->map_set_pairs(VM->host, s, map, pairs, n);
    free(pairs);
    return st;
}

/* ----------------------------------------------------------- properties */

#define PW_PATH_MAX_SEGS 16

/* §6.2: segments joined by NUL; one trailing NUL (C++ SDK) tolerated; a
 * single dotted segment ("request.path") is split for convenience. Returns
 * the number of segments, 0 when there are too many. */
static size_t parse_path(pw_str path, pw_str seg[PW_PATH_MAX_SEGS])
{
    size_t n = 0, len = path.len, start = 0;
    if (len && path.data[len - 1] == 0)
        len--;
    char sep = len && memchr(path.data, 0, len) ? 0 : '.';
    for (size_t i = 0; i <= len; i++) {
        if (i == len || path.data[i] == sep) {
            if (n == PW_PATH_MAX_SEGS)
                return 0;
            seg[n++] = (pw_str){path.data + start, i - start};
            start = i + 1;
        }
    }
    return n;
}

static u32 hc_get_property(void *c, u32 pptr, u32 plen, u32 ret_ptr,
                           u32 ret_size)
{
    pw_str path;
    PW_GUEST_STR(VM, path, pptr, plen);
    if (!pw_mem(VM, ret_ptr, 4) || !pw_mem(VM, ret_size, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    pw_str seg[PW_PATH_MAX_SEGS];
    size_t n = parse_path(path, seg);
    if (!n)
        return PROXY_RESULT_NOT_FOUND;
    pw_ctx *ctx = pw_vm_ctx(VM);
    if (n == 1 && ctx && ctx->plugin) {
        pw_plugin *p = ctx->plugin;
#define IS(s, lit) ((s).len == sizeof(lit) - 1 && !memcmp((s).data, lit, (s).len))
        if (IS(seg[0], "plugin_name"))
            return pw_out_bytes(VM, p->name, strlen(p->name), ret_ptr,
                                ret_size);
        if (IS(seg[0], "plugin_root_id"))
            return pw_out_bytes(VM, p->root_id, p->root_id_len, ret_ptr,
                                ret_size);
        if (IS(seg[0], "plugin_vm_id"))
            return pw_out_bytes(VM, VM->vm_id, VM->vm_id_len, ret_ptr,
                                ret_size);
#undef IS
    }
    if (!VM->ops->get_property)
        return PROXY_RESULT_NOT_FOUND;
    pw_str val = {0};
    proxy_status_t st =
        VM->ops->get_property(VM->host, pw_ctx_host_stream(ctx), seg, n, &val);
    if (st != OK)
        return st;
    return pw_out_bytes(VM, val.data, val.len, ret_ptr, ret_size);
}

static u32 hc_set_property(void *c, u32 pptr, u32 plen, u32 vptr, u32 vlen)
{
    pw_str path, value;
    PW_GUEST_STR(VM, path, pptr, plen);
    PW_GUEST_STR(VM, value, vptr, vlen);
    pw_str seg[PW_PATH_MAX_SEGS];
    size_t n = parse_path(path, seg);
    if (!n)
        return PROXY_RESULT_NOT_FOUND;
    if (!VM->ops->set_property)
        return PROXY_RESULT_UNIMPLEMENTED;
    proxy_status_t st =
        charge(VM, "proxy_set_property", (uint64_t)path.len + value.len);
    if (st != OK)
        return st;
    return VM->ops->set_property(VM->host, pw_ctx_host_stream(pw_vm_ctx(VM)), seg, n,
                                 value);
}

/* -------------------------------------------------------- stream control */

/* §3.3: continue / close the current stream; the embedder defers the
 * action until the callback returns (§8.10). */
static u32 stream_control(pw_vm *vm, u32 type, int close)
{
    if (type > PROXY_STREAM_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    void *s = pw_ctx_host_stream(pw_vm_ctx(vm));
    if (!s)
        return PROXY_RESULT_NOT_FOUND;
    proxy_status_t (*fn)(void *, void *, proxy_stream_type_t) =
        close ? vm->ops->close : vm->ops->resume;
    if (!fn)
        return PROXY_RESULT_UNIMPLEMENTED;
    return fn(vm->host, s, (proxy_stream_type_t)type);
}

static u32 hc_continue_stream(void *c, u32 type)
{
    return stream_control(VM, type, 0);
}

static u32 hc_close_stream(void *c, u32 type)
{
    return stream_control(VM, type, 1);
}

static u32 hc_continue_request(void *c)
{
    return stream_control(VM, PROXY_STREAM_HTTP_REQUEST, 0);
}

static u32 hc_continue_response(void *c)
{
    return stream_control(VM, PROXY_STREAM_HTTP_RESPONSE, 0);
}

/* ------------------------------------------------------ local response */

static u32 hc_send_local_response(void *c, u32 status, u32 dptr, u32 dlen,
                                  u32 bptr, u32 blen, u32 hptr, u32 hlen,
                                  u32 grpc)
{
    static const char call[] = "proxy_send_local_response";
    pw_str details, body;
    PW_GUEST_STR(VM, details, dptr, dlen);
    PW_GUEST_STR(VM, body, bptr, blen);
    pw_kv *hdrs;
    size_t n;
    proxy_status_t st = pw_parse_pairs(VM, hptr, hlen, &hdrs, &n);
    if (st != OK)
        return st;
    pw_ctx *ctx = pw_vm_ctx(VM);
    pw_stream *s = ctx ? ctx->stream : NULL;
    if (!s) {
        free(hdrs);
        return PROXY_RESULT_NOT_FOUND;
    }
    /* 200..599 only: a 1xx is interim (nginx would send it, then the body
     * as a second response); 204 and 304 have no body. */
    if (!status_ok(status))
        st = pw_vm_refuse(VM, "%s: status %u (200..599 only)", call, status);
    else if ((status == 204 || status == 304) && body.len)
        st = pw_vm_refuse(VM, "%s: status %u with a body", call, status);
    else if ((st = pairs_ok(VM, call, PROXY_MAP_TYPE_MAX + 1, hdrs, n)) == OK)
        st = charge(VM, call, (uint64_t)details.len + body.len);
    if (st != OK) {
        free(hdrs);
        return st;
    }
    /* Copy everything into the stream's buffer: the headers array, then
     * the strings. It is applied by the embedder after the callback. */
    size_t need = n * sizeof(pw_kv) + details.len + body.len;
    for (size_t i = 0; i < n; i++)
        need += hdrs[i].key.len + hdrs[i].value.len;
    if (need > s->lr_cap) {
        char *b = realloc(s->lr_buf, need);
        if (!b) {
            free(hdrs);
            return PROXY_RESULT_INTERNAL_FAILURE;
        }
        s->lr_buf = b;
        s->lr_cap = need;
    }
    pw_kv *out = (pw_kv *)(void *)s->lr_buf;
    char *p = s->lr_buf + n * sizeof(pw_kv);
#define COPY(dst, src)                                                     \
    do {                                                                   \
        if ((src).len)                                                     \
            memcpy(p, (src).data, (src).len);                              \
        (dst).data = p;                                                    \
        (dst).len = (src).len;                                             \
        p += (src).len;                                                    \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        COPY(out[i].key, hdrs[i].key);
        COPY(out[i].value, hdrs[i].value);
    }
    COPY(s->lr.details, details);
    COPY(s->lr.body, body);
#undef COPY
    free(hdrs);
    s->lr.headers = out;
    s->lr.nheaders = n;
    s->lr.status = status;
    s->lr.grpc_status = (int32_t)grpc;
    s->has_local_response = 1;
    /* Asked for another stream than the one whose callback runs: tell the
     * embedder, no callback result will (§8.8, §8.10). */
    if (ctx != VM->cur && VM->ops->local_response)
        VM->ops->local_response(VM->host, s->host_stream);
    return OK;
}

/* ------------------------------------------------------------ contexts */

static u32 hc_set_effective_context(void *c, u32 id)
{
    pw_ctx *ctx = pw_ctx_lookup(VM, id);
    if (!ctx)
        return PROXY_RESULT_BAD_ARGUMENT;
    VM->eff = ctx;
    return OK;
}

/* §8.4: no root context ever waits for proxy_done in this version. */
static u32 hc_done(void *c)
{
    (void)c;
    return PROXY_RESULT_NOT_FOUND;
}

static void hc_emscripten_notify_memory_growth(void *c, u32 idx)
{
    (void)c;
    (void)idx;
}

static u32 hc_pthread_equal(void *c, u32 a, u32 b)
{
    (void)c;
    return a == b;
}

/* ------------------------------------------------ not implemented yet */

#define UNIMPL(name, ...)                                                  \
    static u32 name(void *c, __VA_ARGS__)                                  \
    {                                                                      \
        (void)c;                                                           \
        return PROXY_RESULT_UNIMPLEMENTED;                                 \
    }
static u32 hc_unimpl_0(void *c)
{
    (void)c;
    return PROXY_RESULT_UNIMPLEMENTED;
}
#define U __attribute__((unused)) u32
UNIMPL(hc_unimpl_1, U a)
UNIMPL(hc_unimpl_2, U a, U b)
UNIMPL(hc_unimpl_3, U a, U b, U d)
UNIMPL(hc_unimpl_4, U a, U b, U d, U e)
UNIMPL(hc_unimpl_5, U a, U b, U d, U e, U f)
UNIMPL(hc_unimpl_6, U a, U b, U d, U e, U f, U g)
UNIMPL(hc_unimpl_9, U a, U b, U d, U e, U f, U g, U h, U i, U j)
UNIMPL(hc_unimpl_10, U a, U b, U d, U e, U f, U g, U h, U i, U j, U k)
UNIMPL(hc_unimpl_12, U a, U b, U d, U e, U f, U g, U h, U i, U j, U k, U l,
       U m)
UNIMPL(hc_unimpl_iI, U a, __attribute__((unused)) u64 b)
#undef U

/* ------------------------------------------------------------ registry */

#define F(fn) ((void (*)(void))(fn))
#define ENV(name, sig, fn) {"env", name, sig, F(fn)}

static const pw_host_func env_funcs[] = {
    ENV("proxy_log", "iii:i", hc_log),
    ENV("proxy_get_log_level", "i:i", hc_get_log_level),
    ENV("proxy_get_current_time_nanoseconds", "i:i", hc_get_current_time),
    ENV("proxy_set_tick_period_milliseconds", "i:i", hc_unimpl_1),
    ENV("proxy_get_configuration", "ii:i", hc_get_configuration),
    ENV("proxy_get_status", "iii:i", hc_unimpl_3),
    ENV("proxy_get_buffer_bytes", "iiiii:i", hc_get_buffer_bytes),
    ENV("proxy_get_buffer_status", "iii:i", hc_get_buffer_status),
    ENV("proxy_set_buffer_bytes", "iiiii:i", hc_set_buffer_bytes),
    ENV("proxy_get_header_map_pairs", "iii:i", hc_get_header_map_pairs),
    ENV("proxy_set_header_map_pairs", "iii:i", hc_set_header_map_pairs),
    ENV("proxy_get_header_map_value", "iiiii:i", hc_get_header_map_value),
    ENV("proxy_add_header_map_value", "iiiii:i", hc_add_header_map_value),
    ENV("proxy_replace_header_map_value", "iiiii:i",
        hc_replace_header_map_value),
    ENV("proxy_remove_header_map_value", "iii:i", hc_remove_header_map_value),
    ENV("proxy_get_header_map_size", "ii:i", hc_get_header_map_size),
    ENV("proxy_get_property", "iiii:i", hc_get_property),
    ENV("proxy_set_property", "iiii:i", hc_set_property),
    ENV("proxy_get_shared_data", "iiiii:i", hc_unimpl_5),
    ENV("proxy_set_shared_data", "iiiii:i", hc_unimpl_5),
    ENV("proxy_register_shared_queue", "iii:i", hc_unimpl_3),
    ENV("proxy_resolve_shared_queue", "iiiii:i", hc_unimpl_5),
    ENV("proxy_enqueue_shared_queue", "iii:i", hc_unimpl_3),
    ENV("proxy_dequeue_shared_queue", "iii:i", hc_unimpl_3),
    ENV("proxy_continue_request", ":i", hc_continue_request),
    ENV("proxy_continue_response", ":i", hc_continue_response),
    ENV("proxy_clear_route_cache", ":i", hc_unimpl_0),
    ENV("proxy_continue_stream", "i:i", hc_continue_stream),
    ENV("proxy_close_stream", "i:i", hc_close_stream),
    ENV("proxy_send_local_response", "iiiiiiii:i", hc_send_local_response),
    ENV("proxy_http_call", "iiiiiiiiii:i", hc_unimpl_10),
    ENV("proxy_grpc_call", "iiiiiiiiiiii:i", hc_unimpl_12),
    ENV("proxy_grpc_stream", "iiiiiiiii:i", hc_unimpl_9),
    ENV("proxy_grpc_send", "iiii:i", hc_unimpl_4),
    ENV("proxy_grpc_cancel", "i:i", hc_unimpl_1),
    ENV("proxy_grpc_close", "i:i", hc_unimpl_1),
    ENV("proxy_define_metric", "iiii:i", hc_unimpl_4),
    ENV("proxy_increment_metric", "iI:i", hc_unimpl_iI),
    ENV("proxy_record_metric", "iI:i", hc_unimpl_iI),
    ENV("proxy_get_metric", "ii:i", hc_unimpl_2),
    ENV("proxy_set_effective_context", "i:i", hc_set_effective_context),
    ENV("proxy_done", ":i", hc_done),
    ENV("proxy_call_foreign_function", "iiiiii:i", hc_unimpl_6),
    ENV("emscripten_notify_memory_growth", "i:", hc_emscripten_notify_memory_growth),
    ENV("pthread_equal", "ii:i", hc_pthread_equal),
};

static int is_unimplemented(void (*fn)(void))
{
    static void (*const stubs[])(void) = {
        F(hc_unimpl_0), F(hc_unimpl_1), F(hc_unimpl_2), F(hc_unimpl_3),
        F(hc_unimpl_4), F(hc_unimpl_5), F(hc_unimpl_6), F(hc_unimpl_9),
        F(hc_unimpl_10), F(hc_unimpl_12), F(hc_unimpl_iI)};
    for (size_t i = 0; i < sizeof stubs / sizeof *stubs; i++)
        if (fn == stubs[i])
            return 1;
    return 0;
}

const pw_hostcall_info *pw_hostcalls(size_t *n)
{
    static pw_hostcall_info *info;
    size_t nf;
    const pw_host_func *f = pw_core_host_funcs(&nf);
    if (!info && f) {
        pw_hostcall_info *a = calloc(nf, sizeof *a);
        if (!a) {
            *n = 0;
            return NULL;
        }
        for (size_t i = 0; i < nf; i++)
            a[i] = (pw_hostcall_info){f[i].module, f[i].name, f[i].sig,
                                      !is_unimplemented(f[i].fn)};
        info = a;
    }
    *n = info ? nf : 0;
    return info;
}

/* From wasi.c: the WASI preview 1 functions, module name left NULL. */
extern const pw_host_func pw_wasi_funcs[];
extern const size_t pw_wasi_nfuncs;

const pw_host_func *pw_core_host_funcs(size_t *n)
{
    static pw_host_func *all;
    static size_t nall;
    if (!all) {
        size_t nenv = sizeof env_funcs / sizeof *env_funcs;
        pw_host_func *a = malloc((nenv + 2 * pw_wasi_nfuncs) * sizeof *a);
        if (!a) {
            *n = 0;
            return NULL;
        }
        memcpy(a, env_funcs, sizeof env_funcs);
        for (size_t i = 0; i < pw_wasi_nfuncs; i++) {
            a[nenv + i] = pw_wasi_funcs[i];
            a[nenv + i].module = "wasi_snapshot_preview1";
            a[nenv + pw_wasi_nfuncs + i] = pw_wasi_funcs[i];
            a[nenv + pw_wasi_nfuncs + i].module = "wasi_unstable";
        }
        nall = nenv + 2 * pw_wasi_nfuncs;
        all = a;
    }
    *n = nall;
    return all;
}
