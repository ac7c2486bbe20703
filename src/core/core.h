/*
 * core.h -- internal structures of the Proxy-Wasm host core.
 */
#ifndef PW_CORE_H
#define PW_CORE_H

#include <stdint.h>
#include <string.h>

#include "engine/engine.h"
#include "pwasm.h"

/* Callbacks the core calls (callbacks.def). */
enum pw_cb {
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x) PW_CB_##id,
#include "core/callbacks.def"
    PW_CB_MALLOC, /* proxy_on_memory_allocate, else malloc (§1.4) */
    PW_CB_COUNT
};

/* ABI versions (callbacks.def); 0: no marker. */
enum pw_abi {
    PW_ABI_NONE = 0,
#define PW_ABI_MARKER(id, export, version) PW_ABI_##id,
#include "core/callbacks.def"
};

struct pw_runtime {
    pw_engine_config ecfg;
    char *cache_dir, *cc, *cflags;
    uint64_t max_module_bytes, max_data_bytes;
    uint32_t max_functions;
    int attached;     /* counted in the engine's attachment */
    pw_limits limits; /* defaults filled in */
};

/* Log lines of one plugin in the current one-second window. */
typedef struct pw_log_rate {
    int64_t window; /* CLOCK_MONOTONIC_COARSE second */
    uint32_t lines;
    uint64_t bytes;
    uint64_t dropped; /* lines dropped in this window */
} pw_log_rate;

struct pw_module {
    pw_runtime *rt;
    char *name;
    pw_wmod *wmod;
    const pw_host_func *funcs; /* the host table it was loaded with (the
                                  engine's trace reports indices in it) */
    int abi;                   /* enum pw_abi */
    pw_limits limits;          /* its VMs': the runtime's, or its own
                                  (pw_module_set_limits) */
    pw_wfunc cb[PW_CB_COUNT];
    uint8_t has_cb[PW_CB_COUNT];
    uint8_t *imports; /* 1 per host function (funcs' indices) it imports;
                         NULL when unknown (out of memory at load) */
};

/* capabilities.c: the deny stub of host function f's signature (Unimplemented
 * or WASI ENOTCAPABLE), NULL if there is none. */
void (*pw_capability_stub(const pw_host_func *f))(void);

typedef struct pw_ctx {
    uint32_t id;
    uint32_t root_id; /* context id of the root (== id for roots) */
    pw_plugin *plugin;
    pw_stream *stream; /* NULL for root contexts */
} pw_ctx;

struct pw_plugin {
    pw_ctx ctx;
    pw_vm *vm;
    char *name;
    char *root_id;
    size_t root_id_len;
    char *config;
    size_t config_len;
    int started;          /* root context live in the current instance */
    uint32_t tick_period; /* ms asked with proxy_set_tick_period_milliseconds */
    /* the host's own metrics (pw_host_metric): pwasm_streams_total and
     * pwasm_traps_total{plugin=...}; 0: not defined yet */
    uint32_t streams_metric, traps_metric;
    uint32_t time_metric; /* pwasm_callback_duration_us{plugin=...} */
    pw_log_rate log_rate;
    pw_plugin *next;
};

struct pw_stream {
    pw_ctx ctx;
    pw_plugin *plugin;
    void *host_stream;
    uint64_t generation;
    int created;        /* on_context_create delivered */
    int tcp;            /* a TCP stream context (pw_stream_new_tcp) */
    int in_cb;          /* one of its own callbacks runs (or on_log..on_delete) */
    unsigned pending;   /* PW_PENDING_* */
    pw_action returned; /* what its last callback returned, raw */
    unsigned applied;   /* PW_PENDING_* applied to that result */
    int has_local_response;
    pw_local_response lr;
    char *lr_buf; /* owns lr's strings and headers */
    size_t lr_cap;
    pw_stream *next_free;
};

/* Context id -> context, open addressing with linear probing. */
typedef struct pw_ctx_table {
    uint32_t *keys; /* 0 = empty */
    pw_ctx **vals;
    uint32_t cap, len;
} pw_ctx_table;

/* The embedder's hook tables (pw_host_ops areas), copied at pw_vm_new.
 * Never NULL: an area the embedder left NULL points to an all-NULL table,
 * so a hook test is one load from the VM and one from the table. */
typedef struct pw_vm_hooks {
    const pw_host_log_ops *log;
    const pw_host_clock_ops *clock;
    const pw_host_property_ops *property;
    const pw_host_http_ops *http;
    const pw_host_stream_ops *stream;
    const pw_host_observe_ops *observe;
    const pw_host_timer_ops *timers;
    const pw_host_shared_ops *shared;
    const pw_host_callout_ops *callouts;
    const pw_host_network_ops *network;
    const pw_host_foreign_ops *foreign;
} pw_vm_hooks;

/* An outstanding HTTP or gRPC call (hc_callouts.c). */
enum pw_call_kind { PW_CALL_HTTP = 1, PW_CALL_GRPC, PW_CALL_GRPC_STREAM };

typedef struct pw_call {
    uint32_t token;
    uint32_t owner; /* id of the context that made it */
    pw_plugin *plugin;
    uint8_t kind; /* enum pw_call_kind */
} pw_call;

/* The answer being delivered to the plugin (hc_callouts.c): what the
 * call-out maps and buffers, and proxy_get_status, read during its
 * callback. kind 0: none. */
typedef struct pw_delivery {
    uint8_t kind;                   /* enum pw_call_kind */
    const pw_http_response *http;   /* PW_CALL_HTTP; NULL: failed */
    const pw_grpc_event *grpc;      /* gRPC */
    uint32_t status;                /* proxy_get_status */
    pw_str status_message;
} pw_delivery;

/* Most failures the brake remembers (pw_limits.brake_traps above it
 * count as this many). */
#define PW_BRAKE_RING 64

typedef struct pw_brake {
    uint64_t fails_ms[PW_BRAKE_RING]; /* clock ms of the last failures */
    uint32_t nfails, next;            /* how many kept; where the next goes */
    int out;                          /* taken out */
    uint64_t until_ms;                /* out until then */
    uint64_t backoff_ms;              /* of the current or last trip; 0: none */
    uint64_t back_ms;                 /* when it last came back in */
    uint32_t trips_metric;            /* pwasm_vm_brake_total{vm_id=...} */
    uint32_t out_metric;              /* pwasm_vms_out{vm_id=...} gauge */
    char why[PW_ERRLEN];              /* the reason while out */
} pw_brake;

struct pw_vm {
    pw_module *m;
    pw_vm_hooks hooks;
    void *host;
    char *vm_id;
    size_t vm_id_len;
    char *vm_config;
    size_t vm_config_len;
    pw_winst *inst;
    int dead;
    uint64_t generation;
    uint32_t next_ctx_id;
    pw_ctx_table ctxs;
    pw_plugin *plugins, **plugins_tail;
    pw_stream *free_streams;
    /* Hostcall state for the call in progress. */
    pw_ctx *cur;     /* context of the innermost host->Wasm call */
    pw_ctx *eff;     /* proxy_set_effective_context override */
    int in_start;    /* running _initialize/_start: proc_exit(0) is ok */
    int in_vm_start; /* proxy_get_configuration returns the VM config */
    /* Limits (a copy of the runtime's) and the state they need. */
    pw_limits lim;
    uint32_t depth;           /* nested pw_vm_callback calls (the allocator) */
    uint64_t budget;          /* bytes left of lim.max_callback_bytes */
    int refusal_logged;       /* a limit refusal was logged in this callback */
    pw_log_rate log_rate;     /* lines logged with no plugin context current */
    uint32_t rebuilds_metric; /* the host's pwasm_vm_rebuilds_total{vm_id=...} */
    /* Names this VM as the owner of the shared queues it registers: two
     * VMs of one process may share a vm_id (declarations with different
     * limits or capabilities), and each must get only its own deliveries.
     * Random, so unique across processes and copies of this library. */
    uint64_t queue_owner;
    uint32_t callbacks;       /* counted, to time one in 64 */
    /* Outstanding call-outs (hc_callouts.c), in no order. */
    pw_call *calls;
    uint32_t ncalls, calls_cap;
    uint32_t next_token;
    pw_delivery dlv;
    char last_error[PW_ERRLEN];
    /* The crash-loop brake (brake.c): when the last failures happened
     * (a ring of lim.brake_traps, at most PW_BRAKE_RING), and the state. */
    pw_brake brake;
};

/* chain.c: pw_chain_call of link l when it has no stream context yet,
 * failed or ended, or its callback failed (called: 1). */
pw_action pw_chain_call_slow(pw_chain *c, pw_link *l, pw_event event, size_t n, int end_of_stream,
                             char *why, size_t whylen, int called);

/* The registry of every host function (hostcalls.c, from hostcalls.def):
 * env, then WASI under both names, in a static table. */
const pw_host_func *pw_core_host_funcs(size_t *n);

/* ------------------------------------------- module checks (module_info.c) */

/* A compiled artifact (pwasm compile): magic, format version (u32), host
 * table hash (32 bytes), the module's length (u64), the module's bytes,
 * then the shared object. Little-endian. */
#define PW_AOT_MAGIC "PWASMAOT"
#define PW_AOT_VERSION 1u
#define PW_AOT_TABLE_HASH 12
#define PW_AOT_WASM_LEN 44
#define PW_AOT_HEADER (8 + 4 + 32 + 8)

/* The module's ABI version from its marker export: an enum pw_abi. */
int pw_abi_of(const pw_wasm_info *info);
/* "0.2.1" for PW_ABI_0_2_1, ...; NULL for PW_ABI_NONE. */
const char *pw_abi_name(int abi);
/* The allocator export this host would call, or NULL. */
const char *pw_allocator_of(const pw_wasm_info *info);

/* Checks that a parsed module is a Proxy-Wasm module this host can call:
 * ABI marker, callback signatures, allocator. 0 with *abi and *alloc
 * set, or -1 with the reason in why ("no Proxy-Wasm ABI version marker
 * (...)", "exports proxy_on_log with signature ..., expected ..."). */
int pw_check_proxy_wasm(const pw_wasm_info *info, int *abi, const char **alloc, char *why,
                        size_t whylen);

/* Calls a callback of the VM's module on context ctx. Returns 0 (result in
 * *ret when non-NULL), 1 when the module does not export it, -1 on a trap
 * (the VM is then dead and the trap logged). */
int pw_vm_callback(pw_vm *vm, pw_ctx *ctx, enum pw_cb cb, const uint32_t *args, uint32_t *ret);

/* The current context for a hostcall (effective override first). */
static inline pw_ctx *pw_vm_ctx(pw_vm *vm) {
    return vm->eff ? vm->eff : vm->cur;
}

pw_ctx *pw_ctx_lookup(pw_vm *vm, uint32_t id);

/* Name of the plugin of ctx (the module's name without one), as log lines
 * carry it. */
static inline pw_str pw_ctx_name(const pw_vm *vm, const pw_ctx *ctx) {
    const char *n = ctx && ctx->plugin ? ctx->plugin->name : vm->m->name;
    return (pw_str){n, strlen(n)};
}

/* The embedder's stream pointer of ctx, NULL outside a stream. */
static inline void *pw_ctx_host_stream(const pw_ctx *ctx) {
    return ctx && ctx->stream ? ctx->stream->host_stream : NULL;
}

/* Queues PW_PENDING_* bits on s; announces them (pw_host_stream_ops.wake)
 * when they are new and none of s's own callbacks runs. */
void pw_stream_queue(pw_stream *s, unsigned bits);

/* --------------------------------------------- call-outs (hc_callouts.c) */

/* Cancels (pw_host_callout_ops.cancel) the outstanding calls made by the
 * context with id `owner`, or every call of the VM (owner 0); none of them
 * will be answered. */
void pw_callouts_cancel(pw_vm *vm, uint32_t owner);

/* The call-out map `map` (4..7) while its answer is delivered: Ok with
 * the pairs, or NotFound. */
proxy_status_t pw_callout_map(pw_vm *vm, uint32_t map, const pw_kv **pairs, size_t *n);
/* The call-out buffer `type` (4, 5) while delivered: Ok or NotFound. */
proxy_status_t pw_callout_buffer(pw_vm *vm, uint32_t type, pw_str *out);

/* ------------------------------------------------ the store (store.c) */

/* The hostcalls' side of pw_store (pwasm.h has the embedder's); statuses
 * as the hostcalls answer them. */
/* owner: the registering VM's queue_owner; deliveries go to that VM of
 * this process only (pw_store_queue_due). */
proxy_status_t pw_store_queue_register(pw_store *st, pw_str vm_id, pw_str name, pw_str root_id,
                                       uint64_t owner, uint32_t *id);
proxy_status_t pw_store_queue_resolve(pw_store *st, pw_str vm_id, pw_str name, uint32_t *id);
proxy_status_t pw_store_queue_enqueue(pw_store *st, uint32_t id, pw_str value,
                                      uint32_t *owner_slot, uint64_t *dropped);
proxy_status_t pw_store_queue_dequeue(pw_store *st, uint32_t id, char **value, size_t *len);

/* pw_store_get, copying a value of at most cap bytes into dst (then
 * *value == dst, not to be freed) instead of allocating. */
proxy_status_t pw_store_get_into(pw_store *st, pw_str vm_id, pw_str key, char *dst, size_t cap,
                                 char **value, size_t *len, uint32_t *cas);

/* A delivery due to this process: queue id, items, registering root_id. */
typedef struct pw_store_due {
    uint32_t id, count;
    size_t root_len;
    char root_id[256];
} pw_store_due;
size_t pw_store_queue_due(pw_store *st, pw_str vm_id, uint64_t owner, pw_store_due *due,
                          size_t max);
/* Makes count deliveries of queue id due again (they were not made). */
void pw_store_queue_redue(pw_store *st, uint32_t id, uint32_t count);

proxy_status_t pw_store_metric_define(pw_store *st, uint32_t type, pw_str name, uint32_t *id);
proxy_status_t pw_store_metric_increment(pw_store *st, uint32_t id, int64_t delta);
proxy_status_t pw_store_metric_record(pw_store *st, uint32_t id, uint64_t value);
proxy_status_t pw_store_metric_get(pw_store *st, uint32_t id, int64_t *value);

/* The host's own metric `family{label="value"}` in the VM's store (value
 * escaped for a label), incremented by delta; its id kept in *id (0: not
 * defined yet, or no store). Rare events only: it may take the lock. */
void pw_host_metric(pw_vm *vm, const char *family, const char *label, const char *value,
                    uint32_t *id, int64_t delta);
/* The same for a metric of another type (proxy_metric_type_t), recording
 * value (proxy_record_metric's rules). */
void pw_host_metric_record(pw_vm *vm, uint32_t type, const char *family, const char *label,
                           const char *value, uint32_t *id, int64_t v);

/* The VM's store (pw_host_shared_ops.store), or NULL. */
static inline pw_store *pw_vm_store(pw_vm *vm) {
    return vm->hooks.shared->store ? vm->hooks.shared->store(vm->host) : NULL;
}

/* Unix epoch ns from the clock hook now_ns, else CLOCK_REALTIME. */
uint64_t pw_vm_now_ns(pw_vm *vm);

/* Logs a message from the host itself on behalf of the VM. */
void pw_vm_log(pw_vm *vm, proxy_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------- limits */

int pw_vm_over_budget(pw_vm *vm, const char *call, uint64_t n);

/* Takes n bytes of hostcall `call` from the current callback's budget: 1
 * if they fit, else 0 (nothing taken; logged as pw_vm_refuse does). */
static inline int pw_vm_take(pw_vm *vm, const char *call, uint64_t n) {
    if (n > vm->budget)
        return pw_vm_over_budget(vm, call, n);
    vm->budget -= n;
    return 1;
}

/* A hostcall refused by a limit: logs why at WARN (the first refusal of
 * the callback only) and returns BadArgument. */
proxy_status_t pw_vm_refuse(pw_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The crash-loop brake (brake.c). A failure of the VM (a trap, or a
 * rebuild that failed) at the embedder's clock: counted, and the brake
 * trips when there are lim.brake_traps within lim.brake_window_ms (logged
 * once, counted in metrics). */
void pw_brake_failure(pw_vm *vm);
/* Before rebuilding a dead VM: 0 when it may be rebuilt now (a VM whose
 * back-off is over is back in: logged once), or -1 while it is taken out
 * (the reason in err and vm->last_error). */
int pw_brake_check(pw_vm *vm, char *err, size_t errlen);

/* A hostcall refused by limit `limit` ("callouts", ...): counted in
 * pwasm_limit_hits_total{limit="...",plugin="..."} (the current
 * context's plugin, else the module). */
void pw_host_limit_hit(pw_vm *vm, const char *limit);

/* A gauge of the host's own, added delta (pw_host_metric for gauges). */
void pw_host_gauge_add(pw_vm *vm, const char *family, const char *label, const char *value,
                       uint32_t *id, int64_t delta);

/* Fills in the defaults of a pw_limits. */
pw_limits pw_limits_resolve(const pw_limits *in);

/* A plugin log message (proxy_log, WASI stdout/stderr) to the log hook: the
 * first `avail` of its `len` bytes are at msg (bytes past avail count as
 * truncated). Escapes C0 controls but TAB, truncates at PW_LOG_LINE_MAX,
 * applies the per-plugin rate limit. */
void pw_plugin_log(pw_vm *vm, proxy_log_level_t level, const char *msg, size_t avail,
                   uint64_t len);

/* ---------------------------------------------------- guest memory access */

/* Pointer to [ptr, ptr+len) in linear memory, or NULL when out of bounds
 * (64-bit arithmetic). len 0 is valid anywhere within [0, size]. */
static inline uint8_t *pw_mem(pw_vm *vm, uint32_t ptr, uint64_t len) {
    uint64_t size;
    uint8_t *base = pw_winst_mem(vm->inst, &size);
    if ((uint64_t)ptr + len > size)
        return NULL;
    return base + ptr;
}

static inline int pw_mem_put_u32(pw_vm *vm, uint32_t ptr, uint32_t v) {
    uint8_t *p = pw_mem(vm, ptr, 4);
    if (!p)
        return -1;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return 0;
}

static inline int pw_mem_put_u64(pw_vm *vm, uint32_t ptr, uint64_t v) {
    uint8_t *p = pw_mem(vm, ptr, 8);
    if (!p)
        return -1;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 0;
}

static inline uint32_t pw_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Guest (ptr, len) as a pw_str, or returns InvalidMemoryAccess. (0,0) is a
 * valid empty string (§3.3 local responses). */
#define PW_GUEST_STR(vm, s, ptr_, len_)                                                           \
    do {                                                                                          \
        uint8_t *p_ = pw_mem((vm), (ptr_), (len_));                                               \
        if (!p_)                                                                                  \
            return PROXY_RESULT_INVALID_MEMORY_ACCESS;                                            \
        (s).data = (const char *)p_;                                                              \
        (s).len = (len_);                                                                         \
    } while (0)

/* Returns a value to the plugin following §1.4: checks both out-pointers,
 * writes (0,0) for empty, else allocates exactly len bytes with the module's
 * allocator and copies. Traps propagate (the VM dies). */
proxy_status_t pw_out_bytes(pw_vm *vm, const void *data, size_t len, uint32_t ret_ptr,
                            uint32_t ret_size);

/* As pw_out_bytes, but leaves the copy to the caller: *dst is where len
 * bytes must be written (NULL when len is 0 or on error). */
proxy_status_t pw_out_alloc(pw_vm *vm, size_t len, uint32_t ret_ptr, uint32_t ret_size,
                            uint8_t **dst);

/* Serialises pairs (§6.1) into a fresh guest allocation, as pw_out_bytes. */
proxy_status_t pw_out_pairs(pw_vm *vm, const pw_kv *pairs, size_t n, uint32_t ret_ptr,
                            uint32_t ret_size);

/* The serialised size of n > 0 pairs (§6.1), in bytes. */
uint64_t pw_pairs_bytes(const pw_kv *pairs, size_t n);

/* As pw_out_pairs, with size = pw_pairs_bytes(pairs, n) already known. */
proxy_status_t pw_out_pairs_sized(pw_vm *vm, const pw_kv *pairs, size_t n, uint64_t size,
                                  uint32_t ret_ptr, uint32_t ret_size);

/* Parses serialised pairs (§6.1) in guest memory. Accepts (0,0), (any,0),
 * the 1-byte "\0" and a zero count as empty. *pairs is malloc'ed (free it);
 * values point into guest memory. Returns Ok, InvalidMemoryAccess or
 * BadArgument (malformed). */
proxy_status_t pw_parse_pairs(pw_vm *vm, uint32_t ptr, uint32_t len, pw_kv **pairs, size_t *n);

#endif
