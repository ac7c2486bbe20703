/*
 * hc_buffers.c -- buffers and configuration: proxy_get_buffer_bytes,
 * proxy_get_buffer_status, proxy_set_buffer_bytes, and 0.1.0's
 * proxy_get_configuration. Bodies go through the embedder; the
 * configuration buffers are answered here (docs/ABI.md §3.3
 * "Configuration", "Buffers").
 */
#include "core/hc.h"

/* The bytes of a configuration buffer, or NotFound. */
static proxy_status_t config_of(pw_vm *vm, u32 type, pw_str *out) {
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

/* The embedder's buffers of a stream: HTTP bodies (0, 1), TCP data (2,
 * 3). */
static int is_body(u32 type) {
    return type <= PROXY_BUFFER_UPSTREAM_DATA;
}

/* The hooks of stream buffer `type` for the current context, or NULL when
 * it has none (outside a stream, or the other kind of stream's). */
typedef struct {
    pw_host_body_size_fn *size;
    pw_host_body_copy_fn *copy;
    pw_host_body_replace_fn *replace;
} body_hooks;

static int body_hooks_of(pw_vm *vm, u32 type, void **stream, body_hooks *h) {
    pw_ctx *ctx = pw_vm_ctx(vm);
    pw_stream *s = ctx ? ctx->stream : NULL;
    *stream = s ? s->host_stream : NULL;
    if (!*stream || (type >= PROXY_BUFFER_DOWNSTREAM_DATA) != (s->tcp != 0))
        return 0;
    if (s->tcp)
        *h = (body_hooks){vm->hooks.network->data_size, vm->hooks.network->data_copy,
                          vm->hooks.network->data_replace};
    else
        *h = (body_hooks){vm->hooks.http->body_size, vm->hooks.http->body_copy,
                          vm->hooks.http->body_replace};
    return h->size != NULL;
}

/* Size of a buffer: stream buffers through the embedder, configurations
 * and call-out answers here. */
static proxy_status_t buffer_size(pw_vm *vm, u32 type, void **stream, size_t *size,
                                  pw_str *config, body_hooks *h) {
    if (type > PROXY_BUFFER_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (is_body(type)) {
        if (!body_hooks_of(vm, type, stream, h))
            return PROXY_RESULT_NOT_FOUND;
        return h->size(vm->host, *stream, type, size);
    }
    proxy_status_t st = type == PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY ||
                                type == PROXY_BUFFER_GRPC_RECEIVE_BUFFER
                            ? pw_callout_buffer(vm, type, config)
                            : config_of(vm, type, config);
    *size = config->len;
    return st;
}

u32 pw_hc_get_buffer_bytes(void *c, u32 type, u32 start, u32 max, u32 ret_ptr, u32 ret_size) {
    void *s = NULL;
    size_t size = 0;
    pw_str cfg = {0};
    body_hooks h;
    proxy_status_t st = buffer_size(VM, type, &s, &size, &cfg, &h);
    if (st != OK)
        return st;
    /* §3.3: 64-bit start + max; past the end is clamped, never refused. */
    uint64_t from = start, end = (uint64_t)start + max;
    if (from > size)
        from = size;
    if (end > size)
        end = size;
    size_t len = (size_t)(end - from);
    if (len > VM->lim.max_buffer_bytes) {
        /* fewer bytes than asked: legal, the plugin may read on */
        pw_host_limit_hit(VM, "buffer_bytes");
        pw_vm_refuse(VM,
                     "proxy_get_buffer_bytes: %zu bytes of buffer %u (limit %u; that many "
                     "handed over, Ok)",
                     len, type, VM->lim.max_buffer_bytes);
        len = VM->lim.max_buffer_bytes;
    }
    if (!is_body(type))
        return pw_out_bytes(VM, cfg.data + from, len, ret_ptr, ret_size);
    if (!h.copy)
        return PROXY_RESULT_UNIMPLEMENTED;
    uint8_t *dst;
    st = pw_out_alloc(VM, len, ret_ptr, ret_size, &dst);
    if (st != OK || !dst)
        return st;
    return h.copy(VM->host, s, type, (size_t)from, len, dst);
}

u32 pw_hc_get_buffer_status(void *c, u32 type, u32 ret_size, u32 ret_flags) {
    void *s = NULL;
    size_t size = 0;
    pw_str cfg;
    body_hooks h;
    proxy_status_t st = buffer_size(VM, type, &s, &size, &cfg, &h);
    if (st != OK)
        return st;
    if (pw_mem_put_u32(VM, ret_size, size > UINT32_MAX ? UINT32_MAX : (u32)size) ||
        pw_mem_put_u32(VM, ret_flags, 0))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    return OK;
}

/* §3.3: replace `size` bytes at `start`; prepend (0,0), append (start >=
 * length), replace-all (0, >= length), or any splice in between. */
u32 pw_hc_set_buffer_bytes(void *c, u32 type, u32 start, u32 size, u32 ptr, u32 len) {
    pw_str data;
    if (type > PROXY_BUFFER_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    PW_GUEST_STR(VM, data, ptr, len);
    if (!is_body(type))
        return PROXY_RESULT_BAD_ARGUMENT; /* immutable buffers */
    void *s;
    size_t cur;
    body_hooks h;
    if (!body_hooks_of(VM, type, &s, &h))
        return PROXY_RESULT_NOT_FOUND;
    proxy_status_t st = h.size(VM->host, s, type, &cur);
    if (st != OK)
        return st;
    if (!h.replace)
        return PROXY_RESULT_UNIMPLEMENTED;
    st = pw_hc_charge(VM, "proxy_set_buffer_bytes", len);
    if (st != OK)
        return st;
    size_t from = start < cur ? start : cur;
    size_t n = size < cur - from ? size : cur - from;
    return h.replace(VM->host, s, type, from, n, data);
}

/* 0.1.0: the VM configuration in on_vm_start, else the plugin's. */
u32 pw_hc_get_configuration(void *c, u32 ret_ptr, u32 ret_size) {
    return pw_hc_get_buffer_bytes(
        c, VM->in_vm_start ? PROXY_BUFFER_VM_CONFIGURATION : PROXY_BUFFER_PLUGIN_CONFIGURATION, 0,
        UINT32_MAX, ret_ptr, ret_size);
}
