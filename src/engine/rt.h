/* rt.h -- engine-internal runtime entry points (see rt.c). */
#ifndef PW_RT_H
#define PW_RT_H

#include "engine/engine.h"
#include "engine/glue.h"

extern const pw_glue_rt pw_rt_ops;

/* Linear memory limit for the next instantiation, in pages. */
void pw_rt_set_max_pages(uint32_t pages);

/* Plugin code loaded at this base address (dlinfo's l_addr): the watchdog
 * may interrupt it. */
void pw_rt_add_code(uintptr_t base);

typedef void (*pw_rt_thunk)(void *arg);

/* Runs thunk(arg) as a Wasm call: traps inside it (from compiled code,
 * signals or pw_engine_trap) return -1 with *trap filled. Nests. An
 * outermost call may use max_call_ms of CPU time (user and system, 10 ms
 * ticks) before it is interrupted with PW_TRAP_TIMEOUT (0: no limit);
 * nested calls run under the outermost one's limit. */
int pw_rt_invoke(pw_rt_thunk thunk, void *arg, uint32_t max_call_ms, pw_trap *trap);

/* pw_rt_invoke of f(instance, args...) (f->nparams arguments): 0 with its
 * result in *ret (when f has one and ret is non-NULL; else 0 there), or -1
 * with *trap. */
int pw_rt_call(void *instance, const pw_wfunc *f, const uint32_t *args, uint32_t max_call_ms,
               uint32_t *ret, pw_trap *trap);

#endif
