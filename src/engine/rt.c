/*
 * rt.c -- the engine's runtime: trap delivery, linear memory, signal
 * handlers, and calls into Wasm.
 *
 * Linear memory reserves 8 GiB of address space per instance (any 32-bit
 * address plus any 32-bit offset) and makes only the live pages accessible,
 * so the compiled code needs no bounds checks: an out-of-bounds access faults
 * in the guard region and the SIGSEGV handler turns it into a trap. A stack
 * overflow faults on the thread's guard page; the handler runs on an
 * alternate stack and traps with "call stack exhausted". Faults while no Wasm
 * is running are not ours: the handler restores the previous disposition and
 * returns, so the fault is raised again and handled as it would have been.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <link.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>

#include "engine/engine.h"
#include "engine/glue.h"
#include "engine/rt.h"

#define PW_PAGE 65536u
#define PW_RESERVE (8ull << 30)

static sigjmp_buf *volatile pw_jmp;  /* innermost call's trap target */
static volatile int pw_depth;        /* Wasm calls on the stack */
static uint32_t pw_exit_code;
static uint32_t pw_max_pages = 16384; /* set per instantiation */
static int pw_initialized;
static struct sigaction pw_old_segv, pw_old_bus;

/* Watchdog (see pw_rt_arm_watchdog): a CPU-time tick per process; a call
 * that is still the same outermost call after max_call_ms traps, but only
 * when the tick interrupts plugin code (never host or libc code). */
#define PW_TICK_MS 10
static volatile uint64_t pw_call_seq;  /* outermost calls started */
static uint64_t pw_watch_seq;          /* call seen by the last tick */
static uint32_t pw_watch_ms;           /* CPU ms it has run for, by ticks */
static uint32_t pw_max_call_ms = 1000;
static volatile int pw_watchdog_armed;
typedef struct { uintptr_t base, lo, hi; } pw_range;
static pw_range *pw_code;              /* executable segments of plugins */
static size_t pw_ncode;

const char *pw_trap_str(int kind)
{
    switch (kind) {
    case PW_TRAP_OOB: return "out-of-bounds memory access";
    case PW_TRAP_INT_OVERFLOW: return "integer overflow";
    case PW_TRAP_DIV_BY_ZERO: return "integer divide by zero";
    case PW_TRAP_INVALID_CONVERSION: return "invalid conversion to integer";
    case PW_TRAP_UNREACHABLE: return "unreachable executed";
    case PW_TRAP_CALL_INDIRECT: return "invalid call_indirect";
    case PW_TRAP_UNCAUGHT_EXCEPTION: return "uncaught exception";
    case PW_TRAP_EXHAUSTION: return "call stack exhausted";
    case PW_TRAP_EXIT: return "proc_exit called";
    case PW_TRAP_HOST: return "aborted by the host";
    case PW_TRAP_OUT_OF_MEMORY: return "linear memory could not be allocated";
    case PW_TRAP_TIMEOUT: return "CPU time limit exceeded (the plugin was interrupted)";
    }
    return "unknown trap";
}

__attribute__((noreturn)) static void rt_trap(int kind)
{
    if (!pw_jmp || pw_depth <= 0)
        abort(); /* a trap outside any call: a bug in the engine */
    siglongjmp(*pw_jmp, kind ? kind : PW_TRAP_HOST);
}

void pw_engine_trap(int kind, uint32_t exit_code)
{
    pw_exit_code = exit_code;
    rt_trap(kind);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (pw_depth > 0 && pw_jmp) {
        /* SEGV_ACCERR: a PROT_NONE page of a memory reservation. Anything
         * else while Wasm runs is the stack guard. */
        rt_trap(si->si_code == SEGV_ACCERR || sig == SIGBUS
                    ? PW_TRAP_OOB
                    : PW_TRAP_EXHAUSTION);
    }
    /* Not ours: put back what was there and let the fault happen again. */
    sigaction(SIGSEGV, &pw_old_segv, NULL);
    sigaction(SIGBUS, &pw_old_bus, NULL);
}

static uintptr_t interrupted_pc(void *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
#else
    (void)uc;
    return 0; /* unknown architecture: never interrupt */
#endif
}

static void on_tick(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    if (pw_depth <= 0 || !pw_jmp)
        return;
    if (pw_watch_seq != pw_call_seq) {
        pw_watch_seq = pw_call_seq;
        pw_watch_ms = 0;
        return;
    }
    pw_watch_ms += PW_TICK_MS;
    if (!pw_max_call_ms || pw_watch_ms < pw_max_call_ms)
        return;
    uintptr_t pc = interrupted_pc(uc);
    for (size_t i = 0; i < pw_ncode; i++)
        if (pc >= pw_code[i].lo && pc < pw_code[i].hi)
            rt_trap(PW_TRAP_TIMEOUT); /* siglongjmp out of plugin code */
}

static void watchdog_after_fork(void)
{
    pw_watchdog_armed = 0; /* timers are not inherited by fork() */
}

void pw_rt_set_max_call_ms(uint32_t ms)
{
    pw_max_call_ms = ms;
}

/* Records the executable segments of a loaded plugin object, so the tick
 * only ever unwinds plugin code. */
static int add_ranges(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_addr != *(uintptr_t *)data)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        pw_range *r = realloc(pw_code, (pw_ncode + 1) * sizeof *r);
        if (!r)
            return 1;
        r[pw_ncode].base = info->dlpi_addr;
        r[pw_ncode].lo = info->dlpi_addr + ph->p_vaddr;
        r[pw_ncode].hi = r[pw_ncode].lo + ph->p_memsz;
        pw_code = r; /* the handler reads pw_ncode after the entry is set */
        pw_ncode++;
    }
    return 1;
}

void pw_rt_add_code(uintptr_t base)
{
    for (size_t i = 0; i < pw_ncode; i++)
        if (pw_code[i].base == base)
            return; /* already known (dlopen of the same object) */
    dl_iterate_phdr(add_ranges, &base);
}

/* Arms the CPU-time tick in this process (lazily: after fork too). */
static void arm_watchdog(void)
{
    struct itimerval it = {{0, PW_TICK_MS * 1000}, {0, PW_TICK_MS * 1000}};
    pw_watchdog_armed = 1;
    setitimer(ITIMER_VIRTUAL, &it, NULL);
}

int pw_engine_init(char *err, size_t errlen)
{
    if (pw_initialized)
        return 0;
    struct sigaction st;
    memset(&st, 0, sizeof st);
    st.sa_sigaction = on_tick;
    st.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&st.sa_mask);
    if (sigaction(SIGVTALRM, &st, NULL) != 0 ||
        pthread_atfork(NULL, NULL, watchdog_after_fork) != 0) {
        snprintf(err, errlen, "watchdog: %s", strerror(errno));
        return -1;
    }
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        stack_t ss;
        ss.ss_size = 1u << 16;
        ss.ss_sp = malloc(ss.ss_size);
        ss.ss_flags = 0;
        if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) {
            snprintf(err, errlen, "sigaltstack: %s", strerror(errno));
            free(ss.ss_sp);
            return -1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    /* SA_NODEFER: we leave the handler with siglongjmp without restoring
     * the signal mask (sigsetjmp(.., 0) is much cheaper), so the signal
     * must not be blocked while the handler runs. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &pw_old_segv) != 0 ||
        sigaction(SIGBUS, &sa, &pw_old_bus) != 0) {
        snprintf(err, errlen, "sigaction: %s", strerror(errno));
        return -1;
    }
    pw_initialized = 1;
    return 0;
}

/* ---------------------------------------------------------------- memory */

static void rt_allocate_memory(wasm_rt_memory_t *m, uint32_t initial,
                               uint32_t max)
{
    uint32_t limit = max < pw_max_pages ? max : pw_max_pages;
    memset(m, 0, sizeof *m);
    if (initial > limit)
        rt_trap(PW_TRAP_OUT_OF_MEMORY);
    void *p = mmap(NULL, PW_RESERVE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        rt_trap(PW_TRAP_OUT_OF_MEMORY);
    if (initial &&
        mprotect(p, (size_t)initial * PW_PAGE, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, PW_RESERVE);
        rt_trap(PW_TRAP_OUT_OF_MEMORY);
    }
    m->data = p;
    m->pages = initial;
    m->max_pages = limit;
    m->size = initial * PW_PAGE;
}

static uint32_t rt_grow_memory(wasm_rt_memory_t *m, uint32_t delta)
{
    uint32_t old = m->pages;
    uint64_t pages = (uint64_t)old + delta;
    if (pages > m->max_pages || pages > 65535)
        return UINT32_MAX;
    if (delta &&
        mprotect(m->data + (size_t)old * PW_PAGE, (size_t)delta * PW_PAGE,
                 PROT_READ | PROT_WRITE) != 0)
        return UINT32_MAX;
    m->pages = (uint32_t)pages;
    m->size = (uint32_t)(pages * PW_PAGE);
    return old;
}

static void rt_free_memory(wasm_rt_memory_t *m)
{
    if (m->data)
        munmap(m->data, PW_RESERVE);
    m->data = NULL;
}

const pw_glue_rt pw_rt_ops = {
    .trap = rt_trap,
    .allocate_memory = rt_allocate_memory,
    .grow_memory = rt_grow_memory,
    .free_memory = rt_free_memory,
};

void pw_rt_set_max_pages(uint32_t pages)
{
    pw_max_pages = pages ? (pages > 65535 ? 65535 : pages) : 16384;
}

/* ----------------------------------------------------------------- calls */

typedef uint32_t u32;

int pw_rt_invoke(pw_rt_thunk thunk, void *arg, pw_trap *trap)
{
    sigjmp_buf jb;
    sigjmp_buf *volatile saved = pw_jmp;
    volatile int depth = pw_depth;
    if (!pw_watchdog_armed && pw_max_call_ms)
        arm_watchdog();
    int kind = sigsetjmp(jb, 0);
    if (kind == 0) {
        if (depth == 0)
            pw_call_seq++;
        pw_jmp = &jb;
        pw_depth = depth + 1;
        thunk(arg);
        pw_depth = depth;
        pw_jmp = saved;
        return 0;
    }
    pw_depth = depth;
    pw_jmp = saved;
    if (trap) {
        trap->kind = kind;
        trap->exit_code = kind == PW_TRAP_EXIT ? pw_exit_code : 0;
    }
    return -1;
}
