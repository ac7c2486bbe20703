/*
 * marshal.c -- values crossing the ABI: out-values through the module's
 * allocator (docs/ABI.md §1.4) and serialised pairs (§6.1).
 */
#include <stdlib.h>

#include "core/core.h"

/* cpp-host's limits for pairs the module sends (§8.12). */
#define PW_PAIRS_MAX_BYTES (1u << 20)
#define PW_PAIRS_MAX_COUNT 1024u

/* Allocates len (> 0) bytes in the guest; 0 on failure. A trap inside the
 * allocator kills the VM and abandons the hostcall's own Wasm call too. */
static uint32_t guest_alloc(pw_vm *vm, uint32_t len) {
    pw_module *m = vm->m;
    if (!m->has_cb[PW_CB_MALLOC])
        return 0;
    uint32_t p = 0;
    pw_trap trap;
    if (pw_winst_call(vm->inst, &m->cb[PW_CB_MALLOC], &len, &p, &trap) != 0) {
        vm->dead = 1;
        pw_engine_trap(trap.kind, trap.exit_code);
    }
    return p;
}

proxy_status_t pw_out_alloc(pw_vm *vm, size_t len, uint32_t ret_ptr, uint32_t ret_size,
                            uint8_t **dst) {
    *dst = NULL;
    if (!pw_mem(vm, ret_ptr, 4) || !pw_mem(vm, ret_size, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    if (len == 0) {
        pw_mem_put_u32(vm, ret_ptr, 0);
        pw_mem_put_u32(vm, ret_size, 0);
        return PROXY_RESULT_OK;
    }
    if (len > UINT32_MAX)
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    uint32_t p = guest_alloc(vm, (uint32_t)len);
    uint8_t *d = p ? pw_mem(vm, p, len) : NULL;
    if (!d)
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    /* Re-check: the allocator may have grown memory (base is stable). */
    if (pw_mem_put_u32(vm, ret_ptr, p) || pw_mem_put_u32(vm, ret_size, (uint32_t)len))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    *dst = d;
    return PROXY_RESULT_OK;
}

proxy_status_t pw_out_bytes(pw_vm *vm, const void *data, size_t len, uint32_t ret_ptr,
                            uint32_t ret_size) {
    uint8_t *d;
    proxy_status_t st = pw_out_alloc(vm, len, ret_ptr, ret_size, &d);
    if (st == PROXY_RESULT_OK && d)
        memcpy(d, data, len);
    return st;
}

static void put_u32(uint8_t *p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 4); /* one store */
    return;
#endif
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Copies n bytes and a NUL after them; returns the byte after the NUL.
 * Header names and most values are short: up to 32 bytes are moved with
 * two overlapping loads and stores (never outside [s, s + n)), cheaper
 * than a call to memcpy for each string. */
static inline __attribute__((always_inline)) uint8_t *copy_z(uint8_t *d, const char *s,
                                                              size_t n) {
    if (n >= 8) {
        if (n > 32) {
            memcpy(d, s, n);
        } else if (n > 16) {
            uint8_t a[16], b[16];
            memcpy(a, s, 16);
            memcpy(b, s + n - 16, 16);
            memcpy(d, a, 16);
            memcpy(d + n - 16, b, 16);
        } else {
            uint64_t a, b;
            memcpy(&a, s, 8);
            memcpy(&b, s + n - 8, 8);
            memcpy(d, &a, 8);
            memcpy(d + n - 8, &b, 8);
        }
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n) {
        d[0] = (uint8_t)s[0];
        d[n / 2] = (uint8_t)s[n / 2];
        d[n - 1] = (uint8_t)s[n - 1];
    }
    d[n] = 0;
    return d + n + 1;
}

uint64_t pw_pairs_bytes(const pw_kv *pairs, size_t n) {
    uint64_t size = 4;
    for (size_t i = 0; i < n; i++)
        size += 10 + (uint64_t)pairs[i].key.len + pairs[i].value.len;
    return size;
}

proxy_status_t pw_out_pairs_sized(pw_vm *vm, const pw_kv *pairs, size_t n, uint64_t size,
                                  uint32_t ret_ptr, uint32_t ret_size) {
    if (n == 0)
        return pw_out_bytes(vm, NULL, 0, ret_ptr, ret_size);
    if (size > UINT32_MAX)
        return PROXY_RESULT_SERIALIZATION_FAILURE;
    uint8_t *d;
    proxy_status_t st = pw_out_alloc(vm, (size_t)size, ret_ptr, ret_size, &d);
    if (st != PROXY_RESULT_OK)
        return st;
    put_u32(d, (uint32_t)n);
    uint8_t *lens = d + 4, *s = d + 4 + 8 * n;
    for (const pw_kv *p = pairs, *end = pairs + n; p < end; p++, lens += 8) {
        /* read before writing: d may alias pairs for all the compiler knows */
        pw_kv kv = *p;
        put_u32(lens, (uint32_t)kv.key.len);
        put_u32(lens + 4, (uint32_t)kv.value.len);
        s = copy_z(s, kv.key.data, kv.key.len);
        s = copy_z(s, kv.value.data, kv.value.len);
    }
    return PROXY_RESULT_OK;
}

proxy_status_t pw_out_pairs(pw_vm *vm, const pw_kv *pairs, size_t n, uint32_t ret_ptr,
                            uint32_t ret_size) {
    return pw_out_pairs_sized(vm, pairs, n, pw_pairs_bytes(pairs, n), ret_ptr, ret_size);
}

proxy_status_t pw_parse_pairs(pw_vm *vm, uint32_t ptr, uint32_t len, pw_kv **pairs, size_t *n) {
    *pairs = NULL;
    *n = 0;
    if (len == 0)
        return PROXY_RESULT_OK;
    const uint8_t *b = pw_mem(vm, ptr, len);
    if (!b)
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    if (len == 1 && b[0] == 0)
        return PROXY_RESULT_OK;
    if (len < 4 || len > PW_PAIRS_MAX_BYTES)
        return PROXY_RESULT_BAD_ARGUMENT;
    uint32_t count = pw_get_u32(b);
    if (count == 0)
        return PROXY_RESULT_OK;
    if (count > PW_PAIRS_MAX_COUNT || 4 + (uint64_t)count * 8 > len)
        return PROXY_RESULT_BAD_ARGUMENT;
    pw_kv *kv = malloc(count * sizeof *kv);
    if (!kv)
        return PROXY_RESULT_INTERNAL_FAILURE;
    uint64_t off = 4 + (uint64_t)count * 8;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t kl = pw_get_u32(b + 4 + 8 * i);
        uint32_t vl = pw_get_u32(b + 8 + 8 * i);
        if (off + kl + 1 + vl + 1 > len || b[off + kl] != 0 || b[off + kl + 1 + vl] != 0) {
            free(kv);
            return PROXY_RESULT_BAD_ARGUMENT;
        }
        kv[i].key.data = (const char *)b + off;
        kv[i].key.len = kl;
        kv[i].value.data = (const char *)b + off + kl + 1;
        kv[i].value.len = vl;
        off += (uint64_t)kl + 1 + vl + 1;
    }
    if (off != len) {
        free(kv);
        return PROXY_RESULT_BAD_ARGUMENT;
    }
    *pairs = kv;
    *n = count;
    return PROXY_RESULT_OK;
}
