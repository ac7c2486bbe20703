/*
 * hostcalls -- every host function of the import table (env and WASI, as
 * the glue's trampolines call them) with fuzzed arguments on a live VM,
 * in sequences: pointers into a scratch area, near the end of memory, or
 * anywhere; sizes, map and buffer types, ids and tokens small or raw.
 * Input: a list of operations, each one byte:
 *   0xff off(2) n(1) bytes(n)   write bytes to scratch + off
 *   k                           call host function k % count, then one
 *                               encoded argument per parameter:
 *     i32: tag byte t, t % 4 = 0: small (next byte), 1: scratch + 2
 *          bytes, 2: raw 4 bytes, 3: memory size - next byte
 *     i64: 8 raw bytes
 * Every call must return (or trap, which ends the input and the VM), and
 * with a status of the ABI (0..15, docs/ABI.md) or, for WASI, an errno.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p, *end;
} input;

static uint8_t byte(input *in) {
    return in->p < in->end ? *in->p++ : 0;
}

static uint64_t raw(input *in, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)byte(in) << (8 * i);
    return v;
}

static uint32_t arg32(input *in) {
    uint8_t t = byte(in);
    uint64_t msize;
    switch (t % 4) {
    case 0:
        return byte(in);
    case 1:
        return fz.scratch + (uint32_t)raw(in, 2);
    case 2:
        return (uint32_t)raw(in, 4);
    default:
        fz_mem(&msize);
        return (uint32_t)(msize - byte(in));
    }
}

typedef uint32_t u32;
typedef uint64_t u64;
#define A32(k) ((u32)a[k])

/* Calls f with a[] as its signature says; its result (0 for none). */
static u32 call(const pw_host_func *f, const u64 *a) {
    void *c = fz.vm;
    const char *s = f->sig;
    void (*fn)(void) = f->fn;
#define IS(sig) (strcmp(s, sig) == 0)
    if (IS(":i"))
        return ((u32(*)(void *))fn)(c);
    else if (IS("i:"))
        ((void (*)(void *, u32))fn)(c, A32(0));
    else if (IS("i:i"))
        return ((u32(*)(void *, u32))fn)(c, A32(0));
    else if (IS("i:i"))
        return ((u32(*)(void *, u32))fn)(c, A32(0));
    else if (IS("iI:i"))
        return ((u32(*)(void *, u32, u64))fn)(c, A32(0), a[1]);
    else if (IS("iII:i"))
        return ((u32(*)(void *, u32, u64, u64))fn)(c, A32(0), a[1], a[2]);
    else if (IS("iIIi:i"))
        return ((u32(*)(void *, u32, u64, u64, u32))fn)(c, A32(0), a[1], a[2], A32(3));
    else if (IS("iIi:i"))
        return ((u32(*)(void *, u32, u64, u32))fn)(c, A32(0), a[1], A32(2));
    else if (IS("iIii:i"))
        return ((u32(*)(void *, u32, u64, u32, u32))fn)(c, A32(0), a[1], A32(2), A32(3));
    else if (IS("ii:i"))
        return ((u32(*)(void *, u32, u32))fn)(c, A32(0), A32(1));
    else if (IS("iii:i"))
        return ((u32(*)(void *, u32, u32, u32))fn)(c, A32(0), A32(1), A32(2));
    else if (IS("iiiIi:i"))
        return ((u32(*)(void *, u32, u32, u32, u64, u32))fn)(c, A32(0), A32(1), A32(2), a[3], A32(4));
    else if (IS("iiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32))fn)(c, A32(0), A32(1), A32(2), A32(3));
    else if (IS("iiiiIIi:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u64, u64, u32))fn)(c, A32(0), A32(1), A32(2),
                                                                 A32(3), a[4], a[5], A32(6));
    else if (IS("iiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32))fn)(c, A32(0), A32(1), A32(2), A32(3), A32(4));
    else if (IS("iiiiiIIii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u64, u64, u32, u32))fn)(
            c, A32(0), A32(1), A32(2), A32(3), A32(4), a[5], a[6], A32(7), A32(8));
    else if (IS("iiiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32))fn)(c, A32(0), A32(1), A32(2), A32(3),
                                                           A32(4), A32(5));
    else if (IS("iiiiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32, u32))fn)(c, A32(0), A32(1), A32(2),
                                                                A32(3), A32(4), A32(5), A32(6));
    else if (IS("iiiiiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32, u32, u32))fn)(
            c, A32(0), A32(1), A32(2), A32(3), A32(4), A32(5), A32(6), A32(7));
    else if (IS("iiiiiiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32, u32, u32, u32))fn)(
            c, A32(0), A32(1), A32(2), A32(3), A32(4), A32(5), A32(6), A32(7), A32(8));
    else if (IS("iiiiiiiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32, u32, u32, u32, u32))fn)(
            c, A32(0), A32(1), A32(2), A32(3), A32(4), A32(5), A32(6), A32(7), A32(8), A32(9));
    else if (IS("iiiiiiiiiiii:i"))
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32, u32, u32, u32, u32, u32, u32))fn)(
            c, A32(0), A32(1), A32(2), A32(3), A32(4), A32(5), A32(6), A32(7), A32(8), A32(9),
            A32(10), A32(11));
    else
        abort(); /* a new signature in hostcalls.def: add it here */
#undef IS
    return 0;
}

static void run(void *arg) {
    input *in = arg;
    size_t nfuncs;
    const pw_host_func *funcs = pw_core_host_funcs(&nfuncs);
    while (in->p < in->end) {
        uint8_t op = byte(in);
        if (op == 0xff) {
            uint32_t off = (uint32_t)raw(in, 2);
            size_t n = byte(in);
            if (n > (size_t)(in->end - in->p))
                n = (size_t)(in->end - in->p);
            if (off + n > FZ_SCRATCH)
                n = FZ_SCRATCH - off;
            uint64_t msize;
            memcpy(fz_mem(&msize) + fz.scratch + off, in->p, n);
            in->p += n;
            continue;
        }
        const pw_host_func *f = &funcs[op % nfuncs];
        u64 a[16] = {0};
        const char *colon = strchr(f->sig, ':');
        for (int k = 0; f->sig + k < colon && k < 16; k++)
            a[k] = f->sig[k] == 'I' ? raw(in, 8) : arg32(in);
        u32 r = call(f, a);
        if (pw_vm_dead(fz.vm))
            return;
        if (!strcmp(f->module, "env") && strcmp(f->name, "pthread_equal") && r > PROXY_RESULT_UNIMPLEMENTED)
            abort(); /* not a status of the ABI */
    }
}

/* ----------------------------------------- the host beyond memhost */

/* The store: a 4 MiB region of the heap, evicting. */
typedef struct {
    size_t size;
    max_align_t pad[];
} block;
static size_t region_used;
#define REGION_CAP (4u << 20)

static void *r_alloc(void *r, size_t n) {
    (void)r;
    if (region_used + n > REGION_CAP)
        return NULL;
    block *b = malloc(sizeof *b + n);
    if (!b)
        return NULL;
    b->size = n;
    region_used += n;
    return b->pad;
}

static void r_free(void *r, void *p) {
    (void)r;
    block *b = (block *)((char *)p - offsetof(block, pad));
    region_used -= b->size;
    free(b);
}

static void r_nop(void *r) {
    (void)r;
}

static pw_store *store;

static pw_store *get_store(void *host) {
    (void)host;
    return store;
}

static void queue_ready(void *host, uint32_t slot) {
    (void)host, (void)slot;
}

static void set_tick(void *host, pw_plugin *p, uint32_t ms) {
    (void)host, (void)p, (void)ms;
}

/* Call-outs: accepted, never answered (cancelled when the VM goes). */
static proxy_status_t http_call(void *host, pw_plugin *p, uint32_t token,
                                const pw_http_callout *c) {
    (void)host, (void)p, (void)token;
    return c->upstream.len == 1 ? PROXY_RESULT_BAD_ARGUMENT : PROXY_RESULT_OK;
}

static proxy_status_t grpc_call(void *host, pw_plugin *p, uint32_t token,
                                const pw_grpc_callout *c) {
    (void)host, (void)p, (void)token;
    return c->upstream.len == 1 ? PROXY_RESULT_PARSE_FAILURE : PROXY_RESULT_OK;
}

static proxy_status_t grpc_send(void *host, uint32_t token, pw_str m, int end) {
    (void)host, (void)token, (void)m, (void)end;
    return PROXY_RESULT_OK;
}

static proxy_status_t grpc_close(void *host, uint32_t token) {
    (void)host, (void)token;
    return PROXY_RESULT_OK;
}

static void cancel(void *host, uint32_t token) {
    (void)host, (void)token;
}

static const pw_host_shared_ops shared_ops = {.store = get_store, .queue_ready = queue_ready};
static const pw_host_timer_ops timer_ops = {.set_tick = set_tick};
static const pw_host_callout_ops callout_ops = {.http_call = http_call,
                                                .grpc_call = grpc_call,
                                                .grpc_send = grpc_send,
                                                .grpc_close = grpc_close,
                                                .cancel = cancel};
static pw_host_ops ops;

static void host_init(void) {
    static const pw_store_mem mem = {NULL, r_alloc, r_free, r_nop, r_nop};
    pw_store_config cfg = {.evict_lru = 1, .slots = 1, .buckets = 64};
    char err[PW_ERRLEN];
    if (pw_store_open(&mem, &cfg, NULL, &store, err, sizeof err) != PW_OK)
        abort();
    ops = mh_ops;
    ops.shared = &shared_ops;
    ops.timers = &timer_ops;
    ops.callouts = &callout_ops;
    fz_ops = &ops;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fz_ops)
        host_init();
    fz_vm_ready();
    input in = {data, data + size};
    fz_run(run, &in);
    return 0;
}
