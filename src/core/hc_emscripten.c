/*
 * hc_emscripten.c -- what C++ plugins built with Emscripten import besides
 * the ABI: emscripten_notify_memory_growth and pthread_equal (docs/ABI.md
 * §9).
 */
#include "core/hc.h"

/* Linear memory grew: nothing to do, the engine's base pointer is stable. */
void pw_hc_emscripten_notify_memory_growth(PW_UNUSED void *c, PW_UNUSED u32 index) {}

/* One thread per VM: thread ids are equal when their values are. */
u32 pw_hc_pthread_equal(PW_UNUSED void *c, u32 a, u32 b) {
    return a == b;
}
