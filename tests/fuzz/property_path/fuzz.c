/*
 * property_path -- property paths (docs/ABI.md §6.2, src/core/hc_properties.c)
 * through proxy_get_property and proxy_set_property on a live VM. The
 * input is the path as a plugin passes it; the host's property hooks
 * check what the core made of it: at most 16 segments, inside the path,
 * none holding the separator, and joined again they give the path (less
 * one trailing NUL). The value returned is the path again (the out-value
 * path through the plugin's allocator).
 */
#include <stdlib.h>
#include <string.h>

#include "core/hc.h"
#include "fuzz_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *path_in; /* the path in guest memory */
static size_t path_len;
static int hook_calls;

static void check_segments(const pw_str *seg, size_t n) {
    hook_calls++;
    if (n == 0 || n > 16)
        abort();
    size_t len = path_len;
    if (len && path_in[len - 1] == 0)
        len--;
    char sep = memchr(path_in, 0, len) ? 0 : '.';
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if ((const uint8_t *)seg[i].data != path_in + off || off + seg[i].len > len)
            abort();
        if (seg[i].len && memchr(seg[i].data, sep, seg[i].len))
            abort();
        off += seg[i].len;
        if (i + 1 < n) {
            if (off >= len || path_in[off] != (uint8_t)sep)
                abort();
            off++;
        }
    }
    if (off != len)
        abort();
}

static proxy_status_t get(void *host, void *stream, const pw_str *path, size_t n, pw_str *value) {
    (void)host, (void)stream;
    check_segments(path, n);
    *value = (pw_str){(const char *)path_in, path_len};
    return PROXY_RESULT_OK;
}

static proxy_status_t set(void *host, void *stream, const pw_str *path, size_t n, pw_str value) {
    (void)host, (void)stream, (void)value;
    check_segments(path, n);
    return PROXY_RESULT_OK;
}

static const pw_host_property_ops props = {.get_property = get, .set_property = set};
static pw_host_ops ops;

static void run(void *a) {
    const fz_input *in = a;
    uint64_t msize;
    uint8_t *mem = fz_mem(&msize);
    size_t len;
    uint32_t at = fz_put(in, &len);
    path_in = mem + at;
    path_len = len;
    hook_calls = 0;
    u32 st = pw_hc_get_property(fz.vm, at, (u32)len, fz.scratch, fz.scratch + 4);
    if (st == PROXY_RESULT_OK && hook_calls == 1) {
        u32 p = pw_get_u32(mem + fz.scratch), l = pw_get_u32(mem + fz.scratch + 4);
        if (l != len || (l && memcmp(mem + p, in->data, len)))
            abort(); /* the value did not come back whole */
    } else if (st != PROXY_RESULT_OK && st != PROXY_RESULT_NOT_FOUND) {
        abort();
    }
    st = pw_hc_set_property(fz.vm, at, (u32)len, at, (u32)len);
    if (st != PROXY_RESULT_OK && st != PROXY_RESULT_NOT_FOUND && st != PROXY_RESULT_BAD_ARGUMENT)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fz_ops) {
        ops = mh_ops;
        ops.property = &props;
        fz_ops = &ops;
    }
    fz_vm_ready();
    fz_input in = {data, size};
    fz_run(run, &in);
    return 0;
}
