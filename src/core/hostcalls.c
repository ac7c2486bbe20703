/*
 * hostcalls.c -- the registry of every host function, generated from
 * hostcalls.def: the engine's import table and the public pw_hostcalls().
 * The functions themselves live by area in hc_*.c and wasi.c.
 */
#include <string.h>

#include "core/hc.h"

#define F(fn) ((void (*)(void))(fn))

/* env rows, then WASI rows under each of its two module names. */
static const pw_host_func funcs[] = {
#define PW_HOSTCALL(name, area, impl, sig, args, fn) {"env", name, sig, F(fn)},
#include "core/hostcalls.def"
#define PW_WASI(name, sig, args, fn) {"wasi_snapshot_preview1", name, sig, F(fn)},
#include "core/hostcalls.def"
#define PW_WASI(name, sig, args, fn) {"wasi_unstable", name, sig, F(fn)},
#include "core/hostcalls.def"
};

static const pw_hostcall_info infos[] = {
#define PW_HOSTCALL(name, area, impl, sig, args, fn)                                              \
    {"env", name, sig, impl, args, PW_AREA_##area},
#include "core/hostcalls.def"
#define PW_WASI(name, sig, args, fn) {"wasi_snapshot_preview1", name, sig, 1, args, PW_AREA_WASI},
#include "core/hostcalls.def"
#define PW_WASI(name, sig, args, fn) {"wasi_unstable", name, sig, 1, args, PW_AREA_WASI},
#include "core/hostcalls.def"
};

#define NFUNCS (sizeof funcs / sizeof *funcs)
_Static_assert(sizeof infos / sizeof *infos == NFUNCS, "one info row per host function");

const pw_host_func *pw_core_host_funcs(size_t *n) {
    *n = NFUNCS;
    return funcs;
}

const pw_hostcall_info *pw_hostcalls(size_t *n) {
    *n = NFUNCS;
    return infos;
}

const pw_hostcall_info *pw_hostcall_find(const char *module, const char *name) {
    for (size_t i = 0; i < NFUNCS; i++)
        if (!strcmp(infos[i].name, name) && !strcmp(infos[i].module, module))
            return &infos[i];
    return NULL;
}

const char *pw_area_name(int area) {
    static const char *const names[PW_AREA_COUNT] = {
        [PW_AREA_LOG] = "logging, time, timers",
        [PW_AREA_BUFFERS] = "configuration and buffers",
        [PW_AREA_MAPS] = "header maps",
        [PW_AREA_PROPERTIES] = "properties",
        [PW_AREA_STREAM] = "stream control, local responses",
        [PW_AREA_CALLOUTS] = "HTTP and gRPC call-outs",
        [PW_AREA_SHARED] = "shared data and queues",
        [PW_AREA_METRICS] = "metrics",
        [PW_AREA_CONTEXTS] = "contexts, foreign functions",
        [PW_AREA_EMSCRIPTEN] = "Emscripten",
        [PW_AREA_WASI] = "WASI",
        [PW_AREA_OTHER] = "other",
    };
    return area >= 0 && area < PW_AREA_COUNT ? names[area] : "other";
}
