/*
 * rt.c -- the engine's runtime: trap delivery, linear memory, signal
 * handlers, the native stack budget, the CPU time limit, and calls into
 * Wasm.
 *
 * Linear memory reserves 8 GiB of address space per instance (any 32-bit
 * address plus any 32-bit offset) and makes only the live pages accessible,
 * so the compiled code needs no bounds checks: an out-of-bounds access faults
 * in the guard region and the SIGSEGV handler turns it into a trap.
 *
 * A fault is a trap only where unwinding is safe: when the faulting
 * instruction is in a plugin's compiled code (its own functions, the glue's
 * trampolines and runtime stubs). Host code (the core, the embedder, libc)
 * is never unwound: a fault there is a bug, reported on stderr and re-raised
 * with the previous disposition, so the process crashes loudly.
 *
 * The native stack is budgeted so that host code never runs short of it:
 * every hostcall trampoline (and runtime stub that calls the host) checks
 * that at least PW_HOST_HEADROOM bytes are left, and the bulk memory
 * operations that call libc that PW_WASM_HEADROOM are, trapping ("call
 * stack exhausted") in plugin code otherwise. A deep recursion that calls a
 * hostcall at every level traps cleanly at the trampoline instead of
 * faulting inside nginx or malloc. Plugin code itself runs until it hits
 * the thread's stack guard: a fault in the guard zone during a call is a
 * trap wherever it happens, because only plugin code, the trap path and
 * the leaf libc functions plugin code calls directly (memmove, floor) can
 * get there -- everything behind a trampoline started with the headroom.
 *
 * Signal handlers (SIGSEGV, SIGBUS, SIGPROF), the alternate signal stack and
 * the CPU timer exist only while the process is attached
 * (pw_engine_attach): a process detaches before the code of this library
 * can be unmapped, and then has none of them.
 */
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/glue.h"
#include "engine/rt.h"

/* AddressSanitizer builds: a trap leaves frames without returning, as
 * siglongjmp did, whose interceptor told ASan so (their stack is
 * unpoisoned); __builtin_longjmp is not intercepted, so rt_trap says it. */
#if defined(__SANITIZE_ADDRESS__)
#define PW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PW_ASAN 1
#endif
#endif
#ifdef PW_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define PW_PAGE 65536u
#define PW_RESERVE (8ull << 30)

/* Native stack left when plugin code calls libc for a bulk memory
 * operation (memset, memmove, memcpy); and what a hostcall or a runtime
 * stub gets at least (the embedder's code, malloc, logging). Halved for
 * small stacks. */
#define PW_WASM_HEADROOM (64u << 10)
#define PW_HOST_HEADROOM (256u << 10)

/* A call's trap target: GCC/Clang's __builtin_setjmp buffer (frame
 * pointer, resume address, stack pointer). Every register is saved by the
 * calling function's prologue instead, and no signal mask is involved:
 * much cheaper than sigsetjmp(.., 0) on every callback. The trap's kind
 * travels in pw_trap_kind (__builtin_longjmp's value is always 1). Unlike
 * glibc's siglongjmp it does not unwind a CET shadow stack (processes
 * with user shadow stacks enforced are not supported). */
typedef void *pw_jmpbuf[5];
typedef struct pw_frame {
    pw_jmpbuf jb;
    struct pw_frame *prev; /* the enclosing call's */
    int depth;             /* pw_depth outside this call */
    pw_trap *trap;         /* where its trap goes */
} pw_frame;
static pw_frame *volatile pw_jmp; /* innermost call's trap target */
static volatile int pw_trap_kind;
static volatile int pw_depth;       /* Wasm calls on the stack */
static uint32_t pw_exit_code;
static uint32_t pw_max_pages = 16384; /* set per instantiation */

/* Attachment (pw_engine_attach): handlers installed in this process. */
static int pw_attached;
static struct sigaction pw_old_segv, pw_old_bus, pw_old_prof;
static void *pw_altstack; /* ours, when we installed one */

/* The stack floors the generated code compares its stack pointer with:
 * [0] before a bulk memory operation, [1] in hostcall trampolines and
 * runtime stubs. UINTPTR_MAX makes
 * the next check trap (the CPU time limit uses this to stop a plugin that
 * spends its time in hostcalls). */
static volatile uintptr_t pw_floors[2];
static uintptr_t pw_floor_wasm, pw_floor_host, pw_headroom_wasm;
static int pw_stack_known;
static volatile int pw_timed_out; /* the running call is over its limit */
/* Set when an outermost call must first run invoke_prepare(): detached,
 * stack unknown, floors raised, timer not armed (after attach or fork). */
static volatile int pw_slow = 1;

/* Watchdog (see arm_watchdog): a CPU-time tick per process; a call that is
 * still the same outermost call after max_call_ms traps. */
#define PW_TICK_MS 10
static volatile uint64_t pw_call_seq; /* outermost calls started */
static uint64_t pw_watch_seq;         /* call seen by the last tick */
static uint32_t pw_watch_ms;          /* CPU ms it has run for, by ticks */
static uint32_t pw_max_call_ms;       /* of the running outermost call */
static volatile int pw_watchdog_armed;
typedef struct {
    uintptr_t base, lo, hi;
} pw_range;
static pw_range *pw_code; /* executable segments of plugins */
static size_t pw_ncode;
/* Tables replaced by a larger one: a handler may still be reading one
 * while attached, so they are freed at the last detach. */
static pw_range **pw_retired;
static size_t pw_nretired;

const char *pw_trap_str(int kind) {
    switch (kind) {
    case PW_TRAP_OOB:
        return "out-of-bounds memory access";
    case PW_TRAP_INT_OVERFLOW:
        return "integer overflow";
    case PW_TRAP_DIV_BY_ZERO:
        return "integer divide by zero";
    case PW_TRAP_INVALID_CONVERSION:
        return "invalid conversion to integer";
    case PW_TRAP_UNREACHABLE:
        return "unreachable executed";
    case PW_TRAP_CALL_INDIRECT:
        return "invalid call_indirect";
    case PW_TRAP_UNCAUGHT_EXCEPTION:
        return "uncaught exception";
    case PW_TRAP_EXHAUSTION:
        return "call stack exhausted";
    case PW_TRAP_EXIT:
        return "proc_exit called";
    case PW_TRAP_HOST:
        return "aborted by the host";
    case PW_TRAP_OUT_OF_MEMORY:
        return "linear memory could not be allocated";
    case PW_TRAP_TIMEOUT:
        return "CPU time limit exceeded (the plugin was interrupted)";
    case PW_TRAP_DETACHED:
        return "no trap handlers in this process (the engine is detached)";
    }
    return "unknown trap";
}

__attribute__((noreturn)) static void rt_trap(int kind) {
    if (!pw_jmp || pw_depth <= 0)
        abort(); /* a trap outside any call: a bug in the engine */
    if (pw_timed_out && (kind == PW_TRAP_EXHAUSTION || kind == 0))
        kind = PW_TRAP_TIMEOUT; /* the floors were raised by the watchdog */
    pw_trap_kind = kind ? kind : PW_TRAP_HOST;
#ifdef PW_ASAN
    __asan_handle_no_return();
#endif
    __builtin_longjmp(pw_jmp->jb, 1);
}

void pw_engine_trap(int kind, uint32_t exit_code) {
    pw_exit_code = exit_code;
    rt_trap(kind);
}

static int in_plugin_code(uintptr_t pc) {
    for (size_t i = 0; i < pw_ncode; i++)
        if (pc >= pw_code[i].lo && pc < pw_code[i].hi)
            return 1;
    return 0;
}

static uintptr_t interrupted_pc(void *uc) {
#if defined(__x86_64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
#else
    (void)uc;
    return 0; /* unknown architecture: no fault is ever a trap */
#endif
}

/* Async-signal-safe "0x..." of v into p; returns the end. */
static char *put_hex(char *p, uintptr_t v) {
    char tmp[2 * sizeof v];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    *p++ = '0';
    *p++ = 'x';
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s) {
    while (*s)
        *p++ = *s++;
    return p;
}

/* The stack guard zone of the thread running Wasm: below its stack (the
 * kernel's guard gap) up to the Wasm headroom. */
static int in_stack_guard(uintptr_t addr) {
    return pw_stack_known && addr < pw_floor_wasm &&
           addr + (1u << 20) >= pw_floor_wasm - pw_headroom_wasm;
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
    uintptr_t pc = interrupted_pc(uc), addr = (uintptr_t)si->si_addr;
    if (pw_depth > 0 && pw_jmp && sig == SIGSEGV && in_stack_guard(addr))
        rt_trap(PW_TRAP_EXHAUSTION);
    if (pw_depth > 0 && pw_jmp && in_plugin_code(pc)) {
        /* SEGV_ACCERR: a PROT_NONE page of a memory reservation. */
        rt_trap(si->si_code == SEGV_ACCERR || sig == SIGBUS ? PW_TRAP_OOB : PW_TRAP_EXHAUSTION);
    }
    if (pw_depth > 0) {
        /* A fault in host code while a plugin call runs: a bug of ours or
         * of the embedder. Never unwound (it could be inside malloc). */
        char msg[256], *p = msg;
        p = put_str(p, sig == SIGBUS ? "pwasm: SIGBUS" : "pwasm: SIGSEGV");
        p = put_str(p, " in host code at pc ");
        p = put_hex(p, pc);
        p = put_str(p, " (address ");
        p = put_hex(p, (uintptr_t)si->si_addr);
        p = put_str(p, ") during a plugin call: not a plugin trap, "
                       "crashing\n");
        ssize_t w = write(2, msg, (size_t)(p - msg));
        (void)w;
    }
    /* Not ours: put back what was there and let the fault happen again. */
    sigaction(SIGSEGV, &pw_old_segv, NULL);
    sigaction(SIGBUS, &pw_old_bus, NULL);
}

/* Stops the running call at the next safe point: the next hostcall
 * trampoline, runtime stub or bulk memory operation traps with
 * PW_TRAP_TIMEOUT. */
static void raise_floors(void) {
    pw_timed_out = 1;
    pw_slow = 1;
    pw_floors[0] = UINTPTR_MAX;
    pw_floors[1] = UINTPTR_MAX;
}

static void on_tick(int sig, siginfo_t *si, void *uc) {
    if (pw_depth <= 0 || !pw_jmp) {
        /* Not during a call: hand the tick to a previous handler. */
        if ((pw_old_prof.sa_flags & SA_SIGINFO) && pw_old_prof.sa_sigaction)
            pw_old_prof.sa_sigaction(sig, si, uc);
        else if (pw_old_prof.sa_handler != SIG_DFL && pw_old_prof.sa_handler != SIG_IGN &&
                 pw_old_prof.sa_handler)
            pw_old_prof.sa_handler(sig);
        return;
    }
    if (pw_watch_seq != pw_call_seq) {
        pw_watch_seq = pw_call_seq;
        pw_watch_ms = 0;
        return;
    }
    pw_watch_ms += PW_TICK_MS;
    if (!pw_max_call_ms || pw_watch_ms < pw_max_call_ms)
        return;
    if (in_plugin_code(interrupted_pc(uc))) {
        pw_timed_out = 1;
        pw_slow = 1;
        rt_trap(PW_TRAP_TIMEOUT); /* longjmp out of plugin code */
    }
    /* In a hostcall or libc (a loop of hostcalls spends its time there):
     * stop at the next safe point instead. */
    raise_floors();
}

static void watchdog_after_fork(void) {
    pw_watchdog_armed = 0; /* timers are not inherited by fork() */
    pw_slow = 1;
}

/* Records the executable segments of a loaded plugin object: only faults
 * and ticks there are traps. */
static int add_ranges(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (info->dlpi_addr != *(uintptr_t *)data)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        size_t n = pw_ncode + 1;
        pw_range *r = malloc(n * sizeof *r);
        if (!r)
            return 1;
        if (pw_ncode)
            memcpy(r, pw_code, pw_ncode * sizeof *r);
        r[pw_ncode].base = info->dlpi_addr;
        r[pw_ncode].lo = info->dlpi_addr + ph->p_vaddr;
        r[pw_ncode].hi = r[pw_ncode].lo + ph->p_memsz;
        /* A handler may read the table at any time: publish the complete
         * new one, then its length; the old one is retired (freed once no
         * handler is installed, at the last detach). */
        pw_range *old = pw_code;
        pw_range **ret = old ? realloc(pw_retired, (pw_nretired + 1) * sizeof *ret) : NULL;
        pw_code = r;
        __atomic_store_n(&pw_ncode, n, __ATOMIC_RELEASE);
        if (ret) {
            pw_retired = ret;
            pw_retired[pw_nretired++] = old;
        }
    }
    return 1;
}

void pw_rt_add_code(uintptr_t base) {
    for (size_t i = 0; i < pw_ncode; i++)
        if (pw_code[i].base == base)
            return; /* already known (dlopen of the same object) */
    dl_iterate_phdr(add_ranges, &base);
}

/* Finds the stack of the thread that calls into Wasm and sets the floors,
 * once per process (the same after fork). Wasm runs on one thread. */
static void find_stack(void) {
    uintptr_t lo = 0;
    size_t size = 0;
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        void *addr;
        if (pthread_attr_getstack(&a, &addr, &size) == 0)
            lo = (uintptr_t)addr;
        pthread_attr_destroy(&a);
    }
    if (!lo || !size) {
        /* Unknown: assume the current position is the top of 1 MiB. */
        uintptr_t here = (uintptr_t)__builtin_frame_address(0);
        size = 1u << 20;
        lo = here - size;
    }
    size_t wasm = PW_WASM_HEADROOM, host = PW_HOST_HEADROOM;
    while (host > size / 4 && host > 16384) {
        host /= 2;
        wasm /= 2;
    }
    pw_floor_wasm = lo + wasm;
    pw_floor_host = lo + host;
    pw_headroom_wasm = wasm;
    pw_floors[0] = pw_floor_wasm;
    pw_floors[1] = pw_floor_host;
    pw_stack_known = 1;
}

/* Arms the CPU-time tick in this process (lazily: after fork too).
 * ITIMER_PROF counts user and system time: a plugin looping on hostcalls
 * (random_get, logging) spends most of its time in the kernel. */
static void arm_watchdog(void) {
    struct itimerval it = {{0, PW_TICK_MS * 1000}, {0, PW_TICK_MS * 1000}};
    pw_watchdog_armed = 1;
    setitimer(ITIMER_PROF, &it, NULL);
}

int pw_engine_attach(char *err, size_t errlen) {
    static int atfork_done;
    if (pw_attached++)
        return 0;
    pw_slow = 1;
    if (!atfork_done) {
        /* Registered against this object: glibc drops it at dlclose. */
        if (pthread_atfork(NULL, NULL, watchdog_after_fork) != 0) {
            pw_errf(err, errlen, "pthread_atfork failed");
            pw_attached = 0;
            return -1;
        }
        atfork_done = 1;
    }
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        stack_t ss;
        ss.ss_size = 1u << 16;
        ss.ss_sp = malloc(ss.ss_size);
        ss.ss_flags = 0;
        if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) {
            pw_errf(err, errlen, "sigaltstack: %s", strerror(errno));
            free(ss.ss_sp);
            pw_attached = 0;
            return -1;
        }
        pw_altstack = ss.ss_sp;
    }
    struct sigaction st;
    memset(&st, 0, sizeof st);
    st.sa_sigaction = on_tick;
    st.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&st.sa_mask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    /* SA_NODEFER: we leave the handler with a longjmp that does not
     * restore the signal mask (see pw_jmpbuf), so the signal must not be
     * blocked while the handler runs. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &st, &pw_old_prof) != 0 || sigaction(SIGSEGV, &sa, &pw_old_segv) != 0 ||
        sigaction(SIGBUS, &sa, &pw_old_bus) != 0) {
        pw_errf(err, errlen, "sigaction: %s", strerror(errno));
        pw_attached = 1;
        pw_engine_detach();
        return -1;
    }
    return 0;
}

void pw_engine_detach(void) {
    if (pw_attached <= 0 || --pw_attached > 0)
        return;
    pw_slow = 1;
    /* The timer first, with its signal blocked, and a tick already
     * pending taken: none may arrive once the handler is gone (SIGPROF's
     * default action ends the process). */
    sigset_t prof, saved;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    sigprocmask(SIG_BLOCK, &prof, &saved);
    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_PROF, &off, NULL);
    pw_watchdog_armed = 0;
    struct timespec zero = {0, 0};
    while (sigtimedwait(&prof, NULL, &zero) == SIGPROF)
        ;
    sigaction(SIGPROF, &pw_old_prof, NULL);
    sigprocmask(SIG_SETMASK, &saved, NULL);
    sigaction(SIGSEGV, &pw_old_segv, NULL);
    sigaction(SIGBUS, &pw_old_bus, NULL);
    memset(&pw_old_prof, 0, sizeof pw_old_prof);
    if (pw_altstack) {
        stack_t ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_flags = SS_DISABLE;
        if (sigaltstack(&ss, NULL) == 0)
            free(pw_altstack);
        pw_altstack = NULL;
    }
    for (size_t i = 0; i < pw_nretired; i++)
        free(pw_retired[i]);
    free(pw_retired);
    pw_retired = NULL;
    pw_nretired = 0;
}

/* ---------------------------------------------------------------- memory */

static void rt_allocate_memory(wasm_rt_memory_t *m, uint32_t initial, uint32_t max) {
    uint32_t limit = max < pw_max_pages ? max : pw_max_pages;
    memset(m, 0, sizeof *m);
    if (initial > limit)
        rt_trap(PW_TRAP_OUT_OF_MEMORY);
    void *p =
        mmap(NULL, PW_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        rt_trap(PW_TRAP_OUT_OF_MEMORY);
    if (initial && mprotect(p, (size_t)initial * PW_PAGE, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, PW_RESERVE);
        rt_trap(PW_TRAP_OUT_OF_MEMORY);
    }
    m->data = p;
    m->pages = initial;
    m->max_pages = limit;
    m->size = initial * PW_PAGE;
}

static uint32_t rt_grow_memory(wasm_rt_memory_t *m, uint32_t delta) {
    uint32_t old = m->pages;
    uint64_t pages = (uint64_t)old + delta;
    if (pages > m->max_pages || pages > 65535)
        return UINT32_MAX;
    if (delta && mprotect(m->data + (size_t)old * PW_PAGE, (size_t)delta * PW_PAGE,
                          PROT_READ | PROT_WRITE) != 0)
        return UINT32_MAX;
    m->pages = (uint32_t)pages;
    m->size = (uint32_t)(pages * PW_PAGE);
    return old;
}

static void rt_free_memory(wasm_rt_memory_t *m) {
    if (m->data)
        munmap(m->data, PW_RESERVE);
    m->data = NULL;
}

const pw_glue_rt pw_rt_ops = {
    .trap = rt_trap,
    .allocate_memory = rt_allocate_memory,
    .grow_memory = rt_grow_memory,
    .free_memory = rt_free_memory,
    .floors = pw_floors,
};

void pw_rt_set_max_pages(uint32_t pages) {
    pw_max_pages = pages ? (pages > 65535 ? 65535 : pages) : 16384;
}

/* ----------------------------------------------------------------- calls */

typedef uint32_t u32;

/* What an outermost call needs first, rarely: refuses it when detached,
 * finds the stack, lowers floors raised for the last call, arms the timer.
 * Off the fast path of pw_rt_invoke (one flag test). */
__attribute__((noinline, cold)) static int invoke_prepare(pw_trap *trap) {
    if (!pw_attached) {
        if (trap) {
            trap->kind = PW_TRAP_DETACHED;
            trap->exit_code = 0;
        }
        return -1;
    }
    pw_slow = 0;
    if (!pw_stack_known)
        find_stack();
    if (pw_timed_out) {
        pw_timed_out = 0; /* the floors were raised for the last call */
        pw_floors[0] = pw_floor_wasm;
        pw_floors[1] = pw_floor_host;
    }
    if (!pw_watchdog_armed)
        arm_watchdog();
    return 0;
}

/* After a trap of the innermost call: its frame is popped, the trap
 * reported. -1. */
static __attribute__((noinline)) int rt_trapped(void) {
    pw_frame *fr = pw_jmp;
    int kind = pw_trap_kind;
    pw_depth = fr->depth;
    pw_jmp = fr->prev;
    if (fr->trap) {
        fr->trap->kind = kind;
        fr->trap->exit_code = kind == PW_TRAP_EXIT ? pw_exit_code : 0;
    }
    return -1;
}

/* f(instance, args...) with f's arity: the only place that casts an
 * export's pointer to its type (i32 parameters, at most one i32 result;
 * pw_wmod_func accepts no other). */
static inline __attribute__((always_inline)) u32 call_typed(const pw_wfunc *f, void *i,
                                                            const u32 *a) {
    void (*fn)(void) = f->fn;
    switch (f->nresults ? 8 + f->nparams : f->nparams) {
    case 0:
        ((void (*)(void *))fn)(i);
        return 0;
    case 1:
        ((void (*)(void *, u32))fn)(i, a[0]);
        return 0;
    case 2:
        ((void (*)(void *, u32, u32))fn)(i, a[0], a[1]);
        return 0;
    case 3:
        ((void (*)(void *, u32, u32, u32))fn)(i, a[0], a[1], a[2]);
        return 0;
    case 4:
        ((void (*)(void *, u32, u32, u32, u32))fn)(i, a[0], a[1], a[2], a[3]);
        return 0;
    case 5:
        ((void (*)(void *, u32, u32, u32, u32, u32))fn)(i, a[0], a[1], a[2], a[3], a[4]);
        return 0;
    case 6:
        ((void (*)(void *, u32, u32, u32, u32, u32, u32))fn)(i, a[0], a[1], a[2], a[3], a[4],
                                                             a[5]);
        return 0;
    case 8:
        return ((u32(*)(void *))fn)(i);
    case 9:
        return ((u32(*)(void *, u32))fn)(i, a[0]);
    case 10:
        return ((u32(*)(void *, u32, u32))fn)(i, a[0], a[1]);
    case 11:
        return ((u32(*)(void *, u32, u32, u32))fn)(i, a[0], a[1], a[2]);
    case 12:
        return ((u32(*)(void *, u32, u32, u32, u32))fn)(i, a[0], a[1], a[2], a[3]);
    case 13:
        return ((u32(*)(void *, u32, u32, u32, u32, u32))fn)(i, a[0], a[1], a[2], a[3], a[4]);
    case 14:
        return ((u32(*)(void *, u32, u32, u32, u32, u32, u32))fn)(i, a[0], a[1], a[2], a[3], a[4],
                                                                  a[5]);
    }
    return 0;
}

/* pw_rt_invoke of an export, without the thunk: the trap target, the call
 * and the result in one frame (the path of every callback). */
int pw_rt_call(void *instance, const pw_wfunc *f, const uint32_t *args, uint32_t max_call_ms,
               uint32_t *ret, pw_trap *trap) {
    int depth = pw_depth;
    if (depth == 0) {
        if (__builtin_expect(pw_slow, 0) && invoke_prepare(trap) != 0)
            return -1;
        pw_max_call_ms = max_call_ms; /* the limit travels with the call */
        pw_call_seq++;
    }
    /* What the trap path needs is reached from pw_jmp alone (nothing of
     * this frame's registers survives __builtin_longjmp). */
    pw_frame fr;
    fr.prev = pw_jmp;
    fr.depth = depth;
    fr.trap = trap;
    if (__builtin_setjmp(fr.jb) == 0) {
        pw_jmp = &fr;
        pw_depth = depth + 1;
        u32 r = call_typed(f, instance, args);
        pw_depth = depth;
        pw_jmp = fr.prev;
        if (ret)
            *ret = r;
        return 0;
    }
    return rt_trapped();
}

int pw_rt_invoke(pw_rt_thunk thunk, void *arg, uint32_t max_call_ms, pw_trap *trap) {
    /* thunk(arg) is an export of no parameters called with arg as its
     * instance */
    const pw_wfunc f = {.fn = (void (*)(void))thunk, .nparams = 0, .nresults = 0};
    return pw_rt_call(arg, &f, NULL, max_call_ms, NULL, trap);
}
