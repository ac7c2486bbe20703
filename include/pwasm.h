/*
 * pwasm.h -- embedding API of the pwasm Proxy-Wasm host library.
 *
 * The library owns everything Proxy-Wasm specific (modules, VMs, root and
 * stream contexts, hostcalls, WASI); an embedder (the nginx module, the pwasm
 * CLI) owns the traffic and exposes it through a table of callbacks,
 * pw_host_ops. It never includes a proxy's headers.
 *
 * Objects, from longest to shortest lived:
 *   pw_runtime  process-wide settings: compiler, flags, cache directory.
 *   pw_module   one validated, compiled and loaded .wasm file. Read-only after
 *               load, so it may be loaded before fork() and used by children.
 *   pw_vm       one instance of a module (linear memory, globals) plus the
 *               root contexts living in it. One per process per
 *               (module, vm_id). Not thread-safe: use it from one thread.
 *   pw_plugin   one (name, root_id, plugin configuration) on a VM: a root
 *               context (docs/ABI.md §8.1).
 *   pw_stream   one HTTP stream context of a plugin (§8.2).
 *
 * Conventions: functions returning int return PW_OK (0) or a negative
 * PW_E* code and, when an `err` buffer is given, write a NUL-terminated
 * human-readable reason into it (truncated to errlen bytes). Strings that
 * cross the API are (pointer, length) pairs, never NUL-terminated unless
 * documented. Sizes are bytes, times are nanoseconds unless named *_ms.
 */
#ifndef PWASM_H
#define PWASM_H

#include <stddef.h>
#include <stdint.h>

#include "proxy_wasm/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------------- version */

/* This library's version (semantic versioning; 0.x: the API may change). */
#define PWASM_VERSION_MAJOR 0
#define PWASM_VERSION_MINOR 1
#define PWASM_VERSION_PATCH 0
#define PWASM_VERSION_STRING "0.1.0"
/* One number to compare: (major * 10000 + minor * 100 + patch). */
#define PWASM_VERSION_NUMBER                                                  \
    (PWASM_VERSION_MAJOR * 10000 + PWASM_VERSION_MINOR * 100 + PWASM_VERSION_PATCH)

/* ------------------------------------------------------------------ errors */

#define PW_OK 0
#define PW_EINVAL (-1)   /* bad argument to a pw_ function */
#define PW_ENOMEM (-2)   /* host allocation failed */
#define PW_EIO (-3)      /* file could not be read or written */
#define PW_ELOAD (-4)    /* module refused: not Wasm, invalid, bad import, ... */
#define PW_ECOMPILE (-5) /* wasm2c or the C compiler failed */
#define PW_ETRAP (-6)    /* the plugin trapped; its VM is now dead */
#define PW_EPLUGIN (-7)  /* the plugin refused: on_vm_start/on_configure = 0 */
#define PW_EDEAD (-8)    /* the VM is dead (trapped earlier) */

/* A short description of a PW_* code ("module refused"); "unknown error"
 * for any other value. Never NULL; static. */
const char *pw_strerror(int code);

/* Size of an error buffer large enough for every message of this API. */
#define PW_ERRLEN 512

/* Most bytes of one plugin log message passed to pw_host_ops.log (after
 * escaping), not counting the "...(N bytes truncated)" marker. */
#define PW_LOG_LINE_MAX 4096

typedef struct pw_runtime pw_runtime;
typedef struct pw_module pw_module;
typedef struct pw_vm pw_vm;
typedef struct pw_plugin pw_plugin;
typedef struct pw_stream pw_stream;

/* A byte string owned by someone else; not NUL-terminated. */
typedef struct pw_str {
    const char *data;
    size_t len;
} pw_str;

/* One header (or any key/value pair of a proxy_map_type_t map). */
typedef struct pw_kv {
    pw_str key;
    pw_str value;
} pw_kv;

/* ----------------------------------------------------------------- runtime */

/* What one plugin may make the host do (docs/ENGINE.md "Limits"). Every
 * field: 0 means the default given. A hostcall over a limit is refused with
 * BadArgument (WASI random_get: EINVAL; each field says when another
 * status), never a trap of the host; the first refusal of each callback is
 * logged at WARN, and each refusal counted in the store's metric
 * pwasm_limit_hits_total{limit="...",plugin="..."} (limit: header_name,
 * header_value, callback_bytes, callouts, map_pairs, map_bytes,
 * buffer_bytes, shm_quota). */
typedef struct pw_limits {
    /* Longest header (or trailer) name a plugin may write, in bytes, in
     * proxy_add/replace_header_map_value, proxy_set_header_map_pairs and
     * the headers of proxy_send_local_response. 0: 8192 (8 KiB, nginx's
     * large_client_header_buffers). */
    uint32_t max_header_name_bytes;
    /* Longest header (or trailer) value, in bytes, as above. 0: 65536. */
    uint32_t max_header_value_bytes;
    /* Bytes the host takes from the plugin during one callback (from the
     * host's call into the plugin until it returns): header names and
     * values written, bodies written with proxy_set_buffer_bytes, local
     * response body, details and headers, proxy_set_property paths and
     * values, and bytes produced by WASI random_get. Reset at the start of
     * every callback. 0: 32 MiB (33554432). */
    uint64_t max_callback_bytes;
    /* Plugin log lines (proxy_log, WASI stdout/stderr) accepted per plugin
     * (root context) and second; excess lines are dropped and counted.
     * 0: 10000; UINT32_MAX: no limit. */
    uint32_t max_log_lines_per_sec;
    /* The same in bytes of message text per second. 0: 1 MiB (1048576);
     * UINT64_MAX: no limit. */
    uint64_t max_log_bytes_per_sec;

    /* The crash-loop brake (docs/ENGINE.md "The crash-loop brake"): when a
     * VM fails brake_traps times within brake_window_ms (a trap in any
     * callback of any of its plugins, or a rebuild whose start functions,
     * proxy_on_vm_start or proxy_on_configure trap or refuse), it is taken
     * out: it is not rebuilt, and every stream that needs it meets its
     * failure policy (pw_chain_call, with a reason saying so), for
     * brake_backoff_ms; then the next use rebuilds it and tries again. Each
     * trip within brake_max_backoff_ms of the VM coming back doubles the
     * back-off (up to brake_max_backoff_ms); a later one starts again from
     * brake_backoff_ms. Time is the embedder's clock (pw_host_clock_ops).
     * 0: 5 failures, 10000 ms, 1000 ms, 60000 ms; brake_traps UINT32_MAX:
     * no brake (a dead VM is rebuilt at every use, as before). */
    uint32_t brake_traps;
    uint32_t brake_window_ms;
    uint32_t brake_backoff_ms;
    uint32_t brake_max_backoff_ms;
    /* Outstanding HTTP and gRPC call-outs of one VM (all its plugins); one
     * more is refused with InternalFailure (the status the SDKs accept for
     * a call that cannot start), logged at WARN once per callback. 0:
     * 1024; UINT32_MAX: no limit. */
    uint32_t max_callouts;

    /* What the host hands a plugin (docs/ENGINE.md "Limits"), each copy
     * made in the plugin's memory through its proxy_on_memory_allocate.
     * A header map (proxy_get_header_map_pairs: request and response
     * headers and trailers, call-out response headers, trailers and gRPC
     * metadata) of more than max_map_pairs pairs or more than
     * max_map_bytes serialised bytes (4 + per pair 8 + name + 1 + value +
     * 1), or one value of proxy_get_header_map_value over max_map_bytes,
     * is refused with BadArgument: a map has no partial answer, and no
     * status but Ok is survived by the Rust SDK (it panics: a trap, met
     * by the plugin's failure policy); the Go SDKs return the error, the
     * AssemblyScript SDK reads an empty map. 0: 8192 pairs, 1 MiB
     * (1048576); UINT32_MAX: no limit. Counted as limit="map_pairs" or
     * "map_bytes". */
    uint32_t max_map_pairs;
    uint32_t max_map_bytes;
    /* Most bytes one proxy_get_buffer_bytes answer hands over (bodies, TCP
     * data, call-out and gRPC answers, configurations): a longer range is
     * cut to this many bytes and answered Ok (the ABI's max_size is an
     * upper bound; proxy_get_buffer_status still gives the whole size, so
     * the plugin may read on from start + what it got). Logged once per
     * callback, counted as limit="buffer_bytes". 0: 64 MiB (67108864);
     * UINT32_MAX: no limit. */
    uint32_t max_buffer_bytes;
} pw_limits;

typedef struct pw_runtime_config {
    /* Directory for compiled modules, created if missing. NULL: the
     * directory in $PWASM_CACHE_DIR if set; "" (or NULL with the variable
     * unset): no cache, compile into a temporary directory deleted after
     * loading. Entries are keyed by SHA-256 of (module bytes, compiler,
     * flags, host function table, glue version). Native code is trusted
     * only if this host made it: the directory must be owned by root or
     * this process's user and not writable by group or others (else
     * PW_EIO), and an entry is loaded only if its file passes the same
     * test and its SHA-256 matches the one recorded beside it when it was
     * compiled; any other entry is compiled again over (cfg->warn). */
    const char *cache_dir;
    /* C compiler command; NULL: $PWASM_CC, else "cc". */
    const char *cc;
    /* Optimisation and extra flags; NULL: $PWASM_CFLAGS, else "-O2". */
    const char *cflags;
    /* Upper bound for each VM's linear memory in bytes; 0: 1 GiB
     * (docs/ABI.md §8.12). memory.grow beyond it fails in the plugin. */
    uint64_t max_memory_bytes;
    /* CPU time one call into a plugin may take, in ms, before it is
     * interrupted as a trap ("CPU time limit exceeded"; its VM is then
     * rebuilt as after any trap). 0: 1000 ms; UINT32_MAX: no limit.
     * Measured in 10 ms ticks of the process's CPU time, user and system
     * (ITIMER_PROF, SIGPROF), so the precision is about 10 ms; a plugin
     * looping on hostcalls is stopped at its next hostcall after the
     * limit. Per runtime: each call carries the limit of the runtime its
     * module was loaded with. */
    uint32_t max_call_ms;

    /* Limits on what is compiled (docs/ENGINE.md "Limits"). A module
     * over one is refused with PW_ELOAD naming the limit, before any
     * compiler runs. */
    uint64_t max_module_bytes;  /* module file or buffer; 0: 64 MiB */
    uint32_t max_functions;     /* defined functions; 0: 50,000 */
    uint64_t max_data_bytes;    /* data section; 0: 16 MiB */
    /* Wall-clock time in ms of each compiler step (wasm2c; the C
     * compiles of one module, which run in parallel for a big module, all
     * together; the link), and address space in bytes of each compiler
     * process; past either the step is killed and the load fails with
     * PW_ECOMPILE naming the limit. 0: 120,000 ms / 4 GiB; UINT32_MAX /
     * UINT64_MAX: no limit. At most as many compiler processes run at once
     * as this process may use CPUs, at most 8 ($PWASM_COMPILE_JOBS: 1 to
     * 8; docs/ENGINE.md "Loading a module"). */
    uint32_t compile_timeout_ms;
    uint64_t compile_max_memory;

    /* Called for problems the runtime recovers from by itself (a
     * compile-cache entry that fails verification and is compiled again),
     * with a NUL-terminated message. NULL: stderr. */
    void (*warn)(void *data, const char *msg);
    void *warn_data;

    /* Limits of what plugins may make the host do; zeroes are defaults. */
    pw_limits limits;
} pw_runtime_config;

/* Creates the runtime and attaches it (pw_runtime_attach). cfg may be NULL
 * for defaults. Errors: PW_ENOMEM, PW_EINVAL (handlers not installed). */
int pw_runtime_new(const pw_runtime_config *cfg, pw_runtime **out, char *err,
                   size_t errlen);
/* Detaches the runtime if attached, then frees it. Modules loaded with it
 * must be freed first. */
void pw_runtime_free(pw_runtime *rt);

/* Installs (attach) or removes (detach) what running plugin code needs in
 * this process: SIGSEGV/SIGBUS handlers that turn faults in plugin code
 * into traps (a fault in host code is reported on stderr and crashes, it
 * is never unwound), a SIGPROF handler and CPU timer for max_call_ms, and
 * an alternate signal stack if the thread has none. The previous handlers
 * are restored when the last attached runtime of the process detaches.
 * Each call is idempotent per runtime. While no runtime is attached, calls
 * into plugins fail (the VM traps with "no trap handlers in this
 * process"). A process that forks workers attaches only while it runs
 * plugins itself; every process detaches before this library's code can
 * be unmapped (nginx: exit_process, and the cycle's pool cleanup).
 * Errors of attach: PW_EINVAL (sigaction/sigaltstack failed). */
int pw_runtime_attach(pw_runtime *rt, char *err, size_t errlen);
void pw_runtime_detach(pw_runtime *rt);

/* ------------------------------------------------------------------ module */

/* Reads, validates, compiles (or takes from the cache) and loads a module
 * given as Wasm bytes. `name` is used in every message about it.
 * pw_module_load_file reads only a regular file (not a FIFO or a device),
 * of at most max_module_bytes. Refused with PW_ELOAD when: the bytes are
 * an artifact of pw_module_compile (native code: see
 * pw_module_load_precompiled), a structural limit is exceeded, the
 * bytes are not Wasm or fail validation (the validator's reason is given),
 * no Proxy-Wasm ABI marker is exported (§1.2), an import is unknown or has
 * another signature than the host's (import and both signatures named),
 * no memory or allocator is exported, or a known callback export has the
 * wrong signature. PW_ECOMPILE: wasm2c/cc failed (their stderr in err). */
int pw_module_load_file(pw_runtime *rt, const char *name, const char *path,
                        pw_module **out, char *err, size_t errlen);
int pw_module_load(pw_runtime *rt, const char *name, const uint8_t *bytes,
                   size_t len, pw_module **out, char *err, size_t errlen);
/* pw_module_load_file, refusing the file with PW_ELOAD (both digests in
 * err) unless the SHA-256 of its bytes is sha256_hex (64 hex digits, either
 * case). The digest is of the very bytes then compiled (the file is read
 * once). sha256_hex NULL: as pw_module_load_file. */
int pw_module_load_file_digest(pw_runtime *rt, const char *name,
                               const char *path, const char *sha256_hex,
                               pw_module **out, char *err, size_t errlen);
void pw_module_free(pw_module *m);

/* Compiles the module at `path` into an artifact at out_path that
 * pw_module_load_precompiled accepts in place of the .wasm on a machine
 * without a C compiler (`pwasm compile`). The artifact holds the module,
 * its native code for this machine's architecture, and a hash of this
 * pwasm's host function table: another pwasm version refuses it with
 * PW_ELOAD. Errors as pw_module_load_file, plus PW_EIO writing out_path. */
int pw_module_compile(pw_runtime *rt, const char *name, const char *path,
                      const char *out_path, char *err, size_t errlen);

/* Loads an artifact of pw_module_compile. Its native code runs in this
 * process unsandboxed, so it is loaded only when asked for by name here:
 * sha256_hex, when not NULL, is the SHA-256 of the whole file (64 hex
 * digits) and the file is refused with PW_ELOAD when it differs; NULL means
 * the caller vouches for the file (a command-line user naming it).
 * Errors as pw_module_load_file; PW_ELOAD also for a file that is not an
 * artifact, or one made by another pwasm version. */
int pw_module_load_precompiled(pw_runtime *rt, const char *name,
                               const char *path, const char *sha256_hex,
                               pw_module **out, char *err, size_t errlen);

/* Limits of this module's VMs in place of its runtime's (a module
 * declaration's own limits): every non-zero field of lim replaces the
 * runtime's, and max_call_ms / max_memory_bytes replace
 * pw_runtime_config's when non-zero (same units and UINT32_MAX "no limit"
 * as there; memory is rounded down to 64 KiB pages, at most 65535). Applies
 * to VMs made (or rebuilt) after the call. Errors: PW_EINVAL (lim NULL). */
int pw_module_set_limits(pw_module *m, const pw_limits *lim, uint32_t max_call_ms,
                         uint64_t max_memory_bytes);

const char *pw_module_name(const pw_module *m);
/* 1 if the module exports the callback `export_name` (e.g.
 * "proxy_on_request_body") with the signature this host calls, else 0. */
int pw_module_has_callback(const pw_module *m, const char *export_name);

/* If bytes are a pw_module_compile artifact, points *wasm at the module it
 * holds and returns 1; else returns 0 (bytes are taken as Wasm). Returns -1
 * for a truncated artifact. */
int pw_artifact_wasm(const uint8_t *bytes, size_t len, const uint8_t **wasm,
                     size_t *wasm_len);

/* Areas of host functions, in the order `pwasm inspect` groups imports. */
typedef enum pw_area {
    PW_AREA_LOG = 0,        /* logging, time, timers */
    PW_AREA_BUFFERS,        /* configuration and buffers */
    PW_AREA_MAPS,           /* header maps */
    PW_AREA_PROPERTIES,     /* properties */
    PW_AREA_STREAM,         /* stream control, local responses */
    PW_AREA_CALLOUTS,       /* HTTP and gRPC call-outs */
    PW_AREA_SHARED,         /* shared data and queues */
    PW_AREA_METRICS,        /* metrics */
    PW_AREA_CONTEXTS,       /* contexts, foreign functions */
    PW_AREA_EMSCRIPTEN,     /* Emscripten */
    PW_AREA_WASI,           /* WASI */
    PW_AREA_OTHER,          /* anything this host does not know */
    PW_AREA_COUNT
} pw_area;

/* The title of an area, as in the comments above ("header maps"); "other"
 * for a value out of range. */
const char *pw_area_name(int area);

/* Every host function a module may import, in registry order (§10). */
typedef struct pw_hostcall_info {
    const char *module;    /* "env", "wasi_snapshot_preview1", "wasi_unstable" */
    const char *name;
    const char *signature; /* params ':' results; i i32, I i64: "iii:i" */
    int implemented;       /* 0: registered, answers Unimplemented (12) */
    /* How to decode the arguments, for traces: comma-separated, one per
     * parameter, a kind letter, a space and a name ("L level,s message");
     * "" when not described. Kinds s p P o O V take two Wasm arguments
     * (pointer, size or count), the others one:
     *   d u32       D i64       x pointer    g gRPC status (i32, -1 none)
     *   L log level M map type  B buffer type
     *   S stream type           T metric type
     *   s string    p serialized pairs       P property path
     *   V WASI iovecs (pointer, count)
     *   u out u32   U out u64   o out bytes (ptr*, size*)   O out pairs */
    const char *arguments;
    int area;              /* pw_area */
} pw_hostcall_info;
const pw_hostcall_info *pw_hostcalls(size_t *n);
/* The host function of that module and name, or NULL. */
const pw_hostcall_info *pw_hostcall_find(const char *module, const char *name);

/* Capabilities: the hostcall groups a module may be restricted to (Envoy's
 * capability_restriction_config; docs/ABI.md "Capabilities"). A denied
 * hostcall stays importable (the module loads) and answers Unimplemented
 * (env functions) or WASI errno ENOTCAPABLE, 76 (WASI functions).
 * Hostcalls of no capability (configuration and buffers, proxy_get_status,
 * proxy_set_effective_context, proxy_done, Emscripten's, WASI args,
 * environ, proc_exit, proc_raise, sched_yield) are always allowed. */
enum pw_capability {
    PW_CAP_LOG = 0,       /* "log": proxy_log, proxy_get_log_level */
    PW_CAP_TIME,          /* "time": proxy_get_current_time_nanoseconds */
    PW_CAP_TIMERS,        /* "timers": proxy_set_tick_period_milliseconds */
    PW_CAP_HEADERS,       /* "headers": the proxy_*_header_map_* calls */
    PW_CAP_PROPERTIES,    /* "properties": proxy_get/set_property */
    PW_CAP_STREAM,        /* "stream": continue/close stream, local
                             responses, clear_route_cache */
    PW_CAP_HTTP_CALL,     /* "http_call": proxy_http_call */
    PW_CAP_GRPC,          /* "grpc": proxy_grpc_* */
    PW_CAP_SHARED_DATA,   /* "shared_data": proxy_get/set_shared_data */
    PW_CAP_SHARED_QUEUE,  /* "shared_queue": the *_shared_queue calls */
    PW_CAP_METRICS,       /* "metrics": define/increment/record/get */
    PW_CAP_FOREIGN,       /* "foreign": proxy_call_foreign_function */
    PW_CAP_WASI_CLOCK,    /* "wasi_clock": clock_time_get, clock_res_get */
    PW_CAP_WASI_RANDOM,   /* "wasi_random": random_get */
    PW_CAP_WASI_IO,       /* "wasi_io": fd_*, path_*, sock_*, poll_oneoff
                             (stdout/stderr writes become logs) */
    PW_CAP_COUNT
};
/* Bit set of every capability. */
#define PW_CAP_ALL ((1u << PW_CAP_COUNT) - 1)

/* The name of a capability ("http_call"), NULL if out of range. */
const char *pw_capability_name(int cap);
/* The capability of an import (module "env", "wasi_snapshot_preview1" or
 * "wasi_unstable", and name), or -1: always allowed, or not a hostcall. */
int pw_capability_of(const char *module, const char *name);
/* Parses a rule of `len` bytes: "allow=LIST" (only these capabilities) or
 * "deny=LIST" (all but these), LIST comma-separated capability names
 * without spaces ("allow=" alone allows none), into the bit set of allowed
 * capabilities (1 << PW_CAP_*) for pw_module_restrict. PW_EINVAL for
 * another form or an unknown name (err names it and the known ones). */
int pw_capability_parse(const char *rule, size_t len, uint32_t *allowed,
                        char *err, size_t errlen);
/* Restricts module m to the capabilities in `allowed` (a bit set; PW_CAP_ALL
 * lifts every restriction): every hostcall of another capability answers
 * as described above, in every VM of m, including those already created.
 * Reports through warn (may be NULL) each denied hostcall the module
 * imports, e.g. 'module "m" imports env.proxy_http_call of capability
 * "http_call", which is denied: it answers Unimplemented'. Returns how
 * many of its imports are denied. Applies per module (a VM): plugins
 * sharing a VM share its capabilities, as in Envoy, where the VM carries
 * them. */
int pw_module_restrict(pw_module *m, uint32_t allowed,
                       void (*warn)(void *data, const char *msg), void *data);

/* The one rule for header names and values that plugins write (header
 * maps, local responses, call-out headers and gRPC metadata; the core
 * refuses others with BadArgument, docs/ABI.md "Header syntax"), for an
 * embedder that checks again at its side. pw_header_name_ok: 1 when `name`
 * is an RFC 9110 token (letters of either case, digits and
 * !#$%&'*+-.^_`|~), optionally after one leading ':' (a pseudo-header such
 * as ":path"); 0 for an empty name, ':' elsewhere, whitespace, control
 * bytes, separators or bytes above 0x7e. pw_header_value_ok: 0 when the
 * value holds CR, LF or NUL (a response split), else 1. */
int pw_header_name_ok(pw_str name);
int pw_header_value_ok(pw_str value);
/* "0.1.0", "0.2.0" or "0.2.1" (§1.1). */
const char *pw_module_abi_version(const pw_module *m);

/* ----------------------------------------------------------- module reader */

/* What a module is and whether this host can run it, read without
 * compiling or running anything (`pwasm inspect`). */

/* Kinds of imports and exports (the Wasm external kinds). */
enum {
    PW_KIND_FUNC = 0,
    PW_KIND_TABLE = 1,
    PW_KIND_MEMORY = 2,
    PW_KIND_GLOBAL = 3,
    PW_KIND_TAG = 4
};

/* pw_import_info.status: does this host provide the import? */
enum {
    PW_IMPORT_OK = 0,              /* provided */
    PW_IMPORT_UNIMPLEMENTED = 1,   /* provided, answers Unimplemented (12) */
    PW_IMPORT_MISSING = 2,         /* no host function of that name (or not
                                      a function: this host provides none) */
    PW_IMPORT_WRONG_SIGNATURE = 3  /* provided with another signature */
};

/* pw_export_info.role: what this host makes of an export. */
enum {
    PW_EXPORT_OTHER = 0,
    PW_EXPORT_ABI_MARKER = 1,      /* proxy_abi_version_* */
    PW_EXPORT_CALLBACK = 2,        /* a callback or start function this
                                      host calls */
    PW_EXPORT_CALLBACK_LATER = 3,  /* a callback of the ABI this version
                                      does not call yet */
    PW_EXPORT_ALLOCATOR = 4        /* the allocator this host would use */
};

typedef struct pw_import_info {
    const char *module;
    const char *name;
    int kind;                     /* PW_KIND_* */
    const char *signature;        /* functions: "iii:i" (as pw_hostcall_info);
                                     "" for other kinds */
    int status;                   /* PW_IMPORT_* */
    int area;                     /* pw_area: the host function's, WASI for
                                     any WASI module, else PW_AREA_OTHER */
    const pw_hostcall_info *host; /* the host function of that module and
                                     name, or NULL */
} pw_import_info;

typedef struct pw_export_info {
    const char *name;
    int kind;                     /* PW_KIND_* */
    const char *signature;        /* functions; "" for other kinds */
    int role;                     /* PW_EXPORT_* */
} pw_export_info;

typedef struct pw_module_info {
    int artifact;                 /* the bytes were a pwasm compile artifact
                                     (what follows is about its module) */
    /* "0.1.0", "0.2.0" or "0.2.1" from the exported marker, or
     * NULL: not a Proxy-Wasm module. */
    const char *abi_version;
    /* Why this host cannot run it as a Proxy-Wasm plugin: no ABI marker,
     * a callback exported with a signature this host cannot call, no
     * allocator (the reason pw_module_load would give); "" if none of
     * these. Imports are judged one by one in imports[].status. */
    char problem[PW_ERRLEN];
    const char *allocator;        /* "proxy_on_memory_allocate", "malloc" or
                                     NULL */
    const char *start;            /* "_initialize", "_start" or NULL */
    int has_start_section;        /* a Wasm start function */
    int has_memory;               /* defines a memory */
    int imports_memory;
    uint32_t memory_initial;      /* pages of 64 KiB */
    uint32_t memory_max;          /* pages; UINT32_MAX: no maximum */
    uint32_t nfunctions;          /* defined (not imported) functions */
    uint32_t data_bytes;          /* size of the data section */
    pw_import_info *imports;
    size_t nimports;
    size_t nmissing;              /* imports MISSING or WRONG_SIGNATURE */
    size_t nunimplemented;        /* imports UNIMPLEMENTED */
    pw_export_info *exports;
    size_t nexports;
    void *internal_;              /* owned by the reader */
} pw_module_info;

/* Reads Wasm bytes, or the module of a pw_module_compile artifact.
 * PW_ELOAD when they are neither (the reason in err: "not a Wasm module
 * (bad magic number)", "truncated pwasm compile artifact", ...),
 * PW_ENOMEM. Any input is safe. On success free it with
 * pw_module_info_free; strings point into it. */
int pw_module_info_read(const uint8_t *bytes, size_t len, pw_module_info *out,
                        char *err, size_t errlen);
void pw_module_info_free(pw_module_info *info);

/* "(i32, i32) -> i32" from the signature "ii:i", into buf. Returns buf. */
const char *pw_signature_pretty(const char *signature, char *buf, size_t len);

/* -------------------------------------------------------------- host hooks */

/*
 * Implemented by the embedder, grouped by capability: one table per area
 * (pw_host_log_ops, pw_host_clock_ops, ...), reached from one pw_host_ops.
 * Every hook has a named function type (pw_host_*_fn), so that an embedder
 * can declare its hooks with it (`static pw_host_log_fn my_log;`).
 *
 * Common arguments: `host` is the pointer given to pw_vm_new; `stream` is
 * the pointer given to pw_stream_new (NULL outside a stream, e.g. in
 * on_vm_start/on_configure). Returned pw_str values must stay valid until
 * the hostcall returns (e.g. point into the request or its pool).
 *
 * Any area pointer and any hook may be NULL: a NULL area behaves exactly as
 * that area with every hook NULL, and the core then answers
 * PROXY_RESULT_UNIMPLEMENTED for the hostcalls that reach the hook (or
 * NotFound / empty where docs/ABI.md §3.2 says SDKs require it: each hook
 * below says which). The tables must outlive every VM using them; an
 * embedder normally keeps each one `static const`.
 */

/* ---- log (docs/ABI.md §3.3 "Logging") ---- */

/* A plugin log line (proxy_log, or WASI fd_write to stdout=INFO /
 * stderr=ERROR), and the host's own notices about a plugin (traps, limits).
 * plugin_name identifies the plugin (or module name when no root context
 * is current). msg is not NUL-terminated. The core has already made it one
 * safe line: C0 control characters but TAB escaped ("\n", "\r", "\xNN"),
 * cut after PW_LOG_LINE_MAX bytes with a "...(N bytes truncated)" marker,
 * and rate-limited (pw_limits). NULL: the lines are dropped. */
typedef void pw_host_log_fn(void *host, void *stream, pw_str plugin_name,
                            proxy_log_level_t level, pw_str msg);
/* Current log level for proxy_get_log_level (0..5; the core answers 5 for
 * anything above). Plugin lines under it are not counted by the rate limit
 * (the embedder drops them). NULL: PROXY_LOG_INFO, and every line counts. */
typedef proxy_log_level_t pw_host_log_level_fn(void *host);

typedef struct pw_host_log_ops {
    pw_host_log_fn *log;
    pw_host_log_level_fn *log_level;
} pw_host_log_ops;

/* ---- clock ---- */

/* Current time for proxy_get_current_time_nanoseconds and WASI
 * clock_time_get(REALTIME), Unix epoch ns. NULL (or no clock area):
 * clock_gettime(CLOCK_REALTIME). */
typedef uint64_t pw_host_now_ns_fn(void *host);

typedef struct pw_host_clock_ops {
    pw_host_now_ns_fn *now_ns;
} pw_host_clock_ops;

/* ---- properties (§3.3 "Properties", §6.3) ---- */

/* A property not answered by the core itself (the core answers
 * plugin_name, plugin_root_id, plugin_vm_id) for proxy_get_property.
 * path holds nseg segments, e.g. {"request","path"}; value encodings per
 * docs/ABI.md §6.3. NotFound for unknown properties. NULL: NotFound. */
typedef proxy_status_t pw_host_get_property_fn(void *host, void *stream,
                                               const pw_str *path, size_t nseg,
                                               pw_str *value);
/* proxy_set_property; path as in get_property. NotFound for a path that
 * cannot be set. The core has charged the bytes to the callback's budget.
 * NULL: Unimplemented. */
typedef proxy_status_t pw_host_set_property_fn(void *host, void *stream,
                                               const pw_str *path, size_t nseg,
                                               pw_str value);

typedef struct pw_host_property_ops {
    pw_host_get_property_fn *get_property;
    pw_host_set_property_fn *set_property;
} pw_host_property_ops;

/* ---- HTTP streams: header maps, bodies, stream control ----
 *
 * Only called with a non-NULL `stream` (outside a stream context the core
 * answers NotFound / empty itself).
 *
 * Header maps (§3.3 "Header maps"): the hooks return a proxy_status_t; map
 * is a proxy_map_type_t the core has already range-checked: HTTP
 * request/response headers and trailers (0..3) of a stream context reach
 * the embedder, which answers NotFound for a map it cannot offer now. The
 * core has already checked the header limits and charged written bytes to
 * the callback's budget. */

/* All pairs of a map, pseudo-headers (":method", ":path", ":authority",
 * ":scheme" / ":status") first. *pairs is host memory (e.g. the request
 * pool) valid until the hostcall returns; *n may be 0. Reached by
 * proxy_get_header_map_pairs and proxy_get_header_map_size. NULL (or not
 * Ok): an empty map. */
typedef proxy_status_t pw_host_map_pairs_fn(void *host, void *stream,
                                            proxy_map_type_t map,
                                            pw_kv **pairs, size_t *n);
/* First value of key (case-insensitive), for proxy_get_header_map_value.
 * NotFound if absent. NULL: NotFound. */
typedef proxy_status_t pw_host_map_get_fn(void *host, void *stream,
                                          proxy_map_type_t map, pw_str key,
                                          pw_str *value);
/* Append a value (duplicates allowed): proxy_add_header_map_value.
 * NULL: Unimplemented. */
typedef proxy_status_t pw_host_map_add_fn(void *host, void *stream,
                                          proxy_map_type_t map, pw_str key,
                                          pw_str value);
/* Replace all values of key, adding it if missing:
 * proxy_replace_header_map_value. NULL: Unimplemented. */
typedef proxy_status_t pw_host_map_replace_fn(void *host, void *stream,
                                              proxy_map_type_t map, pw_str key,
                                              pw_str value);
/* Remove all values of key; Ok when missing:
 * proxy_remove_header_map_value. NULL: Unimplemented. */
typedef proxy_status_t pw_host_map_remove_fn(void *host, void *stream,
                                             proxy_map_type_t map, pw_str key);
/* Replace the whole map with n pairs (n may be 0); pairs is core memory valid
 * during the call: proxy_set_header_map_pairs. NULL: Unimplemented. */
typedef proxy_status_t pw_host_map_set_pairs_fn(void *host, void *stream,
                                                proxy_map_type_t map,
                                                const pw_kv *pairs, size_t n);

/* Bodies (docs/ABI.md §3.3 "Buffers", §8.6, §8.7): type is
 * PROXY_BUFFER_HTTP_REQUEST_BODY or PROXY_BUFFER_HTTP_RESPONSE_BODY (the
 * core answers the configuration buffers itself). The buffer is what the
 * embedder holds for the stream now: the current chunk, or everything
 * buffered so far after the plugin returned Pause from a body callback.
 * NotFound when that body is not available (e.g. the request body from a
 * response callback once it was sent). */

/* Current size in bytes: proxy_get_buffer_status, proxy_get_buffer_bytes,
 * proxy_set_buffer_bytes. NULL: NotFound from all three. */
typedef proxy_status_t pw_host_body_size_fn(void *host, void *stream,
                                            proxy_buffer_type_t type,
                                            size_t *size);
/* Copies bytes [start, start+len) into dst (within the size reported by
 * body_size; the core has clamped it). dst is the plugin's memory: the
 * only copy made. proxy_get_buffer_bytes; NULL: Unimplemented. */
typedef proxy_status_t pw_host_body_copy_fn(void *host, void *stream,
                                            proxy_buffer_type_t type,
                                            size_t start, size_t len,
                                            void *dst);
/* Replaces bytes [start, start+len) (clamped to the size) with data:
 * prepend is (0,0), append is (size,0), replace-all is (0,size). The
 * embedder fixes up Content-Length / chunked framing itself.
 * proxy_set_buffer_bytes; NULL: Unimplemented. */
typedef proxy_status_t pw_host_body_replace_fn(void *host, void *stream,
                                               proxy_buffer_type_t type,
                                               size_t start, size_t len,
                                               pw_str data);

typedef struct pw_host_http_ops {
    pw_host_map_pairs_fn *map_pairs;
    pw_host_map_get_fn *map_get;
    pw_host_map_add_fn *map_add;
    pw_host_map_replace_fn *map_replace;
    pw_host_map_remove_fn *map_remove;
    pw_host_map_set_pairs_fn *map_set_pairs;
    pw_host_body_size_fn *body_size;
    pw_host_body_copy_fn *body_copy;
    pw_host_body_replace_fn *body_replace;
} pw_host_http_ops;

/* ---- streams of any kind: their pending actions ----
 *
 * The core keeps what a plugin asks of a stream outside the result of that
 * stream's own callback: proxy_continue_stream / proxy_continue_request /
 * _response, proxy_close_stream, a local response stored from another
 * context (docs/ABI.md §3.3 "Stream control", §8.10), and the death of its
 * VM. They are bits of pw_stream_pending(). */

/* Something became pending on `stream` (the embedder's pointer given to
 * pw_stream_new) while none of that stream's own callbacks runs: from
 * another context's callback (proxy_set_effective_context), or because a
 * trap in another context discarded its VM (PW_PENDING_FAILED). Called
 * from inside that other call: the embedder only notes it (e.g. posts an
 * event) and later asks pw_stream_take() what to do; it must not call into
 * the VM from here. Bits set during the stream's own callback are not
 * announced: the embedder reads pw_stream_pending() after each callback.
 * NULL: nothing is announced (an embedder that polls). */
typedef void pw_host_wake_fn(void *host, void *stream);

typedef struct pw_host_stream_ops {
    pw_host_wake_fn *wake;
} pw_host_stream_ops;

/* ---- observation and VM lifecycle ---- */

/* Called after every hostcall the plugin makes when non-NULL (for
 * `pwasm run --trace`): the import's module and name ("env",
 * "proxy_log"), its arguments (i32 zero-extended), and its result (the
 * proxy_status_t or WASI errno; 0 for functions without a result).
 * Hostcalls that end the call (proc_exit) are not reported. Read when the
 * VM is instantiated (pw_vm_new, pw_vm_recover). */
typedef void pw_host_trace_fn(void *host, void *stream, pw_str plugin_name,
                              const char *module, const char *name,
                              const uint64_t *args, size_t nargs,
                              uint64_t result);
/* The VM of `host` trapped and is now dead (its error is in
 * pw_vm_last_error): every stream context created on it so far is dead
 * for good (PW_ACTION_ERROR, no more callbacks), including those of
 * streams the embedder holds paused, which nothing can resume any more.
 * Called once per trap, from inside the failing call (any callback, or
 * pw_stream_free): the embedder must only note it and act later (e.g.
 * post an event that applies its failure policy to the streams it holds
 * paused on this VM), and must not call into the VM from here. */
typedef void pw_host_vm_discarded_fn(void *host);

typedef struct pw_host_observe_ops {
    pw_host_trace_fn *trace;
    pw_host_vm_discarded_fn *vm_discarded;
} pw_host_observe_ops;

/* ---- timers (docs/ABI.md §3.3 "Logging, time, timers", §8.5) ---- */

/* proxy_set_tick_period_milliseconds from the root context of `plugin`:
 * call pw_plugin_on_tick(plugin) every period_ms ms from now on, replacing
 * any earlier period; 0 stops it. A timer stays armed across a trap (its
 * next tick rebuilds the VM); it is stopped (0) when the rebuilt plugin
 * does not ask for a period again, and when the plugin is freed. It may
 * come during pw_plugin_new, before that call returned the plugin:
 * pw_plugin_name() and pw_plugin_root_id() already answer, to find the
 * embedder's record. Called from inside a plugin call: arm or disarm a
 * timer, no more. NULL (no timers area): the hostcall answers
 * Unimplemented. */
typedef void pw_host_set_tick_fn(void *host, pw_plugin *plugin, uint32_t period_ms);

typedef struct pw_host_timer_ops {
    pw_host_set_tick_fn *set_tick;
} pw_host_timer_ops;

/* ---- shared data, shared queues, metrics: the store ----
 *
 * They live in a pw_store (below), which the embedder opens on memory it
 * provides; the core keeps every rule. */

/* The store of the VM of `host` (one per embedder process group), or NULL:
 * then every shared data, queue and metric hostcall answers
 * Unimplemented. Read at each hostcall. */
typedef struct pw_store *pw_host_store_fn(void *host);

/* An item was enqueued in a queue registered by a plugin of the process
 * with metric slot `owner_slot` (pw_store_open): wake that process (this
 * one, or another worker), which then calls pw_vm_deliver_queues() on its
 * VMs. Called after the store's lock is released, from inside the
 * enqueueing plugin's call: signal, no more. NULL: nothing is woken (an
 * embedder that polls pw_vm_deliver_queues). */
typedef void pw_host_queue_ready_fn(void *host, uint32_t owner_slot);

typedef struct pw_host_shared_ops {
    pw_host_store_fn *store;
    pw_host_queue_ready_fn *queue_ready;
} pw_host_shared_ops;

/* ---- callouts: HTTP and gRPC calls to other services ----
 * (docs/ABI.md §3.3 "HTTP callouts", "gRPC callouts", §8.9)
 *
 * The core checks the arguments, gives each call a token (unique among
 * the VM's outstanding calls, never 0) and records which context made it.
 * The embedder makes the call and later hands the answer back with
 * pw_vm_http_call_response() / pw_vm_grpc_event(); the core calls the
 * plugin's callback on the root context of the caller. Calls of a stream
 * context that ends, of a plugin freed, and of a VM that traps are
 * cancelled: the core calls `cancel` and never delivers their token
 * again (Envoy delivers an answer that comes after its stream ended to
 * the root context; no SDK needs it, and a request that is gone should not
 * keep its calls open). Strings and pairs passed to these hooks point
 * into the plugin's memory, valid only during the hook: copy what is
 * kept. Every hook is called from inside a plugin call: it starts or
 * stops I/O, no more; it must never call into the VM (an answer known at
 * once, e.g. a refused connection, is delivered later, from the event
 * loop). */

/* proxy_http_call: headers include :method, :path and :authority (the
 * core refused the call with BadArgument otherwise) and are also given
 * one by one; names as the plugin wrote them. */
typedef struct pw_http_callout {
    pw_str upstream; /* the plugin's `upstream` argument, as given */
    const pw_kv *headers;
    size_t nheaders;
    pw_str method, path, authority, scheme; /* scheme: "" if absent */
    pw_str body;
    const pw_kv *trailers;
    size_t ntrailers;
    uint32_t timeout_ms; /* 0: no timeout (Envoy's rule) */
} pw_http_callout;

/* Starts `call` for `plugin` under `token`. Returns PROXY_RESULT_OK (the
 * answer, or a failure, comes later through pw_vm_http_call_response,
 * exactly once unless cancelled first), PROXY_RESULT_BAD_ARGUMENT (the
 * upstream is unknown or not allowed to this plugin, or a header is not
 * one the embedder can send) or PROXY_RESULT_INTERNAL_FAILURE (no memory,
 * too many calls); the hostcall answers the same. */
typedef proxy_status_t pw_host_http_call_fn(void *host, pw_plugin *plugin, uint32_t token,
                                            const pw_http_callout *call);

/* proxy_grpc_call (unary: message and timeout set) or proxy_grpc_stream
 * (stream 1: messages follow with grpc_send). */
typedef struct pw_grpc_callout {
    pw_str upstream;         /* the `grpc_service` argument: a target name */
    pw_str service, method;  /* the :path is /service/method */
    const pw_kv *metadata;   /* initial metadata */
    size_t nmetadata;
    pw_str message;          /* unary: the request, without the gRPC frame */
    uint32_t timeout_ms;     /* unary: 0 none; stream: 0 */
    int stream;
} pw_grpc_callout;

/* Starts a gRPC call or stream. Returns PROXY_RESULT_OK (events follow
 * through pw_vm_grpc_event, the last one PW_GRPC_CLOSE, unless cancelled
 * first), PROXY_RESULT_PARSE_FAILURE (unknown or refused target: what the
 * SDKs expect) or PROXY_RESULT_INTERNAL_FAILURE. */
typedef proxy_status_t pw_host_grpc_call_fn(void *host, pw_plugin *plugin, uint32_t token,
                                            const pw_grpc_callout *call);
/* proxy_grpc_send on an open stream: one message (unframed); end_of_stream
 * half-closes after it. PROXY_RESULT_OK, or PROXY_RESULT_BAD_ARGUMENT when
 * the stream was half-closed already. */
typedef proxy_status_t pw_host_grpc_send_fn(void *host, uint32_t token, pw_str message,
                                            int end_of_stream);
/* proxy_grpc_close on a stream: half-close (no more messages from the
 * plugin; the answers go on until PW_GRPC_CLOSE). */
typedef proxy_status_t pw_host_grpc_close_fn(void *host, uint32_t token);
/* Abandons call `token` (HTTP or gRPC): stop its I/O and never answer it
 * (proxy_grpc_cancel, proxy_grpc_close on a unary call, or its context
 * ended). The token may be given again to a later call. */
typedef void pw_host_callout_cancel_fn(void *host, uint32_t token);

typedef struct pw_host_callout_ops {
    pw_host_http_call_fn *http_call; /* NULL: proxy_http_call Unimplemented */
    pw_host_grpc_call_fn *grpc_call; /* NULL: every gRPC hostcall Unimplemented */
    pw_host_grpc_send_fn *grpc_send;
    pw_host_grpc_close_fn *grpc_close;
    pw_host_callout_cancel_fn *cancel; /* required with either of the first two */
} pw_host_callout_ops;

/* ---- TCP streams: the bytes of each direction ----
 * (docs/ABI.md §3.3 "Buffers", §8.3)
 *
 * A TCP stream context (pw_stream_new_tcp) has two buffers: DownstreamData
 * (2: bytes from the client, on their way to the upstream) and
 * UpstreamData (3: bytes from the upstream, on their way to the client).
 * Each is what the embedder holds for that direction now: the chunk the
 * callback was called for, or everything held since the plugin paused
 * that direction. The hooks are those of the HTTP bodies
 * (pw_host_http_ops) with type 2 or 3; the core answers NotFound for
 * types 2 and 3 outside a TCP stream context, and for 0 and 1 inside
 * one. */
typedef struct pw_host_network_ops {
    pw_host_body_size_fn *data_size;       /* NULL: NotFound */
    pw_host_body_copy_fn *data_copy;       /* NULL: Unimplemented */
    pw_host_body_replace_fn *data_replace; /* NULL: Unimplemented */
} pw_host_network_ops;

/* ---- foreign functions (docs/ABI.md §3.3 "Foreign functions") ----
 *
 * proxy_call_foreign_function(name, args): the core answers its own
 * functions (compress, uncompress, set_envoy_filter_state, ...: the list is
 * pw_foreign_names()) and hands any other name to the embedder. */

/* Function `name` of the embedder, called with args (the plugin's bytes,
 * valid during the call) from the current context's stream (NULL outside
 * one). *result: bytes in embedder memory valid until the hostcall
 * returns (the core copies them into the plugin), or (NULL, 0) for none.
 * Returns Ok, NotFound (no such function: the plugin gets NotFound),
 * BadArgument, SerializationFailure or InternalFailure (the statuses the
 * SDKs accept). NULL: only the core's functions exist. */
typedef proxy_status_t pw_host_foreign_call_fn(void *host, void *stream, pw_str name,
                                               pw_str args, pw_str *result);

typedef struct pw_host_foreign_ops {
    pw_host_foreign_call_fn *call;
} pw_host_foreign_ops;

/* The core's foreign functions, NULL-terminated: "compress",
 * "uncompress", "set_envoy_filter_state". */
const char *const *pw_foreign_names(void);

/* ---- the whole host ---- */

typedef struct pw_host_ops {
    /* sizeof(pw_host_ops) as the embedder was compiled. Areas are only
     * ever appended: a smaller size (an embedder built against an older
     * pwasm.h) is accepted and the areas past it are taken as NULL;
     * pw_vm_new refuses (PW_EINVAL) a size larger than this version's or
     * one that does not end on an area. Always `sizeof(pw_host_ops)`. */
    size_t size;
    const pw_host_log_ops *log;
    const pw_host_clock_ops *clock;
    const pw_host_property_ops *property;
    const pw_host_http_ops *http;
    const pw_host_stream_ops *stream;
    const pw_host_observe_ops *observe;
    const pw_host_timer_ops *timers;
    /* shared data, queues and metrics: the store */
    const pw_host_shared_ops *shared;
    /* TCP streams */
    const pw_host_network_ops *network;
    /* HTTP and gRPC callouts */
    const pw_host_callout_ops *callouts;
    /* foreign functions of the embedder */
    const pw_host_foreign_ops *foreign;
} pw_host_ops;

/* ------------------------------------------------------------------- store */

/*
 * Shared data (§3.3 "Shared key/value data", §6.4), shared queues (§6.5)
 * and metrics (§3.3 "Metrics") of every plugin of an embedder, across its
 * processes. The memory is the embedder's (nginx: a shared-memory zone
 * that every worker maps at the same address; the CLI: the heap); the
 * store puts everything inside it, so processes that map it share it, and
 * keeps the rules:
 *   - shared data: keys are namespaced by vm_id and compared by their
 *     bytes; every write gets a CAS token from one counter that never
 *     yields 0 (a key deleted and created again gets a new one); cas 0
 *     writes unconditionally, another cas must equal the key's (else
 *     CasMismatch); a missing key is created; a NULL value deletes. When
 *     the memory is full, the least recently used keys are evicted (or the
 *     write is refused: pw_store_config.evict_lru 0).
 *   - queues: named within a vm_id, ids from 1; the last root context to
 *     register a queue gets its proxy_on_queue_ready. When the memory is
 *     full, an enqueue drops the queue's oldest items, then the new one
 *     (never shared data); every dropped item is counted (the enqueue
 *     answers Ok: the SDKs accept no other status).
 *   - metrics: counters and histograms have one slot per process
 *     (updated without the lock), summed when read; gauges one value.
 * Every function takes the region's lock for the shortest time and never
 * calls a plugin while holding it.
 */
typedef struct pw_store pw_store;

/* The memory and lock a store lives in. All four functions are called with
 * `region`; alloc and free only with the lock held. */
typedef struct pw_store_mem {
    void *region; /* nginx: the zone's ngx_slab_pool_t */
    /* size bytes, aligned for any type, or NULL when the region is full */
    void *(*alloc)(void *region, size_t size);
    void (*free)(void *region, void *p);
    /* a lock across the processes that map the region (nginx: the
     * slab pool's mutex); never held while a plugin runs */
    void (*lock)(void *region);
    void (*unlock)(void *region);
} pw_store_mem;

/* A lifetime for shared data (an extension: Envoy's keys never expire):
 * keys of vm_id (empty: any vm_id) that start with prefix (empty: any
 * key) are forgotten ttl_ms after their last write. A read or CAS write of
 * an expired key finds it missing. */
typedef struct pw_store_ttl {
    pw_str vm_id;
    pw_str prefix;
    uint64_t ttl_ms;
} pw_store_ttl;

/* A quota of shared data (an extension): the keys of vm_id (empty: of
 * any vm_id without a quota of its own) may take at most `bytes` of the
 * region, each key counted as PW_STORE_ENTRY_OVERHEAD + the vm_id + the
 * key + the value, in bytes. A write that would go over is refused like
 * one that finds the region full (CasMismatch; *refused 2), or, with
 * evict_lru, first evicts the vm_id's own least recently used keys (never
 * another vm_id's) and is refused only if that cannot make room (a value
 * over the quota by itself evicts nothing). */
typedef struct pw_store_quota {
    pw_str vm_id;
    uint64_t bytes;
} pw_store_quota;

/* The bookkeeping a shared data key costs on top of its vm_id, key and
 * value, as a quota counts it, in bytes. */
#define PW_STORE_ENTRY_OVERHEAD 64

/* Most TTL rules of a store; most quotas too. */
#define PW_STORE_TTL_MAX 16
/* Longest vm_id and prefix of a TTL rule, in bytes. */
#define PW_STORE_TTL_NAME_MAX 64

typedef struct pw_store_config {
    /* 1: evict the least recently used shared data when the region is
     * full; 0: refuse the write. A refused write (also in LRU mode, when
     * evicting everything else would not make room) is logged and answers
     * CasMismatch, "not written", the only failure the SDKs accept
     * (a plugin that retries forever on it is stopped by its CPU limit). */
    int evict_lru;
    /* Processes that update metrics (nginx: worker_processes, plus one
     * for the master); each uses its own slot (pw_store_set_slot).
     * 0: 1. */
    uint32_t slots;
    /* Hash buckets of the shared data table, rounded up to a power of
     * two; 0: 1024. */
    uint32_t buckets;
    /* Most metrics; 0: 1024. */
    uint32_t max_metrics;
    /* Most queues; 0: 1024. */
    uint32_t max_queues;
    /* TTL rules, the first that matches a key applies (at most
     * PW_STORE_TTL_MAX, names at most PW_STORE_TTL_NAME_MAX bytes, else
     * PW_EINVAL). They replace those of an existing store. */
    const pw_store_ttl *ttl;
    size_t nttl;
    /* Quotas per vm_id (at most PW_STORE_TTL_MAX, vm_ids at most
     * PW_STORE_TTL_NAME_MAX bytes, no vm_id twice, bytes > 0, else
     * PW_EINVAL): the one naming a vm_id applies to it, else the one
     * without a vm_id, else none. They replace those of an existing store
     * (what each vm_id holds stays, over a new quota too: only its next
     * writes are refused or evict). */
    const pw_store_quota *quota;
    size_t nquota;
} pw_store_config;

/* Opens a store: makes a new one in the region (root NULL), or attaches to
 * the existing one whose pw_store_root() is root (nginx: a zone kept
 * across a reload; its data, queues and metrics stay, and so does its
 * number of slots, whatever cfg->slots says: processes of the old
 * configuration may still be adding to them; cfg->evict_lru applies). The
 * handle is this process's (a child of fork may use its parent's).
 * Errors: PW_ENOMEM (the region cannot hold the store's tables, or the
 * handle), PW_EINVAL (root is not a store of this version). */
int pw_store_open(const pw_store_mem *mem, const pw_store_config *cfg, void *root,
                  pw_store **out, char *err, size_t errlen);
/* The store's root in the region, to find it again (pw_store_open). */
void *pw_store_root(const pw_store *st);
/* The store's number of slots (pw_store_config.slots when it was made). */
uint32_t pw_store_slots(const pw_store *st);
/* This process's metric slot and queue owner id; default 0. A slot not
 * below pw_store_slots() is taken as 0 (several processes may share a
 * slot: their metric additions stay exact, atomic; queue deliveries for
 * that slot go to whichever of them is woken). */
void pw_store_set_slot(pw_store *st, uint32_t slot);
/* Frees the handle; the data stays in the region. */
void pw_store_close(pw_store *st);

/* What the store holds and did, for logs and the host's own metrics. */
typedef struct pw_store_stats {
    uint64_t keys;           /* shared data keys */
    uint64_t data_bytes;     /* their keys and values */
    uint64_t evictions;      /* keys evicted to make room */
    uint64_t refused;        /* writes refused: no room */
    uint64_t refused_quota;  /* writes refused: over the vm_id's quota */
    uint64_t queues;         /* queues registered */
    uint64_t queued;         /* items waiting in queues */
    uint64_t dropped;        /* queue items dropped: no room */
    uint64_t metrics;        /* metrics defined */
} pw_store_stats;
void pw_store_stats_get(pw_store *st, pw_store_stats *out);

/* Shared data as a plugin of vm_id sees it (for embedders and tests):
 * copies the value of key into a malloc'ed *value (free it; NULL for an
 * empty value) and its CAS into *cas. Returns PROXY_RESULT_OK,
 * PROXY_RESULT_NOT_FOUND, or PROXY_RESULT_INTERNAL_FAILURE (no memory). */
proxy_status_t pw_store_get(pw_store *st, pw_str vm_id, pw_str key, char **value,
                            size_t *len, uint32_t *cas);
/* Sets it as proxy_set_shared_data would (value.data NULL deletes):
 * PROXY_RESULT_OK, or PROXY_RESULT_CAS_MISMATCH (a stale cas; or no room:
 * then *refused, when not NULL, is set to 1; or over vm_id's quota
 * (pw_store_quota): 2). */
proxy_status_t pw_store_set(pw_store *st, pw_str vm_id, pw_str key, pw_str value, uint32_t cas,
                            int *refused);

/* A metric by name and type (proxy_metric_type_t): its value (counters and
 * gauges; for a histogram, its count of samples). PROXY_RESULT_OK or
 * PROXY_RESULT_NOT_FOUND. */
proxy_status_t pw_store_metric(pw_store *st, pw_str name, uint32_t type, int64_t *value);

/* Every metric in the Prometheus text format 0.0.4, written through
 * `write` in pieces: names made valid ([a-zA-Z_:][a-zA-Z0-9_:]*, other
 * bytes become '_'), `# TYPE` lines, histograms with cumulative
 * `_bucket{le="..."}` (Envoy's bounds), `le="+Inf"`, `_sum`, `_count`.
 * Returns PW_OK or PW_ENOMEM. */
int pw_store_prometheus(pw_store *st, void (*write)(void *data, const char *p, size_t n),
                        void *data);

/* ---------------------------------------------------------------------- VM */

/* Instantiates the module, runs its start functions (§1.3). vm_id and
 * vm_config are copied. ops and its area tables must outlive the VM; ops
 * may be NULL (no hooks at all). Errors: PW_EINVAL (ops->size is not
 * sizeof(pw_host_ops)), PW_ENOMEM, PW_ETRAP (a start function trapped;
 * reason in err), PW_ELOAD. */
int pw_vm_new(pw_module *m, pw_str vm_id, pw_str vm_config,
              const pw_host_ops *ops, void *host, pw_vm **out, char *err,
              size_t errlen);
/* Deletes every root context (on_done, on_delete) and frees the instance. */
void pw_vm_free(pw_vm *vm);

/* 1 if the VM trapped and has not been rebuilt yet. */
int pw_vm_dead(const pw_vm *vm);
/* Rebuilds a dead VM: a fresh instance, start functions, then every plugin's
 * root context created, started and configured again with the same
 * configuration (§8.11). Streams of the old instance stay dead. No-op when
 * alive. Errors as pw_vm_new / pw_plugin_new. */
int pw_vm_recover(pw_vm *vm, char *err, size_t errlen);
/* Number of times the VM was rebuilt after a trap. */
uint64_t pw_vm_generation(const pw_vm *vm);

/* The crash-loop brake (pw_limits.brake_*): 1 while the VM is taken out
 * (then, when not NULL, *retry_ms gets the ms left until the next use may
 * rebuild it, and pw_vm_last_error() says why), else 0. */
int pw_vm_braked(pw_vm *vm, uint64_t *retry_ms);

/* ------------------------------------------------------------------ plugin */

/* Creates the root context: on_context_create(root, 0), on_vm_start(root,
 * len(vm_config)), on_configure(root, len(config)) (§8.1). name, root_id and
 * config are copied. The plugin belongs to the VM (freed with it).
 * Errors: PW_EPLUGIN (on_vm_start or on_configure returned 0), PW_ETRAP,
 * PW_EDEAD, PW_ENOMEM. */
int pw_plugin_new(pw_vm *vm, pw_str name, pw_str root_id, pw_str config,
                  pw_plugin **out, char *err, size_t errlen);
const char *pw_plugin_name(const pw_plugin *p); /* NUL-terminated */
pw_vm *pw_plugin_vm(const pw_plugin *p);
/* The root_id the plugin was created with (pw_str into the plugin). */
pw_str pw_plugin_root_id(const pw_plugin *p);

/* proxy_on_tick on the plugin's root context (§8.5), for the timer the
 * plugin asked for (pw_host_timer_ops.set_tick). Rebuilds a dead VM first
 * (its plugins start again and ask for their periods again). Errors:
 * PW_EDEAD (the VM could not be rebuilt), PW_ETRAP (on_tick trapped: the
 * VM is discarded, the trap logged). */
int pw_plugin_on_tick(pw_plugin *p);

/* Delivers what the store's queues of this VM's vm_id have for this
 * process (its slot): proxy_on_queue_ready(root context, queue_id) on the
 * plugin that registered each queue, once per item enqueued since the last
 * delivery (Envoy's rule), after the store's lock is released. Call it
 * when woken (pw_host_shared_ops.queue_ready). Returns the number of
 * callbacks made, or a negative PW_E* code (PW_ETRAP: one trapped; the
 * deliveries it did not make are due again, for the next call). */
int pw_vm_deliver_queues(pw_vm *vm);

/* The answer of HTTP call `token` (§3.3 "HTTP callouts", §8.9). */
typedef struct pw_http_response {
    const pw_kv *headers; /* ":status" first; names lower-case */
    size_t nheaders;
    pw_str body;
    const pw_kv *trailers;
    size_t ntrailers;
} pw_http_response;

/* Delivers the answer of HTTP call `token` (pw_host_http_call_fn):
 * proxy_on_http_call_response(root context, token, headers, body size,
 * trailers), during which the plugin reads them as
 * HttpCallResponseHeaders / HttpCallResponseBody / HttpCallResponseTrailers
 * and proxy_get_status answers 0, "". resp NULL: the call failed
 * (connect error, reset, timeout, answer too large): the callback gets
 * (root, token, 0, 0, 0), proxy_get_status answers 11 (BrokenConnection,
 * as Envoy) and `reason` ("timeout", ...; the embedder also logs it). The
 * token is spent either way. Call it from the event loop, never from
 * inside a plugin call (PW_EINVAL). Returns PW_OK (delivered, or the token
 * is not an outstanding call of this VM: a call cancelled meanwhile is
 * dropped silently), PW_EDEAD (the VM is dead: nothing delivered), or
 * PW_ETRAP (the callback trapped; the VM is dead and its streams failed,
 * announced as usual). The strings need only live during the call. */
int pw_vm_http_call_response(pw_vm *vm, uint32_t token, const pw_http_response *resp,
                             pw_str reason);

/* One event of gRPC call or stream `token` (pw_host_grpc_call_fn). */
typedef enum pw_grpc_event_kind {
    PW_GRPC_INITIAL_METADATA,  /* metadata: the response headers, no pseudo-headers */
    PW_GRPC_MESSAGE,           /* message: one message, without its 5-byte frame */
    PW_GRPC_TRAILING_METADATA, /* metadata: the trailers */
    PW_GRPC_CLOSE              /* status (grpc-status, 0..16), message: grpc-message;
                                  the last event of the token */
} pw_grpc_event_kind;

typedef struct pw_grpc_event {
    pw_grpc_event_kind kind;
    const pw_kv *metadata;
    size_t nmetadata;
    pw_str message;
    uint32_t status;
} pw_grpc_event;

/* Delivers one event: proxy_on_grpc_receive_initial_metadata /
 * _receive / _receive_trailing_metadata / _close(root context, token, n),
 * with the metadata readable as GrpcReceiveInitialMetadata /
 * GrpcReceiveTrailingMetadata, the message as GrpcReceiveBuffer, and
 * the close's status and message through proxy_get_status. A failure of
 * the embedder's own (connect error, deadline, reset) is a PW_GRPC_CLOSE
 * with a gRPC status (14 Unavailable, 4 DeadlineExceeded, ...). After
 * PW_GRPC_CLOSE the token is spent. Returns as pw_vm_http_call_response. */
int pw_vm_grpc_event(pw_vm *vm, uint32_t token, const pw_grpc_event *ev);

/* Outstanding calls of the VM (HTTP and gRPC): for tests and metrics. */
size_t pw_vm_callouts(const pw_vm *vm);

/* Outstanding calls (HTTP and gRPC) made by stream context s itself: a
 * stream paused while it waits for one has something that will wake it.
 * 0 for NULL. */
size_t pw_stream_callouts(const pw_stream *s);

/* ------------------------------------------------------------------ stream */

/* What the embedder must do after a stream callback (§8.7). */
typedef enum pw_action {
    PW_ACTION_CONTINUE = 0, /* go on with the next filter / phase */
    /* Stop until the plugin continues this direction
     * (PW_PENDING_CONTINUE_*). From a body callback: keep buffering the
     * body and call the body callback again with the accumulated size when
     * more arrives or at end of stream (StopIterationAndBuffer /
     * Watermark). */
    PW_ACTION_PAUSE = 1,
    PW_ACTION_LOCAL_RESPONSE = 2, /* answer with pw_stream_local_response() */
    PW_ACTION_ERROR = 3, /* the plugin trapped or its VM is dead: fail closed */
    /* From a body callback only: stop without buffering this chunk
     * (StopIterationNoBuffer); it is passed on when the stream resumes. */
    PW_ACTION_PAUSE_NO_BUFFER = 4,
    /* The plugin called proxy_close_stream during the callback: reset the
     * stream (HTTP: close the connection without a response). Wins over
     * everything else the callback asked or returned. */
    PW_ACTION_CLOSE = 5
} pw_action;

/* A local response requested with proxy_send_local_response (§8.8).
 * Memory owned by the stream, valid until pw_stream_free. */
typedef struct pw_local_response {
    uint32_t status;     /* HTTP status code */
    pw_str details;      /* response code details (may be empty) */
    pw_str body;         /* may be empty */
    pw_kv *headers;      /* additional headers */
    size_t nheaders;
    int32_t grpc_status; /* -1: none; 0..16: add grpc-status */
} pw_local_response;

/* Creates the stream context (on_context_create(id, root_id)). `stream` is
 * the embedder's per-stream pointer handed back to every pw_host_ops hook.
 * Recovers a dead VM first (pw_vm_recover). Objects are reused from a
 * per-VM free list. Errors: PW_ENOMEM, PW_EDEAD (recovery failed), PW_ETRAP. */
int pw_stream_new(pw_plugin *p, void *stream, pw_stream **out, char *err,
                  size_t errlen);

/* The same for a TCP connection (a network filter's stream context, §8.3):
 * its events are PW_ON_NEW_CONNECTION, PW_ON_DOWNSTREAM_DATA, ...; its
 * buffers DownstreamData and UpstreamData (pw_host_network_ops); its
 * stream types for proxy_continue_stream / proxy_close_stream Downstream
 * (2) and Upstream (3); pw_stream_free calls on_done, on_log, on_delete
 * (Envoy's order for connections). */
int pw_stream_new_tcp(pw_plugin *p, void *stream, pw_stream **out, char *err,
                      size_t errlen);

/* proxy_on_request_headers / proxy_on_response_headers (nheaders includes
 * pseudo-headers; end_of_stream 0/1). On PW_ACTION_ERROR the trap has been
 * logged through ops->log->log with the plugin name. */
pw_action pw_stream_on_request_headers(pw_stream *s, uint32_t nheaders,
                                       int end_of_stream);
pw_action pw_stream_on_response_headers(pw_stream *s, uint32_t nheaders,
                                        int end_of_stream);

/* proxy_on_request_body / proxy_on_response_body: body_size is the size of
 * the body buffer the embedder exposes now (the chunk, or all of it so far
 * when buffering), end_of_stream 0/1. */
pw_action pw_stream_on_request_body(pw_stream *s, size_t body_size,
                                    int end_of_stream);
pw_action pw_stream_on_response_body(pw_stream *s, size_t body_size,
                                     int end_of_stream);
/* proxy_on_request_trailers / proxy_on_response_trailers. */
pw_action pw_stream_on_request_trailers(pw_stream *s, uint32_t ntrailers);
pw_action pw_stream_on_response_trailers(pw_stream *s, uint32_t ntrailers);

/* The local response requested during the last callback, or from another
 * context since (PW_PENDING_LOCAL_RESPONSE), or NULL. Cleared when the
 * next callback of the stream starts (apply it first). */
const pw_local_response *pw_stream_local_response(const pw_stream *s);

/* Pending actions of a stream (bits). A callback's own result already
 * applies what was asked during it: PW_ACTION_CLOSE for a close, and
 * PW_ACTION_CONTINUE for a Pause whose direction the plugin continued
 * during the same callback (that bit is then taken). What is left waits
 * here until the embedder takes it: a continue of the other direction, or
 * of what an earlier callback paused, and whatever came from elsewhere
 * (announced by pw_host_stream_ops.wake). A continue of a direction that
 * is not paused means nothing: the embedder takes and drops it. */
#define PW_PENDING_CONTINUE_REQUEST 0x01u  /* proxy_continue_stream(0),
                                              proxy_continue_request */
#define PW_PENDING_CONTINUE_RESPONSE 0x02u /* proxy_continue_stream(1),
                                              proxy_continue_response */
#define PW_PENDING_CLOSE 0x04u             /* proxy_close_stream (a TCP
                                              stream's either side: the
                                              connection ends) */
#define PW_PENDING_LOCAL_RESPONSE 0x08u    /* pw_stream_local_response() */
#define PW_PENDING_FAILED 0x10u            /* its VM was discarded after a
                                              trap elsewhere: the stream is
                                              dead (PW_ACTION_ERROR from
                                              now on); what it paused will
                                              never be continued */
#define PW_PENDING_CONTINUE_DOWNSTREAM 0x20u /* proxy_continue_stream(2) */
#define PW_PENDING_CONTINUE_UPSTREAM 0x40u   /* proxy_continue_stream(3) */
#define PW_PENDING_ALL 0x7fu

/* The PW_PENDING_* bits set on s, without taking them. */
unsigned pw_stream_pending(const pw_stream *s);
/* Takes the bits of `mask` that are set on s: returns them and clears
 * them. */
unsigned pw_stream_take(pw_stream *s, unsigned mask);

/* What the last callback of s itself returned, before the pending actions
 * were applied to it (PW_ACTION_PAUSE for a Pause that a
 * proxy_continue_stream during the same callback turned into
 * PW_ACTION_CONTINUE), and in *applied (when not NULL) the PW_PENDING_*
 * bits applied to its result. For traces (`pwasm run`) and tests. */
pw_action pw_stream_returned(const pw_stream *s, unsigned *applied);

/* Ends the stream: on_log, on_done, on_delete (Envoy order, §8.2; a TCP
 * stream's is on_done, on_log, on_delete, §8.3), skipped
 * when the VM died since the stream was created; then returns the object to
 * the free list. Safe to call once per pw_stream_new. */
void pw_stream_free(pw_stream *s);

/* ------------------------------------------------------------------- chain */

/* The stream callbacks of §8.2, in the order a stream meets them: HTTP
 * streams (pw_stream_new), then TCP streams (pw_stream_new_tcp, §8.3). */
typedef enum pw_event {
    PW_ON_REQUEST_HEADERS = 0,
    PW_ON_REQUEST_BODY,
    PW_ON_REQUEST_TRAILERS,
    PW_ON_RESPONSE_HEADERS,
    PW_ON_RESPONSE_BODY,
    PW_ON_RESPONSE_TRAILERS,
    /* TCP: proxy_on_new_connection (n, end_of_stream unused): Continue or
     * Pause (until proxy_continue_stream(Downstream)) */
    PW_ON_NEW_CONNECTION,
    /* proxy_on_downstream_data / _upstream_data: n bytes held for that
     * direction (all of them since a Pause), end_of_stream: that side
     * closed its sending half. Pause holds the direction; the callback
     * comes again with the larger size as bytes arrive. */
    PW_ON_DOWNSTREAM_DATA,
    PW_ON_UPSTREAM_DATA,
    /* proxy_on_downstream_connection_close / _upstream_connection_close:
     * n is the proxy_peer_type_t (1 local: nginx closed it; 2 remote: the
     * peer did). No result (PW_ACTION_CONTINUE). */
    PW_ON_DOWNSTREAM_CLOSE,
    PW_ON_UPSTREAM_CLOSE,
    PW_EVENT_COUNT
} pw_event;

/* "on_request_headers", ...; "?" out of range. */
const char *pw_event_name(int event);

/* Calls the callback of `event` (pw_stream_on_*): n is the header or
 * trailer count, the body or data size in bytes, or the peer type of a
 * close; end_of_stream is ignored for trailers and closes. An event of the
 * other kind of stream (an HTTP event on a TCP stream, or the reverse) is
 * PW_ACTION_ERROR, no call. */
pw_action pw_stream_call(pw_stream *s, pw_event event, size_t n, int end_of_stream);

/* What happens to a stream when one of its plugins cannot run: it trapped
 * (or its CPU time ran out), its VM is dead, its stream context could not
 * be created, or it is not available at all (it did not start). */
typedef enum pw_failure_policy {
    PW_FAIL_CLOSED = 0, /* the stream fails: PW_ACTION_ERROR (HTTP: 503) */
    PW_FAIL_OPEN = 1    /* the stream goes on without that plugin */
} pw_failure_policy;

/* One plugin of a chain on one stream. Embedder memory (e.g. the request's
 * pool), zeroed before use; `plugin` and `host_stream` are the embedder's
 * to set, the rest is the chain's. */
typedef struct pw_link {
    /* The plugin. Read when the link has no stream context yet (set it
     * before that call; it may be set late, e.g. once a plugin that failed
     * to start is retried). NULL: the plugin is not available. */
    pw_plugin *plugin;
    void *host_stream; /* the pointer pw_host_ops hooks receive */
    pw_stream *stream; /* its stream context, created on first use */
    unsigned failed;    /* the plugin failed on this stream: skipped */
    unsigned ended;     /* its context was ended (on_log .. on_delete) */
    unsigned discarded; /* its VM died after a trap elsewhere (a
                           PW_PENDING_FAILED taken by pw_chain_take) */
    /* The embedder's: 1 when `policy` is this link's own failure policy
     * (e.g. proxy_wasm ... failure_policy=open); 0 (zeroed): the chain's
     * applies. */
    unsigned has_policy;
    pw_failure_policy policy;
} pw_link;

/* The plugins one stream passes through, in order (e.g. an nginx
 * location's proxy_wasm directives), with the failure policy they share
 * unless a link has its own (pw_link.has_policy).
 * Embedder memory: links points to n links. */
typedef struct pw_chain {
    pw_link *links;
    size_t n;
    pw_failure_policy policy;
    int tcp; /* 1: the links' contexts are TCP stream contexts (pw_stream_new_tcp) */
} pw_chain;

/* Calls `event` on link i of the chain (i < c->n), creating its stream
 * context first if it has none. A link that failed before is skipped:
 * PW_ACTION_CONTINUE, no call. When the plugin cannot run (PW_ACTION_ERROR
 * from the callback, no plugin, no context, its VM taken out by the
 * crash-loop brake), the link is marked failed and the policy (the link's
 * own, else the chain's) answers: PW_ACTION_CONTINUE (open) or
 * PW_ACTION_ERROR (closed); the reason ("plugin \"x\" trapped in proxy_on_request_headers:
 * unreachable executed") is written to why, which is "" when the plugin
 * ran. Else the callback's action (pw_stream_on_*). */
pw_action pw_chain_call(pw_chain *c, size_t i, pw_event event, size_t n, int end_of_stream,
                        char *why, size_t whylen);

/* Link i paused its stream, and its VM was discarded since
 * (PW_PENDING_FAILED): nothing can continue what it holds. The link fails
 * as in pw_chain_call, with a reason that says so: returns
 * PW_ACTION_CONTINUE (open: go on as if it had continued) or
 * PW_ACTION_ERROR (closed). */
pw_action pw_chain_stranded(pw_chain *c, size_t i, char *why, size_t whylen);

/* Link i fails for a reason of the embedder's (e.g. the worker exits
 * while it holds its stream paused): skipped from now on, as in
 * pw_chain_call; the policy (the link's own, else the chain's) answers
 * PW_ACTION_CONTINUE (open) or PW_ACTION_ERROR (closed). */
pw_action pw_chain_fail(pw_chain *c, size_t i);

/* Takes the pending actions of every live link (pw_stream_take with
 * mask) and returns their union: what a wake asked the embedder to look
 * at. *first_local (when not NULL) gets the index of the first link with
 * a PW_PENDING_LOCAL_RESPONSE, or c->n. A link whose PW_PENDING_FAILED is
 * taken gets `discarded` set. */
unsigned pw_chain_take(pw_chain *c, unsigned mask, size_t *first_local);

/* Ends the stream contexts of the chain in order (pw_stream_free: on_log,
 * on_done, on_delete; a TCP stream's on_done comes first), each once. late: also give a context to
 * each link the stream never reached (skipped by a local response or a
 * failure before it), as Envoy does at access-log time, so that a logging
 * plugin sees every stream; links that failed are left out. */
void pw_chain_end(pw_chain *c, int late);

/* The VM's linear memory (read-only for the embedder): base and size in
 * bytes, or NULL and 0 while the VM is dead. Valid until the next call into
 * the VM; usable from any pw_host_ops hook. */
const uint8_t *pw_vm_memory(const pw_vm *vm, size_t *size);

/* Text of the last trap on this VM ("unreachable executed in
 * proxy_on_request_headers"), or "" if none. */
const char *pw_vm_last_error(const pw_vm *vm);

#ifdef __cplusplus
}
#endif

#endif /* PWASM_H */
