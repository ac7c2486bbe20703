/*
 * hc_maps.c -- header maps: the proxy_*_header_map_* hostcalls, through the
 * embedder's map hooks, and the per-header limits every header write obeys
 * (local responses' headers too, through pw_hc_pairs_ok) (docs/ABI.md §3.3
 * "Header maps", §6.1).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/hc.h"

/* Maps this version serves through the embedder: HTTP headers and trailers
 * of a stream context. Anything else is "not available now". */
static int map_available(pw_vm *vm, u32 map, void **stream) {
    pw_ctx *ctx = pw_vm_ctx(vm);
    *stream = pw_ctx_host_stream(ctx);
    return *stream && map <= PROXY_MAP_HTTP_RESPONSE_TRAILERS;
}

/* The call-out maps (4..7) are the core's, while an answer is delivered
 * (hc_callouts.c). */
static int is_callout_map(u32 map) {
    return map >= PROXY_MAP_GRPC_RECEIVE_INITIAL_METADATA && map <= PROXY_MAP_TYPE_MAX;
}

/* A map's serialised size (§6.1); 0 for an empty map. */
static uint64_t map_bytes(const pw_kv *pairs, size_t n) {
    return n ? pw_pairs_bytes(pairs, n) : 0;
}

/* A map handed to the plugin, within lim.max_map_pairs and
 * lim.max_map_bytes, else refused (BadArgument, logged, counted). */
static u32 out_map(pw_vm *vm, const pw_kv *pairs, size_t n, u32 ret_ptr, u32 ret_size) {
    static const char call[] = "proxy_get_header_map_pairs";
    uint64_t bytes = map_bytes(pairs, n);
    if (n > vm->lim.max_map_pairs)
        return pw_host_limit_hit(vm, "map_pairs"),
               pw_vm_refuse(vm, "%s: a map of %zu pairs (limit %u)", call, n,
                            vm->lim.max_map_pairs);
    if (bytes > vm->lim.max_map_bytes)
        return pw_host_limit_hit(vm, "map_bytes"),
               pw_vm_refuse(vm, "%s: a map of %llu bytes (limit %u)", call,
                            (unsigned long long)bytes, vm->lim.max_map_bytes);
    return pw_out_pairs_sized(vm, pairs, n, bytes, ret_ptr, ret_size);
}

u32 pw_hc_get_header_map_pairs(void *c, u32 map, u32 ret_ptr, u32 ret_size) {
    void *s;
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (is_callout_map(map)) {
        const pw_kv *cp = NULL;
        size_t cn = 0;
        if (pw_callout_map(VM, map, &cp, &cn) != OK)
            return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size);
        return out_map(VM, cp, cn, ret_ptr, ret_size);
    }
    if (!map_available(VM, map, &s) || !VM->hooks.http->map_pairs)
        return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size); /* §3.3 */
    pw_kv *pairs = NULL;
    size_t n = 0;
    proxy_status_t st = VM->hooks.http->map_pairs(VM->host, s, map, &pairs, &n);
    if (st != OK)
        return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size);
    return out_map(VM, pairs, n, ret_ptr, ret_size);
}

u32 pw_hc_get_header_map_size(void *c, u32 map, u32 ret) {
    void *s;
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (!pw_mem(VM, ret, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    uint64_t size = 0;
    pw_kv *pairs = NULL;
    const pw_kv *cp = NULL;
    size_t n = 0;
    if (is_callout_map(map) ? pw_callout_map(VM, map, &cp, &n) == OK && n
                            : map_available(VM, map, &s) && VM->hooks.http->map_pairs &&
                                  VM->hooks.http->map_pairs(VM->host, s, map, &pairs, &n) == OK &&
                                  n) {
        size = map_bytes(cp ? cp : pairs, n); /* §12: the serialised size */
    }
    pw_mem_put_u32(VM, ret, (u32)size);
    return OK;
}

u32 pw_hc_get_header_map_value(void *c, u32 map, u32 kptr, u32 klen, u32 ret_ptr, u32 ret_size) {
    void *s;
    pw_str key, val = {0};
    if (map > PROXY_MAP_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    PW_GUEST_STR(VM, key, kptr, klen);
    if (!pw_mem(VM, ret_ptr, 4) || !pw_mem(VM, ret_size, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    proxy_status_t st = PROXY_RESULT_NOT_FOUND; /* §8.6: never BadArgument */
    const pw_kv *cp = NULL;
    size_t cn = 0;
    if (is_callout_map(map)) {
        if (pw_callout_map(VM, map, &cp, &cn) == OK)
            for (size_t i = 0; i < cn; i++)
                if (cp[i].key.len == key.len && !strncasecmp(cp[i].key.data, key.data, key.len)) {
                    val = cp[i].value;
                    st = OK;
                    break;
                }
    } else if (map_available(VM, map, &s) && VM->hooks.http->map_get)
        st = VM->hooks.http->map_get(VM->host, s, map, key, &val);
    if (st == PROXY_RESULT_NOT_FOUND && VM->m->abi == PW_ABI_0_1_0)
        return pw_out_bytes(VM, NULL, 0, ret_ptr, ret_size); /* §1.1 */
    if (st != OK)
        return st;
    if (val.len > VM->lim.max_map_bytes)
        return pw_host_limit_hit(VM, "map_bytes"),
               pw_vm_refuse(VM, "proxy_get_header_map_value: a value of %zu bytes (limit %u)",
                            val.len, VM->lim.max_map_bytes);
    return pw_out_bytes(VM, val.data, val.len, ret_ptr, ret_size);
}

static int status_str_ok(pw_str v) {
    if (v.len != 3)
        return 0;
    for (int i = 0; i < 3; i++)
        if (v.data[i] < '0' || v.data[i] > '9')
            return 0;
    return pw_hc_status_ok(
        (u32)((v.data[0] - '0') * 100 + (v.data[1] - '0') * 10 + (v.data[2] - '0')));
}

static int is_status_key(pw_str k) {
    return k.len == 7 && k.data[0] == ':' && !strncasecmp(k.data, ":status", 7);
}

/* RFC 9110 tchar: the characters of a token (a header name): letters,
 * digits and !#$%&'*+-.^_`|~, as two bitmaps of the ASCII codes 0..63 and
 * 64..127 (a test against the list: tests/unit/test_headers.c). */
#define PW_TCHAR_LO 0x03ff6cfa00000000ull
#define PW_TCHAR_HI 0x57ffffffc7fffffeull

static int is_tchar(unsigned char c) {
    return c < 64 ? (int)(PW_TCHAR_LO >> c & 1) : c < 128 ? (int)(PW_TCHAR_HI >> (c - 64) & 1) : 0;
}

int pw_header_name_ok(pw_str name) {
    size_t i = name.len && name.data[0] == ':'; /* a pseudo-header */
    if (i >= name.len)
        return 0;
    for (; i < name.len; i++)
        if (!is_tchar((unsigned char)name.data[i]))
            return 0;
    return 1;
}

int pw_header_value_ok(pw_str value) {
    for (size_t i = 0; i < value.len; i++)
        if (value.data[i] == '\r' || value.data[i] == '\n' || value.data[i] == '\0')
            return 0;
    return 1;
}

/* The per-header limits and syntax of a write to `map` by hostcall `call`
 * (a local response's headers: PW_HC_LOCAL_RESPONSE_MAP). Ok or
 * BadArgument. */
static proxy_status_t header_ok(pw_vm *vm, const char *call, u32 map, pw_str key, pw_str val) {
    /* sizes first: the syntax checks read every byte */
    if (key.len > vm->lim.max_header_name_bytes)
        return pw_host_limit_hit(vm, "header_name"), pw_vm_refuse(vm, "%s: header name of %zu bytes (limit %u)", call, key.len,
                            vm->lim.max_header_name_bytes);
    if (val.len > vm->lim.max_header_value_bytes)
        return pw_host_limit_hit(vm, "header_value"), pw_vm_refuse(vm, "%s: header value of %zu bytes (limit %u)", call, val.len,
                            vm->lim.max_header_value_bytes);
    if (!pw_header_name_ok(key)) {
        /* Not printed: it may hold the very bytes refused. */
        size_t at = 0;
        while (at < key.len &&
               (is_tchar((unsigned char)key.data[at]) || (!at && key.data[0] == ':')))
            at++;
        return pw_vm_refuse(vm,
                            "%s: invalid header name of %zu bytes (byte %zu is 0x%02x, not "
                            "an RFC 9110 token character)",
                            call, key.len, at, at < key.len ? (unsigned char)key.data[at] : 0);
    }
    if (!pw_header_value_ok(val))
        return pw_vm_refuse(vm, "%s: header \"%.*s\": value with CR, LF or NUL", call,
                            key.len <= 32 ? (int)key.len : 32, key.data);
    if (map == PROXY_MAP_HTTP_RESPONSE_HEADERS && is_status_key(key) && !status_str_ok(val))
        return pw_vm_refuse(vm, "%s: :status \"%.*s\" (200..599 only)", call,
                            val.len <= 16 ? (int)val.len : 16, val.data);
    return OK;
}

enum map_op { MAP_ADD, MAP_REPLACE, MAP_REMOVE };

static u32 map_modify(pw_vm *vm, enum map_op op, u32 map, u32 kptr, u32 klen, u32 vptr, u32 vlen) {
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
        const char *call =
            op == MAP_ADD ? "proxy_add_header_map_value" : "proxy_replace_header_map_value";
        proxy_status_t st = header_ok(vm, call, map, key, val);
        if (st == OK)
            st = pw_hc_charge(vm, call, (uint64_t)key.len + val.len);
        if (st != OK)
            return st;
    }
    const pw_host_http_ops *o = vm->hooks.http;
    switch (op) {
    case MAP_ADD:
        return o->map_add ? o->map_add(vm->host, s, map, key, val) : PROXY_RESULT_UNIMPLEMENTED;
    case MAP_REPLACE:
        return o->map_replace ? o->map_replace(vm->host, s, map, key, val)
                              : PROXY_RESULT_UNIMPLEMENTED;
    case MAP_REMOVE:
        return o->map_remove ? o->map_remove(vm->host, s, map, key) : PROXY_RESULT_UNIMPLEMENTED;
    }
    return PROXY_RESULT_BAD_ARGUMENT;
}

u32 pw_hc_add_header_map_value(void *c, u32 map, u32 kptr, u32 klen, u32 vptr, u32 vlen) {
    return map_modify(VM, MAP_ADD, map, kptr, klen, vptr, vlen);
}

u32 pw_hc_replace_header_map_value(void *c, u32 map, u32 kptr, u32 klen, u32 vptr, u32 vlen) {
    return map_modify(VM, MAP_REPLACE, map, kptr, klen, vptr, vlen);
}

u32 pw_hc_remove_header_map_value(void *c, u32 map, u32 kptr, u32 klen) {
    return map_modify(VM, MAP_REMOVE, map, kptr, klen, 0, 0);
}

proxy_status_t pw_hc_pairs_ok(pw_vm *vm, const char *call, u32 map, const pw_kv *pairs, size_t n) {
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        proxy_status_t st = header_ok(vm, call, map, pairs[i].key, pairs[i].value);
        if (st != OK)
            return st;
        bytes += pairs[i].key.len + pairs[i].value.len;
    }
    return pw_hc_charge(vm, call, bytes);
}

u32 pw_hc_set_header_map_pairs(void *c, u32 map, u32 ptr, u32 len) {
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
    else if (!VM->hooks.http->map_set_pairs)
        st = PROXY_RESULT_UNIMPLEMENTED;
    else if ((st = pw_hc_pairs_ok(VM, "proxy_set_header_map_pairs", map, pairs, n)) == OK)
        st = VM->hooks.http->map_set_pairs(VM->host, s, map, pairs, n);
    free(pairs);
    return st;
}
