/*
 * ngx_proxy_wasm_vm.c -- per worker: the VMs (one per owner declaration),
 * the plugins (root contexts), and the host hooks that do not depend on the
 * subsystem: log, log_level. A worker takes its store slot and wake-up
 * channel (ngx_proxy_wasm_shm.c) before any plugin starts, and stops its
 * tick timers (ngx_proxy_wasm_timers.c) and closes its gRPC connections
 * (ngx_proxy_wasm_grpc.c) when it exits.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_proxy_wasm.h"


/* The plugin's root context in this worker, created on first use if the
 * worker could not create it at start. */
pw_plugin *
ngx_proxy_wasm_plugin(ngx_proxy_wasm_plugin_t *p, ngx_log_t *log)
{
    int                    rc;
    char                   err[PW_ERRLEN];
    ngx_proxy_wasm_mod_t  *mod;

    if (p->plugin) {
        return p->plugin;
    }

    mod = p->mod;

    if (mod->owner->vm == NULL) {
        rc = pw_vm_new(mod->module, ngx_proxy_wasm_pw(&mod->vm_id),
                       ngx_proxy_wasm_pw(&mod->vm_config),
                       mod->subsys->ops, mod->owner, &mod->owner->vm, err,
                       sizeof(err));
        if (rc != PW_OK) {
            mod->owner->vm = NULL;
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "proxy_wasm_module \"%V\": cannot create VM: %s",
                          &mod->name, err);
            return NULL;
        }
    }

    rc = pw_plugin_new(mod->owner->vm, ngx_proxy_wasm_pw(&mod->name),
                       ngx_proxy_wasm_pw(&p->root_id),
                       ngx_proxy_wasm_pw(&p->config), &p->plugin, err,
                       sizeof(err));
    if (rc != PW_OK) {
        p->plugin = NULL;
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "proxy_wasm \"%V\": cannot start plugin: %s",
                      &mod->name, err);
        return NULL;
    }

    return p->plugin;
}


/* At worker start: the VMs and plugins of wc (the subsystem's). */
ngx_int_t
ngx_proxy_wasm_init_process(ngx_cycle_t *cycle, ngx_proxy_wasm_conf_t *wc)
{
    char                       err[PW_ERRLEN];
    ngx_uint_t                 i;
    ngx_proxy_wasm_mod_t     **mods;
    ngx_proxy_wasm_plugin_t  **plugins;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;      /* cache manager/loader: no requests */
    }

    /* the metric slot and queue owner id of this process, and its
     * wake-up channel: before a plugin can register a queue */
    if (ngx_proxy_wasm_shm_init_process(cycle, wc) != NGX_OK) {
        return NGX_ERROR;
    }

    if (wc->runtime == NULL) {
        return NGX_OK;
    }

    /* trap handlers and the CPU timer exist only in processes that run
     * plugins, from here to exit_process */
    if (pw_runtime_attach(wc->runtime, err, sizeof(err)) != PW_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "proxy_wasm: cannot install the trap handlers: %s",
                      err);
        return NGX_ERROR;
    }

    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        mods[i]->log = cycle->log;
    }

    wc->running = 1;        /* tick timers may be armed from now on */

    /* eagerly, so that on_vm_start/on_configure run at worker start;
     * failures are logged and retried on the first request (a service
     * has no request: it stays down in this worker); a singleton service
     * runs in worker 0 only */

    plugins = wc->plugins.elts;

    for (i = 0; i < wc->plugins.nelts; i++) {
        if (plugins[i]->singleton
            && ngx_process == NGX_PROCESS_WORKER && ngx_worker != 0)
        {
            continue;
        }

        (void) ngx_proxy_wasm_plugin(plugins[i], cycle->log);
    }

    return NGX_OK;
}


void
ngx_proxy_wasm_exit_process(ngx_cycle_t *cycle, ngx_proxy_wasm_conf_t *wc)
{
    ngx_uint_t                 i;
    ngx_proxy_wasm_mod_t     **mods;
    ngx_proxy_wasm_plugin_t  **plugins;

    ngx_proxy_wasm_shm_exit_process(cycle, wc);

    if (wc->runtime == NULL) {
        return;
    }

    wc->running = 0;

    plugins = wc->plugins.elts;

    for (i = 0; i < wc->plugins.nelts; i++) {
        plugins[i]->plugin = NULL;      /* freed with their VM */
    }

    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        if (mods[i]->vm) {
            pw_vm_free(mods[i]->vm);     /* stops their ticks */
            mods[i]->vm = NULL;
        }
    }

    ngx_proxy_wasm_timers_exit_process(wc);
    ngx_proxy_wasm_callout_exit_process(wc);
    ngx_proxy_wasm_grpc_exit_process(wc);

    /* before the cycle's pool is destroyed, which unloads this module */
    pw_runtime_detach(wc->runtime);
}


static ngx_uint_t
ngx_proxy_wasm_ngx_level(proxy_log_level_t level)
{
    switch (level) {
    case PROXY_LOG_TRACE:
    case PROXY_LOG_DEBUG:
        return NGX_LOG_DEBUG;
    case PROXY_LOG_INFO:
        return NGX_LOG_INFO;
    case PROXY_LOG_WARN:
        return NGX_LOG_WARN;
    case PROXY_LOG_ERROR:
        return NGX_LOG_ERR;
    default:
        return NGX_LOG_CRIT;
    }
}


/* The log of the stream's request while it lives, else the module's. */
static ngx_log_t *
ngx_proxy_wasm_log_of(void *host, void *stream)
{
    ngx_log_t             *log;
    ngx_proxy_wasm_mod_t  *mod = host;

    if (mod == NULL) {
        return ngx_cycle->log;
    }

    if (stream) {
        log = mod->subsys->stream_log(stream);
        if (log) {
            return log;
        }
    }

    if (mod->log) {
        return mod->log;
    }

    return ngx_cycle->log;
}


void
ngx_proxy_wasm_host_log(void *host, void *stream, pw_str plugin_name,
    proxy_log_level_t level, pw_str msg)
{
    ngx_log_t  *log;

    log = ngx_proxy_wasm_log_of(host, stream);

    ngx_log_error(ngx_proxy_wasm_ngx_level(level), log, 0,
                  "[pwasm] %*s: %*s", plugin_name.len, plugin_name.data,
                  msg.len, msg.data);
}


proxy_log_level_t
ngx_proxy_wasm_host_log_level(void *host)
{
    ngx_uint_t  level;

    level = ngx_proxy_wasm_log_of(host, NULL)->log_level;

    if (level >= NGX_LOG_DEBUG) {
        return PROXY_LOG_TRACE;
    }

    if (level >= NGX_LOG_INFO) {
        return PROXY_LOG_INFO;
    }

    if (level >= NGX_LOG_WARN) {    /* notice would hide info lines */
        return PROXY_LOG_WARN;
    }

    if (level >= NGX_LOG_ERR) {
        return PROXY_LOG_ERROR;
    }

    return PROXY_LOG_CRITICAL;
}
