/*
 * ngx_proxy_wasm.h -- what any nginx subsystem that runs Proxy-Wasm plugins
 * needs, HTTP or not (ngx_proxy_wasm_*.c next to this file):
 *
 *   ngx_proxy_wasm_conf.c   proxy_wasm_module, proxy_wasm_cache_dir, the
 *                           proxy_wasm chain elements and the
 *                           proxy_wasm_service root contexts; loading the
 *                           modules and the canary at configuration time
 *   ngx_proxy_wasm_vm.c     per worker: the VMs, plugins (root contexts);
 *                           the log host hooks
 *   ngx_proxy_wasm_props.c  Envoy's property encodings; the properties of
 *                           the connection and the node (plugin_* are
 *                           answered by the library)
 *   ngx_proxy_wasm_shm.c    proxy_wasm_shm: the shared-memory zone of the
 *                           store (shared data, shared queues, metrics),
 *                           the wake-up channels of on_queue_ready; the
 *                           shared host hooks
 *   ngx_proxy_wasm_timers.c per worker: the tick timer of each root
 *                           context; the timer host hook
 *   ngx_proxy_wasm_target.c the targets of callouts: upstream{} blocks,
 *                           literals of proxy_wasm_callout_allow; peers
 *   ngx_proxy_wasm_callout.c per worker: the HTTP client of
 *                           proxy_http_call, kept connections; the HTTP
 *                           callout host hooks and the cancel of both
 *   ngx_proxy_wasm_grpc.c   per worker: gRPC callouts, an HTTP/2 client
 *                           (libnghttp2) on nginx connections; the gRPC
 *                           callout host hooks
 *
 * Nothing here refers to ngx_http_* but ngx_proxy_wasm_target.c and
 * ngx_proxy_wasm_callout.c, which use http's upstream{} blocks and
 * response parsers: a stream subsystem module (a second .so: Debian builds
 * nginx's stream subsystem as its own dynamic module) compiles these files
 * too. What is the subsystem's comes through
 * ngx_proxy_wasm_subsys_t.
 */

#ifndef _NGX_PROXY_WASM_H_INCLUDED_
#define _NGX_PROXY_WASM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <pwasm.h>


typedef struct ngx_proxy_wasm_mod_s     ngx_proxy_wasm_mod_t;
typedef struct ngx_proxy_wasm_conf_s    ngx_proxy_wasm_conf_t;
typedef struct ngx_proxy_wasm_tick_s    ngx_proxy_wasm_tick_t;
typedef struct ngx_proxy_wasm_target_s  ngx_proxy_wasm_target_t;
typedef struct ngx_proxy_wasm_peer_s    ngx_proxy_wasm_peer_t;
typedef struct ngx_proxy_wasm_callout_s ngx_proxy_wasm_callout_t;


/* What a subsystem gives the common code. */
typedef struct {
    const pw_host_ops               *ops;        /* hooks of its VMs, with
                                                    the common ones below */
    /* the log of the request (session) stream context `stream` belongs
     * to; NULL once it is gone (the module's log is used) */
    ngx_log_t                     *(*stream_log)(void *stream);
} ngx_proxy_wasm_subsys_t;


/* One proxy_wasm_module: a compiled module and, in a worker, its VM. */
struct ngx_proxy_wasm_mod_s {
    ngx_str_t                        name;       /* NUL-terminated */
    ngx_str_t                        path;       /* absolute, NUL-terminated */
    ngx_str_t                        vm_id;
    ngx_str_t                        vm_config;
    ngx_str_t                        file;       /* where it was declared */
    ngx_uint_t                       line;
    ngx_str_t                        sha256;     /* the file's digest (hex,
                                                    NUL-terminated) or
                                                    empty; precompiled:
                                                    always set */
    unsigned                         precompiled:1;
    unsigned                         caps_set:1; /* allow= or deny= given */
    uint32_t                         caps;       /* capabilities allowed
                                                    (pw_capability_parse);
                                                    PW_CAP_ALL by default */

    pw_module                       *module;     /* loaded in the master */
    ngx_uint_t                       cbs;        /* callbacks it exports that
                                                    the subsystem asks for */
    const ngx_proxy_wasm_subsys_t   *subsys;
    /* its limits (ngx_proxy_wasm_limit_param); zeroes: the defaults */
    pw_limits                        limits;
    uint32_t                         max_call_ms; /* UINT32_MAX: none */
    uint64_t                         max_memory;  /* bytes */
    pw_vm                           *vm;         /* per worker */
    ngx_proxy_wasm_mod_t            *owner;      /* holds the VM it uses:
                                                    itself, or an earlier
                                                    declaration of the same
                                                    (file, vm_id, vm_config) */
    ngx_log_t                       *log;        /* plugin logs, no request */
    ngx_proxy_wasm_conf_t           *conf;       /* declared in: the store,
                                                    channels and timers the
                                                    host hooks use */
};


/* One distinct (module, root_id, configuration) of the chains: a root
 * context; or one proxy_wasm_service (never shared with a chain). */
typedef struct {
    ngx_proxy_wasm_mod_t            *mod;
    ngx_str_t                        root_id;
    ngx_str_t                        config;
    pw_plugin                       *plugin;     /* per worker */

    unsigned                         service:1;
    unsigned                         singleton:1; /* a service of worker 0
                                                     only */
    unsigned                         warned_pseudo:1;
    unsigned                         warned_local:1;
} ngx_proxy_wasm_plugin_t;


/* One proxy_wasm directive: an element of a chain (an HTTP location's);
 * or one proxy_wasm_service (service set, in no chain). */
typedef struct {
    ngx_str_t                        name;
    ngx_str_t                        root_id;
    ngx_str_t                        config;
    ngx_str_t                        file;
    ngx_uint_t                       line;
    ngx_proxy_wasm_plugin_t         *plugin;     /* resolved at init */
    ngx_int_t                        failure;    /* failure_policy=: a
                                                    pw_failure_policy, or
                                                    -1: the chain's */
    unsigned                         service:1;
    unsigned                         singleton:1;
} ngx_proxy_wasm_filter_t;


/* The wake-up channel of one metric slot (a worker, or slot 0: a single
 * process): a non-blocking pipe made in the master before fork. */
typedef struct {
    ngx_fd_t                         fd[2];      /* read, write; -1: closed */
} ngx_proxy_wasm_wake_t;


/* The subsystems that may share the store's zone (ngx_proxy_wasm_shm_add):
 * each has its own range of the store's metric slots. */
#define NGX_PROXY_WASM_SHM_HTTP      0
#define NGX_PROXY_WASM_SHM_STREAM    1
#define NGX_PROXY_WASM_SHM_NSUBSYS   2

/* Runs proxy_on_queue_ready on the VMs of wc, a subsystem's configuration,
 * in this worker (each .so's own function, on its own objects). */
typedef void (*ngx_proxy_wasm_deliver_pt)(ngx_proxy_wasm_conf_t *wc,
    ngx_log_t *log);
/* Opens wc's own store handle on the store at `root` of `zone` (the
 * owner's init callback calls the other module's). */
typedef ngx_int_t (*ngx_proxy_wasm_attach_pt)(ngx_proxy_wasm_conf_t *wc,
    ngx_shm_zone_t *zone, void *root);

/*
 * The data of the store's zone, one per configuration, shared by the
 * subsystems that declare the zone: the http and the stream module, two
 * .so files with a copy each of this code and of the library. Plain data
 * and function pointers only: a module reads it, and calls what the other
 * module registered; it never passes its own objects to the other's code.
 * `stamp` first: the second module compares it before reading the rest.
 */
typedef struct {
    char                             stamp[48];  /* NUL-terminated build
                                                    stamp of the first */
    ngx_uint_t                       owner;      /* subsystem of the zone's
                                                    init callback */
    ngx_uint_t                       declared;   /* bit per subsystem */

    /* proxy_wasm_shm, from whichever block gives it (size 0: none) */
    size_t                           size;
    ngx_uint_t                       evict;
    ngx_str_t                        size_file;
    ngx_uint_t                       size_line;
    ngx_array_t                      ttl;        /* pw_store_ttl: the
                                                    proxy_wasm_shm_ttl
                                                    rules of both blocks */
    ngx_array_t                      quota;      /* pw_store_quota: the
                                                    proxy_wasm_shm_quota
                                                    of both blocks */
    ngx_uint_t                       queues;     /* a subsystem has
                                                    modules: wake-ups */

    ngx_proxy_wasm_conf_t           *conf[NGX_PROXY_WASM_SHM_NSUBSYS];
    ngx_proxy_wasm_deliver_pt        deliver[NGX_PROXY_WASM_SHM_NSUBSYS];
    ngx_proxy_wasm_attach_pt         attach[NGX_PROXY_WASM_SHM_NSUBSYS];

    ngx_uint_t                       nproc;      /* process slots: the
                                                    store's slots / 2 */
    ngx_proxy_wasm_wake_t           *wake;       /* nproc pipes */
} ngx_proxy_wasm_shm_t;


/* Callouts: where plugins may call (ngx_proxy_wasm_target.c) and how the
 * HTTP client behaves (ngx_proxy_wasm_callout.c). Directives of http{}. */
typedef struct {
    ngx_array_t                     *allow;      /* ..._allow_t:
                                                    proxy_wasm_callout_allow */
    ngx_array_t                     *targets;    /* ..._target_t *: every
                                                    upstream{} block and
                                                    allowed literal */
    void                            *http_core;  /* http{}'s
                                                    ngx_http_core_loc_conf_t:
                                                    its resolver */
    ngx_msec_t                       connect_timeout;
    size_t                           header_max; /* response header bytes */
    size_t                           body_max;   /* response body bytes */
    ngx_uint_t                       keepalive;  /* idle connections kept
                                                    per worker */
    ngx_msec_t                       keepalive_timeout;
    ngx_flag_t                       ssl_verify;
    ngx_flag_t                       ssl_server_name;
    ngx_str_t                        ssl_trusted; /* CA file; data NULL:
                                                     the system's */
    void                            *ssl;        /* ngx_ssl_t *: the client
                                                    context, made when a
                                                    worker first needs it */

    /* per worker: calls in flight and idle connections */
    ngx_queue_t                      calls;
    ngx_queue_t                      idle;
    ngx_uint_t                       nidle;
    unsigned                         ready:1;    /* the queues are set */
} ngx_proxy_wasm_callout_conf_t;


/* The subsystem's main configuration holds one; its commands give its
 * offset to the directive handlers below (cmd->offset). */
struct ngx_proxy_wasm_conf_s {
    ngx_array_t                      mods;       /* ..._mod_t * */
    ngx_array_t                      plugins;    /* ..._plugin_t * */
    ngx_array_t                      filters;    /* ..._filter_t * */
    ngx_str_t                        cache_dir;  /* data NULL: not set */
    ngx_msec_t                       compile_timeout;
    size_t                           compile_memory;
    size_t                           module_max_size;
    pw_runtime                      *runtime;
    const ngx_proxy_wasm_subsys_t   *subsys;
    ngx_cycle_t                     *cycle;      /* the configuration's */

    /* the store: proxy_wasm_shm */
    size_t                           shm_size;
    ngx_uint_t                       shm_evict;  /* 1: lru, 0: none */
    ngx_str_t                        shm_file;   /* where it was set */
    ngx_uint_t                       shm_line;
    ngx_array_t                     *shm_ttl;    /* pw_store_ttl:
                                                    proxy_wasm_shm_ttl */
    ngx_array_t                     *shm_quota;  /* pw_store_quota:
                                                    proxy_wasm_shm_quota */
    ngx_shm_zone_t                  *shm_zone;
    pw_store_mem                     shm_mem;    /* over the zone's slab pool */
    pw_store                        *store;      /* this process's handle;
                                                    NULL: none (hostcalls
                                                    answer Unimplemented) */
    ngx_uint_t                       slots;      /* process slots:
                                                    workers + 1 */
    ngx_proxy_wasm_shm_t            *shm;        /* the zone's data */
    ngx_uint_t                       shm_subsys; /* NGX_PROXY_WASM_SHM_* */

    /* the wake-up channels of on_queue_ready, one per slot */
    ngx_proxy_wasm_wake_t           *wake;
    ngx_uint_t                       nwake;
    ngx_connection_t                *wake_conn;  /* this worker's read end */

    /* per worker: the tick timers (ngx_proxy_wasm_timers.c) */
    ngx_proxy_wasm_tick_t           *ticks;

    ngx_proxy_wasm_callout_conf_t    callout;

    /* gRPC callouts (ngx_proxy_wasm_grpc.c) */
    size_t                           grpc_max_message;

    unsigned                         running:1;  /* a worker (or single
                                                    process) runs plugins:
                                                    timers may be armed */
};


/*
 * Hidden: not exported from the .so. nginx loads dynamic modules with
 * RTLD_GLOBAL, so an exported name would bind a later module's calls (a
 * stream module built from ../common) to the first module's copy; and
 * calls between our files then skip the PLT.
 */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif

/* ngx_proxy_wasm_conf.c */
ngx_int_t ngx_proxy_wasm_conf_init(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    const ngx_proxy_wasm_subsys_t *subsys);
char *ngx_proxy_wasm_module_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_proxy_wasm_cache_dir_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_proxy_wasm_filter_directive(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc, ngx_array_t **chain);
char *ngx_proxy_wasm_service_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_proxy_wasm_resolve(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc);
ngx_int_t ngx_proxy_wasm_load(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc);
ngx_int_t ngx_proxy_wasm_pstr(ngx_pool_t *pool, ngx_str_t *dst, u_char *src,
    size_t len);
void ngx_proxy_wasm_link_policy(pw_link *link,
    ngx_proxy_wasm_filter_t *filter);

/* ngx_proxy_wasm_vm.c */
pw_plugin *ngx_proxy_wasm_plugin(ngx_proxy_wasm_plugin_t *p, ngx_log_t *log);
ngx_int_t ngx_proxy_wasm_init_process(ngx_cycle_t *cycle,
    ngx_proxy_wasm_conf_t *wc);
void ngx_proxy_wasm_exit_process(ngx_cycle_t *cycle,
    ngx_proxy_wasm_conf_t *wc);
void ngx_proxy_wasm_host_log(void *host, void *stream, pw_str plugin_name,
    proxy_log_level_t level, pw_str msg);
proxy_log_level_t ngx_proxy_wasm_host_log_level(void *host);

/* ngx_proxy_wasm_shm.c */
char *ngx_proxy_wasm_shm_ttl_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_proxy_wasm_shm_quota_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_proxy_wasm_shm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_proxy_wasm_shm_add(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_uint_t subsys);
ngx_int_t ngx_proxy_wasm_scratch_store_open(ngx_proxy_wasm_conf_t *wc,
    ngx_pool_t *pool, ngx_log_t *log);
void ngx_proxy_wasm_scratch_store_close(ngx_proxy_wasm_conf_t *wc);
ngx_int_t ngx_proxy_wasm_shm_init_module(ngx_cycle_t *cycle,
    ngx_proxy_wasm_conf_t *wc);
ngx_int_t ngx_proxy_wasm_shm_init_process(ngx_cycle_t *cycle,
    ngx_proxy_wasm_conf_t *wc);
void ngx_proxy_wasm_shm_exit_process(ngx_cycle_t *cycle,
    ngx_proxy_wasm_conf_t *wc);
pw_store *ngx_proxy_wasm_host_store(void *host);
void ngx_proxy_wasm_host_queue_ready(void *host, uint32_t owner_slot);

/* ngx_proxy_wasm_timers.c */
void ngx_proxy_wasm_host_set_tick(void *host, pw_plugin *plugin,
    uint32_t period_ms);
void ngx_proxy_wasm_timers_exit_process(ngx_proxy_wasm_conf_t *wc);

/* ngx_proxy_wasm_target.c: the targets of callouts (see its header
 * comment for the contract) */
char *ngx_proxy_wasm_callout_allow_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_proxy_wasm_targets_init(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc, ngx_uint_t http);
ngx_int_t ngx_proxy_wasm_targets_upstreams(ngx_pool_t *pool,
    ngx_proxy_wasm_conf_t *wc, void *upstream_main_conf);
ngx_int_t ngx_proxy_wasm_target_find(ngx_proxy_wasm_mod_t *mod,
    const char *plugin, pw_str name, ngx_proxy_wasm_target_t **target,
    ngx_log_t *log);
ngx_str_t *ngx_proxy_wasm_target_name(ngx_proxy_wasm_target_t *t);
ngx_proxy_wasm_peer_t *ngx_proxy_wasm_peer_create(
    ngx_proxy_wasm_target_t *t, ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_proxy_wasm_peer_resolve(ngx_proxy_wasm_peer_t *p,
    void (*handler)(void *data, ngx_int_t rc), void *data);
void ngx_proxy_wasm_peer_init(ngx_proxy_wasm_peer_t *p,
    ngx_peer_connection_t *pc);
void ngx_proxy_wasm_peer_done(ngx_proxy_wasm_peer_t *p);

/* ngx_proxy_wasm_grpc.c */
proxy_status_t ngx_proxy_wasm_host_grpc_call(void *host, pw_plugin *plugin,
    uint32_t token, const pw_grpc_callout *call);
proxy_status_t ngx_proxy_wasm_host_grpc_send(void *host, uint32_t token,
    pw_str message, int end_of_stream);
proxy_status_t ngx_proxy_wasm_host_grpc_close(void *host, uint32_t token);
ngx_int_t ngx_proxy_wasm_grpc_cancel(void *host, uint32_t token);
void ngx_proxy_wasm_grpc_exit_process(ngx_proxy_wasm_conf_t *wc);

/* ngx_proxy_wasm_callout.c: the HTTP client of proxy_http_call */
void ngx_proxy_wasm_callout_conf_init(ngx_proxy_wasm_conf_t *wc);
ngx_int_t ngx_proxy_wasm_callout_init_conf(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc, ngx_uint_t http);
proxy_status_t ngx_proxy_wasm_host_http_call(void *host, pw_plugin *plugin,
    uint32_t token, const pw_http_callout *call);
void ngx_proxy_wasm_host_callout_cancel(void *host, uint32_t token);
void ngx_proxy_wasm_callout_exit_process(ngx_proxy_wasm_conf_t *wc);
extern const pw_host_callout_ops  ngx_proxy_wasm_callout_ops;

/* ngx_proxy_wasm_props.c */
proxy_status_t ngx_proxy_wasm_prop_int(ngx_pool_t *pool, int64_t n,
    pw_str *value);
proxy_status_t ngx_proxy_wasm_prop_bool(ngx_uint_t b, pw_str *value);
proxy_status_t ngx_proxy_wasm_prop_str(ngx_str_t *s, pw_str *value);
proxy_status_t ngx_proxy_wasm_prop_pairs(ngx_pool_t *pool, pw_kv *kv,
    size_t n, const pw_str *rest, size_t nrest, pw_str *value);
proxy_status_t ngx_proxy_wasm_prop_addr(ngx_pool_t *pool, struct sockaddr *sa,
    socklen_t socklen, ngx_uint_t port, pw_str *value);
proxy_status_t ngx_proxy_wasm_property(ngx_pool_t *pool, ngx_connection_t *c,
    const pw_str *p, size_t n, pw_str *value);

#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


static ngx_inline pw_str
ngx_proxy_wasm_pw(ngx_str_t *s)
{
    pw_str  p;

    p.data = (const char *) s->data;
    p.len = s->len;

    return p;
}


static ngx_inline ngx_int_t
ngx_proxy_wasm_key_is(pw_str key, u_char *name, size_t len)
{
    return key.len == len
           && ngx_strncasecmp((u_char *) key.data, name, len) == 0;
}


#endif /* _NGX_PROXY_WASM_H_INCLUDED_ */
