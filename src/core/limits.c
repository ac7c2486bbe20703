/*
 * limits.c -- what one plugin may make the host do (docs/ENGINE.md
 * "Limits"): the defaults, and the refusals of hostcalls over a limit.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/core.h"

pw_limits pw_limits_resolve(const pw_limits *in)
{
    pw_limits l = in ? *in : (pw_limits){0};
    if (!l.max_header_name_bytes)
        l.max_header_name_bytes = 8192;
    if (!l.max_header_value_bytes)
        l.max_header_value_bytes = 65536;
    if (!l.max_callback_bytes)
        l.max_callback_bytes = 32ull << 20;
    return l;
}

/* A host notice about ctx's plugin, at WARN. */
static void notice(pw_vm *vm, pw_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void notice(pw_vm *vm, pw_ctx *ctx, const char *fmt, ...)
{
    char buf[PW_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || !vm->ops->log)
        return;
    pw_str name = pw_ctx_name(vm, ctx);
    vm->ops->log(vm->host, pw_ctx_host_stream(ctx), name, PROXY_LOG_WARN,
                 (pw_str){buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1});
}

proxy_status_t pw_vm_refuse(pw_vm *vm, const char *fmt, ...)
{
    if (vm->refusal_logged)
        return PROXY_RESULT_BAD_ARGUMENT;
    vm->refusal_logged = 1;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    pw_ctx *ctx = pw_vm_ctx(vm);
    notice(vm, ctx,
           "plugin \"%s\": refused %s (further refusals in this callback "
           "are not logged)",
           pw_ctx_name(vm, ctx).data, why);
    return PROXY_RESULT_BAD_ARGUMENT;
}

int pw_vm_over_budget(pw_vm *vm, const char *call, uint64_t n)
{
    pw_vm_refuse(vm, "%s: %llu bytes over the callback's budget of %llu bytes",
                 call, (unsigned long long)n,
                 (unsigned long long)vm->lim.max_callback_bytes);
    return 0;
}
