/* rt.h -- engine-internal runtime entry points (see rt.c). */
#ifndef PW_RT_H
#define PW_RT_H

#include "engine/engine.h"
#include "engine/glue.h"

extern const pw_glue_rt pw_rt_ops;

/* Linear memory limit for the next instantiation, in pages. */
void pw_rt_set_max_pages(uint32_t pages);

/* CPU time one outermost call may run before it is interrupted with
 * PW_TRAP_TIMEOUT (0: never). Measured in 10 ms ticks of process CPU time. */
void pw_rt_set_max_call_ms(uint32_t ms);

/* Plugin code loaded at this base address (dlinfo's l_addr): the watchdog
 * may interrupt it. */
void pw_rt_add_code(uintptr_t base);

/* The two stack floors the generated code checks (Wasm functions,
 * hostcall trampolines); see rt.c. */
const volatile uintptr_t *pw_rt_floors(void);

typedef void (*pw_rt_thunk)(void *arg);

/* Runs thunk(arg) as a Wasm call: traps inside it (from compiled code,
 * signals or pw_engine_trap) return -1 with *trap filled. Nests. */
int pw_rt_invoke(pw_rt_thunk thunk, void *arg, pw_trap *trap);

#endif
