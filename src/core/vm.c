/*
 * vm.c -- VMs, root contexts (plugins) and HTTP stream contexts: their
 * lifecycle (docs/ABI.md §1.3, §8.1, §8.2), trap handling and recovery
 * (§8.11).
 */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

/* Names of the callbacks, for messages. */
static const char *const cb_names[PW_CB_COUNT] = {
#define PW_CALLBACK(id, export, sig_0_1_0, sig_0_2_x) [PW_CB_##id] = export,
#include "core/callbacks.def"
    [PW_CB_MALLOC] = "the allocator",
};

void pw_vm_log(pw_vm *vm, proxy_log_level_t level, const char *fmt, ...) {
    if (!vm->hooks.log->log)
        return;
    char buf[PW_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    pw_ctx *ctx = vm->cur;
    const char *name = ctx && ctx->plugin ? ctx->plugin->name : vm->m->name;
    vm->hooks.log->log(vm->host, ctx && ctx->stream ? ctx->stream->host_stream : NULL,
                       (pw_str){name, strlen(name)}, level,
                       (pw_str){buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1});
}

/* ------------------------------------------------------- context table */

static uint32_t slot_of(uint32_t id, uint32_t cap) {
    return (id * 2654435761u) & (cap - 1);
}

static int table_grow(pw_ctx_table *t) {
    uint32_t cap = t->cap ? t->cap * 2 : 64;
    uint32_t *keys = calloc(cap, sizeof *keys);
    pw_ctx **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (uint32_t i = 0; i < t->cap; i++) {
        if (!t->keys[i])
            continue;
        uint32_t j = slot_of(t->keys[i], cap);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = t->keys[i];
        vals[j] = t->vals[i];
    }
    free(t->keys);
    free(t->vals);
    t->keys = keys;
    t->vals = vals;
    t->cap = cap;
    return 0;
}

static int table_put(pw_ctx_table *t, pw_ctx *ctx) {
    if ((t->len + 1) * 2 > t->cap && table_grow(t) != 0)
        return -1;
    uint32_t j = slot_of(ctx->id, t->cap);
    while (t->keys[j])
        j = (j + 1) & (t->cap - 1);
    t->keys[j] = ctx->id;
    t->vals[j] = ctx;
    t->len++;
    return 0;
}

pw_ctx *pw_ctx_lookup(pw_vm *vm, uint32_t id) {
    pw_ctx_table *t = &vm->ctxs;
    if (!id || !t->cap)
        return NULL;
    for (uint32_t j = slot_of(id, t->cap); t->keys[j]; j = (j + 1) & (t->cap - 1))
        if (t->keys[j] == id)
            return t->vals[j];
    return NULL;
}

/* Linear probing deletion with backward shift (no tombstones). */
static void table_del(pw_ctx_table *t, uint32_t id) {
    if (!t->cap)
        return;
    uint32_t mask = t->cap - 1, j = slot_of(id, t->cap);
    while (t->keys[j] && t->keys[j] != id)
        j = (j + 1) & mask;
    if (!t->keys[j])
        return;
    t->keys[j] = 0;
    t->len--;
    for (uint32_t k = (j + 1) & mask; t->keys[k]; k = (k + 1) & mask) {
        uint32_t home = slot_of(t->keys[k], t->cap);
        /* Move k to j if its home is not in the cyclic range (j, k]. */
        if ((j < k) ? (home <= j || home > k) : (home <= j && home > k)) {
            t->keys[j] = t->keys[k];
            t->vals[j] = t->vals[k];
            t->keys[k] = 0;
            j = k;
        }
    }
}

static void table_clear(pw_ctx_table *t) {
    if (t->cap) {
        memset(t->keys, 0, t->cap * sizeof *t->keys);
        memset(t->vals, 0, t->cap * sizeof *t->vals);
    }
    t->len = 0;
}

/* ------------------------------------------------------------ callbacks */

/* Marks the VM dead after a trap and records / logs why. */
static void vm_trapped(pw_vm *vm, pw_ctx *ctx, const char *export, const pw_trap *trap) {
    vm->dead = 1;
    const char *who = ctx && ctx->plugin ? ctx->plugin->name : vm->m->name;
    if (trap->kind == PW_TRAP_EXIT)
        snprintf(vm->last_error, sizeof vm->last_error,
                 "plugin \"%s\" trapped in %s: proc_exit(%u)", who, export, trap->exit_code);
    else
        snprintf(vm->last_error, sizeof vm->last_error, "plugin \"%s\" trapped in %s: %s", who,
                 export, pw_trap_str(trap->kind));
    pw_ctx *saved = vm->cur;
    vm->cur = ctx;
    pw_vm_log(vm, PROXY_LOG_ERROR, "%s; its VM is discarded and rebuilt", vm->last_error);
    vm->cur = saved;
    if (ctx && ctx->plugin)
        pw_host_metric(vm, "pwasm_traps_total", "plugin", ctx->plugin->name,
                       &ctx->plugin->traps_metric, 1);
    vm->cur = ctx;
    pw_brake_failure(vm); /* may take the VM out (logged once) */
    vm->cur = saved;
    /* The instance's tokens mean nothing to the next one. */
    if (vm->ncalls)
        pw_callouts_cancel(vm, 0);
    /* Every stream context of the instance is dead now: each one whose own
     * callback is not the failing call learns it (the failing one's result
     * says so). */
    for (uint32_t i = 0; i < vm->ctxs.cap; i++) {
        pw_stream *s = vm->ctxs.keys[i] ? vm->ctxs.vals[i]->stream : NULL;
        if (s && s->created && !s->in_cb)
            pw_stream_queue(s, PW_PENDING_FAILED);
    }
    if (vm->hooks.observe->vm_discarded)
        vm->hooks.observe->vm_discarded(vm->host);
}

/* A callback timed for the host's pwasm_callback_duration_us histogram:
 * one in 64 of a plugin with a store (vm_call), as two clock reads on
 * every callback would cost more than many plugins do. */
static __attribute__((noinline)) int vm_call_timed(pw_vm *vm, pw_ctx *ctx, const pw_wfunc *f,
                                                   const uint32_t *args, uint32_t *r,
                                                   pw_trap *trap) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = pw_winst_call(vm->inst, f, args, r, trap);
    if (rc == 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t us =
            ((int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)) / 1000;
        pw_host_metric_record(vm, PROXY_METRIC_HISTOGRAM, "pwasm_callback_duration_us", "plugin",
                              ctx->plugin->name, &ctx->plugin->time_metric, us);
    }
    return rc;
}

/* pw_vm_callback, inlined into the stream callbacks' path. */
static inline __attribute__((always_inline)) int vm_call(pw_vm *vm, pw_ctx *ctx, enum pw_cb cb,
                                                         const uint32_t *args, uint32_t *ret) {
    const pw_wfunc *f = &vm->m->cb[cb];
    if (!vm->m->has_cb[cb])
        return 1;
    if (vm->dead)
        return -1;
    pw_ctx *saved_cur = vm->cur, *saved_eff = vm->eff;
    vm->cur = ctx;
    vm->eff = NULL; /* §8.10: reset around every host->Wasm call */
    pw_trap trap; /* filled when the call fails */
    uint32_t r = 0;
    int rc;
    if (vm->depth++ == 0) {
        /* A callback starts (not a nested call such as the allocator). */
        vm->budget = vm->lim.max_callback_bytes;
        vm->refusal_logged = 0;
        if (__builtin_expect((++vm->callbacks & 63) == 0, 0) && ctx && ctx->plugin &&
            vm->hooks.shared->store)
            rc = vm_call_timed(vm, ctx, f, args, &r, &trap);
        else
            rc = pw_winst_call(vm->inst, f, args, &r, &trap);
    } else {
        rc = pw_winst_call(vm->inst, f, args, &r, &trap);
    }
    vm->depth--;
    vm->cur = saved_cur;
    vm->eff = saved_eff;
    if (__builtin_expect(rc != 0, 0)) {
        vm_trapped(vm, ctx, cb_names[cb], &trap);
        return -1;
    }
    if (ret)
        *ret = r;
    return 0;
}

int pw_vm_callback(pw_vm *vm, pw_ctx *ctx, enum pw_cb cb, const uint32_t *args, uint32_t *ret) {
    return vm_call(vm, ctx, cb, args, ret);
}

/* ------------------------------------------------------------------- VM */

/* The trace hook (pw_host_observe_ops) for the hostcall just made (engine callback). */
static void vm_trace(void *c, uint32_t fn, const uint64_t *args, uint32_t nargs, uint64_t result) {
    pw_vm *vm = c;
    const pw_host_func *f = &vm->m->funcs[fn]; /* fn indexes that table */
    if (!vm->hooks.observe->trace)
        return;
    pw_ctx *ctx = pw_vm_ctx(vm);
    const char *name = ctx && ctx->plugin ? ctx->plugin->name : vm->m->name;
    vm->hooks.observe->trace(vm->host, ctx && ctx->stream ? ctx->stream->host_stream : NULL,
                             (pw_str){name, strlen(name)}, f->module, f->name, args, nargs,
                             result);
}

/* Instantiates and runs the start functions (§1.3). */
static int vm_instantiate(pw_vm *vm, char *err, size_t errlen) {
    pw_trap trap = {0};
    vm->in_start = 1;
    vm->cur = NULL;
    vm->eff = NULL;
    vm->budget = vm->lim.max_callback_bytes; /* for the start functions */
    vm->refusal_logged = 0;
    int rc = pw_winst_new(vm->m->wmod, vm, vm->hooks.observe->trace ? vm_trace : NULL, &vm->inst,
                          &trap);
    if (rc != 0) {
        vm->in_start = 0;
        pw_errf(err, errlen, "module \"%s\": instantiation failed: %s", vm->m->name,
                pw_trap_str(trap.kind));
        return trap.kind == PW_TRAP_OUT_OF_MEMORY ? PW_ENOMEM : PW_ETRAP;
    }
    vm->dead = 0;
    enum pw_cb first = vm->m->has_cb[PW_CB_INITIALIZE] ? PW_CB_INITIALIZE
                       : vm->m->has_cb[PW_CB_START]    ? PW_CB_START
                                                       : PW_CB_COUNT;
    enum pw_cb then = PW_CB_COUNT;
    if (first == PW_CB_INITIALIZE)
        then = vm->m->has_cb[PW_CB_MAIN]        ? PW_CB_MAIN
               : vm->m->has_cb[PW_CB_MAIN_VOID] ? PW_CB_MAIN_VOID
                                                : PW_CB_COUNT;
    enum pw_cb steps[2] = {first, then};
    for (int i = 0; i < 2; i++) {
        if (steps[i] == PW_CB_COUNT)
            continue;
        uint32_t args[2] = {0, 0}, r;
        rc = pw_winst_call(vm->inst, &vm->m->cb[steps[i]], args, &r, &trap);
        if (rc != 0 && !(trap.kind == PW_TRAP_EXIT && trap.exit_code == 0)) {
            vm->in_start = 0;
            vm->dead = 1;
            if (trap.kind == PW_TRAP_EXIT)
                pw_errf(err, errlen, "module \"%s\": %s called proc_exit(%u)", vm->m->name,
                        cb_names[steps[i]], trap.exit_code);
            else
                pw_errf(err, errlen, "module \"%s\": %s trapped: %s", vm->m->name,
                        cb_names[steps[i]], pw_trap_str(trap.kind));
            snprintf(vm->last_error, sizeof vm->last_error, "%s", err ? err : "");
            pw_winst_free(vm->inst);
            vm->inst = NULL;
            return PW_ETRAP;
        }
    }
    vm->in_start = 0;
    return PW_OK;
}

static char *copy_str(pw_str s, size_t *len) {
    char *p = malloc(s.len + 1);
    if (!p)
        return NULL;
    if (s.len)
        memcpy(p, s.data, s.len);
    p[s.len] = 0;
    if (len)
        *len = s.len;
    return p;
}

/* The embedder's areas, an all-NULL table for each one it left out (the
 * core then tests only the hook). PW_EINVAL for a pw_host_ops of a size
 * this version does not know. */
static int host_hooks(const pw_host_ops *ops, pw_vm_hooks *h, char *err, size_t errlen) {
    static const pw_host_log_ops no_log;
    static const pw_host_clock_ops no_clock;
    static const pw_host_property_ops no_property;
    static const pw_host_http_ops no_http;
    static const pw_host_stream_ops no_stream;
    static const pw_host_observe_ops no_observe;
    static const pw_host_timer_ops no_timers;
    static const pw_host_shared_ops no_shared;
    static const pw_host_callout_ops no_callouts;
    static const pw_host_network_ops no_network;
    static const pw_host_foreign_ops no_foreign;
    /* Areas are appended, never moved: a table of an older (smaller) size
     * is copied and the areas it lacks stay NULL. */
    pw_host_ops o = {0};
    const size_t first = offsetof(pw_host_ops, log), area = sizeof(void *);
    if (ops) {
        if (ops->size > sizeof *ops || ops->size < first + area || (ops->size - first) % area) {
            pw_errf(err, errlen,
                    "pw_host_ops.size is %zu, this library expects at most %zu "
                    "(sizeof(pw_host_ops)), ending on an area: set it to sizeof(pw_host_ops) "
                    "and build the embedder against this library's pwasm.h",
                    ops->size, sizeof *ops);
            return PW_EINVAL;
        }
        memcpy(&o, ops, ops->size);
    }
    *h = (pw_vm_hooks){
        .log = o.log ? o.log : &no_log,
        .clock = o.clock ? o.clock : &no_clock,
        .property = o.property ? o.property : &no_property,
        .http = o.http ? o.http : &no_http,
        .stream = o.stream ? o.stream : &no_stream,
        .observe = o.observe ? o.observe : &no_observe,
        .timers = o.timers ? o.timers : &no_timers,
        .shared = o.shared ? o.shared : &no_shared,
        .callouts = o.callouts ? o.callouts : &no_callouts,
        .network = o.network ? o.network : &no_network,
        .foreign = o.foreign ? o.foreign : &no_foreign,
    };
    if ((h->callouts->http_call || h->callouts->grpc_call) && !h->callouts->cancel) {
        pw_errf(err, errlen, "pw_host_callout_ops: http_call or grpc_call without cancel");
        return PW_EINVAL;
    }
    return PW_OK;
}

int pw_vm_new(pw_module *m, pw_str vm_id, pw_str vm_config, const pw_host_ops *ops, void *host,
              pw_vm **out, char *err, size_t errlen) {
    pw_vm_hooks hooks;
    int hrc = host_hooks(ops, &hooks, err, errlen);
    if (hrc != PW_OK)
        return hrc;
    pw_vm *vm = calloc(1, sizeof *vm);
    if (!vm || !(vm->vm_id = copy_str(vm_id, &vm->vm_id_len)) ||
        !(vm->vm_config = copy_str(vm_config, &vm->vm_config_len))) {
        if (vm) {
            free(vm->vm_id);
            free(vm);
        }
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    vm->m = m;
    vm->lim = m->limits;
    vm->hooks = hooks;
    if (getrandom(&vm->queue_owner, sizeof vm->queue_owner, GRND_NONBLOCK) !=
        (ssize_t)sizeof vm->queue_owner)
        vm->queue_owner = (uint64_t)(uintptr_t)vm ^ ((uint64_t)getpid() << 32) ^
                          (uint64_t)time(NULL);
    vm->host = host;
    vm->next_ctx_id = 1;
    vm->plugins_tail = &vm->plugins;
    int rc = vm_instantiate(vm, err, errlen);
    if (rc != PW_OK) {
        free(vm->vm_id);
        free(vm->vm_config);
        free(vm);
        return rc;
    }
    *out = vm;
    return PW_OK;
}

int pw_vm_dead(const pw_vm *vm) {
    return vm->dead;
}

uint64_t pw_vm_generation(const pw_vm *vm) {
    return vm->generation;
}

const uint8_t *pw_vm_memory(const pw_vm *vm, size_t *size) {
    uint64_t n = 0;
    const uint8_t *base = vm->inst && !vm->dead ? pw_winst_mem(vm->inst, &n) : NULL;
    *size = base ? (size_t)n : 0;
    return base;
}

const char *pw_vm_last_error(const pw_vm *vm) {
    return vm->last_error;
}

/* Creates the plugin's root context in the current instance (§8.1). */
static int plugin_start(pw_plugin *p, char *err, size_t errlen) {
    pw_vm *vm = p->vm;
    p->ctx.id = vm->next_ctx_id++;
    p->ctx.root_id = p->ctx.id;
    if (table_put(&vm->ctxs, &p->ctx) != 0) {
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    p->started = 1;
    uint32_t args[2] = {p->ctx.id, 0}, r = 1;
    if (pw_vm_callback(vm, &p->ctx, PW_CB_ON_CONTEXT_CREATE, args, NULL) < 0)
        goto trapped;
    args[1] = (uint32_t)vm->vm_config_len;
    vm->in_vm_start = 1;
    int rc = pw_vm_callback(vm, &p->ctx, PW_CB_ON_VM_START, args, &r);
    vm->in_vm_start = 0;
    if (rc < 0)
        goto trapped;
    if (rc == 0 && r == 0) {
        pw_errf(err, errlen, "plugin \"%s\": proxy_on_vm_start returned false", p->name);
        return PW_EPLUGIN;
    }
    args[1] = (uint32_t)p->config_len;
    r = 1;
    rc = pw_vm_callback(vm, &p->ctx, PW_CB_ON_CONFIGURE, args, &r);
    if (rc < 0)
        goto trapped;
    if (rc == 0 && r == 0) {
        pw_errf(err, errlen,
                "plugin \"%s\": proxy_on_configure returned false (the plugin "
                "refused its configuration)",
                p->name);
        return PW_EPLUGIN;
    }
    return PW_OK;
trapped:
    pw_errf(err, errlen, "%s", vm->last_error);
    return PW_ETRAP;
}

static void plugin_stop(pw_plugin *p) {
    pw_vm *vm = p->vm;
    if (!p->started)
        return;
    if (!vm->dead) {
        uint32_t id = p->ctx.id;
        pw_vm_callback(vm, &p->ctx, PW_CB_ON_DONE, &id, NULL);
        pw_vm_callback(vm, &p->ctx, PW_CB_ON_DELETE, &id, NULL);
    }
    table_del(&vm->ctxs, p->ctx.id);
    p->started = 0;
}

static void plugin_free(pw_plugin *p) {
    free(p->name);
    free(p->root_id);
    free(p->config);
    free(p);
}

int pw_plugin_new(pw_vm *vm, pw_str name, pw_str root_id, pw_str config, pw_plugin **out,
                  char *err, size_t errlen) {
    if (vm->dead) {
        int rc = pw_vm_recover(vm, err, errlen);
        if (rc != PW_OK)
            return rc;
    }
    pw_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->name = copy_str(name, NULL)) ||
        !(p->root_id = copy_str(root_id, &p->root_id_len)) ||
        !(p->config = copy_str(config, &p->config_len))) {
        if (p)
            plugin_free(p);
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    p->vm = vm;
    p->ctx.plugin = p;
    int rc = plugin_start(p, err, errlen);
    if (rc != PW_OK) {
        plugin_stop(p);
        plugin_free(p);
        return rc;
    }
    *vm->plugins_tail = p;
    vm->plugins_tail = &p->next;
    *out = p;
    return PW_OK;
}

const char *pw_plugin_name(const pw_plugin *p) {
    return p->name;
}

pw_str pw_plugin_root_id(const pw_plugin *p) {
    return (pw_str){p->root_id, p->root_id_len};
}

/* The plugin's VM alive, rebuilt if a trap discarded it: PW_OK, or
 * PW_EDEAD (logged). */
static int plugin_alive(pw_plugin *p) {
    pw_vm *vm = p->vm;
    if (vm->dead) {
        char err[PW_ERRLEN];
        if (pw_vm_recover(vm, err, sizeof err) != PW_OK) {
            /* taken out by the brake: logged when it tripped */
            if (!vm->brake.out)
                pw_vm_log(vm, PROXY_LOG_ERROR, "cannot rebuild the VM: %s", err);
            return PW_EDEAD;
        }
    }
    return p->started ? PW_OK : PW_EDEAD;
}

int pw_plugin_on_tick(pw_plugin *p) {
    int rc = plugin_alive(p);
    if (rc != PW_OK)
        return rc;
    uint32_t id = p->ctx.id;
    return pw_vm_callback(p->vm, &p->ctx, PW_CB_ON_TICK, &id, NULL) < 0 ? PW_ETRAP : PW_OK;
}

int pw_vm_deliver_queues(pw_vm *vm) {
    pw_store *st = pw_vm_store(vm);
    if (!st)
        return 0;
    pw_store_due due[16];
    int calls = 0;
    size_t n;
    /* in rounds of 16 queues: the store's lock is released before any
     * plugin runs; what plugins enqueue meanwhile wakes this process
     * again rather than keeping it here */
    do {
        n = pw_store_queue_due(st, (pw_str){vm->vm_id, vm->vm_id_len}, vm->queue_owner, due, 16);
        for (size_t i = 0; i < n; i++) {
            pw_plugin *p = vm->plugins;
            while (p && (p->root_id_len != due[i].root_len ||
                         memcmp(p->root_id, due[i].root_id, due[i].root_len)))
                p = p->next;
            if (!p || plugin_alive(p) != PW_OK)
                continue; /* no such plugin here any more: nobody to tell */
            for (uint32_t k = 0; k < due[i].count; k++) {
                uint32_t args[2] = {p->ctx.id, due[i].id};
                if (pw_vm_callback(vm, &p->ctx, PW_CB_ON_QUEUE_READY, args, NULL) < 0) {
                    /* what was not delivered is due again, for the
                     * rebuilt VM at the next call */
                    pw_store_queue_redue(st, due[i].id, due[i].count - k - 1);
                    for (size_t j = i + 1; j < n; j++)
                        pw_store_queue_redue(st, due[j].id, due[j].count);
                    return PW_ETRAP;
                }
                calls++;
            }
        }
    } while (n == 16);
    return calls;
}

pw_vm *pw_plugin_vm(const pw_plugin *p) {
    return p->vm;
}

/* A rebuild failed: the VM stays dead, the failure counts toward the
 * crash-loop brake unless a trap in a callback counted it already. */
static int recover_failed(pw_vm *vm, int counted, char *err) {
    vm->dead = 1;
    if (err && err[0])
        snprintf(vm->last_error, sizeof vm->last_error, "%s", err);
    if (!counted)
        pw_brake_failure(vm);
    return PW_EDEAD;
}

int pw_vm_recover(pw_vm *vm, char *err, size_t errlen) {
    if (!vm->dead)
        return PW_OK;
    if (pw_brake_check(vm, err, errlen) != 0)
        return PW_EDEAD; /* taken out: its failure policy answers */
    if (vm->inst)
        pw_winst_free(vm->inst);
    vm->inst = NULL;
    /* A trap often ends a greedy call: give what it made the host allocate
     * (freed with its request by now) back to the system. Rare: once per
     * rebuild. */
    malloc_trim(0);
    table_clear(&vm->ctxs);
    for (pw_plugin *p = vm->plugins; p; p = p->next)
        p->started = 0;
    vm->generation++;
    int rc = vm_instantiate(vm, err, errlen);
    if (rc != PW_OK) {
        if (rc != PW_ETRAP)
            return rc;
        return recover_failed(vm, 0, err);
    }
    for (pw_plugin *p = vm->plugins; p; p = p->next) {
        /* A timer stays armed across the rebuild (its next tick is what
         * rebuilds a VM no request uses); the plugin asks again when it
         * starts, or it is stopped. */
        uint32_t period = p->tick_period;
        p->tick_period = 0;
        rc = plugin_start(p, err, errlen);
        if (period && !p->tick_period && vm->hooks.timers->set_tick)
            vm->hooks.timers->set_tick(vm->host, p, 0);
        if (rc != PW_OK) {
            /* a trap in on_vm_start / on_configure was counted as a trap;
             * a refusal (false) counts here */
            pw_ctx *saved = vm->cur;
            vm->cur = &p->ctx;
            recover_failed(vm, rc == PW_ETRAP, err);
            vm->cur = saved;
            return PW_EDEAD;
        }
    }
    pw_host_metric(vm, "pwasm_vm_rebuilds_total", "vm_id", vm->vm_id, &vm->rebuilds_metric, 1);
    return PW_OK;
}

void pw_vm_free(pw_vm *vm) {
    if (!vm)
        return;
    if (vm->brake.out) /* no longer out: the gauge forgets it */
        pw_host_gauge_add(vm, "pwasm_brake_out", "module", vm->m->name, &vm->brake.out_metric, -1);
    pw_callouts_cancel(vm, 0);
    free(vm->calls);
    pw_plugin *p = vm->plugins;
    while (p) {
        pw_plugin *next = p->next;
        if (vm->inst)
            plugin_stop(p);
        if (p->tick_period && vm->hooks.timers->set_tick)
            vm->hooks.timers->set_tick(vm->host, p, 0);
        plugin_free(p);
        p = next;
    }
    pw_stream *s = vm->free_streams;
    while (s) {
        pw_stream *next = s->next_free;
        free(s->lr_buf);
        free(s);
        s = next;
    }
    pw_winst_free(vm->inst);
    free(vm->ctxs.keys);
    free(vm->ctxs.vals);
    free(vm->vm_id);
    free(vm->vm_config);
    free(vm);
}

/* --------------------------------------------------------------- streams */

/* Local response buffers larger than this are not kept for reuse. */
#define PW_LR_KEEP_BYTES 65536

static void stream_release(pw_vm *vm, pw_stream *s) {
    if (s->lr_cap > PW_LR_KEEP_BYTES) {
        free(s->lr_buf);
        s->lr_buf = NULL;
        s->lr_cap = 0;
    }
    s->has_local_response = 0;
    s->host_stream = NULL;
    s->pending = 0;
    s->next_free = vm->free_streams;
    vm->free_streams = s;
}

static int stream_new(pw_plugin *p, void *host_stream, int tcp, pw_stream **out, char *err,
                      size_t errlen) {
    pw_vm *vm = p->vm;
    if (vm->dead) {
        int rc = pw_vm_recover(vm, err, errlen);
        if (rc != PW_OK)
            return rc;
    }
    pw_stream *s = vm->free_streams;
    if (s) {
        vm->free_streams = s->next_free;
    } else if (!(s = calloc(1, sizeof *s))) {
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    s->ctx.id = vm->next_ctx_id++;
    s->ctx.root_id = p->ctx.id;
    s->ctx.plugin = p;
    s->ctx.stream = s;
    s->plugin = p;
    s->host_stream = host_stream;
    s->generation = vm->generation;
    s->has_local_response = 0;
    s->created = 0;
    s->in_cb = 0;
    s->pending = 0;
    s->returned = PW_ACTION_CONTINUE;
    s->applied = 0;
    s->tcp = tcp;
    if (table_put(&vm->ctxs, &s->ctx) != 0) {
        stream_release(vm, s);
        pw_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    uint32_t args[2] = {s->ctx.id, p->ctx.id};
    if (vm_call(vm, &s->ctx, PW_CB_ON_CONTEXT_CREATE, args, NULL) < 0) {
        pw_errf(err, errlen, "%s", vm->last_error);
        stream_release(vm, s);
        return PW_ETRAP;
    }
    s->created = 1;
    pw_host_metric(vm, "pwasm_streams_total", "plugin", p->name, &p->streams_metric, 1);
    *out = s;
    return PW_OK;
}

int pw_stream_new(pw_plugin *p, void *host_stream, pw_stream **out, char *err, size_t errlen) {
    return stream_new(p, host_stream, 0, out, err, errlen);
}

int pw_stream_new_tcp(pw_plugin *p, void *host_stream, pw_stream **out, char *err,
                      size_t errlen) {
    return stream_new(p, host_stream, 1, out, err, errlen);
}

static int stream_alive(const pw_stream *s) {
    const pw_vm *vm = s->plugin->vm;
    return !vm->dead && s->generation == vm->generation && s->created;
}

/* What a stream callback's return value r asks for (§8.7). */
static pw_action stream_result(enum pw_cb cb, uint32_t r) {
    if (r == 0)
        return PW_ACTION_CONTINUE;
    switch (cb) {
    case PW_CB_ON_REQUEST_HEADERS:
    case PW_CB_ON_RESPONSE_HEADERS:
        /* 2 ContinueAndEndStream goes on (as in Envoy); 1, 3, 4 and
         * anything else stop everything until resumed. */
        return r == 2 ? PW_ACTION_CONTINUE : PW_ACTION_PAUSE;
    case PW_CB_ON_REQUEST_BODY:
    case PW_CB_ON_RESPONSE_BODY:
        /* 1 StopIterationAndBuffer, 2 ...AndWatermark: buffer; 3
         * StopIterationNoBuffer and unknown values: hold without buffering. */
        return r == 1 || r == 2 ? PW_ACTION_PAUSE : PW_ACTION_PAUSE_NO_BUFFER;
    case PW_CB_ON_DOWNSTREAM_CONNECTION_CLOSE:
    case PW_CB_ON_UPSTREAM_CONNECTION_CLOSE:
        return PW_ACTION_CONTINUE; /* no result */
    default:
        /* trailers: StopIteration; TCP (new connection, data): 1
         * StopIteration and anything else hold the direction */
        return PW_ACTION_PAUSE;
    }
}

/* The direction a Pause of callback cb holds, as a PW_PENDING_CONTINUE_*
 * bit. */
static unsigned paused_direction(enum pw_cb cb) {
    switch (cb) {
    case PW_CB_ON_REQUEST_HEADERS:
    case PW_CB_ON_REQUEST_BODY:
    case PW_CB_ON_REQUEST_TRAILERS:
        return PW_PENDING_CONTINUE_REQUEST;
    case PW_CB_ON_NEW_CONNECTION:
    case PW_CB_ON_DOWNSTREAM_DATA:
        return PW_PENDING_CONTINUE_DOWNSTREAM;
    case PW_CB_ON_UPSTREAM_DATA:
        return PW_PENDING_CONTINUE_UPSTREAM;
    default:
        return PW_PENDING_CONTINUE_RESPONSE;
    }
}

/* Calls a stream callback (id, n, eos; each callback takes the arguments its
 * signature has) and turns what it
 * returned, with what it queued meanwhile, into what the embedder does
 * (§8.7, §8.8, §8.10). */
static inline __attribute__((always_inline)) pw_action stream_cb(pw_stream *s, enum pw_cb cb,
                                                                 uint32_t n, int eos) {
    s->returned = PW_ACTION_ERROR;
    s->applied = 0;
    if (!stream_alive(s))
        return PW_ACTION_ERROR;
    uint32_t args[3] = {s->ctx.id, n, eos ? 1u : 0u}, r = 0;
    /* A local response is reported by the callback that asked for it;
     * the embedder has applied it before calling the next one. */
    s->has_local_response = 0;
    s->pending &= ~PW_PENDING_LOCAL_RESPONSE;
    s->in_cb = 1;
    int rc = vm_call(s->plugin->vm, &s->ctx, cb, args, &r);
    s->in_cb = 0;
    pw_action a = rc < 0                  ? PW_ACTION_ERROR
                  : s->has_local_response ? PW_ACTION_LOCAL_RESPONSE /* §8.8, whatever
                                                                        was returned */
                  : rc == 1 ? PW_ACTION_CONTINUE                     /* not exported */
                            : stream_result(cb, r);
    s->returned = a;
    if (s->pending & PW_PENDING_CLOSE) {
        /* Envoy resets the stream at once: nothing else counts. */
        s->applied = pw_stream_take(
            s, PW_PENDING_CLOSE | PW_PENDING_CONTINUE_REQUEST | PW_PENDING_CONTINUE_RESPONSE |
                   PW_PENDING_CONTINUE_DOWNSTREAM | PW_PENDING_CONTINUE_UPSTREAM);
        return PW_ACTION_CLOSE;
    }
    if (a == PW_ACTION_PAUSE || a == PW_ACTION_PAUSE_NO_BUFFER) {
        if ((s->applied = pw_stream_take(s, paused_direction(cb))) != 0)
            return PW_ACTION_CONTINUE; /* continued during the callback */
    }
    return a;
}

static uint32_t size32(size_t n) {
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* pw_stream_call, inlined into pw_chain_call. */
static inline __attribute__((always_inline)) pw_action stream_event(pw_stream *s, pw_event event,
                                                                    size_t n, int end_of_stream) {
    static const enum pw_cb cbs[PW_EVENT_COUNT] = {
        PW_CB_ON_REQUEST_HEADERS,
        PW_CB_ON_REQUEST_BODY,
        PW_CB_ON_REQUEST_TRAILERS,
        PW_CB_ON_RESPONSE_HEADERS,
        PW_CB_ON_RESPONSE_BODY,
        PW_CB_ON_RESPONSE_TRAILERS,
        PW_CB_ON_NEW_CONNECTION,
        PW_CB_ON_DOWNSTREAM_DATA,
        PW_CB_ON_UPSTREAM_DATA,
        PW_CB_ON_DOWNSTREAM_CONNECTION_CLOSE,
        PW_CB_ON_UPSTREAM_CONNECTION_CLOSE,
    };
    if ((unsigned)event >= PW_EVENT_COUNT || (event >= PW_ON_NEW_CONNECTION) != (s->tcp != 0))
        return PW_ACTION_ERROR;
    if (event >= PW_ON_DOWNSTREAM_CLOSE)
        end_of_stream = 0; /* (context, peer type) */
    /* trailers have no end_of_stream (their callback takes two arguments) */
    int eos =
        event == PW_ON_REQUEST_TRAILERS || event == PW_ON_RESPONSE_TRAILERS ? 0 : end_of_stream;
    return stream_cb(s, cbs[event], size32(n), eos);
}

pw_action pw_stream_call(pw_stream *s, pw_event event, size_t n, int end_of_stream) {
    return stream_event(s, event, n, end_of_stream);
}

/* The chain's common call (chain.c has the rest): the link's stream
 * context exists and its callback ran. Here so that the stream callback
 * is inlined into it. */
pw_action pw_chain_call(pw_chain *c, size_t i, pw_event event, size_t n, int end_of_stream,
                        char *why, size_t whylen) {
    pw_link *l = &c->links[i];
    if (why && whylen)
        why[0] = '\0';
    int called = 0;
    if (l->stream && !l->failed && !l->ended) {
        pw_action a = stream_event(l->stream, event, n, end_of_stream);
        if (a != PW_ACTION_ERROR)
            return a;
        called = 1;
    }
    return pw_chain_call_slow(c, l, event, n, end_of_stream, why, whylen, called);
}

pw_action pw_stream_on_request_body(pw_stream *s, size_t body_size, int end_of_stream) {
    return stream_cb(s, PW_CB_ON_REQUEST_BODY, size32(body_size), end_of_stream);
}

pw_action pw_stream_on_response_body(pw_stream *s, size_t body_size, int end_of_stream) {
    return stream_cb(s, PW_CB_ON_RESPONSE_BODY, size32(body_size), end_of_stream);
}

pw_action pw_stream_on_request_trailers(pw_stream *s, uint32_t ntrailers) {
    return stream_cb(s, PW_CB_ON_REQUEST_TRAILERS, ntrailers, 0);
}

pw_action pw_stream_on_response_trailers(pw_stream *s, uint32_t ntrailers) {
    return stream_cb(s, PW_CB_ON_RESPONSE_TRAILERS, ntrailers, 0);
}

pw_action pw_stream_on_request_headers(pw_stream *s, uint32_t nheaders, int end_of_stream) {
    return stream_cb(s, PW_CB_ON_REQUEST_HEADERS, nheaders, end_of_stream);
}

pw_action pw_stream_on_response_headers(pw_stream *s, uint32_t nheaders, int end_of_stream) {
    return stream_cb(s, PW_CB_ON_RESPONSE_HEADERS, nheaders, end_of_stream);
}

const pw_local_response *pw_stream_local_response(const pw_stream *s) {
    return s->has_local_response ? &s->lr : NULL;
}

void pw_stream_queue(pw_stream *s, unsigned bits) {
    unsigned added = bits & ~s->pending;
    s->pending |= bits;
    pw_vm *vm = s->plugin->vm;
    if (added && !s->in_cb && vm->hooks.stream->wake)
        vm->hooks.stream->wake(vm->host, s->host_stream);
}

unsigned pw_stream_pending(const pw_stream *s) {
    return s->pending;
}

unsigned pw_stream_take(pw_stream *s, unsigned mask) {
    unsigned bits = s->pending & mask;
    s->pending &= ~mask;
    return bits;
}

pw_action pw_stream_returned(const pw_stream *s, unsigned *applied) {
    if (applied)
        *applied = s->applied;
    return s->returned;
}

void pw_stream_free(pw_stream *s) {
    if (!s)
        return;
    pw_vm *vm = s->plugin->vm;
    if (stream_alive(s)) {
        uint32_t id = s->ctx.id;
        /* Envoy's order (§8.2): log, done, delete for HTTP; done, log,
         * delete for a connection (§8.3). A trap stops the rest. Actions
         * asked now are not announced: the stream is ending. */
        enum pw_cb first = s->tcp ? PW_CB_ON_DONE : PW_CB_ON_LOG;
        enum pw_cb second = s->tcp ? PW_CB_ON_LOG : PW_CB_ON_DONE;
        s->in_cb = 1;
        if (vm_call(vm, &s->ctx, first, &id, NULL) >= 0 &&
            vm_call(vm, &s->ctx, second, &id, NULL) >= 0)
            vm_call(vm, &s->ctx, PW_CB_ON_DELETE, &id, NULL);
        s->in_cb = 0;
    }
    /* §8.9: the stream's calls end with it, never answered */
    if (vm->ncalls && s->generation == vm->generation)
        pw_callouts_cancel(vm, s->ctx.id);
    if (s->generation == vm->generation)
        table_del(&vm->ctxs, s->ctx.id);
    stream_release(vm, s);
}
