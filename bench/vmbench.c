/*
 * vmbench -- instantiation time, memory per VM and in-process cost of one
 * HTTP stream, for `make bench` (bench/run.py runs it and reads its JSON).
 *
 *   vmbench load WASM ROOT_ID CACHE_DIR
 *       One fresh process: pw_runtime_new, pw_module_load_file (cold when
 *       CACHE_DIR is empty: wasm2c + cc; else SHA-256 + dlopen), then the
 *       first pw_vm_new + pw_plugin_new. Run it in a new process each time:
 *       dlopen of an already loaded object would be free.
 *
 *   vmbench vm WASM ROOT_ID CACHE_DIR HEADERS_FILE ITERATIONS NVMS STREAMS
 *       With the module loaded once: ITERATIONS x (pw_vm_new, pw_plugin_new,
 *       pw_vm_free), medians; RSS and linear memory of NVMS live VMs; then
 *       STREAMS HTTP streams through one VM with an in-memory host (request
 *       headers from HEADERS_FILE, "Name: value" lines, plus the four
 *       pseudo-headers; a 3-byte response body): ns per stream and linear
 *       memory growth over them.
 *
 *   vmbench calls WASM ROOT_ID CACHE_DIR HEADERS_FILE REQUESTS
 *       The callbacks of REQUESTS HTTP streams through one VM (host as for
 *       `vm`): stream creation (proxy_on_context_create), on_request_headers,
 *       on_response_headers, pw_stream_free (on_log, on_done, on_delete),
 *       each timed alone, after a warm-up; the sequence and the figures of
 *       bench/v8/as_headers.js (the same plugin under V8). Figures are the
 *       10th percentile of blocks of 100 requests (a shared machine's
 *       preemption only adds), ns.
 *
 *   vmbench store WASM CACHE_DIR MODE N CALLS PROCS
 *       The shared store's cost per operation (bench/plugins/shared.c):
 *       PROCS processes (fork) on one store in one MAP_SHARED region with a
 *       process-shared mutex, as nginx workers share a zone; each runs
 *       CALLS on_request_headers of its own VM, each making N operations
 *       (MODE pairs: get + CAS set of an 8-byte counter; metric: counter
 *       increments). ns per operation per process (the slowest process),
 *       and the final counter, which must equal PROCS x CALLS x N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pwasm.h"

#define MAX_HEADERS 64

/* ------------------------------------------------------ a minimal host */

typedef struct bstream {
    pw_kv req[MAX_HEADERS], resp[MAX_HEADERS];
    size_t nreq, nresp, nresp_base;
    char arena[4096]; /* copies of what plugins add; reset per stream */
    size_t used;
    char body[64];
    size_t body_len;
} bstream;

static pw_str bs_save(bstream *s, pw_str v)
{
    if (v.len > sizeof s->arena - s->used)
        return (pw_str){"", 0};
    memcpy(s->arena + s->used, v.data, v.len);
    pw_str r = {s->arena + s->used, v.len};
    s->used += v.len;
    return r;
}

static void h_log(void *host, void *stream, pw_str name, proxy_log_level_t l, pw_str msg)
{
    (void)host;
    (void)stream;
    if (l >= PROXY_LOG_WARN)
        fprintf(stderr, "vmbench: [%.*s] %.*s\n", (int)name.len, name.data, (int)msg.len,
                msg.data);
}

static proxy_log_level_t h_level(void *host)
{
    (void)host;
    return PROXY_LOG_WARN;
}

static proxy_status_t h_pairs(void *host, void *stream, proxy_map_type_t map, pw_kv **pairs,
                              size_t *n)
{
    (void)host;
    bstream *s = stream;
    if (map == PROXY_MAP_HTTP_REQUEST_HEADERS) {
        *pairs = s->req;
        *n = s->nreq;
    } else if (map == PROXY_MAP_HTTP_RESPONSE_HEADERS) {
        *pairs = s->resp;
        *n = s->nresp;
    } else {
        return PROXY_RESULT_NOT_FOUND;
    }
    return PROXY_RESULT_OK;
}

static proxy_status_t h_get(void *host, void *stream, proxy_map_type_t map, pw_str key,
                            pw_str *value)
{
    pw_kv *kv;
    size_t n;
    if (h_pairs(host, stream, map, &kv, &n) != PROXY_RESULT_OK)
        return PROXY_RESULT_NOT_FOUND;
    for (size_t i = 0; i < n; i++)
        if (kv[i].key.len == key.len && !strncasecmp(kv[i].key.data, key.data, key.len)) {
            *value = kv[i].value;
            return PROXY_RESULT_OK;
        }
    return PROXY_RESULT_NOT_FOUND;
}

static proxy_status_t h_add(void *host, void *stream, proxy_map_type_t map, pw_str key,
                            pw_str value)
{
    (void)host;
    bstream *s = stream;
    pw_kv *kv = map == PROXY_MAP_HTTP_REQUEST_HEADERS ? s->req : s->resp;
    size_t *n = map == PROXY_MAP_HTTP_REQUEST_HEADERS ? &s->nreq : &s->nresp;
    if (map > PROXY_MAP_HTTP_RESPONSE_HEADERS || *n == MAX_HEADERS)
        return PROXY_RESULT_BAD_ARGUMENT;
    kv[(*n)++] = (pw_kv){bs_save(s, key), bs_save(s, value)};
    return PROXY_RESULT_OK;
}

static proxy_status_t h_body_size(void *host, void *stream, proxy_buffer_type_t type,
                                  size_t *size)
{
    (void)host;
    if (type != PROXY_BUFFER_HTTP_RESPONSE_BODY)
        return PROXY_RESULT_NOT_FOUND;
    *size = ((bstream *)stream)->body_len;
    return PROXY_RESULT_OK;
}

static proxy_status_t h_body_copy(void *host, void *stream, proxy_buffer_type_t type,
                                  size_t start, size_t len, void *dst)
{
    (void)host;
    bstream *s = stream;
    if (type != PROXY_BUFFER_HTTP_RESPONSE_BODY || start + len > s->body_len)
        return PROXY_RESULT_NOT_FOUND;
    memcpy(dst, s->body + start, len);
    return PROXY_RESULT_OK;
}

static proxy_status_t h_body_replace(void *host, void *stream, proxy_buffer_type_t type,
                                     size_t start, size_t len, pw_str data)
{
    (void)host;
    bstream *s = stream;
    if (type != PROXY_BUFFER_HTTP_RESPONSE_BODY || start + len > s->body_len ||
        s->body_len - len + data.len > sizeof s->body)
        return PROXY_RESULT_BAD_ARGUMENT;
    memmove(s->body + start + data.len, s->body + start + len, s->body_len - start - len);
    memcpy(s->body + start, data.data, data.len);
    s->body_len = s->body_len - len + data.len;
    return PROXY_RESULT_OK;
}

static const pw_host_log_ops log_ops = {
    .log = h_log,
    .log_level = h_level,
};

static const pw_host_http_ops http_ops = {
    .map_pairs = h_pairs,
    .map_get = h_get,
    .map_add = h_add,
    .body_size = h_body_size,
    .body_copy = h_body_copy,
    .body_replace = h_body_replace,
};

static const pw_host_ops ops = {
    .size = sizeof(pw_host_ops),
    .log = &log_ops,
    .http = &http_ops,
};

/* Request headers: pseudo-headers, then HEADERS_FILE ("Name: value"),
 * names lower-cased as the nginx module lists them. */
static char header_text[8192];

static int load_headers(bstream *s, const char *path)
{
    static const char *pseudo[][2] = {
        {":method", "GET"}, {":path", "/local/headers"}, {":authority", "127.0.0.1"},
        {":scheme", "http"}};
    for (size_t i = 0; i < 4; i++)
        s->req[s->nreq++] = (pw_kv){{pseudo[i][0], strlen(pseudo[i][0])},
                                    {pseudo[i][1], strlen(pseudo[i][1])}};
    s->req[s->nreq++] = (pw_kv){{"host", 4}, {"127.0.0.1", 9}};
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t len = fread(header_text, 1, sizeof header_text - 1, f);
    fclose(f);
    header_text[len] = '\0';
    for (char *line = strtok(header_text, "\n"); line && s->nreq < MAX_HEADERS;
         line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (!colon || line[0] == '#')
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        for (char *p = line; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        s->req[s->nreq++] = (pw_kv){{line, strlen(line)}, {v, strlen(v)}};
    }
    static const char *resp[][2] = {
        {":status", "200"}, {"content-type", "text/plain"}, {"content-length", "3"}};
    for (size_t i = 0; i < 3; i++)
        s->resp[s->nresp++] = (pw_kv){{resp[i][0], strlen(resp[i][0])},
                                      {resp[i][1], strlen(resp[i][1])}};
    s->nresp_base = s->nresp;
    return 0;
}

/* ------------------------------------------------------------- helpers */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * 4;
}

static uint64_t linmem(pw_vm *vm)
{
    size_t size = 0;
    pw_vm_memory(vm, &size);
    return size;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}

static char err[PW_ERRLEN];

#define S(s) ((pw_str){(s), strlen(s)})
#define FAIL(what)                                                 \
    do {                                                           \
        fprintf(stderr, "vmbench: %s: %s\n", (what), err);         \
        return 1;                                                  \
    } while (0)

static int new_vm(pw_module *m, const char *root_id, pw_vm **vm, pw_plugin **p, void *host)
{
    if (pw_vm_new(m, S(""), S(""), &ops, host, vm, err, sizeof err) != PW_OK)
        return -1;
    if (pw_plugin_new(*vm, S("bench"), S(root_id), S(""), p, err, sizeof err) != PW_OK) {
        pw_vm_free(*vm);
        return -1;
    }
    return 0;
}

static int setup(const char *cache_dir, const char *wasm, pw_runtime **rt, pw_module **m,
                 double *load_ns)
{
    pw_runtime_config cfg = {.cache_dir = cache_dir};
    if (pw_runtime_new(&cfg, rt, err, sizeof err) != PW_OK)
        return -1;
    double t = now_ns();
    if (pw_module_load_file(*rt, "bench", wasm, m, err, sizeof err) != PW_OK)
        return -1;
    *load_ns = now_ns() - t;
    return 0;
}

/* ------------------------------------------ a region shared by processes */

/* Bump allocation with a free list per power-of-two class, under the
 * store's lock: what nginx's slab allocator does for a zone, simplified. */
typedef struct shregion {
    pthread_mutex_t mu;
    size_t used, cap;
    void *free_list[40];
    _Alignas(16) char base[];
} shregion;

static void *sh_alloc(void *rg, size_t n)
{
    shregion *r = rg;
    unsigned c = 5;
    while (((size_t)1 << c) < n + 16)
        c++;
    char *p = r->free_list[c];
    if (p) {
        r->free_list[c] = *(void **)(p + 16);
        return p + 16;
    }
    if (r->used + ((size_t)1 << c) > r->cap)
        return NULL;
    p = r->base + r->used;
    r->used += (size_t)1 << c;
    *(unsigned *)p = c;
    return p + 16;
}

static void sh_free(void *rg, void *q)
{
    shregion *r = rg;
    char *p = (char *)q - 16;
    unsigned c = *(unsigned *)p;
    *(void **)(p + 16) = r->free_list[c];
    r->free_list[c] = p;
}

static void sh_lock(void *rg)
{
    pthread_mutex_lock(&((shregion *)rg)->mu);
}

static void sh_unlock(void *rg)
{
    pthread_mutex_unlock(&((shregion *)rg)->mu);
}

static pw_store *bench_store;

static pw_store *h_store(void *host)
{
    (void)host;
    return bench_store;
}

/* ---------------------------------------------------------------- modes */

static int mode_load(const char *wasm, const char *root_id, const char *cache_dir)
{
    double t0 = now_ns(), load;
    pw_runtime *rt;
    pw_module *m;
    if (setup(cache_dir, wasm, &rt, &m, &load) != 0)
        FAIL("load");
    pw_vm *vm;
    pw_plugin *p;
    double t1 = now_ns();
    if (new_vm(m, root_id, &vm, &p, NULL) != 0)
        FAIL("first VM");
    double t2 = now_ns();
    printf("{\"load_ms\": %.3f, \"first_vm_us\": %.1f, \"total_ms\": %.3f}\n", load / 1e6,
           (t2 - t1) / 1e3, (t2 - t0) / 1e6);
    pw_vm_free(vm);
    pw_module_free(m);
    pw_runtime_free(rt);
    return 0;
}

static int mode_vm(const char *wasm, const char *root_id, const char *cache_dir,
                   const char *headers, long iterations, long nvms, long streams)
{
    pw_runtime *rt;
    pw_module *m;
    double load;
    if (setup(cache_dir, wasm, &rt, &m, &load) != 0)
        FAIL("load");

    /* Instantiation with the compiled module loaded. */
    double *vm_new = calloc((size_t)iterations, sizeof(double));
    double *plugin_new = calloc((size_t)iterations, sizeof(double));
    double *vm_free = calloc((size_t)iterations, sizeof(double));
    double *both = calloc((size_t)iterations, sizeof(double));
    if (!vm_new || !plugin_new || !vm_free || !both)
        return 1;
    for (long i = 0; i < iterations; i++) {
        pw_vm *vm;
        pw_plugin *p;
        double t0 = now_ns();
        if (pw_vm_new(m, S(""), S(""), &ops, NULL, &vm, err, sizeof err) != PW_OK)
            FAIL("pw_vm_new");
        double t1 = now_ns();
        if (pw_plugin_new(vm, S("bench"), S(root_id), S(""), &p, err, sizeof err) != PW_OK)
            FAIL("pw_plugin_new");
        double t2 = now_ns();
        pw_vm_free(vm);
        double t3 = now_ns();
        vm_new[i] = t1 - t0;
        plugin_new[i] = t2 - t1;
        both[i] = t2 - t0;
        vm_free[i] = t3 - t2;
    }

    /* Memory of nvms live VMs, each with its root context. */
    pw_vm **vms = calloc((size_t)nvms, sizeof *vms);
    if (!vms)
        return 1;
    long rss0 = rss_kb();
    uint64_t lin = 0;
    for (long i = 0; i < nvms; i++) {
        pw_plugin *p;
        if (new_vm(m, root_id, &vms[i], &p, NULL) != 0)
            FAIL("VM for memory");
        lin += linmem(vms[i]);
    }
    long rss1 = rss_kb();
    for (long i = 0; i < nvms; i++)
        pw_vm_free(vms[i]);
    free(vms);

    /* HTTP streams through one VM. */
    static bstream s;
    if (load_headers(&s, headers) != 0)
        return 1;
    pw_vm *vm;
    pw_plugin *p;
    if (new_vm(m, root_id, &vm, &p, NULL) != 0)
        FAIL("VM for streams");
    uint64_t lin0 = linmem(vm);
    long warm = streams / 10 + 1;
    double t0 = 0;
    for (long i = 0; i < warm + streams; i++) {
        if (i == warm)
            t0 = now_ns();
        pw_stream *st;
        s.nresp = s.nresp_base;
        s.used = 0;
        memcpy(s.body, "ok\n", 3);
        s.body_len = 3;
        if (pw_stream_new(p, &s, &st, err, sizeof err) != PW_OK)
            FAIL("pw_stream_new");
        if (pw_stream_on_request_headers(st, (uint32_t)s.nreq, 1) == PW_ACTION_ERROR ||
            pw_stream_on_response_headers(st, (uint32_t)s.nresp, 0) == PW_ACTION_ERROR ||
            pw_stream_on_response_body(st, s.body_len, 1) == PW_ACTION_ERROR) {
            snprintf(err, sizeof err, "%s", pw_vm_last_error(vm));
            FAIL("stream");
        }
        pw_stream_free(st);
    }
    double t1 = now_ns();
    uint64_t lin1 = linmem(vm);
    const char *added = s.nresp > s.nresp_base ? s.resp[s.nresp - 1].key.data : "";
    size_t added_len = s.nresp > s.nresp_base ? s.resp[s.nresp - 1].key.len : 0;
    pw_vm_free(vm);

    printf("{\"cached_load_in_process_ms\": %.3f, \"iterations\": %ld,"
           " \"vm_new_us\": %.2f, \"plugin_new_us\": %.2f, \"vm_and_plugin_us\": %.2f,"
           " \"vm_free_us\": %.2f, \"vms\": %ld, \"rss_per_vm_kb\": %.1f,"
           " \"linear_memory_per_vm_kb\": %.1f, \"streams\": %ld, \"stream_ns\": %.1f,"
           " \"linear_memory_before_kb\": %.1f, \"linear_memory_after_kb\": %.1f,"
           " \"last_added_header\": \"%.*s\", \"body\": \"%.2s\"}\n",
           load / 1e6, iterations, median(vm_new, (size_t)iterations) / 1e3,
           median(plugin_new, (size_t)iterations) / 1e3, median(both, (size_t)iterations) / 1e3,
           median(vm_free, (size_t)iterations) / 1e3, nvms,
           nvms ? (double)(rss1 - rss0) / (double)nvms : 0,
           nvms ? (double)lin / 1024.0 / (double)nvms : 0, streams,
           streams ? (t1 - t0) / (double)streams : 0, (double)lin0 / 1024.0,
           (double)lin1 / 1024.0, (int)added_len, added, s.body);
    free(vm_new);
    free(plugin_new);
    free(vm_free);
    free(both);
    pw_module_free(m);
    pw_runtime_free(rt);
    return 0;
}

/* With `timed`, adds the time since *t0 to *slot and restarts *t0 (the
 * clock is read again, so the addition is not counted). */
static void lap(int timed, double *t0, double *slot)
{
    if (timed) {
        *slot += now_ns() - *t0;
        *t0 = now_ns();
    }
}

/* One request's callbacks (the sequence of bench/v8/as_headers.js):
 * pw_stream_new (proxy_on_context_create), on_request_headers,
 * on_response_headers, pw_stream_free (on_log, on_done, on_delete). With
 * `timed`, each of the four is timed alone into acc[]. -1 on an error. */
static int one_request(pw_plugin *p, pw_vm *vm, bstream *s, int timed, double acc[4])
{
    pw_stream *st;
    double t0 = timed ? now_ns() : 0;
    s->nresp = s->nresp_base;
    s->used = 0;
    if (pw_stream_new(p, s, &st, err, sizeof err) != PW_OK)
        return -1;
    lap(timed, &t0, &acc[0]);
    if (pw_stream_on_request_headers(st, (uint32_t)s->nreq, 1) == PW_ACTION_ERROR)
        goto fail;
    lap(timed, &t0, &acc[1]);
    if (pw_stream_on_response_headers(st, (uint32_t)s->nresp, 0) == PW_ACTION_ERROR)
        goto fail;
    lap(timed, &t0, &acc[2]);
    pw_stream_free(st);
    lap(timed, &t0, &acc[3]);
    return 0;
fail:
    snprintf(err, sizeof err, "%s", pw_vm_last_error(vm));
    pw_stream_free(st);
    return -1;
}

/* The 10th percentile of n block averages (sorts v). */
static double low10(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n ? v[n / 10] : 0;
}

static int mode_calls(const char *wasm, const char *root_id, const char *cache_dir,
                      const char *headers, long requests)
{
    enum { BLOCK = 100 };
    pw_runtime *rt;
    pw_module *m;
    double load;
    static bstream s;
    pw_vm *vm;
    pw_plugin *p;
    if (setup(cache_dir, wasm, &rt, &m, &load) != 0)
        FAIL("load");
    if (load_headers(&s, headers) != 0)
        return 1;
    if (new_vm(m, root_id, &vm, &p, NULL) != 0)
        FAIL("VM");
    long nblocks = requests / BLOCK > 0 ? requests / BLOCK : 1;
    double *clocks = calloc((size_t)nblocks, sizeof(double));
    double *totals = calloc((size_t)nblocks, sizeof(double));
    double *per[4];
    for (int k = 0; k < 4; k++)
        per[k] = calloc((size_t)nblocks, sizeof(double));
    if (!clocks || !totals || !per[0] || !per[1] || !per[2] || !per[3])
        return 1;
    double acc[4] = {0};
    long warm = requests / 5 > 20000 ? requests / 5 : 20000;
    for (long i = 0; i < warm; i++)
        if (one_request(p, vm, &s, 0, acc) != 0 || one_request(p, vm, &s, 1, acc) != 0)
            FAIL("request");
    for (long b = 0; b < nblocks; b++) {
        double sum = 0;
        for (int i = 0; i < BLOCK; i++) {
            double t0 = now_ns();
            double t1 = now_ns();
            sum += t1 - t0;
        }
        clocks[b] = sum / BLOCK;
    }
    double clock = low10(clocks, (size_t)nblocks);
    for (long b = 0; b < nblocks; b++) {
        double t0 = now_ns();
        for (int i = 0; i < BLOCK; i++)
            if (one_request(p, vm, &s, 0, acc) != 0)
                FAIL("request");
        totals[b] = (now_ns() - t0) / BLOCK;
    }
    for (long b = 0; b < nblocks; b++) {
        memset(acc, 0, sizeof acc);
        for (int i = 0; i < BLOCK; i++)
            if (one_request(p, vm, &s, 1, acc) != 0)
                FAIL("request");
        for (int k = 0; k < 4; k++)
            per[k][b] = acc[k] / BLOCK - clock;
    }
    const char *added = s.nresp > s.nresp_base ? s.resp[s.nresp - 1].key.data : "";
    int added_len = s.nresp > s.nresp_base ? (int)s.resp[s.nresp - 1].key.len : 0;
    const char *val = s.nresp > s.nresp_base ? s.resp[s.nresp - 1].value.data : "";
    int val_len = s.nresp > s.nresp_base ? (int)s.resp[s.nresp - 1].value.len : 0;
    printf("{\"engine\": \"pwasm\", \"requests\": %ld, \"request_ns\": %.1f,"
           " \"callback_ns\": {\"context_create\": %.1f, \"on_request_headers\": %.1f,"
           " \"on_response_headers\": %.1f, \"end\": %.1f}, \"clock_pair_ns\": %.1f,"
           " \"added_header\": \"%.*s: %.*s\", \"linear_memory_kb\": %.1f}\n",
           nblocks * BLOCK, low10(totals, (size_t)nblocks), low10(per[0], (size_t)nblocks),
           low10(per[1], (size_t)nblocks), low10(per[2], (size_t)nblocks),
           low10(per[3], (size_t)nblocks), clock, added_len, added, val_len, val,
           (double)linmem(vm) / 1024.0);
    for (int k = 0; k < 4; k++)
        free(per[k]);
    free(clocks);
    free(totals);
    pw_vm_free(vm);
    pw_module_free(m);
    pw_runtime_free(rt);
    return 0;
}

static int mode_store(const char *wasm, const char *cache_dir, const char *mode, long n,
                      long calls, long procs)
{
    size_t size = 64 << 20;
    shregion *r = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return 1;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&r->mu, &ma);
    r->cap = size - sizeof *r;
    pw_store_mem mem = {r, sh_alloc, sh_free, sh_lock, sh_unlock};
    pw_store_config scfg = {.evict_lru = 1, .slots = (uint32_t)procs};
    if (pw_store_open(&mem, &scfg, NULL, &bench_store, err, sizeof err) != PW_OK)
        FAIL("pw_store_open");
    /* the counter exists before the processes start: with cas 0 (a key
     * not found) a write is unconditional, so two first writes at once
     * would both count from nothing */
    uint64_t zero = 0;
    pw_store_set(bench_store, S(""), S("bench"), (pw_str){(const char *)&zero, 8}, 0, NULL);
    /* compile once, before fork; the children load from the cache */
    pw_runtime *rt;
    pw_module *m;
    double load;
    if (setup(cache_dir, wasm, &rt, &m, &load) != 0)
        FAIL("load");
    pw_module_free(m);
    pw_runtime_free(rt);
    double *ns = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int *go = (int *)(ns + 64);
    char config[64];
    snprintf(config, sizeof config, "%s %ld", mode, n);
    for (long i = 0; i < procs; i++) {
        if (fork() != 0)
            continue;
        pw_store_set_slot(bench_store, (uint32_t)i);
        static const pw_host_shared_ops shared = {.store = h_store};
        pw_host_ops o = ops;
        o.shared = &shared;
        pw_vm *vm;
        pw_plugin *p;
        pw_stream *st;
        static bstream bs;
        if (setup(cache_dir, wasm, &rt, &m, &load) != 0 ||
            pw_vm_new(m, S(""), S(""), &o, NULL, &vm, err, sizeof err) != PW_OK ||
            pw_plugin_new(vm, S("bench"), S(""), S(config), &p, err, sizeof err) != PW_OK ||
            pw_stream_new(p, &bs, &st, err, sizeof err) != PW_OK) {
            fprintf(stderr, "vmbench: store: %s\n", err);
            _exit(1);
        }
        __atomic_add_fetch(go, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(go, __ATOMIC_SEQ_CST) < procs)
            ; /* start together, so that they contend */
        double t0 = now_ns();
        for (long k = 0; k < calls; k++)
            if (pw_stream_on_request_headers(st, 0, 1) == PW_ACTION_ERROR) {
                fprintf(stderr, "vmbench: store: %s\n", pw_vm_last_error(vm));
                _exit(1);
            }
        ns[i] = (now_ns() - t0) / (double)(calls * n);
        pw_stream_free(st);
        pw_vm_free(vm);
        _exit(0);
    }
    int failed = 0, status;
    while (wait(&status) > 0)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (failed)
        return 1;
    double worst = 0;
    for (long i = 0; i < procs; i++)
        worst = ns[i] > worst ? ns[i] : worst;
    int64_t count = 0;
    if (!strcmp(mode, "metric")) {
        pw_store_metric(bench_store, S("bench_total"), PROXY_METRIC_COUNTER, &count);
    } else {
        char *v;
        size_t len;
        uint32_t cas;
        if (pw_store_get(bench_store, S(""), S("bench"), &v, &len, &cas) == PROXY_RESULT_OK &&
            len == 8)
            memcpy(&count, v, 8);
        free(v);
    }
    printf("{\"mode\": \"%s\", \"procs\": %ld, \"ops\": %ld, \"ns_per_op\": %.1f,"
           " \"count\": %lld, \"count_ok\": %s}\n",
           mode, procs, procs * calls * n, worst, (long long)count,
           count == procs * calls * n ? "true" : "false");
    return count == procs * calls * n ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 8 && !strcmp(argv[1], "store"))
        return mode_store(argv[2], argv[3], argv[4], atol(argv[5]), atol(argv[6]),
                          atol(argv[7]));
    if (argc == 7 && !strcmp(argv[1], "calls"))
        return mode_calls(argv[2], argv[3], argv[4], argv[5], atol(argv[6]));
    if (argc == 5 && !strcmp(argv[1], "load"))
        return mode_load(argv[2], argv[3], argv[4]);
    if (argc == 9 && !strcmp(argv[1], "vm"))
        return mode_vm(argv[2], argv[3], argv[4], argv[5], atol(argv[6]), atol(argv[7]),
                       atol(argv[8]));
    fprintf(stderr, "usage: vmbench load WASM ROOT_ID CACHE_DIR\n"
                    "       vmbench vm WASM ROOT_ID CACHE_DIR HEADERS_FILE ITERATIONS NVMS "
                    "STREAMS\n"
                    "       vmbench calls WASM ROOT_ID CACHE_DIR HEADERS_FILE REQUESTS\n"
                    "       vmbench store WASM CACHE_DIR pairs|metric N CALLS PROCS\n");
    return 2;
}
