/*
 * hc_foreign.c -- foreign functions: proxy_call_foreign_function, the
 * host's own extensions called by name (docs/ABI.md §3.3 "Foreign
 * functions"). The core has Envoy's portable ones:
 *
 *   compress                zlib (RFC 1950) of the arguments
 *   uncompress              the reverse; output within the callback's
 *                           byte budget
 *   set_envoy_filter_state  its protobuf argument (path, value, span)
 *                           becomes proxy_set_property(filter_state.<path>,
 *                           value) on the embedder, e.g.
 *                           filter_state.envoy.tcp_proxy.cluster
 *
 * and hands any other name to the embedder (pw_host_foreign_ops.call).
 * Statuses: only those the SDKs accept (Ok, NotFound, BadArgument,
 * SerializationFailure, InternalFailure); an unknown name is NotFound,
 * never a trap (Kong traps).
 */
#include <stdlib.h>
#include <zlib.h>

#include "core/hc.h"

const char *const *pw_foreign_names(void) {
    static const char *const names[] = {"compress", "uncompress", "set_envoy_filter_state",
                                        NULL};
    return names;
}

/* Envoy's compress: zlib's compress() (default level, zlib header). */
static proxy_status_t f_compress(pw_vm *vm, pw_str args, u32 ret_ptr, u32 ret_size) {
    uLongf len = compressBound((uLong)args.len);
    Bytef *out = malloc(len ? len : 1);
    if (!out)
        return PROXY_RESULT_INTERNAL_FAILURE;
    proxy_status_t st = PROXY_RESULT_SERIALIZATION_FAILURE;
    if (compress(out, &len, (const Bytef *)args.data, (uLong)args.len) == Z_OK)
        st = pw_out_bytes(vm, out, len, ret_ptr, ret_size);
    free(out);
    return st;
}

/* Envoy's uncompress: zlib's uncompress(), the output buffer doubled
 * until it fits; here never past the callback's byte budget (a small
 * input can claim gigabytes). */
static proxy_status_t f_uncompress(pw_vm *vm, pw_str args, u32 ret_ptr, u32 ret_size) {
    uint64_t cap = (uint64_t)args.len * 2 + 64, limit = vm->budget;
    for (;;) {
        if (cap > limit)
            cap = limit;
        uLongf len = (uLongf)cap;
        Bytef *out = malloc(cap ? cap : 1);
        if (!out)
            return PROXY_RESULT_INTERNAL_FAILURE;
        int r = uncompress(out, &len, (const Bytef *)args.data, (uLong)args.len);
        if (r == Z_OK) {
            proxy_status_t st = pw_hc_charge(vm, "proxy_call_foreign_function", len);
            if (st == OK)
                st = pw_out_bytes(vm, out, len, ret_ptr, ret_size);
            free(out);
            return st;
        }
        free(out);
        if (r != Z_BUF_ERROR)
            return PROXY_RESULT_SERIALIZATION_FAILURE; /* not zlib data */
        if (cap >= limit)
            return pw_vm_refuse(vm,
                                "uncompress: the output is larger than the %llu bytes left of "
                                "the callback's budget",
                                (unsigned long long)limit);
        cap *= 2;
    }
}

/* A protobuf varint at *p (< end); 0 when malformed. */
static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

/* SetEnvoyFilterStateArguments: string path = 1, string value = 2,
 * LifeSpan span = 3 (ignored: pwasm keeps the value for the stream).
 * 0 when malformed. */
static int pb_filter_state(pw_str in, pw_str *path, pw_str *value) {
    const uint8_t *p = (const uint8_t *)in.data, *end = p + in.len;
    *path = *value = (pw_str){"", 0};
    while (p < end) {
        uint64_t key, v;
        if (!pb_varint(&p, end, &key))
            return 0;
        switch (key & 7) {
        case 0: /* varint */
            if (!pb_varint(&p, end, &v))
                return 0;
            break;
        case 1: /* 64-bit */
            if (end - p < 8)
                return 0;
            p += 8;
            break;
        case 2: /* length-delimited */
            if (!pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return 0;
            if (key >> 3 == 1)
                *path = (pw_str){(const char *)p, (size_t)v};
            else if (key >> 3 == 2)
                *value = (pw_str){(const char *)p, (size_t)v};
            p += v;
            break;
        case 5: /* 32-bit */
            if (end - p < 4)
                return 0;
            p += 4;
            break;
        default:
            return 0;
        }
    }
    return path->len > 0;
}

static proxy_status_t f_set_filter_state(pw_vm *vm, pw_str args) {
    pw_str path, value;
    if (!pb_filter_state(args, &path, &value))
        return PROXY_RESULT_SERIALIZATION_FAILURE;
    void *stream = pw_ctx_host_stream(pw_vm_ctx(vm));
    if (!stream || !vm->hooks.property->set_property)
        return PROXY_RESULT_NOT_FOUND;
    pw_str seg[2] = {{"filter_state", 12}, path};
    proxy_status_t st = pw_hc_charge(vm, "set_envoy_filter_state", path.len + value.len);
    if (st == OK)
        st = vm->hooks.property->set_property(vm->host, stream, seg, 2, value);
    /* the SDKs accept no Unimplemented here */
    return st == PROXY_RESULT_UNIMPLEMENTED ? PROXY_RESULT_NOT_FOUND : st;
}

static int name_is(pw_str n, const char *s) {
    size_t len = strlen(s);
    return n.len == len && !memcmp(n.data, s, len);
}

/* Calls the host function `name` with `args`; its results as out-bytes
 * (none: (0, 0)). */
u32 pw_hc_call_foreign_function(void *c, u32 nptr, u32 nlen, u32 aptr, u32 alen, u32 ret_ptr,
                                u32 ret_size) {
    pw_vm *vm = VM;
    pw_str name, args;
    PW_GUEST_STR(vm, name, nptr, nlen);
    PW_GUEST_STR(vm, args, aptr, alen);
    if (!pw_mem(vm, ret_ptr, 4) || !pw_mem(vm, ret_size, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    if (name_is(name, "compress"))
        return f_compress(vm, args, ret_ptr, ret_size);
    if (name_is(name, "uncompress"))
        return f_uncompress(vm, args, ret_ptr, ret_size);
    if (name_is(name, "set_envoy_filter_state")) {
        proxy_status_t st = f_set_filter_state(vm, args);
        return st == OK ? pw_out_bytes(vm, NULL, 0, ret_ptr, ret_size) : st;
    }
    if (!vm->hooks.foreign->call)
        return PROXY_RESULT_NOT_FOUND;
    pw_str result = {NULL, 0};
    proxy_status_t st =
        vm->hooks.foreign->call(vm->host, pw_ctx_host_stream(pw_vm_ctx(vm)), name, args, &result);
    switch (st) {
    case OK:
        return pw_out_bytes(vm, result.data, result.len, ret_ptr, ret_size);
    case PROXY_RESULT_NOT_FOUND:
    case PROXY_RESULT_BAD_ARGUMENT:
    case PROXY_RESULT_SERIALIZATION_FAILURE:
        return st;
    default:
        return PROXY_RESULT_INTERNAL_FAILURE;
    }
}
