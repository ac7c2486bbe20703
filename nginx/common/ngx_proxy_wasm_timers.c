/*
 * ngx_proxy_wasm_timers.c -- proxy_set_tick_period_milliseconds for any
 * subsystem: per worker, one nginx timer per root context that asked for
 * a tick period (pw_host_timer_ops.set_tick), calling pw_plugin_on_tick()
 * and re-armed after each tick. Ticks run in every worker (as Envoy runs
 * them on every worker thread).
 *
 * The timers are cancelable: a graceful shutdown (nginx -s quit, reload)
 * does not wait for the next tick, and no tick runs once the worker is
 * exiting. In the master (the configuration-time canary) a period is
 * accepted and ignored.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_proxy_wasm.h"


/* The tick of one root context in this worker. Kept (disarmed) when the
 * period goes back to 0, freed at worker exit. */
struct ngx_proxy_wasm_tick_s {
    ngx_event_t                      event;
    pw_plugin                       *plugin;
    ngx_proxy_wasm_mod_t            *mod;        /* VM owner: its log */
    ngx_msec_t                       period;     /* 0: stopped */
    ngx_proxy_wasm_tick_t           *next;
};


static void ngx_proxy_wasm_tick_handler(ngx_event_t *ev);


static ngx_inline ngx_uint_t
ngx_proxy_wasm_stopping(void)
{
    return ngx_exiting || ngx_quit || ngx_terminate;
}


/*
 * pw_host_timer_ops.set_tick: on_tick of `plugin` every period_ms from now
 * on (replacing any earlier period), or never again (0). Called from
 * inside a plugin call (proxy_set_tick_period_milliseconds), and with 0 by
 * the library when the plugin is freed, or rebuilt after a trap without
 * asking again (the timer stays armed across a trap: its next tick
 * rebuilds the VM): arms or disarms the timer, nothing more.
 */
void
ngx_proxy_wasm_host_set_tick(void *host, pw_plugin *plugin,
    uint32_t period_ms)
{
    ngx_proxy_wasm_mod_t   *mod = host;
    ngx_proxy_wasm_conf_t  *wc;
    ngx_proxy_wasm_tick_t  *t;

    if (mod == NULL || mod->conf == NULL) {
        return;
    }

    wc = mod->conf;

    for (t = wc->ticks; t; t = t->next) {
        if (t->plugin == plugin) {
            break;
        }
    }

    if (t == NULL) {
        if (period_ms == 0 || !wc->running) {
            return;         /* nothing to stop; or the master's canary */
        }

        t = ngx_calloc(sizeof(ngx_proxy_wasm_tick_t), mod->log);
        if (t == NULL) {
            return;
        }

        t->plugin = plugin;
        t->mod = mod;
        t->event.handler = ngx_proxy_wasm_tick_handler;
        t->event.data = t;
        t->event.log = mod->log ? mod->log : ngx_cycle->log;
        t->event.cancelable = 1;

        t->next = wc->ticks;
        wc->ticks = t;
    }

    t->period = period_ms;

    if (t->event.timer_set) {
        ngx_del_timer(&t->event);
    }

    if (period_ms == 0 || !wc->running || ngx_proxy_wasm_stopping()) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_CORE, t->event.log, 0,
                   "proxy_wasm \"%s\": tick every %M ms",
                   pw_plugin_name(plugin), t->period);

    ngx_add_timer(&t->event, t->period);
}


static void
ngx_proxy_wasm_tick_handler(ngx_event_t *ev)
{
    int                     rc;
    ngx_proxy_wasm_tick_t  *t;

    t = ev->data;

    if (t->period == 0 || ngx_proxy_wasm_stopping()) {
        return;
    }

    /* a trap discards the VM: the library then stops the period
     * (set_tick 0) and the plugin asks again once it is rebuilt */
    rc = pw_plugin_on_tick(t->plugin);

    if (rc != PW_OK) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "proxy_wasm_module \"%V\": proxy_on_tick failed: %s",
                      &t->mod->name, pw_strerror(rc));
    }

    /* the plugin may have set another period during on_tick (armed
     * already) or stopped it */
    if (t->period && !ev->timer_set && !ngx_proxy_wasm_stopping()) {
        ngx_add_timer(ev, t->period);
    }
}


/* At worker exit, after the VMs were freed (which stopped every period):
 * frees the timers. */
void
ngx_proxy_wasm_timers_exit_process(ngx_proxy_wasm_conf_t *wc)
{
    ngx_proxy_wasm_tick_t  *t, *next;

    for (t = wc->ticks; t; t = next) {
        next = t->next;

        if (t->event.timer_set) {
            ngx_del_timer(&t->event);
        }

        ngx_free(t);
    }

    wc->ticks = NULL;
}
