/*
 * hc.h -- what the hostcall files share (hc_*.c, wasi.c): the functions
 * src/core/hostcalls.def registers, by file, and the helpers more than one
 * area needs.
 *
 * Each hostcall receives the pw_vm as its context `c`, then the Wasm
 * arguments (i32 -> u32, i64 -> u64). Guest pointers are checked with
 * 64-bit arithmetic before use; misuse returns the ABI status. Hostcalls
 * this version does not implement return Unimplemented (12), never trap.
 */
#ifndef PW_HC_H
#define PW_HC_H

#include "core/core.h"

typedef uint32_t u32;
typedef uint64_t u64;

#define VM ((pw_vm *)c)
#define OK PROXY_RESULT_OK
/* A parameter the function does not read (yet). */
#define PW_UNUSED __attribute__((unused))

/* Takes n bytes of hostcall `call` from the callback's budget, or refuses
 * with BadArgument. */
static inline proxy_status_t pw_hc_charge(pw_vm *vm, const char *call, uint64_t n) {
    return pw_vm_take(vm, call, n) ? OK : PROXY_RESULT_BAD_ARGUMENT;
}

/* A valid HTTP status for a plugin to set: 200..599 (nginx sends 1xx
 * itself; a plugin's 1xx with a body split the response). */
static inline int pw_hc_status_ok(u32 status) {
    return status >= 200 && status <= 599;
}

/* The map of a local response's headers, for pw_hc_pairs_ok. */
#define PW_HC_LOCAL_RESPONSE_MAP (PROXY_MAP_TYPE_MAX + 1)

/* hc_maps.c: the per-header limits of a write of n pairs to `map` by
 * hostcall `call`, then their bytes charged. Ok or BadArgument. */
proxy_status_t pw_hc_pairs_ok(pw_vm *vm, const char *call, u32 map, const pw_kv *pairs, size_t n);

/* ------------------------------------------------------ hc_log_time.c */

u32 pw_hc_log(void *c, u32 level, u32 ptr, u32 len);
u32 pw_hc_get_log_level(void *c, u32 ret);
u32 pw_hc_get_current_time(void *c, u32 ret);

/* -------------------------------------------------------- hc_timers.c */

u32 pw_hc_set_tick_period(void *c, u32 period_ms);

/* ------------------------------------------------------- hc_buffers.c */

u32 pw_hc_get_configuration(void *c, u32 ret_ptr, u32 ret_size);
u32 pw_hc_get_buffer_bytes(void *c, u32 type, u32 start, u32 max, u32 ret_ptr, u32 ret_size);
u32 pw_hc_get_buffer_status(void *c, u32 type, u32 ret_size, u32 ret_flags);
u32 pw_hc_set_buffer_bytes(void *c, u32 type, u32 start, u32 size, u32 ptr, u32 len);

/* ---------------------------------------------------------- hc_maps.c */

u32 pw_hc_get_header_map_pairs(void *c, u32 map, u32 ret_ptr, u32 ret_size);
u32 pw_hc_set_header_map_pairs(void *c, u32 map, u32 ptr, u32 len);
u32 pw_hc_get_header_map_value(void *c, u32 map, u32 kptr, u32 klen, u32 ret_ptr, u32 ret_size);
u32 pw_hc_add_header_map_value(void *c, u32 map, u32 kptr, u32 klen, u32 vptr, u32 vlen);
u32 pw_hc_replace_header_map_value(void *c, u32 map, u32 kptr, u32 klen, u32 vptr, u32 vlen);
u32 pw_hc_remove_header_map_value(void *c, u32 map, u32 kptr, u32 klen);
u32 pw_hc_get_header_map_size(void *c, u32 map, u32 ret);

/* ---------------------------------------------------- hc_properties.c */

u32 pw_hc_get_property(void *c, u32 pptr, u32 plen, u32 ret_ptr, u32 ret_size);
u32 pw_hc_set_property(void *c, u32 pptr, u32 plen, u32 vptr, u32 vlen);

/* -------------------------------------------------------- hc_stream.c */

u32 pw_hc_continue_request(void *c);
u32 pw_hc_continue_response(void *c);
u32 pw_hc_clear_route_cache(void *c);
u32 pw_hc_continue_stream(void *c, u32 type);
u32 pw_hc_close_stream(void *c, u32 type);
u32 pw_hc_send_local_response(void *c, u32 status, u32 dptr, u32 dlen, u32 bptr, u32 blen,
                              u32 hptr, u32 hlen, u32 grpc);
u32 pw_hc_set_effective_context(void *c, u32 id);
u32 pw_hc_done(void *c);

/* -------------------------------------------------------- hc_shared.c */

u32 pw_hc_get_shared_data(void *c, u32 kptr, u32 klen, u32 ret_ptr, u32 ret_size, u32 ret_cas);
u32 pw_hc_set_shared_data(void *c, u32 kptr, u32 klen, u32 vptr, u32 vlen, u32 cas);

/* -------------------------------------------------------- hc_queues.c */

u32 pw_hc_register_shared_queue(void *c, u32 nptr, u32 nlen, u32 ret_id);
u32 pw_hc_resolve_shared_queue(void *c, u32 vptr, u32 vlen, u32 nptr, u32 nlen, u32 ret_id);
u32 pw_hc_enqueue_shared_queue(void *c, u32 id, u32 ptr, u32 len);
u32 pw_hc_dequeue_shared_queue(void *c, u32 id, u32 ret_ptr, u32 ret_size);

/* ------------------------------------------------------ hc_callouts.c */

u32 pw_hc_http_call(void *c, u32 uptr, u32 ulen, u32 hptr, u32 hlen, u32 bptr, u32 blen, u32 tptr,
                    u32 tlen, u32 timeout_ms, u32 ret_token);
u32 pw_hc_grpc_call(void *c, u32 sptr, u32 slen, u32 snptr, u32 snlen, u32 mptr, u32 mlen,
                    u32 hptr, u32 hlen, u32 msgptr, u32 msglen, u32 timeout_ms, u32 ret_token);
u32 pw_hc_grpc_stream(void *c, u32 sptr, u32 slen, u32 snptr, u32 snlen, u32 mptr, u32 mlen,
                      u32 hptr, u32 hlen, u32 ret_token);
u32 pw_hc_grpc_send(void *c, u32 token, u32 ptr, u32 len, u32 end_stream);
u32 pw_hc_grpc_cancel(void *c, u32 token);
u32 pw_hc_grpc_close(void *c, u32 token);
u32 pw_hc_get_status(void *c, u32 ret_code, u32 ret_ptr, u32 ret_size);

/* ------------------------------------------------------- hc_metrics.c */

u32 pw_hc_define_metric(void *c, u32 type, u32 nptr, u32 nlen, u32 ret_id);
u32 pw_hc_increment_metric(void *c, u32 id, u64 delta);
u32 pw_hc_record_metric(void *c, u32 id, u64 value);
u32 pw_hc_get_metric(void *c, u32 id, u32 ret_value);

/* ------------------------------------------------------- hc_foreign.c */

u32 pw_hc_call_foreign_function(void *c, u32 nptr, u32 nlen, u32 aptr, u32 alen, u32 ret_ptr,
                                u32 ret_size);

/* ---------------------------------------------------- hc_emscripten.c */

void pw_hc_emscripten_notify_memory_growth(void *c, u32 index);
u32 pw_hc_pthread_equal(void *c, u32 a, u32 b);

/* ------------------------------------------------------------- wasi.c */

u32 pw_wasi_args_get(void *c, u32 argv, u32 buf);
u32 pw_wasi_zero_pair(void *c, u32 a, u32 b);
u32 pw_wasi_clock_res_get(void *c, u32 id, u32 ret);
u32 pw_wasi_clock_time_get(void *c, u32 id, u64 precision, u32 ret);
u32 pw_wasi_fd_advise(void *c, u32 fd, u64 off, u64 len, u32 advice);
u32 pw_wasi_fd_allocate(void *c, u32 fd, u64 off, u64 len);
u32 pw_wasi_fd_close(void *c, u32 fd);
u32 pw_wasi_fd_sync(void *c, u32 fd);
u32 pw_wasi_fd_fdstat_get(void *c, u32 fd, u32 ret);
u32 pw_wasi_fd_fdstat_set_flags(void *c, u32 fd, u32 flags);
u32 pw_wasi_fd_fdstat_set_rights(void *c, u32 fd, u64 base, u64 inh);
u32 pw_wasi_badf_2(void *c, u32 a, u32 b);
u32 pw_wasi_badf_3(void *c, u32 a, u32 b, u32 d);
u32 pw_wasi_fd_filestat_set_size(void *c, u32 fd, u64 size);
u32 pw_wasi_fd_filestat_set_times(void *c, u32 fd, u64 atim, u64 mtim, u32 flags);
u32 pw_wasi_fd_pread(void *c, u32 fd, u32 iovs, u32 n, u64 off, u32 nread);
u32 pw_wasi_fd_pwrite(void *c, u32 fd, u32 iovs, u32 n, u64 off, u32 nwritten);
u32 pw_wasi_fd_read(void *c, u32 fd, u32 iovs, u32 n, u32 nread);
u32 pw_wasi_fd_readdir(void *c, u32 fd, u32 buf, u32 len, u64 cookie, u32 used);
u32 pw_wasi_fd_seek(void *c, u32 fd, u64 off, u32 whence, u32 ret);
u32 pw_wasi_fd_tell(void *c, u32 fd, u32 ret);
u32 pw_wasi_fd_write(void *c, u32 fd, u32 iovs, u32 n, u32 nwritten);
u32 pw_wasi_notsup_2(void *c, u32 a, u32 b);
u32 pw_wasi_notsup_3(void *c, u32 a, u32 b, u32 d);
u32 pw_wasi_notsup_5(void *c, u32 a, u32 b, u32 d, u32 e, u32 f);
u32 pw_wasi_notsup_6(void *c, u32 a, u32 b, u32 d, u32 e, u32 f, u32 g);
u32 pw_wasi_notsup_7(void *c, u32 a, u32 b, u32 d, u32 e, u32 f, u32 g, u32 h);
u32 pw_wasi_path_filestat_set_times(void *c, u32 fd, u32 flags, u32 p, u32 pl, u64 atim, u64 mtim,
                                    u32 fst);
u32 pw_wasi_path_open(void *c, u32 fd, u32 dirflags, u32 p, u32 pl, u32 oflags, u64 base, u64 inh,
                      u32 fdflags, u32 ret);
u32 pw_wasi_path_readlink(void *c, u32 fd, u32 p, u32 pl, u32 buf, u32 bl, u32 used);
u32 pw_wasi_poll_oneoff(void *c, u32 in, u32 out, u32 n, u32 nevents);
void pw_wasi_proc_exit(void *c, u32 code);
u32 pw_wasi_proc_raise(void *c, u32 sig);
u32 pw_wasi_sched_yield(void *c);
u32 pw_wasi_random_get(void *c, u32 buf, u32 len);
u32 pw_wasi_sock_recv(void *c, u32 fd, u32 data, u32 dlen, u32 flags, u32 ret_len, u32 ret_flags);
u32 pw_wasi_sock_send(void *c, u32 fd, u32 data, u32 dlen, u32 flags, u32 ret_len);

#endif
