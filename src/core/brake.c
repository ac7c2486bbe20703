/*
 * brake.c -- the crash-loop brake (pw_limits.brake_*, docs/ENGINE.md "The
 * crash-loop brake"): a VM that fails brake_traps times within
 * brake_window_ms is taken out for a back-off that doubles on each trip
 * soon after coming back, instead of being rebuilt at every use. While it
 * is out, pw_vm_recover refuses to rebuild it, so every stream that needs
 * it meets its failure policy (pw_chain_call) with the reason. Each change
 * of state is logged once and counted: pwasm_brake_trips_total and the
 * gauge pwasm_brake_out, labelled with the module's name.
 */
#include <stdio.h>

#include "core/core.h"

static uint64_t now_ms(pw_vm *vm) {
    return pw_vm_now_ns(vm) / 1000000u;
}

/* "4 s" for whole seconds, else "1500 ms". */
static const char *span(char *buf, size_t len, uint64_t ms) {
    if (ms && ms % 1000 == 0)
        snprintf(buf, len, "%llu s", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llu ms", (unsigned long long)ms);
    return buf;
}

/* The reason while out, with the time left at `now`. */
static void brake_why(pw_vm *vm, const char *who, uint64_t now) {
    pw_brake *b = &vm->brake;
    char w[32], r[32];
    uint32_t k = vm->lim.brake_traps < PW_BRAKE_RING ? vm->lim.brake_traps : PW_BRAKE_RING;
    snprintf(b->why, sizeof b->why, "plugin \"%s\" is taken out after %u traps in %s; retry in %s",
             who, k, span(w, sizeof w, vm->lim.brake_window_ms),
             span(r, sizeof r, b->until_ms > now ? b->until_ms - now : 0));
}

/* Who the messages name: the plugin that failed, else the VM's first
 * plugin, else the module. */
static const char *brake_who(pw_vm *vm) {
    pw_ctx *ctx = vm->cur;
    if (ctx && ctx->plugin)
        return ctx->plugin->name;
    return vm->plugins ? vm->plugins->name : vm->m->name;
}

void pw_brake_failure(pw_vm *vm) {
    pw_brake *b = &vm->brake;
    const pw_limits *l = &vm->lim;
    if (l->brake_traps == UINT32_MAX || b->out)
        return;
    uint64_t now = now_ms(vm);
    uint32_t k = l->brake_traps < PW_BRAKE_RING ? l->brake_traps : PW_BRAKE_RING;
    b->fails_ms[b->next] = now;
    b->next = (b->next + 1) % k;
    if (b->nfails < k)
        b->nfails++;
    if (b->nfails < k)
        return;
    /* the oldest of the last k failures, at b->next */
    if (now - b->fails_ms[b->next % k] > l->brake_window_ms)
        return;
    /* trip: the back-off doubles when the VM failed again soon after it
     * came back from the last one */
    uint64_t backoff = l->brake_backoff_ms;
    if (b->backoff_ms && now - b->back_ms < l->brake_max_backoff_ms)
        backoff = b->backoff_ms * 2 < l->brake_max_backoff_ms ? b->backoff_ms * 2
                                                              : l->brake_max_backoff_ms;
    b->backoff_ms = backoff;
    b->out = 1;
    b->until_ms = now + backoff;
    b->nfails = 0;
    b->next = 0;
    const char *who = brake_who(vm);
    brake_why(vm, who, now);
    pw_vm_log(vm, PROXY_LOG_ERROR, "%s (crash-loop brake: its failure policy answers meanwhile)",
              b->why);
    pw_host_metric(vm, "pwasm_brake_trips_total", "module", vm->m->name, &b->trips_metric, 1);
    pw_host_gauge_add(vm, "pwasm_brake_out", "module", vm->m->name, &b->out_metric, 1);
}

int pw_brake_check(pw_vm *vm, char *err, size_t errlen) {
    pw_brake *b = &vm->brake;
    if (!b->out)
        return 0;
    uint64_t now = now_ms(vm);
    const char *who = brake_who(vm);
    if (now < b->until_ms) {
        brake_why(vm, who, now);
        snprintf(vm->last_error, sizeof vm->last_error, "%s", b->why);
        pw_errf(err, errlen, "%s", b->why);
        return -1;
    }
    b->out = 0;
    b->back_ms = now;
    char w[32];
    pw_vm_log(vm, PROXY_LOG_WARN,
              "plugin \"%s\": the crash-loop brake's back-off of %s is over: rebuilding its VM",
              who, span(w, sizeof w, b->backoff_ms));
    pw_host_gauge_add(vm, "pwasm_brake_out", "module", vm->m->name, &b->out_metric, -1);
    return 0;
}

int pw_vm_braked(pw_vm *vm, uint64_t *retry_ms) {
    pw_brake *b = &vm->brake;
    if (!b->out)
        return 0;
    uint64_t now = now_ms(vm);
    if (now >= b->until_ms)
        return 0;
    if (retry_ms)
        *retry_ms = b->until_ms - now;
    brake_why(vm, brake_who(vm), now);
    snprintf(vm->last_error, sizeof vm->last_error, "%s", b->why);
    return 1;
}
