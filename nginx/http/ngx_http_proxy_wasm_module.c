/*
 * ngx_http_proxy_wasm_module -- runs Proxy-Wasm plugins in nginx's HTTP
 * subsystem on top of the pwasm host library (include/pwasm.h). This file
 * has the module, its directives and configuration, the per-request state
 * and the log phase; ngx_http_proxy_wasm.h lists the module's other files,
 * and what does not depend on HTTP is in ../common (ngx_proxy_wasm.h).
 *
 * Configuration time (master process): every proxy_wasm_module is compiled
 * and loaded once per configuration cycle, and every distinct plugin is
 * started once on a throw-away VM (a canary), so that `nginx -t` refuses a
 * bad module or a plugin whose on_vm_start/on_configure fails
 * (common/ngx_proxy_wasm_conf.c).
 *
 * Worker processes: one pw_vm per worker per (module file, vm_id), one
 * pw_plugin (root context) per distinct (module, root_id, configuration),
 * shared by every location using it (common/ngx_proxy_wasm_vm.c). Per
 * request, one pw_stream per plugin of the location's chain:
 *
 *   rewrite phase        on_request_headers, in chain order; then, when a
 *                        plugin exports it, nginx reads the body through
 *   request body filter  on_request_body, chunk by chunk
 *                        (ngx_http_proxy_wasm_request.c)
 *   header filter        on_response_headers (headers then held until the
 *   body filter          first on_response_body results went through)
 *                        on_response_trailers with the last buffer
 *                        (ngx_http_proxy_wasm_response.c)
 *   log phase            on_log, on_done, on_delete (pw_stream_free)
 *
 * A body callback says end_of_stream with the last data when the length is
 * known (Content-Length; nginx passes its last buffer apart, later), with an
 * empty last call when only that buffer tells the end (chunked).
 *
 * Pause holds a direction until proxy_continue_stream: the rewrite handler
 * returns NGX_DONE and is run again, the filters keep (copy) what they are
 * given (ngx_http_proxy_wasm_body.c) and set r->buffered. Actions a plugin
 * asks for (continue, close, local response) are kept by the library on
 * the stream context (pw_stream_pending): a callback's result applies
 * those asked during it, the rest are taken from a posted event that the
 * library's wake hook posts (ngx_http_proxy_wasm_control.c). Header maps
 * are r->headers_in / r->headers_out / trailers, kept consistent with
 * nginx's shortcut pointers (ngx_http_proxy_wasm_headers.c). A trap
 * answers 503 (fail closed) unless proxy_wasm_failure_policy is "open".
 * When a trap elsewhere discards the VM of a stream that holds its request
 * paused (PW_PENDING_FAILED), which nothing can continue any more, the
 * request gets the failure policy from that event
 * (ngx_http_proxy_wasm_stranded).
 *
 * State across requests and workers: shared data, shared queues and
 * metrics live in the store of the proxy_wasm_shm zone, whose queue
 * wake-ups reach the owning worker through a pipe
 * (common/ngx_proxy_wasm_shm.c); ticks are per-worker nginx timers
 * (common/ngx_proxy_wasm_timers.c); proxy_wasm_service starts root
 * contexts that no request uses; proxy_wasm_metrics serves the metrics
 * (ngx_http_proxy_wasm_metrics.c). This module only wires them: the host
 * hooks below, the zone's name and owner, the location handler.
 * See docs/DIRECTIVES.md and docs/PROPERTIES.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


static ngx_int_t ngx_http_proxy_wasm_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_proxy_wasm_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_proxy_wasm_metrics_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_proxy_wasm_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_proxy_wasm_init_process(ngx_cycle_t *cycle);
static void ngx_http_proxy_wasm_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r);
static ngx_log_t *ngx_http_proxy_wasm_stream_log(void *stream);


static ngx_conf_enum_t  ngx_http_proxy_wasm_failure_policies[] = {
    { ngx_string("closed"), NGX_HTTP_PROXY_WASM_FAIL_CLOSED },
    { ngx_string("open"), NGX_HTTP_PROXY_WASM_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_proxy_wasm_commands[] = {

    { ngx_string("proxy_wasm_module"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_proxy_wasm_module_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_cache_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_cache_dir_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_compile_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.compile_timeout),
      NULL },

    { ngx_string("proxy_wasm_compile_memory"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.compile_memory),
      NULL },

    { ngx_string("proxy_wasm_module_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.module_max_size),
      NULL },

    { ngx_string("proxy_wasm_shm"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_proxy_wasm_shm_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_shm_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_proxy_wasm_shm_ttl_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_shm_quota"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_proxy_wasm_shm_quota_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_service"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_proxy_wasm_service_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_grpc_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.grpc_max_message),
      NULL },

    { ngx_string("proxy_wasm_callout_allow"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_proxy_wasm_callout_allow_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_callout_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.callout.connect_timeout),
      NULL },

    { ngx_string("proxy_wasm_callout_max_response_headers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.callout.header_max),
      NULL },

    { ngx_string("proxy_wasm_callout_max_response_body"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.callout.body_max),
      NULL },

    { ngx_string("proxy_wasm_callout_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.callout.keepalive),
      NULL },

    { ngx_string("proxy_wasm_callout_keepalive_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t,
               wasm.callout.keepalive_timeout),
      NULL },

    { ngx_string("proxy_wasm_callout_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.callout.ssl_verify),
      NULL },

    { ngx_string("proxy_wasm_callout_ssl_server_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t,
               wasm.callout.ssl_server_name),
      NULL },

    { ngx_string("proxy_wasm_callout_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, wasm.callout.ssl_trusted),
      NULL },

    { ngx_string("proxy_wasm_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_proxy_wasm_metrics_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_proxy_wasm_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_failure_policy"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, failure),
      &ngx_http_proxy_wasm_failure_policies },

    { ngx_string("proxy_wasm_request_body_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, limit),
      NULL },

    { ngx_string("proxy_wasm_response_body_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, limit) + sizeof(size_t),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_proxy_wasm_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_proxy_wasm_postconfiguration, /* postconfiguration */

    ngx_http_proxy_wasm_create_main_conf,  /* create main configuration */
    ngx_http_proxy_wasm_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_proxy_wasm_create_loc_conf,   /* create location configuration */
    ngx_http_proxy_wasm_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_proxy_wasm_module = {
    NGX_MODULE_V1,
    &ngx_http_proxy_wasm_module_ctx,       /* module context */
    ngx_http_proxy_wasm_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_proxy_wasm_init_module,       /* init module */
    ngx_http_proxy_wasm_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_proxy_wasm_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static const pw_host_log_ops  ngx_http_proxy_wasm_log_ops = {
    .log = ngx_proxy_wasm_host_log,
    .log_level = ngx_proxy_wasm_host_log_level
};


static const pw_host_property_ops  ngx_http_proxy_wasm_property_ops = {
    .get_property = ngx_http_proxy_wasm_get_property,
    .set_property = ngx_http_proxy_wasm_set_property
};


static const pw_host_http_ops  ngx_http_proxy_wasm_http_ops = {
    .map_pairs = ngx_http_proxy_wasm_map_pairs,
    .map_get = ngx_http_proxy_wasm_map_get,
    .map_add = ngx_http_proxy_wasm_map_add,
    .map_replace = ngx_http_proxy_wasm_map_replace,
    .map_remove = ngx_http_proxy_wasm_map_remove,
    .map_set_pairs = ngx_http_proxy_wasm_map_set_pairs,
    .body_size = ngx_http_proxy_wasm_body_size,
    .body_copy = ngx_http_proxy_wasm_body_copy,
    .body_replace = ngx_http_proxy_wasm_body_replace
};


static const pw_host_stream_ops  ngx_http_proxy_wasm_stream_ops = {
    .wake = ngx_http_proxy_wasm_wake
};


static const pw_host_timer_ops  ngx_http_proxy_wasm_timer_ops = {
    .set_tick = ngx_proxy_wasm_host_set_tick
};


static const pw_host_shared_ops  ngx_http_proxy_wasm_shared_ops = {
    .store = ngx_proxy_wasm_host_store,
    .queue_ready = ngx_proxy_wasm_host_queue_ready
};


/* the host hooks, by area; no clock area: clock_gettime */
static const pw_host_ops  ngx_http_proxy_wasm_ops = {
    .size = sizeof(pw_host_ops),
    .log = &ngx_http_proxy_wasm_log_ops,
    .property = &ngx_http_proxy_wasm_property_ops,
    .http = &ngx_http_proxy_wasm_http_ops,
    .stream = &ngx_http_proxy_wasm_stream_ops,
    .timers = &ngx_http_proxy_wasm_timer_ops,
    .shared = &ngx_http_proxy_wasm_shared_ops,
    .callouts = &ngx_proxy_wasm_callout_ops
};


static const ngx_proxy_wasm_subsys_t  ngx_http_proxy_wasm_subsys = {
    &ngx_http_proxy_wasm_ops,
    ngx_http_proxy_wasm_stream_log
};


/* ------------------------------------------------------ configuration */


static void *
ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    if (ngx_proxy_wasm_conf_init(cf, &pmcf->wasm, &ngx_http_proxy_wasm_subsys)
        != NGX_OK)
    {
        return NULL;
    }

    pmcf->request_id_index = NGX_ERROR;

    return pmcf;
}


static char *
ngx_http_proxy_wasm_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_proxy_wasm_main_conf_t *pmcf = conf;

    ngx_str_t               name;
    ngx_uint_t              i;
    ngx_proxy_wasm_mod_t  **mods, *mod;

    if (pmcf->wasm.mods.nelts == 0 && pmcf->wasm.filters.nelts == 0
        && pmcf->wasm.shm_size == NGX_CONF_UNSET_SIZE
        && pmcf->wasm.shm_ttl == NULL && pmcf->wasm.shm_quota == NULL && !pmcf->metrics)
    {
        return NGX_CONF_OK;
    }

    /* the store, whenever anything can use it: stream{}'s too */
    if (ngx_proxy_wasm_shm_add(cf, &pmcf->wasm, NGX_PROXY_WASM_SHM_HTTP)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (pmcf->wasm.mods.nelts == 0 && pmcf->wasm.filters.nelts == 0) {
        return NGX_CONF_OK;
    }

    if (ngx_proxy_wasm_resolve(cf, &pmcf->wasm) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_proxy_wasm_callout_init_conf(cf, &pmcf->wasm, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "request_id");
    pmcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (pmcf->request_id_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_CONF_OK;     /* "nginx -s": no need to compile anything */
    }

    if (ngx_proxy_wasm_load(cf, &pmcf->wasm) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mods = pmcf->wasm.mods.elts;

    for (i = 0; i < pmcf->wasm.mods.nelts; i++) {
        mod = mods[i];

        if (pw_module_has_callback(mod->module, "proxy_on_request_body")) {
            mod->cbs |= NGX_HTTP_PROXY_WASM_CB_REQ_BODY;
        }

        if (pw_module_has_callback(mod->module, "proxy_on_response_body")) {
            mod->cbs |= NGX_HTTP_PROXY_WASM_CB_RESP_BODY;
        }

        if (pw_module_has_callback(mod->module,
                                   "proxy_on_response_trailers"))
        {
            mod->cbs |= NGX_HTTP_PROXY_WASM_CB_TRAILERS;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->chain = NGX_CONF_UNSET_PTR;
    plcf->failure = NGX_CONF_UNSET_UINT;
    plcf->limit[NGX_HTTP_PROXY_WASM_REQ] = NGX_CONF_UNSET_SIZE;
    plcf->limit[NGX_HTTP_PROXY_WASM_RESP] = NGX_CONF_UNSET_SIZE;

    return plcf;
}


static char *
ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_proxy_wasm_loc_conf_t  *prev = parent;
    ngx_http_proxy_wasm_loc_conf_t  *conf = child;

    /* the innermost level with any proxy_wasm wins: chains never merge */
    ngx_conf_merge_ptr_value(conf->chain, prev->chain, NULL);
    ngx_conf_merge_uint_value(conf->failure, prev->failure,
                              NGX_HTTP_PROXY_WASM_FAIL_CLOSED);
    ngx_conf_merge_size_value(conf->limit[NGX_HTTP_PROXY_WASM_REQ],
                              prev->limit[NGX_HTTP_PROXY_WASM_REQ],
                              1024 * 1024);
    ngx_conf_merge_size_value(conf->limit[NGX_HTTP_PROXY_WASM_RESP],
                              prev->limit[NGX_HTTP_PROXY_WASM_RESP],
                              1024 * 1024);

    return NGX_CONF_OK;
}


/* proxy_wasm NAME [root_id=ID] [config=STR | config_file=PATH] */
static char *
ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t *plcf = conf;

    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);

    return ngx_proxy_wasm_filter_directive(cf, &pmcf->wasm, &plcf->chain);
}


static ngx_int_t
ngx_http_proxy_wasm_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt              *h;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);

    if (pmcf->wasm.filters.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_rewrite_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_log_handler;

    if (ngx_http_proxy_wasm_response_filter_init() != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_proxy_wasm_request_filter_init();
}


/* proxy_wasm_metrics: the location answers with every metric of the
 * store (ngx_http_proxy_wasm_metrics.c) */
static char *
ngx_http_proxy_wasm_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_proxy_wasm_metrics_handler) {
        return "is duplicate";
    }

    if (clcf->handler) {
        return "conflicts with another content handler of the location "
               "(proxy_pass, ...)";
    }

    clcf->handler = ngx_http_proxy_wasm_metrics_handler;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);
    pmcf->metrics = 1;

    return NGX_CONF_OK;
}


/* In the master, after the zone was set up: the wake-up channels. */
static ngx_int_t
ngx_http_proxy_wasm_init_module(ngx_cycle_t *cycle)
{
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_proxy_wasm_module);
    if (pmcf == NULL) {
        return NGX_OK;
    }

    return ngx_proxy_wasm_shm_init_module(cycle, &pmcf->wasm);
}


static ngx_int_t
ngx_http_proxy_wasm_init_process(ngx_cycle_t *cycle)
{
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_proxy_wasm_module);
    if (pmcf == NULL) {
        return NGX_OK;
    }

    return ngx_proxy_wasm_init_process(cycle, &pmcf->wasm);
}


static void
ngx_http_proxy_wasm_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_proxy_wasm_module);
    if (pmcf == NULL) {
        return;
    }

    ngx_proxy_wasm_exit_process(cycle, &pmcf->wasm);
}


/* ------------------------------------------------- per-request state */


/* Ends every stream context of ctx: on_log, on_done, on_delete. In the log
 * phase (`late`), plugins skipped by a local response or a failure before
 * them get a context now, as Envoy creates one at access-log time for a
 * filter the request never reached (Envoy), so a logging plugin
 * sees every request. */
static void
ngx_http_proxy_wasm_end_streams(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t late)
{
    ngx_uint_t  i;

    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_LOG;

    ngx_http_proxy_wasm_unqueue(ctx);

    if (ctx->event.posted) {
        ngx_delete_posted_event(&ctx->event);
    }

    if (late) {
        for (i = 0; i < ctx->nstreams; i++) {
            ngx_http_proxy_wasm_link_plugin(ctx, &ctx->streams[i]);
        }
    }

    pw_chain_end(&ctx->chain, late);    /* on_log, on_done, on_delete */
}


static void
ngx_http_proxy_wasm_cleanup(void *data)
{
    ngx_http_proxy_wasm_req_t  *req = data;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    /* normally a no-op: the log phase ended every stream; r->pool is gone
     * by now, so the hooks must no longer touch the request */

    for (ctx = req->first; ctx; ctx = ctx->next) {
        if (ngx_http_proxy_wasm_live == ctx) {
            ngx_http_proxy_wasm_live = NULL;    /* see the event handler */
        }

        ctx->gone = 1;

        if (ctx->phase == NGX_HTTP_PROXY_WASM_PHASE_LOG && !ctx->queued
            && !ctx->event.posted)
        {
            continue;   /* the log phase ended every stream: nothing left */
        }

        ngx_http_proxy_wasm_end_streams(ctx, 0);
    }
}


ngx_http_proxy_wasm_req_t *
ngx_http_proxy_wasm_req(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_proxy_wasm_req_t  *req;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_proxy_wasm_cleanup) {
            return cln->data;
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_proxy_wasm_req_t));
    if (cln == NULL) {
        return NULL;
    }

    req = cln->data;
    req->first = NULL;
    req->last = NULL;
    req->props = NULL;

    cln->handler = ngx_http_proxy_wasm_cleanup;

    return req;
}


ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_create_ctx(ngx_http_request_t *r,
    ngx_http_proxy_wasm_loc_conf_t *plcf)
{
    size_t                      size;
    ngx_uint_t                  i, n;
    ngx_pool_cleanup_t         *cln;
    ngx_http_proxy_wasm_req_t  *req;
    ngx_http_proxy_wasm_ctx_t  *ctx;
    ngx_proxy_wasm_filter_t   **filters;

    req = ngx_http_proxy_wasm_req(r, 0);

    /* the context, the chain's links, the elements and, for the first
     * context of the request, the request's list: one allocation */
    n = plcf->chain->nelts;
    size = sizeof(ngx_http_proxy_wasm_ctx_t)
           + n * (sizeof(pw_link) + sizeof(ngx_http_proxy_wasm_stream_t));

    ctx = ngx_pcalloc(r->pool,
                      size + (req ? 0 : sizeof(ngx_http_proxy_wasm_req_t)));
    if (ctx == NULL) {
        return NULL;
    }

    if (req == NULL) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        req = (ngx_http_proxy_wasm_req_t *) ((u_char *) ctx + size);
        cln->data = req;
        cln->handler = ngx_http_proxy_wasm_cleanup;
    }

    ctx->nstreams = n;
    ctx->chain.links = (pw_link *) (ctx + 1);
    ctx->streams = (ngx_http_proxy_wasm_stream_t *)
                       (ctx->chain.links + ctx->nstreams);

    ctx->chain.n = ctx->nstreams;
    ctx->chain.policy = (pw_failure_policy) plcf->failure;

    filters = plcf->chain->elts;

    for (i = 0; i < ctx->nstreams; i++) {
        ctx->streams[i].ctx = ctx;
        ctx->streams[i].filter = filters[i];
        ctx->streams[i].link = &ctx->chain.links[i];
        ctx->chain.links[i].host_stream = &ctx->streams[i];
        ngx_proxy_wasm_link_policy(&ctx->chain.links[i], filters[i]);
        ctx->cbs |= filters[i]->plugin->mod->cbs;
        ngx_http_proxy_wasm_body_init(&ctx->streams[i].held[0], 1);
        ngx_http_proxy_wasm_body_init(&ctx->streams[i].held[1], 1);
    }

    ctx->r = r;
    ctx->plcf = plcf;
    ctx->paused[NGX_HTTP_PROXY_WASM_REQ] = -1;
    ctx->paused[NGX_HTTP_PROXY_WASM_RESP] = -1;
    ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
    ngx_http_proxy_wasm_body_init(&ctx->gate, 1);

    ctx->event.handler = ngx_http_proxy_wasm_event_handler;
    ctx->event.data = ctx;
    ctx->event.log = r->connection->log;
    ctx->authority = *ngx_http_proxy_wasm_authority(r);

    if (req->last) {
        req->last->next = ctx;
    } else {
        req->first = ctx;
    }

    req->last = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_proxy_wasm_module);

    return ctx;
}


/* The plugin of chain element s (its root context in this worker), for
 * the library to create its stream context when it has none yet: a
 * plugin that did not start is tried again here (the library fails the
 * link when it is still NULL). */
void
ngx_http_proxy_wasm_link_plugin(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s)
{
    if (s->link->plugin == NULL && s->link->stream == NULL
        && !s->link->failed && !s->link->ended)
    {
        s->link->plugin = ngx_proxy_wasm_plugin(s->filter->plugin,
                                                ctx->r->connection->log);
    }
}


/* pw_host_ops hooks log with the request's connection log while it lives
 * (subsys->stream_log). */
static ngx_log_t *
ngx_http_proxy_wasm_stream_log(void *stream)
{
    ngx_http_request_t  *r;

    r = ngx_http_proxy_wasm_request(stream);

    if (r && r->connection && r->connection->log) {
        return r->connection->log;
    }

    return NULL;
}


/* ---------------------------------------------------------- log phase */


static ngx_int_t
ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_req_t  *req;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    req = ngx_http_proxy_wasm_req(r, 0);
    if (req == NULL) {
        return NGX_OK;
    }

    for (ctx = req->first; ctx; ctx = ctx->next) {
        ngx_http_proxy_wasm_end_streams(ctx, 1);
    }

    return NGX_OK;
}
