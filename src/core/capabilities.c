/*
 * capabilities.c -- the capability allow-list of a module (Envoy's
 * capability_restriction_config): hostcalls grouped into capabilities, and
 * pw_module_restrict, which answers every hostcall of a denied capability
 * with a stub of the same signature (docs/ABI.md "Capabilities").
 *
 * The stub replaces the function in the module's host table (the compiled
 * code calls through that table), so a denied hostcall costs nothing at
 * call time and allowed ones are untouched. Hostcalls every plugin needs to
 * run at all (configuration and buffers, proxy_get_status, contexts,
 * Emscripten's, WASI's arguments, environment and proc_exit) belong to no
 * capability and cannot be denied.
 */
#include <stdio.h>
#include <string.h>

#include "core/hc.h"

#define F(fn) ((void (*)(void))(fn))

/* WASI errno "capabilities insufficient" (__WASI_ERRNO_NOTCAPABLE). */
#define WASI_ENOTCAPABLE 76

static const char *const cap_names[PW_CAP_COUNT] = {
    [PW_CAP_LOG] = "log",
    [PW_CAP_TIME] = "time",
    [PW_CAP_TIMERS] = "timers",
    [PW_CAP_HEADERS] = "headers",
    [PW_CAP_PROPERTIES] = "properties",
    [PW_CAP_STREAM] = "stream",
    [PW_CAP_HTTP_CALL] = "http_call",
    [PW_CAP_GRPC] = "grpc",
    [PW_CAP_SHARED_DATA] = "shared_data",
    [PW_CAP_SHARED_QUEUE] = "shared_queue",
    [PW_CAP_METRICS] = "metrics",
    [PW_CAP_FOREIGN] = "foreign",
    [PW_CAP_WASI_CLOCK] = "wasi_clock",
    [PW_CAP_WASI_RANDOM] = "wasi_random",
    [PW_CAP_WASI_IO] = "wasi_io",
};

const char *pw_capability_name(int cap) {
    return cap >= 0 && cap < PW_CAP_COUNT ? cap_names[cap] : NULL;
}

static int prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

int pw_capability_of(const char *module, const char *name) {
    const pw_hostcall_info *h = pw_hostcall_find(module, name);
    if (!h)
        return -1;
    switch (h->area) {
    case PW_AREA_LOG:
        return !strcmp(name, "proxy_get_current_time_nanoseconds")   ? PW_CAP_TIME
               : !strcmp(name, "proxy_set_tick_period_milliseconds") ? PW_CAP_TIMERS
                                                                     : PW_CAP_LOG;
    case PW_AREA_MAPS:
        return PW_CAP_HEADERS;
    case PW_AREA_PROPERTIES:
        return PW_CAP_PROPERTIES;
    case PW_AREA_STREAM:
        return PW_CAP_STREAM;
    case PW_AREA_CALLOUTS:
        return !strcmp(name, "proxy_http_call") ? PW_CAP_HTTP_CALL
               : prefix(name, "proxy_grpc_")    ? PW_CAP_GRPC
                                                : -1; /* proxy_get_status */
    case PW_AREA_SHARED:
        return strstr(name, "shared_data") ? PW_CAP_SHARED_DATA : PW_CAP_SHARED_QUEUE;
    case PW_AREA_METRICS:
        return PW_CAP_METRICS;
    case PW_AREA_CONTEXTS:
        return !strcmp(name, "proxy_call_foreign_function") ? PW_CAP_FOREIGN : -1;
    case PW_AREA_WASI:
        if (prefix(name, "clock_"))
            return PW_CAP_WASI_CLOCK;
        if (!strcmp(name, "random_get"))
            return PW_CAP_WASI_RANDOM;
        if (prefix(name, "args_") || prefix(name, "environ_") || prefix(name, "proc_") ||
            !strcmp(name, "sched_yield"))
            return -1;
        return PW_CAP_WASI_IO;
    default:
        return -1; /* configuration and buffers, Emscripten */
    }
}

/* A comma-separated list of names into a bit set. */
static int parse_list(const char *list, size_t len, uint32_t *set, char *err, size_t errlen) {
    uint32_t s = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && list[j] != ',')
            j++;
        int found = -1;
        for (int c = 0; c < PW_CAP_COUNT; c++)
            if (strlen(cap_names[c]) == j - i && !memcmp(cap_names[c], list + i, j - i))
                found = c;
        if (found < 0) {
            snprintf(err, errlen,
                     "unknown capability \"%.*s\" (known: log, time, timers, headers, "
                     "properties, stream, http_call, grpc, shared_data, shared_queue, metrics, "
                     "foreign, wasi_clock, wasi_random, wasi_io)",
                     (int)(j - i), list + i);
            return PW_EINVAL;
        }
        s |= 1u << found;
        i = j + 1;
    }
    *set = s;
    return PW_OK;
}

/* -------------------------------------------------------------- stubs */

/* One stub per signature a deniable hostcall has: env functions answer
 * Unimplemented, WASI ones ENOTCAPABLE. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
static u32 env_v(void *c) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
static u32 wasi_v(void *c) {
    return WASI_ENOTCAPABLE;
}
#define PW_DENY_STUB(id, ...)                                                                     \
    static u32 env_##id(void *c, __VA_ARGS__) {                                                   \
        return PROXY_RESULT_UNIMPLEMENTED;                                                        \
    }                                                                                             \
    static u32 wasi_##id(void *c, __VA_ARGS__) {                                                  \
        return WASI_ENOTCAPABLE;                                                                  \
    }
PW_DENY_STUB(i, u32 a0)
PW_DENY_STUB(iL, u32 a0, u64 a1)
PW_DENY_STUB(iLL, u32 a0, u64 a1, u64 a2)
PW_DENY_STUB(iLLi, u32 a0, u64 a1, u64 a2, u32 a3)
PW_DENY_STUB(iLi, u32 a0, u64 a1, u32 a2)
PW_DENY_STUB(iLii, u32 a0, u64 a1, u32 a2, u32 a3)
PW_DENY_STUB(ii, u32 a0, u32 a1)
PW_DENY_STUB(iii, u32 a0, u32 a1, u32 a2)
PW_DENY_STUB(iiiLi, u32 a0, u32 a1, u32 a2, u64 a3, u32 a4)
PW_DENY_STUB(iiii, u32 a0, u32 a1, u32 a2, u32 a3)
PW_DENY_STUB(iiiiLLi, u32 a0, u32 a1, u32 a2, u32 a3, u64 a4, u64 a5, u32 a6)
PW_DENY_STUB(iiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4)
PW_DENY_STUB(iiiiiLLii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u64 a5, u64 a6, u32 a7, u32 a8)
PW_DENY_STUB(iiiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5)
PW_DENY_STUB(iiiiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5, u32 a6)
PW_DENY_STUB(iiiiiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5, u32 a6, u32 a7)
PW_DENY_STUB(iiiiiiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5, u32 a6, u32 a7, u32 a8)
PW_DENY_STUB(iiiiiiiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5, u32 a6, u32 a7, u32 a8,
             u32 a9)
PW_DENY_STUB(iiiiiiiiiiii, u32 a0, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5, u32 a6, u32 a7, u32 a8,
             u32 a9, u32 a10, u32 a11)
#undef PW_DENY_STUB
#pragma GCC diagnostic pop

static const struct {
    const char *sig;
    void (*env)(void);
    void (*wasi)(void);
} stubs[] = {
    {":i", F(env_v), F(wasi_v)},
    {"i:i", F(env_i), F(wasi_i)},
    {"iI:i", F(env_iL), F(wasi_iL)},
    {"iII:i", F(env_iLL), F(wasi_iLL)},
    {"iIIi:i", F(env_iLLi), F(wasi_iLLi)},
    {"iIi:i", F(env_iLi), F(wasi_iLi)},
    {"iIii:i", F(env_iLii), F(wasi_iLii)},
    {"ii:i", F(env_ii), F(wasi_ii)},
    {"iii:i", F(env_iii), F(wasi_iii)},
    {"iiiIi:i", F(env_iiiLi), F(wasi_iiiLi)},
    {"iiii:i", F(env_iiii), F(wasi_iiii)},
    {"iiiiIIi:i", F(env_iiiiLLi), F(wasi_iiiiLLi)},
    {"iiiii:i", F(env_iiiii), F(wasi_iiiii)},
    {"iiiiiIIii:i", F(env_iiiiiLLii), F(wasi_iiiiiLLii)},
    {"iiiiii:i", F(env_iiiiii), F(wasi_iiiiii)},
    {"iiiiiii:i", F(env_iiiiiii), F(wasi_iiiiiii)},
    {"iiiiiiii:i", F(env_iiiiiiii), F(wasi_iiiiiiii)},
    {"iiiiiiiii:i", F(env_iiiiiiiii), F(wasi_iiiiiiiii)},
    {"iiiiiiiiii:i", F(env_iiiiiiiiii), F(wasi_iiiiiiiiii)},
    {"iiiiiiiiiiii:i", F(env_iiiiiiiiiiii), F(wasi_iiiiiiiiiiii)},
};

/* The stub for host function f; NULL if its signature has none (a test
 * checks that every deniable hostcall has one). */
void (*pw_capability_stub(const pw_host_func *f))(void) {
    for (size_t i = 0; i < sizeof stubs / sizeof *stubs; i++)
        if (!strcmp(stubs[i].sig, f->sig))
            return strcmp(f->module, "env") ? stubs[i].wasi : stubs[i].env;
    return NULL;
}

int pw_module_restrict(pw_module *m, uint32_t allowed, void (*warn)(void *data, const char *msg),
                       void *data) {
    size_t n;
    const pw_host_func *funcs = pw_core_host_funcs(&n);
    int denied = 0;
    for (size_t i = 0; i < n; i++) {
        int cap = pw_capability_of(funcs[i].module, funcs[i].name);
        void (*stub)(void) = cap >= 0 ? pw_capability_stub(&funcs[i]) : NULL;
        if (cap >= 0 && !stub && !(allowed & (1u << cap)) && warn) {
            char msg[256]; /* a bug of this file: every deniable signature has a stub */
            snprintf(msg, sizeof msg, "%s.%s (%s) cannot be denied: no stub for its signature",
                     funcs[i].module, funcs[i].name, funcs[i].sig);
            warn(data, msg);
        }
        int deny = stub && !(allowed & (1u << cap));
        pw_wmod_set_import(m->wmod, i, deny ? stub : funcs[i].fn);
        if (!deny || !m->imports || !m->imports[i])
            continue;
        denied++;
        if (warn) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "module \"%s\" imports %s.%s of capability \"%s\", which is denied: it "
                     "answers %s",
                     m->name, funcs[i].module, funcs[i].name, cap_names[cap],
                     strcmp(funcs[i].module, "env") ? "ENOTCAPABLE (76)" : "Unimplemented");
            warn(data, msg);
        }
    }
    return denied;
}

int pw_capability_parse(const char *rule, size_t len, uint32_t *allowed, char *err,
                        size_t errlen) {
    uint32_t set;
    if (len >= 6 && !memcmp(rule, "allow=", 6)) {
        if (parse_list(rule + 6, len - 6, &set, err, errlen) != PW_OK)
            return PW_EINVAL;
        *allowed = set;
        return PW_OK;
    }
    if (len >= 5 && !memcmp(rule, "deny=", 5)) {
        if (parse_list(rule + 5, len - 5, &set, err, errlen) != PW_OK)
            return PW_EINVAL;
        *allowed = PW_CAP_ALL & ~set;
        return PW_OK;
    }
    snprintf(err, errlen, "expected \"allow=LIST\" or \"deny=LIST\", not \"%.*s\"",
             len <= 64 ? (int)len : 64, rule);
    return PW_EINVAL;
}
