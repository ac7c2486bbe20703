/*
 * engine.h -- the engine: load, validate, compile (wasm2c + cc), instantiate,
 * call, and catch traps. Nothing Proxy-Wasm specific lives here.
 *
 * A module is translated by wasm2c and compiled, together with a generated
 * glue file, into a shared object that exports one symbol,
 * `pw_glue_module`. Imports become trampolines that call through a table
 * of host functions passed at instantiation, so the shared object has no
 * undefined symbols of ours; the wasm_rt_* runtime it needs is forwarded to
 * this engine (one trap target, one signal handler, one memory allocator).
 *
 * Not thread-safe: one thread runs Wasm at a time (nginx workers are single
 * threaded processes). The trap target and call depth are process globals.
 */
#ifndef PW_ENGINE_H
#define PW_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/wasm_parse.h"

/* A host function the module may import. The C function receives the
 * instance's host context first, then the Wasm arguments: i32 -> uint32_t,
 * i64 -> uint64_t, f32 -> float, f64 -> double; result likewise or void. */
typedef struct pw_host_func {
    const char *module; /* "env", "wasi_snapshot_preview1", ... */
    const char *name;
    const char *sig; /* "iii:i" */
    void (*fn)(void);
} pw_host_func;

typedef struct pw_engine_config {
    const char *cache_dir;       /* NULL: no cache (temporary directory) */
    const char *cc;              /* compiler command, e.g. "cc" */
    const char *cflags;          /* e.g. "-O2" */
    uint32_t max_pages;          /* linear memory limit, 64 KiB pages (<= 65535) */
    uint32_t max_call_ms;        /* CPU time limit of one call into a plugin, ms;
                                    0: none */
    uint32_t compile_timeout_ms; /* per compiler process; 0: none */
    uint64_t compile_max_memory; /* address space per compiler process,
                                    bytes; 0: none */
    /* Recoverable problems (a cache entry compiled again); may be NULL. */
    void (*warn)(void *data, const char *msg);
    void *warn_data;
} pw_engine_config;

/* Trap kinds: wasm2c's wasm_rt_trap_t values, plus ours. */
enum {
    PW_TRAP_NONE = 0,
    PW_TRAP_OOB = 1,
    PW_TRAP_INT_OVERFLOW = 2,
    PW_TRAP_DIV_BY_ZERO = 3,
    PW_TRAP_INVALID_CONVERSION = 4,
    PW_TRAP_UNREACHABLE = 5,
    PW_TRAP_CALL_INDIRECT = 6,
    PW_TRAP_UNCAUGHT_EXCEPTION = 7,
    PW_TRAP_EXHAUSTION = 8,
    PW_TRAP_EXIT = 32,          /* WASI proc_exit; code in pw_trap.exit_code */
    PW_TRAP_HOST = 33,          /* a hostcall aborted the call */
    PW_TRAP_OUT_OF_MEMORY = 34, /* linear memory could not be reserved */
    PW_TRAP_TIMEOUT = 35,       /* ran longer than the CPU time limit */
    PW_TRAP_DETACHED = 36       /* called while the process is detached */
};

typedef struct pw_trap {
    int kind;
    uint32_t exit_code;
} pw_trap;

/* snprintf into an error buffer; nothing when err is NULL or errlen 0. */
void pw_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Short text for a trap kind: "unreachable executed", ... */
const char *pw_trap_str(int kind);

typedef struct pw_wmod pw_wmod;   /* compiled, loaded code */
typedef struct pw_winst pw_winst; /* one instance */

/* A callable export: i32 parameters only, zero or one i32 result. */
typedef struct pw_wfunc {
    void (*fn)(void);
    uint8_t nparams;
    uint8_t nresults;
} pw_wfunc;

/* Attaches this process: installs the SIGSEGV/SIGBUS handlers (traps in
 * plugin code), the SIGPROF handler and, at the first call, the CPU timer
 * of the call time limit, and an alternate signal stack if the thread has
 * none. Counted: each attach needs one detach. Calls into Wasm while the
 * process is not attached fail with PW_TRAP_DETACHED. 0, or -1 with err. */
int pw_engine_attach(char *err, size_t errlen);
/* Undoes one attach; the last one disarms the timer and restores the
 * previous handlers and signal stack. Must happen before the engine's code
 * can be unmapped (dlclose of the object it is linked into). */
void pw_engine_detach(void);

/* Compiles (or takes from the cache) and loads a parsed module. Every
 * function import must match a host function by module, name and signature;
 * otherwise -1 with e.g. "imports env.proxy_foo (i32) -> i32, which this host
 * does not provide". The module must define and export a memory.
 * Returns 0, -1 (refused: err), -2 (wasm2c or compiler failed: err). */
int pw_wmod_load(const pw_engine_config *cfg, const char *name, const uint8_t *bytes, size_t len,
                 const pw_wasm_info *info, const pw_host_func *funcs, size_t nfuncs, pw_wmod **out,
                 char *err, size_t errlen);
void pw_wmod_free(pw_wmod *m);
/* The module's own limits in place of its config's: linear memory in
 * pages (1..65535) and CPU time per call in ms (0: none), for instances
 * made and calls started after this. */
void pw_wmod_set_limits(pw_wmod *m, uint32_t max_pages, uint32_t max_call_ms);
/* Replaces host function `index` (of the table given to pw_wmod_load) of
 * m by fn, for every instance of m, from their next call on; fn must have
 * the same signature. An index out of range is ignored. */
void pw_wmod_set_import(pw_wmod *m, size_t index, void (*fn)(void));

/* Compiles the module (after the same import checks as pw_wmod_load) into
 * a shared object at so_path, for machines without a compiler. Returns as
 * pw_wmod_load. */
int pw_wmod_compile_to(const pw_engine_config *cfg, const char *name, const uint8_t *bytes,
                       size_t len, const pw_wasm_info *info, const pw_host_func *funcs,
                       size_t nfuncs, const char *so_path, char *err, size_t errlen);

/* Loads compiled code produced by pw_wmod_compile_to (bytes of the shared
 * object) for the module described by info, with the same import checks,
 * without a compiler or a file on disk. The caller checks that the code was
 * built for this host table (pw_engine_table_hash). */
int pw_wmod_load_code(const pw_engine_config *cfg, const char *name, const pw_wasm_info *info,
                      const pw_host_func *funcs, size_t nfuncs, const uint8_t *code,
                      size_t code_len, pw_wmod **out, char *err, size_t errlen);

/* SHA-256 identifying the host function table and glue version that
 * compiled code depends on. */
void pw_engine_table_hash(const pw_host_func *funcs, size_t nfuncs, unsigned char out[32]);

/* The steps of pw_wmod_load before wasm2c runs, for tests and fuzzing:
 * the same import checks (link), then the generated glue C file written
 * to path. 0, or -1 with err (refused as pw_wmod_load, or the file could
 * not be written). */
int pw_engine_write_glue(const char *path, const char *name, const pw_wasm_info *info,
                         const pw_host_func *funcs, size_t nfuncs, char *err, size_t errlen);

/* Looks up a function export; 0 if found and of the form pw_wfunc can call
 * (i32 params, <= 1 i32 result) with exactly signature `sig` when non-NULL. */
int pw_wmod_func(const pw_wmod *m, const char *name, const char *sig, pw_wfunc *out);

/* Called after every hostcall when set: fn is the index of the host
 * function in the table given to pw_wmod_load, args zero-extended. */
typedef void (*pw_trace_fn)(void *ctx, uint32_t fn, const uint64_t *args, uint32_t nargs,
                            uint64_t result);
/* Instantiates: allocates memory and tables, runs data/elem segments and
 * the Wasm start function. ctx is passed to every host function; trace,
 * when non-NULL, is called after each hostcall (from the start function on). */
int pw_winst_new(pw_wmod *m, void *ctx, pw_trace_fn trace, pw_winst **out, pw_trap *trap);
void pw_winst_free(pw_winst *w);

/* Linear memory: base and current size in bytes. The base is stable for the
 * life of the instance (the engine reserves the maximum up front). */
uint8_t *pw_winst_mem(const pw_winst *w, uint64_t *size);

/* Calls f with args (f->nparams of them). Returns 0 and the result in *ret
 * (if f->nresults), or -1 with the trap in *trap. Calls may nest (a host
 * function may call back into Wasm). */
int pw_winst_call(pw_winst *w, const pw_wfunc *f, const uint32_t *args, uint32_t *ret,
                  pw_trap *trap);

/* From a host function: abandons the innermost Wasm call with this trap. */
__attribute__((noreturn)) void pw_engine_trap(int kind, uint32_t exit_code);

#endif
