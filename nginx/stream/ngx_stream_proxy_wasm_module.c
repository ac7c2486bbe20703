/*
 * ngx_stream_proxy_wasm_module -- runs Proxy-Wasm network filters (TCP
 * stream contexts) in nginx's stream subsystem on top of the pwasm host
 * library. This file has the module, its directives and configuration,
 * the per-session state, the preread phase, the wake event and the end of
 * a session; ngx_stream_proxy_wasm.h lists the other files, and what does
 * not depend on the subsystem is in ../common (ngx_proxy_wasm.h).
 *
 * Per session, one TCP stream context per proxy_wasm of the server, in
 * order (a pw_chain with the server's failure policy):
 *
 *   preread phase   on_new_connection, link by link; a Pause holds the
 *                   session in the phase (the proxy does not connect)
 *                   until proxy_continue_stream(Downstream); the bytes the
 *                   client sends meanwhile (nginx's preread buffer) go
 *                   through on_downstream_data already, so that a plugin
 *                   can pick the upstream from them ($proxy_wasm_upstream)
 *   stream filter   on_downstream_data / on_upstream_data for each chunk
 *                   (ngx_stream_proxy_wasm_data.c)
 *   log phase       the close events not sent yet (peer 1: nginx closed
 *                   it), then on_done, on_log, on_delete (pw_chain_end)
 *
 * Actions asked outside a callback of the stream (proxy_continue_stream
 * from a timer or a callout, proxy_close_stream, a trap elsewhere that
 * discarded the VM) are announced by the library's wake hook: it posts the
 * session's event, whose handler takes them (pw_stream_take) and runs what
 * they release, then lets the proxy pass the bytes on.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_stream.h>
#include <ngx_http.h>

#include "ngx_stream_proxy_wasm.h"


static ngx_int_t ngx_stream_proxy_wasm_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_stream_proxy_wasm_postconfiguration(ngx_conf_t *cf);
static void *ngx_stream_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static char *ngx_stream_proxy_wasm_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_stream_proxy_wasm_create_srv_conf(ngx_conf_t *cf);
static char *ngx_stream_proxy_wasm_merge_srv_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_stream_proxy_wasm_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_stream_proxy_wasm_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_stream_proxy_wasm_init_process(ngx_cycle_t *cycle);
static void ngx_stream_proxy_wasm_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_stream_proxy_wasm_preread_handler(
    ngx_stream_session_t *s);
static ngx_int_t ngx_stream_proxy_wasm_log_handler(ngx_stream_session_t *s);
static void ngx_stream_proxy_wasm_event_handler(ngx_event_t *ev);
static void ngx_stream_proxy_wasm_wake(void *host, void *stream);
static ngx_log_t *ngx_stream_proxy_wasm_stream_log(void *stream);


static ngx_conf_enum_t  ngx_stream_proxy_wasm_failure_policies[] = {
    { ngx_string("closed"), PW_FAIL_CLOSED },
    { ngx_string("open"), PW_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_stream_proxy_wasm_commands[] = {

    { ngx_string("proxy_wasm_module"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_2MORE,
      ngx_proxy_wasm_module_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_cache_dir"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_cache_dir_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_compile_timeout"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.compile_timeout),
      NULL },

    { ngx_string("proxy_wasm_compile_memory"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.compile_memory),
      NULL },

    { ngx_string("proxy_wasm_module_max_size"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.module_max_size),
      NULL },

    { ngx_string("proxy_wasm_shm"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_proxy_wasm_shm_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_shm_ttl"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_proxy_wasm_shm_ttl_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_shm_quota"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_proxy_wasm_shm_quota_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_service"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_1MORE,
      ngx_proxy_wasm_service_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_grpc_max_message_size"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.grpc_max_message),
      NULL },

    { ngx_string("proxy_wasm_callout_allow"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_2MORE,
      ngx_proxy_wasm_callout_allow_directive,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm),
      NULL },

    { ngx_string("proxy_wasm_callout_connect_timeout"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.callout.connect_timeout),
      NULL },

    { ngx_string("proxy_wasm_callout_max_response_headers"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.callout.header_max),
      NULL },

    { ngx_string("proxy_wasm_callout_max_response_body"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.callout.body_max),
      NULL },

    { ngx_string("proxy_wasm_callout_keepalive"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.callout.keepalive),
      NULL },

    { ngx_string("proxy_wasm_callout_keepalive_timeout"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t,
               wasm.callout.keepalive_timeout),
      NULL },

    { ngx_string("proxy_wasm_callout_ssl_verify"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.callout.ssl_verify),
      NULL },

    { ngx_string("proxy_wasm_callout_ssl_server_name"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t,
               wasm.callout.ssl_server_name),
      NULL },

    { ngx_string("proxy_wasm_callout_ssl_trusted_certificate"),
      NGX_STREAM_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_STREAM_MAIN_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_main_conf_t, wasm.callout.ssl_trusted),
      NULL },

    { ngx_string("proxy_wasm"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_1MORE,
      ngx_stream_proxy_wasm_directive,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_failure_policy"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, failure),
      &ngx_stream_proxy_wasm_failure_policies },

    { ngx_string("proxy_wasm_max_held"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, max_held),
      NULL },

      ngx_null_command
};


static ngx_stream_module_t  ngx_stream_proxy_wasm_module_ctx = {
    ngx_stream_proxy_wasm_preconfiguration,  /* preconfiguration */
    ngx_stream_proxy_wasm_postconfiguration, /* postconfiguration */

    ngx_stream_proxy_wasm_create_main_conf,  /* create main configuration */
    ngx_stream_proxy_wasm_init_main_conf,    /* init main configuration */

    ngx_stream_proxy_wasm_create_srv_conf,   /* create server configuration */
    ngx_stream_proxy_wasm_merge_srv_conf     /* merge server configuration */
};


ngx_module_t  ngx_stream_proxy_wasm_module = {
    NGX_MODULE_V1,
    &ngx_stream_proxy_wasm_module_ctx,     /* module context */
    ngx_stream_proxy_wasm_commands,        /* module directives */
    NGX_STREAM_MODULE,                     /* module type */
    NULL,                                  /* init master */
    ngx_stream_proxy_wasm_init_module,     /* init module */
    ngx_stream_proxy_wasm_init_process,    /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_stream_proxy_wasm_exit_process,    /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static const pw_host_log_ops  ngx_stream_proxy_wasm_log_ops = {
    .log = ngx_proxy_wasm_host_log,
    .log_level = ngx_proxy_wasm_host_log_level
};


static const pw_host_property_ops  ngx_stream_proxy_wasm_property_ops = {
    .get_property = ngx_stream_proxy_wasm_get_property,
    .set_property = ngx_stream_proxy_wasm_set_property
};


static const pw_host_stream_ops  ngx_stream_proxy_wasm_stream_ops = {
    .wake = ngx_stream_proxy_wasm_wake
};


static const pw_host_timer_ops  ngx_stream_proxy_wasm_timer_ops = {
    .set_tick = ngx_proxy_wasm_host_set_tick
};


static const pw_host_shared_ops  ngx_stream_proxy_wasm_shared_ops = {
    .store = ngx_proxy_wasm_host_store,
    .queue_ready = ngx_proxy_wasm_host_queue_ready
};


static const pw_host_network_ops  ngx_stream_proxy_wasm_network_ops = {
    .data_size = ngx_stream_proxy_wasm_data_size,
    .data_copy = ngx_stream_proxy_wasm_data_copy,
    .data_replace = ngx_stream_proxy_wasm_data_replace
};


/* no HTTP maps or bodies: the library answers Unimplemented */
static const pw_host_ops  ngx_stream_proxy_wasm_ops = {
    .size = sizeof(pw_host_ops),
    .log = &ngx_stream_proxy_wasm_log_ops,
    .property = &ngx_stream_proxy_wasm_property_ops,
    .stream = &ngx_stream_proxy_wasm_stream_ops,
    .timers = &ngx_stream_proxy_wasm_timer_ops,
    .shared = &ngx_stream_proxy_wasm_shared_ops,
    .callouts = &ngx_proxy_wasm_callout_ops,
    .network = &ngx_stream_proxy_wasm_network_ops
};


static const ngx_proxy_wasm_subsys_t  ngx_stream_proxy_wasm_subsys = {
    &ngx_stream_proxy_wasm_ops,
    ngx_stream_proxy_wasm_stream_log
};


/* ------------------------------------------------------ configuration */


static void *
ngx_stream_proxy_wasm_create_main_conf(ngx_conf_t *cf)
{
    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_stream_proxy_wasm_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    if (ngx_proxy_wasm_conf_init(cf, &pmcf->wasm,
                                 &ngx_stream_proxy_wasm_subsys)
        != NGX_OK)
    {
        return NULL;
    }

    return pmcf;
}


static char *
ngx_stream_proxy_wasm_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_stream_proxy_wasm_main_conf_t *pmcf = conf;

    if (pmcf->wasm.mods.nelts == 0 && pmcf->wasm.filters.nelts == 0
        && pmcf->wasm.shm_size == NGX_CONF_UNSET_SIZE
        && pmcf->wasm.shm_ttl == NULL && pmcf->wasm.shm_quota == NULL)
    {
        return NGX_CONF_OK;
    }

    /* http{}'s store: one zone for both (ngx_proxy_wasm_shm.c), so a
     * vm_id's shared data and queues, and the metrics, are the same in
     * both blocks */
    if (ngx_proxy_wasm_shm_add(cf, &pmcf->wasm, NGX_PROXY_WASM_SHM_STREAM)
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

    /* stream{}'s literals now; http{}'s upstream{} blocks in init_module */
    if (ngx_proxy_wasm_callout_init_conf(cf, &pmcf->wasm, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_CONF_OK;
    }

    if (ngx_proxy_wasm_load(cf, &pmcf->wasm) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_stream_proxy_wasm_create_srv_conf(ngx_conf_t *cf)
{
    ngx_stream_proxy_wasm_srv_conf_t  *pscf;

    pscf = ngx_pcalloc(cf->pool, sizeof(ngx_stream_proxy_wasm_srv_conf_t));
    if (pscf == NULL) {
        return NULL;
    }

    pscf->chain = NGX_CONF_UNSET_PTR;
    pscf->failure = NGX_CONF_UNSET_UINT;
    pscf->max_held = NGX_CONF_UNSET_SIZE;

    return pscf;
}


static char *
ngx_stream_proxy_wasm_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_stream_proxy_wasm_srv_conf_t  *prev = parent;
    ngx_stream_proxy_wasm_srv_conf_t  *conf = child;

    /* the innermost level with any proxy_wasm wins: chains never merge */
    ngx_conf_merge_ptr_value(conf->chain, prev->chain, NULL);
    ngx_conf_merge_uint_value(conf->failure, prev->failure, PW_FAIL_CLOSED);
    ngx_conf_merge_size_value(conf->max_held, prev->max_held, 1024 * 1024);

    if (conf->max_held == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_max_held must be at least 1 byte");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* proxy_wasm NAME [root_id=ID] [config=STR | config_file=PATH] */
static char *
ngx_stream_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_stream_proxy_wasm_srv_conf_t *pscf = conf;

    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_stream_conf_get_module_main_conf(cf,
                                                ngx_stream_proxy_wasm_module);

    return ngx_proxy_wasm_filter_directive(cf, &pmcf->wasm, &pscf->chain);
}


static ngx_int_t
ngx_stream_proxy_wasm_preconfiguration(ngx_conf_t *cf)
{
    return ngx_stream_proxy_wasm_add_variables(cf);
}


static ngx_int_t
ngx_stream_proxy_wasm_postconfiguration(ngx_conf_t *cf)
{
    ngx_stream_handler_pt               *h;
    ngx_stream_core_main_conf_t         *cmcf;
    ngx_stream_proxy_wasm_main_conf_t   *pmcf;

    pmcf = ngx_stream_conf_get_module_main_conf(cf,
                                                ngx_stream_proxy_wasm_module);

    if (pmcf->wasm.filters.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_stream_conf_get_module_main_conf(cf, ngx_stream_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_STREAM_PREREAD_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_stream_proxy_wasm_preread_handler;

    h = ngx_array_push(&cmcf->phases[NGX_STREAM_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_stream_proxy_wasm_log_handler;

    return ngx_stream_proxy_wasm_filter_init();
}


static ngx_int_t
ngx_stream_proxy_wasm_init_module(ngx_cycle_t *cycle)
{
    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_proxy_wasm_module);
    if (pmcf == NULL) {
        return NGX_OK;
    }

    /*
     * Callout targets: http{}'s upstream{} blocks, now that the whole
     * configuration is read (http{} may follow stream{}); the http core is
     * in the nginx binary, its configuration is there when http{} is.
     */
    if ((pmcf->wasm.mods.nelts || pmcf->wasm.filters.nelts)
        && ngx_proxy_wasm_targets_upstreams(cycle->pool, &pmcf->wasm,
               ngx_http_cycle_get_module_main_conf(cycle,
                                                   ngx_http_upstream_module))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_proxy_wasm_shm_init_module(cycle, &pmcf->wasm);
}


static ngx_int_t
ngx_stream_proxy_wasm_init_process(ngx_cycle_t *cycle)
{
    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_proxy_wasm_module);
    if (pmcf == NULL) {
        return NGX_OK;
    }

    return ngx_proxy_wasm_init_process(cycle, &pmcf->wasm);
}


static void
ngx_stream_proxy_wasm_exit_process(ngx_cycle_t *cycle)
{
    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_proxy_wasm_module);
    if (pmcf == NULL) {
        return;
    }

    ngx_proxy_wasm_exit_process(cycle, &pmcf->wasm);
}


/* ------------------------------------------------- per-session state */


/* Ends the session's stream contexts: the close events not sent yet
 * (peer 1, local: nginx closes that side), on_done, on_log, on_delete. */
static void
ngx_stream_proxy_wasm_end(ngx_stream_proxy_wasm_ctx_t *ctx)
{
    if (ctx->ended) {
        return;
    }

    ctx->ended = 1;     /* the callbacks below post no event */

    if (ctx->event.posted) {
        ngx_delete_posted_event(&ctx->event);
    }

    if (!ctx->gone) {
        if (!ctx->dir[NGX_STREAM_PROXY_WASM_DOWN].closed) {
            ngx_stream_proxy_wasm_closes(ctx, NGX_STREAM_PROXY_WASM_DOWN, 1);
        }

        if (!ctx->dir[NGX_STREAM_PROXY_WASM_UP].closed) {
            ngx_stream_proxy_wasm_closes(ctx, NGX_STREAM_PROXY_WASM_UP, 1);
        }
    }

    /*
     * on_done, on_log, on_delete of the contexts the connection made; not
     * `late`: a plugin the connection never reached (an earlier one closed
     * it, or paused until it ended) has no context and gets no callback.
     * Envoy's network filters are the same: a filter's context is made in
     * its onNewConnection, and its close (onDone, onLog, onDelete) is
     * skipped when that never ran. Only the http access-log phase makes
     * the missing contexts, as Envoy does for its HTTP filters.
     */
    pw_chain_end(&ctx->chain, 0);
}


static void
ngx_stream_proxy_wasm_cleanup(void *data)
{
    ngx_stream_proxy_wasm_ctx_t *ctx = data;

    /* normally the log phase ended the streams already; the connection
     * is closed by now: no close events, the hooks see no session */
    ctx->gone = 1;
    ngx_stream_proxy_wasm_end(ctx);

    ngx_stream_proxy_wasm_data_free(ctx);

    if (ctx->tmp) {
        ngx_destroy_pool(ctx->tmp);
        ctx->tmp = NULL;
    }
}


static ngx_stream_proxy_wasm_ctx_t *
ngx_stream_proxy_wasm_create_ctx(ngx_stream_session_t *s,
    ngx_stream_proxy_wasm_srv_conf_t *pscf)
{
    ngx_uint_t                     i;
    ngx_connection_t              *c;
    ngx_pool_cleanup_t            *cln;
    ngx_proxy_wasm_filter_t      **filters;
    ngx_stream_proxy_wasm_ctx_t   *ctx;

    c = s->connection;

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_stream_proxy_wasm_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->nstreams = pscf->chain->nelts;
    ctx->chain.links = ngx_pcalloc(c->pool, ctx->nstreams
                                   * (sizeof(pw_link)
                                      + sizeof(ngx_stream_proxy_wasm_stream_t)));
    if (ctx->chain.links == NULL) {
        return NULL;
    }

    ctx->streams = (ngx_stream_proxy_wasm_stream_t *)
                       (ctx->chain.links + ctx->nstreams);
    ctx->chain.n = ctx->nstreams;
    ctx->chain.policy = (pw_failure_policy) pscf->failure;
    ctx->chain.tcp = 1;                 /* the chain makes TCP contexts */

    filters = pscf->chain->elts;

    for (i = 0; i < ctx->nstreams; i++) {
        ctx->streams[i].ctx = ctx;
        ctx->streams[i].filter = filters[i];
        ctx->streams[i].link = &ctx->chain.links[i];
        ctx->chain.links[i].host_stream = &ctx->streams[i];
        ngx_proxy_wasm_link_policy(&ctx->chain.links[i], filters[i]);
    }

    ctx->s = s;
    ctx->pscf = pscf;
    ctx->dir[0].at = -1;
    ctx->dir[1].at = -1;

    ctx->tmp = ngx_create_pool(1024, c->log);
    if (ctx->tmp == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_destroy_pool(ctx->tmp);
        return NULL;
    }

    cln->handler = ngx_stream_proxy_wasm_cleanup;
    cln->data = ctx;

    ctx->event.handler = ngx_stream_proxy_wasm_event_handler;
    ctx->event.data = ctx;
    ctx->event.log = c->log;

    ngx_stream_set_ctx(s, ctx, ngx_stream_proxy_wasm_module);

    return ctx;
}


/*
 * Calls `event` on link i (pw_chain_call creates its TCP stream context on
 * first use); the failure policy answers when the plugin cannot run
 * (logged here).
 */
pw_action
ngx_stream_proxy_wasm_call(ngx_stream_proxy_wasm_ctx_t *ctx, ngx_uint_t i,
    pw_event event, size_t n, ngx_uint_t eos)
{
    char                             why[PW_ERRLEN];
    pw_link                         *l;
    pw_action                        a;
    ngx_log_t                       *log;
    ngx_stream_proxy_wasm_stream_t  *st;

    l = &ctx->chain.links[i];
    st = &ctx->streams[i];
    log = ctx->s->connection->log;

    if (l->failed || l->ended) {
        return PW_ACTION_CONTINUE;
    }

    if (l->stream == NULL && l->plugin == NULL) {
        l->plugin = ngx_proxy_wasm_plugin(st->filter->plugin, log);
    }

    if (ctx->tmp->d.next || ctx->tmp->large
        || ctx->tmp->d.last != (u_char *) ctx->tmp + sizeof(ngx_pool_t))
    {
        /* what the last callback's host calls took (a callback that made
         * none, as most data callbacks, leaves nothing to reset) */
        ngx_reset_pool(ctx->tmp);
    }

    a = pw_chain_call(&ctx->chain, i, event, n, eos, why, sizeof(why));

    if (why[0] == '\0') {
        /* what the callback asked that its result does not apply (e.g.
         * continuing the on_new_connection an earlier callback paused):
         * the library does not announce it, the event takes it */
        if (l->stream && pw_stream_pending(l->stream)) {
            ngx_stream_proxy_wasm_post(ctx);
        }

        return a;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "proxy_wasm \"%V\" failed in %s: %s; %s",
                  &st->filter->name, pw_event_name(event), why,
                  a != PW_ACTION_ERROR
                  ? "continuing without it (failure policy open)"
                  : "closing the connection (failure policy closed)");

    /* the policy of the link (failure_policy=), else the server's */
    if (a != PW_ACTION_ERROR) {
        return PW_ACTION_CONTINUE;
    }

    ctx->closing = 1;

    return PW_ACTION_ERROR;
}


/* on_new_connection from link ctx->nc_next on. NGX_AGAIN: a link paused;
 * NGX_ERROR: close. */
static ngx_int_t
ngx_stream_proxy_wasm_new_connection(ngx_stream_proxy_wasm_ctx_t *ctx)
{
    pw_action  a;

    while (ctx->nc_next < ctx->nstreams) {
        a = ngx_stream_proxy_wasm_call(ctx, ctx->nc_next,
                                       PW_ON_NEW_CONNECTION, 0, 0);

        switch (a) {
        case PW_ACTION_CONTINUE:
        case PW_ACTION_LOCAL_RESPONSE:
            ctx->nc_next++;
            break;

        case PW_ACTION_PAUSE:
        case PW_ACTION_PAUSE_NO_BUFFER:
            return NGX_AGAIN;

        default:
            ctx->closing = 1;
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* The bytes of the preread buffer not taken yet go through the chain
 * (downstream data); the proxy's copy of them is skipped later. */
static ngx_int_t
ngx_stream_proxy_wasm_take_preread(ngx_stream_proxy_wasm_ctx_t *ctx)
{
    size_t             n;
    ngx_buf_t         *b;
    ngx_stream_proxy_wasm_dir_t  *d;

    b = ctx->s->connection->buffer;
    d = &ctx->dir[NGX_STREAM_PROXY_WASM_DOWN];

    if (b == NULL || (size_t) (b->last - b->pos) <= d->skip) {
        return NGX_OK;
    }

    n = b->last - b->pos - d->skip;
    d->skip += n;

    return ngx_stream_proxy_wasm_run(ctx, NGX_STREAM_PROXY_WASM_DOWN,
                                     b->pos + d->skip - n, n);
}


static ngx_int_t
ngx_stream_proxy_wasm_preread_handler(ngx_stream_session_t *s)
{
    ngx_int_t                          rc;
    ngx_stream_proxy_wasm_ctx_t       *ctx;
    ngx_stream_proxy_wasm_srv_conf_t  *pscf;

    pscf = ngx_stream_get_module_srv_conf(s, ngx_stream_proxy_wasm_module);

    if (pscf->chain == NULL || s->connection->type != SOCK_STREAM) {
        return NGX_DECLINED;
    }

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL) {
        ctx = ngx_stream_proxy_wasm_create_ctx(s, pscf);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->preread = 1;

        if (ngx_stream_proxy_wasm_new_connection(ctx) == NGX_ERROR) {
            return NGX_STREAM_OK;       /* closed, or failed closed */
        }
    }

    if (!ctx->preread) {
        return NGX_DECLINED;
    }

    if (ctx->closing) {
        return NGX_STREAM_OK;
    }

    rc = ngx_stream_proxy_wasm_take_preread(ctx);

    if (rc == NGX_ERROR || ctx->closing) {
        return NGX_STREAM_OK;
    }

    if (ctx->nc_next < ctx->nstreams) {
        return NGX_AGAIN;
    }

    ctx->preread = 0;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_stream_proxy_wasm_log_handler(ngx_stream_session_t *s)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx) {
        ngx_stream_proxy_wasm_end(ctx);
    }

    return NGX_OK;
}


/* ------------------------------------------------ pending actions */


void
ngx_stream_proxy_wasm_post(ngx_stream_proxy_wasm_ctx_t *ctx)
{
    if (!ctx->gone && !ctx->ended && !ctx->event.posted) {
        ngx_post_event(&ctx->event, &ngx_posted_events);
    }
}


/* pw_host_stream_ops.wake: only notes it (we may be inside another
 * session's callback); the event handler takes what is pending. */
static void
ngx_stream_proxy_wasm_wake(void *host, void *stream)
{
    ngx_stream_proxy_wasm_stream_t  *st = stream;

    if (st != NULL) {
        ngx_stream_proxy_wasm_post(st->ctx);
    }
}


/* Takes the pending actions of every link and applies them. */
static ngx_int_t
ngx_stream_proxy_wasm_take(ngx_stream_proxy_wasm_ctx_t *ctx)
{
    char                          why[PW_ERRLEN];
    unsigned                      bits;
    pw_link                      *l;
    pw_action                     a;
    ngx_uint_t                    i, d, nc;
    ngx_stream_proxy_wasm_dir_t  *dir;

    nc = 0;

    for (i = 0; i < ctx->nstreams; i++) {
        l = &ctx->chain.links[i];

        if (l->stream == NULL || l->ended) {
            continue;
        }

        bits = pw_stream_take(l->stream, PW_PENDING_ALL);

        if (bits == 0 || l->failed) {
            continue;
        }

        if (bits & PW_PENDING_FAILED) {
            l->discarded = 1;

            if (ctx->nc_next == i
                || (ctx->dir[0].at == (ngx_int_t) i && ctx->dir[0].shown)
                || (ctx->dir[1].at == (ngx_int_t) i && ctx->dir[1].shown))
            {
                a = pw_chain_stranded(&ctx->chain, i, why, sizeof(why));

                ngx_log_error(NGX_LOG_ERR, ctx->s->connection->log, 0,
                              "proxy_wasm \"%V\" failed: %s; %s",
                              &ctx->streams[i].filter->name, why,
                              a == PW_ACTION_CONTINUE
                              ? "continuing without it (failure policy open)"
                              : "closing the connection "
                                "(failure policy closed)");

                if (a != PW_ACTION_CONTINUE) {
                    ctx->closing = 1;
                    return NGX_ERROR;
                }

                bits |= PW_PENDING_CONTINUE_DOWNSTREAM
                        | PW_PENDING_CONTINUE_UPSTREAM;
            }
        }

        if (bits & PW_PENDING_CLOSE) {
            ctx->closing = 1;
            return NGX_ERROR;
        }

        for (d = 0; d < 2; d++) {
            if (!(bits & (d == 0 ? PW_PENDING_CONTINUE_DOWNSTREAM
                                 : PW_PENDING_CONTINUE_UPSTREAM)))
            {
                continue;
            }

            if (d == 0 && ctx->nc_next == i) {
                ctx->nc_next++;
                nc = 1;
            }

            dir = &ctx->dir[d];

            if (dir->at == (ngx_int_t) i && dir->shown) {
                dir->resumed = 1;
            }
        }
    }

    if (nc && ngx_stream_proxy_wasm_new_connection(ctx) == NGX_ERROR) {
        return NGX_ERROR;
    }

    for (d = 0; d < 2; d++) {
        if (ctx->dir[d].at >= 0
            && ngx_stream_proxy_wasm_run(ctx, d, NULL, 0) == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_stream_proxy_wasm_event_handler(ngx_event_t *ev)
{
    ngx_stream_proxy_wasm_ctx_t *ctx = ev->data;

    ngx_uint_t              d;
    ngx_connection_t       *c, *dst;
    ngx_stream_session_t   *s;
    ngx_stream_upstream_t  *u;

    s = ctx->s;
    c = s->connection;

    if (ctx->ended || ctx->gone) {
        return;
    }

    if (ngx_stream_proxy_wasm_take(ctx) != NGX_OK || ctx->closing) {
        ngx_stream_finalize_session(s, NGX_STREAM_OK);
        return;
    }

    if (ctx->preread) {
        /* the preread phase waits for data with a timer set: without it,
         * the phase calls our handler first */
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ngx_stream_core_run_phases(s);
        return;
    }

    /* the proxy passes what is ready when it calls the filter chain: on
     * the write event of each side we have something for */
    u = s->upstream;

    if (u == NULL || !u->connected || !ctx->proxying) {
        return;         /* the filter is called once connected */
    }

    for (d = 0; d < 2; d++) {
        if (ctx->dir[d].out == NULL && ctx->dir[d].in == NULL
            && ctx->dir[d].at < 0)
        {
            continue;
        }

        dst = d == NGX_STREAM_PROXY_WASM_DOWN ? u->peer.connection : c;

        if (dst == NULL) {
            continue;
        }

        dst->buffered |= NGX_STREAM_PROXY_WASM_BUFFERED;
        ngx_post_event(dst->write, &ngx_posted_events);
    }
}


static ngx_log_t *
ngx_stream_proxy_wasm_stream_log(void *stream)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_proxy_wasm_ctx(stream);

    if (ctx && ctx->s->connection && ctx->s->connection->log) {
        return ctx->s->connection->log;
    }

    return NULL;
}
