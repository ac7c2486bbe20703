/*
 * hc_properties.c -- properties: proxy_get_property and proxy_set_property.
 * The core answers the plugin's own names; everything else goes to the
 * embedder (docs/ABI.md §3.3 "Properties", §6.2).
 */
#include "core/hc.h"

#define PW_PATH_MAX_SEGS 16

/* §6.2: segments joined by NUL; one trailing NUL (C++ SDK) tolerated; a
 * single dotted segment ("request.path") is split for convenience. Returns
 * the number of segments, 0 when there are too many. */
static size_t parse_path(pw_str path, pw_str seg[PW_PATH_MAX_SEGS]) {
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

u32 pw_hc_get_property(void *c, u32 pptr, u32 plen, u32 ret_ptr, u32 ret_size) {
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
            return pw_out_bytes(VM, p->name, strlen(p->name), ret_ptr, ret_size);
        if (IS(seg[0], "plugin_root_id"))
            return pw_out_bytes(VM, p->root_id, p->root_id_len, ret_ptr, ret_size);
        if (IS(seg[0], "plugin_vm_id"))
            return pw_out_bytes(VM, VM->vm_id, VM->vm_id_len, ret_ptr, ret_size);
#undef IS
    }
    if (!VM->hooks.property->get_property)
        return PROXY_RESULT_NOT_FOUND;
    pw_str val = {0};
    proxy_status_t st =
        VM->hooks.property->get_property(VM->host, pw_ctx_host_stream(ctx), seg, n, &val);
    if (st != OK)
        return st;
    return pw_out_bytes(VM, val.data, val.len, ret_ptr, ret_size);
}

u32 pw_hc_set_property(void *c, u32 pptr, u32 plen, u32 vptr, u32 vlen) {
    pw_str path, value;
    PW_GUEST_STR(VM, path, pptr, plen);
    PW_GUEST_STR(VM, value, vptr, vlen);
    pw_str seg[PW_PATH_MAX_SEGS];
    size_t n = parse_path(path, seg);
    if (!n)
        return PROXY_RESULT_NOT_FOUND;
    if (!VM->hooks.property->set_property)
        return PROXY_RESULT_UNIMPLEMENTED;
    proxy_status_t st = pw_hc_charge(VM, "proxy_set_property", (uint64_t)path.len + value.len);
    if (st != OK)
        return st;
    return VM->hooks.property->set_property(VM->host, pw_ctx_host_stream(pw_vm_ctx(VM)), seg, n,
                                            value);
}
