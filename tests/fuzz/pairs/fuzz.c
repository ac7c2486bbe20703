/*
 * pairs -- the serialised pairs codec (docs/ABI.md §6.1, src/core/marshal.c)
 * on a live VM: the input is written to guest memory and parsed
 * (pw_parse_pairs); what parses is serialised again into a fresh guest
 * allocation (pw_out_pairs), which must be the input byte for byte (one
 * canonical form) and parse to the same pairs. A pointer and length from
 * the end of the input are also parsed as given (out of bounds, overflow).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(void *a) {
    const fz_input *in = a;
    uint64_t msize;
    uint8_t *mem = fz_mem(&msize);
    size_t len;
    uint32_t at = fz_put(in, &len);
    pw_kv *kv;
    size_t n;
    proxy_status_t st = pw_parse_pairs(fz.vm, at, (uint32_t)len, &kv, &n);
    if (st != PROXY_RESULT_OK && st != PROXY_RESULT_BAD_ARGUMENT)
        abort();
    if (st == PROXY_RESULT_OK) {
        if (n && !kv)
            abort();
        for (size_t i = 0; i < n; i++) {
            const uint8_t *k = (const uint8_t *)kv[i].key.data, *v = (const uint8_t *)kv[i].value.data;
            if (k < mem + at || v + kv[i].value.len >= mem + at + len || k[kv[i].key.len] ||
                v[kv[i].value.len])
                abort(); /* outside the input, or not NUL-terminated */
        }
        if (pw_out_pairs(fz.vm, kv, n, fz.scratch, fz.scratch + 4) != PROXY_RESULT_OK)
            abort();
        mem = fz_mem(&msize);
        uint32_t p = pw_get_u32(mem + fz.scratch), l = pw_get_u32(mem + fz.scratch + 4);
        if (n == 0 && (p || l))
            abort();
        if (n && (l != len || memcmp(mem + p, in->data, len)))
            abort(); /* not the canonical form it was parsed from */
        pw_kv *kv2;
        size_t n2;
        if (n && (pw_parse_pairs(fz.vm, p, l, &kv2, &n2) != PROXY_RESULT_OK || n2 != n))
            abort();
        if (n)
            free(kv2);
        free(kv);
    }
    /* A pointer and length as a plugin may pass them. */
    if (in->size >= 8) {
        uint32_t ptr = pw_get_u32(in->data + in->size - 8), plen = pw_get_u32(in->data + in->size - 4);
        st = pw_parse_pairs(fz.vm, ptr, plen, &kv, &n);
        if (st == PROXY_RESULT_OK)
            free(kv);
        else if ((uint64_t)ptr + plen <= msize && st == PROXY_RESULT_INVALID_MEMORY_ACCESS)
            abort(); /* in bounds, yet refused as out of bounds */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_vm_ready();
    fz_input in = {data, size};
    fz_run(check, &in);
    return 0;
}
