/*
 * wasi.c -- WASI preview 1 for Proxy-Wasm modules (docs/ABI.md §4.2),
 * registered under both `wasi_snapshot_preview1` and `wasi_unstable`
 * (hostcalls.def).
 *
 * Sandboxed: no files, no sockets, empty arguments and environment. stdout
 * and stderr go to the host log (INFO / ERROR); clocks and random_get work;
 * proc_exit ends the instance (a trap) except proc_exit(0) during start-up.
 */
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "core/hc.h"

#define U PW_UNUSED

enum {
    WASI_ESUCCESS = 0,
    WASI_EBADF = 8,
    WASI_EFAULT = 21,
    WASI_EINVAL = 28,
    WASI_ENOENT = 44,
    WASI_ENOSYS = 52,
    WASI_ENOTDIR = 54,
    WASI_ENOTSUP = 58,
    WASI_ESPIPE = 70
};

static int is_stdio(u32 fd) {
    return fd == 1 || fd == 2;
}

/* fd_write and fd_pwrite on stdout/stderr: one log line per call, one
 * trailing newline dropped, through pw_plugin_log (escaped, cut after
 * PW_LOG_LINE_MAX bytes: only that much is copied, rate-limited). */
static u32 write_iovs(pw_vm *vm, u32 fd, u32 iovs, u32 n, u32 nwritten) {
    if (!is_stdio(fd))
        return WASI_EBADF;
    uint8_t *arr = pw_mem(vm, iovs, (uint64_t)n * 8);
    if (!arr || !pw_mem(vm, nwritten, 4))
        return WASI_EFAULT;
    uint64_t total = 0;
    for (u32 i = 0; i < n; i++) {
        u32 len = pw_get_u32(arr + 8 * i + 4);
        if (!pw_mem(vm, pw_get_u32(arr + 8 * i), len))
            return WASI_EFAULT;
        total += len;
    }
    if (total > UINT32_MAX)
        return WASI_EINVAL;
    char buf[PW_LOG_LINE_MAX];
    size_t got = 0;
    char last = 0;
    for (u32 i = 0; i < n; i++) {
        u32 len = pw_get_u32(arr + 8 * i + 4);
        const uint8_t *p = pw_mem(vm, pw_get_u32(arr + 8 * i), len);
        size_t take = len < sizeof buf - got ? len : sizeof buf - got;
        memcpy(buf + got, p, take);
        got += take;
        if (len)
            last = (char)p[len - 1];
    }
    uint64_t len = total && last == '\n' ? total - 1 : total;
    if (len)
        pw_plugin_log(vm, fd == 1 ? PROXY_LOG_INFO : PROXY_LOG_ERROR, buf,
                      got < len ? got : (size_t)len, len);
    pw_mem_put_u32(vm, nwritten, (u32)total);
    return WASI_ESUCCESS;
}

u32 pw_wasi_fd_write(void *c, u32 fd, u32 iovs, u32 n, u32 nwritten) {
    return write_iovs(VM, fd, iovs, n, nwritten);
}

u32 pw_wasi_fd_pwrite(void *c, u32 fd, u32 iovs, u32 n, U u64 off, u32 nw) {
    return write_iovs(VM, fd, iovs, n, nw);
}

u32 pw_wasi_fd_tell(void *c, u32 fd, u32 ret) {
    if (!is_stdio(fd))
        return WASI_EBADF;
    return pw_mem_put_u64(VM, ret, 0) ? WASI_EFAULT : WASI_ESUCCESS;
}

u32 pw_wasi_fd_fdstat_get(void *c, u32 fd, u32 ret) {
    if (!is_stdio(fd))
        return WASI_EBADF;
    uint8_t *p = pw_mem(VM, ret, 24);
    if (!p)
        return WASI_EFAULT;
    memset(p, 0, 24);
    p[0] = 2;  /* filetype: character device */
    p[8] = 64; /* rights_base: FD_WRITE */
    return WASI_ESUCCESS;
}

u32 pw_wasi_fd_readdir(void *c, U u32 fd, U u32 buf, U u32 len, U u64 cookie, u32 used) {
    pw_mem_put_u32(VM, used, 0);
    return WASI_ENOTDIR;
}

u32 pw_wasi_path_readlink(void *c, U u32 fd, U u32 p, U u32 pl, U u32 b, U u32 bl, u32 used) {
    pw_mem_put_u32(VM, used, 0);
    return WASI_ENOTSUP;
}

u32 pw_wasi_sock_recv(void *c, U u32 fd, U u32 d, U u32 dl, U u32 f, u32 len, u32 flags) {
    pw_mem_put_u32(VM, len, 0);
    uint8_t *p = pw_mem(VM, flags, 2);
    if (p)
        p[0] = p[1] = 0;
    return WASI_ENOTSUP;
}

u32 pw_wasi_sock_send(void *c, U u32 fd, U u32 d, U u32 dl, U u32 f, u32 len) {
    pw_mem_put_u32(VM, len, 0);
    return WASI_ENOTSUP;
}

u32 pw_wasi_zero_pair(void *c, u32 a, u32 b) {
    if (pw_mem_put_u32(VM, a, 0) || pw_mem_put_u32(VM, b, 0))
        return WASI_EFAULT;
    return WASI_ESUCCESS;
}

u32 pw_wasi_args_get(void *c, U u32 argv, U u32 buf) {
    (void)c;
    return WASI_ESUCCESS;
}

u32 pw_wasi_clock_res_get(void *c, u32 id, u32 ret) {
    if (id > 1)
        return WASI_ENOTSUP;
    return pw_mem_put_u64(VM, ret, 1) ? WASI_EFAULT : WASI_ESUCCESS;
}

u32 pw_wasi_clock_time_get(void *c, u32 id, U u64 precision, u32 ret) {
    uint64_t t;
    if (id == 0) {
        t = pw_vm_now_ns(VM);
    } else if (id == 1) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    } else {
        return WASI_ENOTSUP;
    }
    return pw_mem_put_u64(VM, ret, t) ? WASI_EFAULT : WASI_ESUCCESS;
}

/* At most 64 KiB per call (EINVAL beyond, as proxy-wasm-cpp-host); the
 * bytes count against the callback's budget (EINVAL once spent): the time
 * goes to the kernel, where the CPU time limit does not see it. */
u32 pw_wasi_random_get(void *c, u32 buf, u32 len) {
    if (len > 65536)
        return WASI_EINVAL;
    uint8_t *p = pw_mem(VM, buf, len);
    if (!p)
        return WASI_EFAULT;
    if (!pw_vm_take(VM, "random_get", len))
        return WASI_EINVAL;
    for (u32 done = 0; done < len;) {
        ssize_t r = getrandom(p + done, len - done, 0);
        if (r <= 0)
            return WASI_EINVAL;
        done += (u32)r;
    }
    return WASI_ESUCCESS;
}

u32 pw_wasi_poll_oneoff(void *c, U u32 in, U u32 out, U u32 n, u32 nevents) {
    /* Go's runtime needs success (§4.1); never block a proxy worker. */
    return pw_mem_put_u32(VM, nevents, 0) ? WASI_EFAULT : WASI_ESUCCESS;
}

void pw_wasi_proc_exit(void *c, u32 code) {
    if (code == 0 && VM->in_start)
        pw_engine_trap(PW_TRAP_EXIT, 0); /* start-up finished (§4.2) */
    VM->dead = 1;
    pw_engine_trap(PW_TRAP_EXIT, code);
}

/* Constant answers: a function of its own, or one shared by the WASI
 * functions of the same signature and answer (badf_2, notsup_3, ...). */
#define CONST(fname, val, ...)                                                                    \
    u32 pw_wasi_##fname(void *c, __VA_ARGS__) {                                                   \
        (void)c;                                                                                  \
        return val;                                                                               \
    }
#define STDIO_OK(fname, ...)                                                                      \
    u32 pw_wasi_##fname(void *c, u32 fd, __VA_ARGS__) {                                           \
        (void)c;                                                                                  \
        return is_stdio(fd) ? WASI_ESUCCESS : WASI_EBADF;                                         \
    }

u32 pw_wasi_sched_yield(void *c) {
    (void)c;
    return WASI_ESUCCESS;
}
CONST(fd_close, WASI_ESUCCESS, U u32 a)
CONST(fd_advise, WASI_ESUCCESS, U u32 a, U u64 b, U u64 d, U u32 e)
CONST(fd_fdstat_set_flags, WASI_ENOSYS, U u32 a, U u32 b)
CONST(proc_raise, WASI_ENOSYS, U u32 a)
CONST(fd_read, WASI_ENOSYS, U u32 a, U u32 b, U u32 d, U u32 e)
CONST(fd_pread, WASI_ENOSYS, U u32 a, U u32 b, U u32 d, U u64 e, U u32 f)
CONST(badf_2, WASI_EBADF, U u32 a, U u32 b)
CONST(badf_3, WASI_EBADF, U u32 a, U u32 b, U u32 d)
CONST(fd_seek, WASI_ESPIPE, U u32 a, U u64 b, U u32 d, U u32 e)
CONST(path_open, WASI_ENOENT, U u32 a, U u32 b, U u32 d, U u32 e, U u32 f, U u64 g, U u64 h,
      U u32 i, U u32 j)
CONST(notsup_2, WASI_ENOTSUP, U u32 a, U u32 b)
CONST(notsup_3, WASI_ENOTSUP, U u32 a, U u32 b, U u32 d)
CONST(notsup_5, WASI_ENOTSUP, U u32 a, U u32 b, U u32 d, U u32 e, U u32 f)
CONST(notsup_6, WASI_ENOTSUP, U u32 a, U u32 b, U u32 d, U u32 e, U u32 f, U u32 g)
CONST(notsup_7, WASI_ENOTSUP, U u32 a, U u32 b, U u32 d, U u32 e, U u32 f, U u32 g, U u32 h)
CONST(path_filestat_set_times, WASI_ENOTSUP, U u32 a, U u32 b, U u32 d, U u32 e, U u64 f, U u64 g,
      U u32 h)
STDIO_OK(fd_fdstat_set_rights, U u64 a, U u64 b)
STDIO_OK(fd_filestat_set_size, U u64 a)
STDIO_OK(fd_filestat_set_times, U u64 a, U u64 b, U u32 d)
STDIO_OK(fd_allocate, U u64 a, U u64 b)

u32 pw_wasi_fd_sync(void *c, u32 fd) {
    (void)c;
    return is_stdio(fd) ? WASI_ESUCCESS : WASI_EBADF;
}
