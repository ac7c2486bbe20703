/*
 * proxy_wasm.h -- the pwasm C SDK for Proxy-Wasm plugins (ABI 0.2.1).
 *
 * Build plugins with `clang --target=wasm32-wasi -mexec-model=reactor` and
 * link sdk/c/proxy_wasm.c (see sdk/c/README.md for a complete example).
 *
 * Three layers, each usable on its own:
 *   1. Hostcalls: every `env.proxy_*` function of the ABI, declared as a Wasm
 *      import with the exact signature of docs/ABI.md §3.1. Only the ones a
 *      plugin calls end up imported by its module.
 *   2. Helpers (pw_*): logging, configuration, bodies and other buffers,
 *      header and trailer maps, local responses, typed properties, stream
 *      control, time. They own the memory protocol of §1.4: every value
 *      they return was allocated by the SDK's allocator and must be released
 *      with free().
 *   3. Dispatch: the plugin defines one `const pw_plugin_t pw_plugin` (a table
 *      of callbacks); the SDK exports `proxy_on_*`, keeps a table from context
 *      id to root id and user data, and calls the plugin. Build proxy_wasm.c
 *      with -DPW_NO_DISPATCH to get layers 1-2 only (for plugins that export
 *      the callbacks themselves).
 *
 * Both variants export `proxy_abi_version_0_2_1` (§1.2) and the allocator
 * `proxy_on_memory_allocate` (§1.4). The allocator reserves one byte more than
 * asked and sets it to NUL, so every value the host returns is followed by a
 * NUL byte that is not counted in its size: text without NUL bytes can be
 * used as a C string directly. Empty values come back as (NULL, 0).
 *
 * All ABI numbers come from "proxy_wasm/abi.h" (shared with the host).
 */
#ifndef PROXY_WASM_SDK_H
#define PROXY_WASM_SDK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy_wasm/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* 1. Hostcalls (docs/ABI.md §3.1, module "env").                          */
/*    Pointers, sizes, ids and enums are all wasm i32; the only i64         */
/*    parameters are the metric values of increment/record_metric.          */
/* ------------------------------------------------------------------------ */

#ifdef __wasm__
#define PW_HOSTCALL(name) __attribute__((import_module("env"), import_name(#name)))
#else /* lets host-side tests compile the SDK natively against stubs */
#define PW_HOSTCALL(name)
#endif

/* Logging, time, timers (§3.3). */
PW_HOSTCALL(proxy_log)
proxy_status_t proxy_log(proxy_log_level_t level, const char *msg, size_t msg_size);
PW_HOSTCALL(proxy_get_log_level)
proxy_status_t proxy_get_log_level(uint32_t *return_level);
PW_HOSTCALL(proxy_get_current_time_nanoseconds)
proxy_status_t proxy_get_current_time_nanoseconds(uint64_t *return_time);
PW_HOSTCALL(proxy_set_tick_period_milliseconds)
proxy_status_t proxy_set_tick_period_milliseconds(uint32_t period_ms);

/* Configuration: 0.1.0 only; 0.2.x uses proxy_get_buffer_bytes(6 or 7). */
PW_HOSTCALL(proxy_get_configuration)
proxy_status_t proxy_get_configuration(char **return_data, size_t *return_size);

/* Status of the call-out being delivered. */
PW_HOSTCALL(proxy_get_status)
proxy_status_t proxy_get_status(uint32_t *return_code, char **return_msg, size_t *return_msg_size);

/* Buffers (§5.6). */
PW_HOSTCALL(proxy_get_buffer_bytes)
proxy_status_t proxy_get_buffer_bytes(proxy_buffer_type_t type, uint32_t start, uint32_t max_size,
                                      char **return_data, size_t *return_size);
PW_HOSTCALL(proxy_get_buffer_status)
proxy_status_t proxy_get_buffer_status(proxy_buffer_type_t type, size_t *return_size,
                                       uint32_t *return_flags);
PW_HOSTCALL(proxy_set_buffer_bytes)
proxy_status_t proxy_set_buffer_bytes(proxy_buffer_type_t type, uint32_t start, uint32_t size,
                                      const char *data, size_t data_size);

/* Header maps (§5.7; serialized pairs: §6.1). */
PW_HOSTCALL(proxy_get_header_map_pairs)
proxy_status_t proxy_get_header_map_pairs(proxy_map_type_t type, char **return_data,
                                          size_t *return_size);
PW_HOSTCALL(proxy_set_header_map_pairs)
proxy_status_t proxy_set_header_map_pairs(proxy_map_type_t type, const char *data, size_t size);
PW_HOSTCALL(proxy_get_header_map_value)
proxy_status_t proxy_get_header_map_value(proxy_map_type_t type, const char *key, size_t key_size,
                                          char **return_value, size_t *return_value_size);
PW_HOSTCALL(proxy_add_header_map_value)
proxy_status_t proxy_add_header_map_value(proxy_map_type_t type, const char *key, size_t key_size,
                                          const char *value, size_t value_size);
PW_HOSTCALL(proxy_replace_header_map_value)
proxy_status_t proxy_replace_header_map_value(proxy_map_type_t type, const char *key,
                                              size_t key_size, const char *value,
                                              size_t value_size);
PW_HOSTCALL(proxy_remove_header_map_value)
proxy_status_t proxy_remove_header_map_value(proxy_map_type_t type, const char *key,
                                             size_t key_size);
PW_HOSTCALL(proxy_get_header_map_size)
proxy_status_t proxy_get_header_map_size(proxy_map_type_t type, size_t *return_size);

/* Properties (paths: §6.2, values: §6.3). */
PW_HOSTCALL(proxy_get_property)
proxy_status_t proxy_get_property(const char *path, size_t path_size, char **return_value,
                                  size_t *return_value_size);
PW_HOSTCALL(proxy_set_property)
proxy_status_t proxy_set_property(const char *path, size_t path_size, const char *value,
                                  size_t value_size);

/* Shared data (§6.4) and shared queues (§6.5). */
PW_HOSTCALL(proxy_get_shared_data)
proxy_status_t proxy_get_shared_data(const char *key, size_t key_size, char **return_value,
                                     size_t *return_value_size, uint32_t *return_cas);
PW_HOSTCALL(proxy_set_shared_data)
proxy_status_t proxy_set_shared_data(const char *key, size_t key_size, const char *value,
                                     size_t value_size, uint32_t cas);
PW_HOSTCALL(proxy_register_shared_queue)
proxy_status_t proxy_register_shared_queue(const char *name, size_t name_size,
                                           uint32_t *return_queue_id);
PW_HOSTCALL(proxy_resolve_shared_queue)
proxy_status_t proxy_resolve_shared_queue(const char *vm_id, size_t vm_id_size, const char *name,
                                          size_t name_size, uint32_t *return_queue_id);
PW_HOSTCALL(proxy_enqueue_shared_queue)
proxy_status_t proxy_enqueue_shared_queue(uint32_t queue_id, const char *value, size_t value_size);
PW_HOSTCALL(proxy_dequeue_shared_queue)
proxy_status_t proxy_dequeue_shared_queue(uint32_t queue_id, char **return_value,
                                          size_t *return_value_size);

/* Stream control. The three no-argument 0.1.0 calls return an i32 status,
 * as cpp-host and real modules have them (docs/ABI.md §3.1). */
PW_HOSTCALL(proxy_continue_request)
proxy_status_t proxy_continue_request(void);
PW_HOSTCALL(proxy_continue_response)
proxy_status_t proxy_continue_response(void);
PW_HOSTCALL(proxy_clear_route_cache)
proxy_status_t proxy_clear_route_cache(void);
PW_HOSTCALL(proxy_continue_stream)
proxy_status_t proxy_continue_stream(proxy_stream_type_t type);
PW_HOSTCALL(proxy_close_stream)
proxy_status_t proxy_close_stream(proxy_stream_type_t type);

/* Local responses (§8.8). grpc_status -1 = not a gRPC response. */
PW_HOSTCALL(proxy_send_local_response)
proxy_status_t proxy_send_local_response(uint32_t status_code, const char *details,
                                         size_t details_size, const char *body, size_t body_size,
                                         const char *headers, size_t headers_size,
                                         int32_t grpc_status);

/* HTTP and gRPC call-outs (§8.9). */
PW_HOSTCALL(proxy_http_call)
proxy_status_t proxy_http_call(const char *upstream, size_t upstream_size, const char *headers,
                               size_t headers_size, const char *body, size_t body_size,
                               const char *trailers, size_t trailers_size, uint32_t timeout_ms,
                               uint32_t *return_token);
PW_HOSTCALL(proxy_grpc_call)
proxy_status_t proxy_grpc_call(const char *service, size_t service_size, const char *service_name,
                               size_t service_name_size, const char *method, size_t method_size,
                               const char *initial_metadata, size_t initial_metadata_size,
                               const char *message, size_t message_size, uint32_t timeout_ms,
                               uint32_t *return_token);
PW_HOSTCALL(proxy_grpc_stream)
proxy_status_t proxy_grpc_stream(const char *service, size_t service_size,
                                 const char *service_name, size_t service_name_size,
                                 const char *method, size_t method_size,
                                 const char *initial_metadata, size_t initial_metadata_size,
                                 uint32_t *return_token);
PW_HOSTCALL(proxy_grpc_send)
proxy_status_t proxy_grpc_send(uint32_t token, const char *message, size_t message_size,
                               uint32_t end_stream);
PW_HOSTCALL(proxy_grpc_cancel)
proxy_status_t proxy_grpc_cancel(uint32_t token);
PW_HOSTCALL(proxy_grpc_close)
proxy_status_t proxy_grpc_close(uint32_t token);

/* Metrics (§5.11). The only i64 parameters of the ABI are here. */
PW_HOSTCALL(proxy_define_metric)
proxy_status_t proxy_define_metric(proxy_metric_type_t type, const char *name, size_t name_size,
                                   uint32_t *return_metric_id);
PW_HOSTCALL(proxy_increment_metric)
proxy_status_t proxy_increment_metric(uint32_t metric_id, int64_t delta);
PW_HOSTCALL(proxy_record_metric)
proxy_status_t proxy_record_metric(uint32_t metric_id, uint64_t value);
PW_HOSTCALL(proxy_get_metric)
proxy_status_t proxy_get_metric(uint32_t metric_id, uint64_t *return_value);

/* Contexts (§8.10) and foreign functions. */
PW_HOSTCALL(proxy_set_effective_context)
proxy_status_t proxy_set_effective_context(uint32_t context_id);
PW_HOSTCALL(proxy_done)
proxy_status_t proxy_done(void);
PW_HOSTCALL(proxy_call_foreign_function)
proxy_status_t proxy_call_foreign_function(const char *name, size_t name_size, const char *args,
                                           size_t args_size, char **return_results,
                                           size_t *return_results_size);

/* ------------------------------------------------------------------------ */
/* 2. Helpers. Every value returned through a `char **` was malloc'ed by    */
/*    the SDK allocator (NUL-terminated, see above) and belongs to the      */
/*    caller, who frees it; on any status but OK it is set to NULL and its  */
/*    size to 0. Allocation failures return PROXY_RESULT_INTERNAL_FAILURE.  */
/* ------------------------------------------------------------------------ */

/* Logging (docs/ABI.md §3.3 "Logging, time, timers"). pw_log sends a C string as is. pw_logf formats
 * with pw_vsnprintf and skips the formatting when the host's level (from
 * proxy_get_log_level) is above `level`; lines of any length are sent whole. */
proxy_status_t pw_log(proxy_log_level_t level, const char *msg);
proxy_status_t pw_logf(proxy_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
proxy_status_t pw_vlogf(proxy_log_level_t level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* A small printf (the one wasi-libc has costs ~14 KiB and three WASI imports).
 * Supports flags "-0+ #", width and precision (also `*`), lengths hh h l ll z
 * j t, conversions d i u o x X c s p % and f e g a (all print like %f, and
 * like %e from 1e19 up; the last digit may differ from libc's on near-ties).
 * Returns the length of the full output (as C99 snprintf); writes at most
 * size-1 bytes plus a NUL when size > 0. */
int pw_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int pw_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* The host's current log level (§5.2). */
proxy_status_t pw_get_log_level(proxy_log_level_t *level);

/* Wall-clock time in Unix-epoch nanoseconds. */
proxy_status_t pw_get_current_time_ns(uint64_t *ns);

/* ---- Buffers and bodies (§3.3 "Buffers", §5.6, §8.6, §8.7). ----
 * A request body is PROXY_BUFFER_HTTP_REQUEST_BODY, readable and writable in
 * on_request_body; a response body is PROXY_BUFFER_HTTP_RESPONSE_BODY in
 * on_response_body. The buffer holds the current chunk, or everything
 * buffered so far once the callback returned PW_BODY_BUFFER (see the
 * dispatch table below). The same calls work on TCP data (2, 3); call-out
 * responses and configurations are read-only. Changing a body changes what
 * is forwarded; Envoy leaves content-length alone (remove it in the headers
 * callback when the length may change), pwasm's nginx module fixes it up. */

/* Bytes [start, start+max_size) of a buffer, clamped by the host: pass
 * max_size UINT32_MAX for "to the end". start beyond the end gives (NULL, 0).
 * Errors: BAD_ARGUMENT (unknown type), NOT_FOUND (not available now). */
proxy_status_t pw_get_buffer(proxy_buffer_type_t type, uint32_t start, uint32_t max_size,
                             char **data, size_t *size);
/* The buffer's length in bytes and flags (hosts write 0 for the flags).
 * Errors as pw_get_buffer. */
proxy_status_t pw_get_buffer_status(proxy_buffer_type_t type, size_t *size, uint32_t *flags);

/* "To the end" for start and len below: the value the Go SDK passes; hosts
 * (Envoy, pwasm) treat any start/len at or past the end as the end. */
#define PW_BUFFER_END 0x7FFFFFFFu

/* Replaces bytes [start, start+len) of a buffer with data[0, data_len)
 * (data may be NULL when data_len is 0): the general splice, len clamped to
 * the end. Envoy accepts only the three idioms below (anything else is
 * BAD_ARGUMENT there); pwasm accepts any start/len. Errors: BAD_ARGUMENT
 * (unknown or read-only buffer), NOT_FOUND (not available now). */
proxy_status_t pw_set_buffer(proxy_buffer_type_t type, uint32_t start, uint32_t len,
                             const char *data, size_t data_len);
/* Insert before the first byte: (start 0, len 0). */
proxy_status_t pw_prepend_buffer(proxy_buffer_type_t type, const char *data, size_t data_len);
/* Insert after the last byte: (PW_BUFFER_END, 0). */
proxy_status_t pw_append_buffer(proxy_buffer_type_t type, const char *data, size_t data_len);
/* Replace everything: (0, PW_BUFFER_END). */
proxy_status_t pw_replace_buffer(proxy_buffer_type_t type, const char *data, size_t data_len);
/* The whole plugin configuration (buffer 7; readable in on_configure) and
 * the whole VM configuration (buffer 6; readable in on_vm_start). */
proxy_status_t pw_get_plugin_config(char **data, size_t *size);
proxy_status_t pw_get_vm_config(char **data, size_t *size);

/* One header of a map (§5.7): PROXY_MAP_HTTP_REQUEST_HEADERS, ..._RESPONSE_
 * HEADERS, ... Names are C strings. pw_get_header returns NOT_FOUND for a
 * missing header; add appends (duplicates allowed), replace sets (adding the
 * header if missing), remove deletes every value (missing is OK).
 * Trailers are the maps PROXY_MAP_HTTP_REQUEST_TRAILERS (1) and
 * PROXY_MAP_HTTP_RESPONSE_TRAILERS (3), used with these same functions and
 * pw_get_headers/pw_set_headers: readable and writable in on_*_trailers,
 * and (§8.6) trailers may be added from on_*_body at end_of_stream when the
 * message has none. All four HTTP maps are readable in on_log. */
proxy_status_t pw_get_header(proxy_map_type_t map, const char *name, char **value, size_t *size);
proxy_status_t pw_add_header(proxy_map_type_t map, const char *name, const char *value);
proxy_status_t pw_replace_header(proxy_map_type_t map, const char *name, const char *value);
proxy_status_t pw_remove_header(proxy_map_type_t map, const char *name);

/* A key/value pair of a header map. Lengths are authoritative (keys and
 * values may hold any byte); pairs parsed by the SDK are NUL-terminated. */
typedef struct pw_pair {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} pw_pair_t;

/* A pair from two C strings. */
static inline pw_pair_t pw_pair(const char *key, const char *value) {
    pw_pair_t p = {key, strlen(key), value, strlen(value)};
    return p;
}

/* A whole map as returned by pw_get_headers: `pairs` point into `raw`.
 * Release with pw_pairs_free (safe on a zeroed struct), never free(): the
 * SDK may lend `pairs` from an array it keeps for the next map. */
typedef struct pw_pairs {
    char *raw;
    pw_pair_t *pairs;
    size_t count;
} pw_pairs_t;

/* All entries of a map, in order. An empty or unavailable map is OK with
 * count 0. Errors: BAD_ARGUMENT (unknown map), PARSE_FAILURE (malformed). */
proxy_status_t pw_get_headers(proxy_map_type_t map, pw_pairs_t *out);
/* Replace a whole map with `count` pairs. */
proxy_status_t pw_set_headers(proxy_map_type_t map, const pw_pair_t *pairs, size_t count);
void pw_pairs_free(pw_pairs_t *p);

/* The §6.1 wire format. pw_pairs_parse accepts (NULL or any, 0), the 1-byte
 * "\0" and a zero count as empty; anything malformed, truncated or with
 * trailing bytes is PARSE_FAILURE. On OK *pairs (malloc'ed, NULL if empty)
 * points into `data`, which must outlive it. pw_pairs_serialize writes the
 * count, the lengths, then each key and value followed by NUL; an empty list
 * is the 4-byte zero count. */
proxy_status_t pw_pairs_parse(const char *data, size_t size, pw_pair_t **pairs, size_t *count);
proxy_status_t pw_pairs_serialize(const pw_pair_t *pairs, size_t count, char **data,
                                  size_t *size);

/* Answer the current request locally (§8.8): HTTP status, body (may be NULL
 * when body_len is 0), extra headers (may be NULL when nheaders is 0). Not a
 * gRPC response (grpc_status -1), no details string. Callbacks usually
 * return PROXY_ACTION_PAUSE right after. */
proxy_status_t pw_send_local_response(uint32_t status, const char *body, size_t body_len,
                                      const pw_pair_t *headers, size_t nheaders);

/* ---- Properties (§3.3 "Properties", §6.2 paths, §6.3 values, §7 names).
 * A path is given as C-string segments: {"request", "path"} is sent as
 * "request\0path" (segments joined by NUL, no trailing NUL). PW_PATH builds
 * the two arguments (segments, count) from a list of C strings (a C99
 * compound literal, so C only):
 *   pw_get_property_int64(PW_PATH("response", "code"), &code);
 * Every getter returns NOT_FOUND for an unknown property, BAD_ARGUMENT for
 * no segment, or the host's status. */
#define PW_PATH(...)                                                                              \
    (const char *const[]){__VA_ARGS__},                                                           \
        (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* The wire form of a path (malloc'ed, also NUL-terminated past *len). */
proxy_status_t pw_property_path(const char *const *path, size_t nsegments, char **out,
                                size_t *len);

/* The raw bytes of a property: (NULL, 0) when empty. */
proxy_status_t pw_get_property(const char *const *path, size_t nsegments, char **value,
                               size_t *size);

/* Typed decoding of Envoy's encoding (§6.3). A value of the wrong size is
 * PARSE_FAILURE (e.g. on Kong, which returns every property as text).
 *  string: the bytes as a C string, never NULL on OK ("" when empty; free
 *          it); a value holding NUL bytes is cut at the first one for C
 *          use, *len keeps the full size;
 *  int64:  8 bytes, little-endian two's complement (ints, timestamps and
 *          durations in ns: request.time, request.duration, response.code);
 *  uint64: 8 bytes little-endian (connection.id);
 *  double: 8 bytes little-endian IEEE-754;
 *  bool:   1 byte, *value 0 or 1 (connection.mtls);
 *  pairs:  a map in the §6.1 format (request.headers); lists arrive the
 *          same way, each element a key with an empty value. Release with
 *          pw_pairs_free; an empty value is OK with count 0. */
proxy_status_t pw_get_property_string(const char *const *path, size_t nsegments, char **value,
                                      size_t *len);
proxy_status_t pw_get_property_int64(const char *const *path, size_t nsegments, int64_t *value);
proxy_status_t pw_get_property_uint64(const char *const *path, size_t nsegments, uint64_t *value);
proxy_status_t pw_get_property_double(const char *const *path, size_t nsegments, double *value);
proxy_status_t pw_get_property_bool(const char *const *path, size_t nsegments, int *value);
proxy_status_t pw_get_property_pairs(const char *const *path, size_t nsegments, pw_pairs_t *out);

/* Store raw bytes under a path (value may be NULL when len is 0). Envoy
 * reads them back under the same path; pwasm's nginx module answers
 * NOT_FOUND for paths it cannot set. */
proxy_status_t pw_set_property(const char *const *path, size_t nsegments, const char *value,
                               size_t len);

/* ---- Stream control (§3.3 "Stream control", §8.7, §8.10). ---- */

/* Make later hostcalls of this callback act on `context_id` (§8.10), e.g.
 * to resume a stream from a tick or call-out callback of its root. */
proxy_status_t pw_set_effective_context(uint32_t context_id);

/* Resume a stream paused by a callback that returned Pause (or a body
 * callback's PW_BODY_*): PROXY_STREAM_HTTP_REQUEST, ..._HTTP_RESPONSE,
 * ..._DOWNSTREAM, ..._UPSTREAM. The host resumes once the current callback
 * has returned. Errors: BAD_ARGUMENT (type > 3), UNIMPLEMENTED. */
proxy_status_t pw_continue_stream(proxy_stream_type_t type);
/* Shorthands for pw_continue_stream(PROXY_STREAM_HTTP_REQUEST/RESPONSE). */
proxy_status_t pw_continue_request(void);
proxy_status_t pw_continue_response(void);
/* Abort a stream: an HTTP stream is reset, a TCP side closed (after the
 * current callback). Same errors. */
proxy_status_t pw_close_stream(proxy_stream_type_t type);

/* ---- Shared data (§3.3 "Shared key/value data", §6.4). ----
 * A key/value store shared by every plugin of the same vm_id, across
 * workers. Every write gets a CAS token (never 0); a write with cas 0 is
 * unconditional (Envoy, pwasm), one with another cas succeeds only if the
 * key still has that token, else CAS_MISMATCH: read, compute, write with
 * the cas you read, and retry on CAS_MISMATCH. Kong refuses cas 0 on a key
 * that exists (CAS_MISMATCH) and numbers tokens per key. */

/* The value of key (a C string) and its CAS token; (NULL, 0) for an empty
 * value. Errors: NOT_FOUND (no such key). cas may be NULL. */
proxy_status_t pw_get_shared_data(const char *key, char **value, size_t *size, uint32_t *cas);
/* Writes value[0, size) (value may be NULL when size is 0: an empty value)
 * under key if cas is 0 or the key's token; a missing key is created.
 * Errors: CAS_MISMATCH (another write came first, or the host has no room:
 * the value was not written). */
proxy_status_t pw_set_shared_data(const char *key, const char *value, size_t size, uint32_t cas);
/* Deletes key (proxy_set_shared_data with a NULL value), under the same
 * cas rule. pwasm and Kong remove the key (a later get is NOT_FOUND, a
 * later write gets a new token); Envoy keeps the key with an empty value. */
proxy_status_t pw_remove_shared_data(const char *key, uint32_t cas);

/* Counters in shared data: the value is 8 bytes, little-endian (the Go
 * and Rust SDK examples' encoding); a missing key is 0. pw_get_shared_u64
 * answers PARSE_FAILURE for a value of another size. */
proxy_status_t pw_get_shared_u64(const char *key, uint64_t *value, uint32_t *cas);
/* Adds delta to the counter under key (wrapping at 2^64) with get and a
 * CAS set, retried on CAS_MISMATCH up to PW_SHARED_RETRIES times; *result
 * (may be NULL) gets the value written. A missing key is written with cas
 * 0: create it once (e.g. in on_vm_start) so that concurrent first
 * increments cannot overwrite each other. Errors: CAS_MISMATCH (every
 * attempt lost, or no room), PARSE_FAILURE (not a counter), or the host's
 * status. */
#define PW_SHARED_RETRIES 64
proxy_status_t pw_shared_u64_add(const char *key, uint64_t delta, uint64_t *result);

/* ---- Shared queues (§6.5). ----
 * A queue is named within a vm_id. The root context that registers it gets
 * proxy_on_queue_ready (pw_plugin.on_queue_ready) when items arrive (the
 * last one to register it, if several do); anyone who resolves it may
 * enqueue; anyone may dequeue. Items are bytes, first in first out. */

/* Creates the queue `name` of this plugin's vm_id, or opens it if it
 * exists, and makes this root context its receiver. Call it from a root
 * context (on_vm_start, on_configure). */
proxy_status_t pw_register_queue(const char *name, uint32_t *queue_id);
/* The id of queue `name` of vm_id ("" or NULL: this plugin's). Errors:
 * NOT_FOUND (nobody registered it). */
proxy_status_t pw_resolve_queue(const char *vm_id, const char *name, uint32_t *queue_id);
/* Appends data[0, size) (data may be NULL when size is 0). Errors:
 * NOT_FOUND (no such queue). A host short of room may drop items (pwasm
 * drops the oldest and counts them) and still answer OK. */
proxy_status_t pw_enqueue(uint32_t queue_id, const char *data, size_t size);
/* Takes the oldest item; (NULL, 0) for an empty item. Errors: EMPTY (no
 * item), NOT_FOUND (no such queue). */
proxy_status_t pw_dequeue(uint32_t queue_id, char **data, size_t *size);

/* ---- Timer (§3.3 "Logging, time, timers", §8.5). ----
 * Calls pw_plugin.on_tick(root_id) every period_ms ms from now on,
 * replacing any earlier period; 0 stops it. From a root context only
 * (on_vm_start, on_configure, on_tick). Every worker process (nginx) or
 * thread (Envoy) ticks on its own. */
proxy_status_t pw_set_tick_period(uint32_t period_ms);

/* ---- Metrics (§3.3 "Metrics"). ----
 * Counters (PROXY_METRIC_COUNTER) only go up; gauges (..._GAUGE) go both
 * ways and can be set; histograms (..._HISTOGRAM) take samples. Metrics
 * are process-wide (summed across workers in pwasm) and shown by the
 * host's Prometheus endpoint. */

/* The id of metric `name` of `type`, defining it on first use; defining
 * the same name again gives the same metric. Errors: BAD_ARGUMENT (unknown
 * type). */
proxy_status_t pw_define_metric(proxy_metric_type_t type, const char *name, uint32_t *metric_id);
/* Adds delta: counters take delta > 0 only (BAD_ARGUMENT otherwise on
 * Envoy and pwasm), gauges any delta. Errors: NOT_FOUND (unknown id),
 * BAD_ARGUMENT (a histogram, or a counter going down). */
proxy_status_t pw_increment_metric(uint32_t metric_id, int64_t delta);
/* Sets a gauge, records a histogram sample (Envoy adds value to a
 * counter). Errors: NOT_FOUND (unknown id). */
proxy_status_t pw_record_metric(uint32_t metric_id, uint64_t value);
/* The value of a counter or gauge (a gauge's as two's complement). Errors:
 * NOT_FOUND (unknown id), BAD_ARGUMENT (a histogram). */
proxy_status_t pw_get_metric(uint32_t metric_id, uint64_t *value);

/* ---- Call-outs (§3.3 "HTTP callouts", "gRPC callouts", §8.9). ----
 * A call is answered later, on the root context, with the callbacks of
 * pw_plugin_t below; the dispatch remembers which context made each call
 * and makes it the effective context before calling you, so that
 * pw_continue_request() or pw_send_local_response() act on the stream that
 * waits. A host cancels the calls of a stream that ends (pwasm; Envoy
 * still answers them to the root, where the SDK drops them). */

/* Calls `upstream` (Envoy: a cluster; pwasm in nginx: an `upstream {}`
 * block, or a host:port the configuration allows) with headers, which
 * must include :method, :path and :authority (and :scheme "https" for
 * TLS), an optional body (NULL when body_len is 0), and timeout_ms (0:
 * none). *token identifies the answer. Errors: BAD_ARGUMENT (missing
 * pseudo-header, unknown or refused upstream), INTERNAL_FAILURE. */
proxy_status_t pw_http_call(const char *upstream, const pw_pair_t *headers, size_t nheaders,
                            const char *body, size_t body_len, uint32_t timeout_ms,
                            uint32_t *token);
/* pw_http_call with request trailers (may be NULL when ntrailers is 0).
 * With trailers, hosts that speak HTTP/1.1 (pwasm in nginx) send the body
 * chunked, the trailers after its last chunk. */
proxy_status_t pw_http_call_with_trailers(const char *upstream, const pw_pair_t *headers,
                                          size_t nheaders, const char *body, size_t body_len,
                                          const pw_pair_t *trailers, size_t ntrailers,
                                          uint32_t timeout_ms, uint32_t *token);
/* A gRPC unary call of service/method on `upstream` with one message
 * (serialized protobuf, without the gRPC frame), initial metadata (may be
 * NULL when nmetadata is 0), timeout_ms (0: none). Errors: PARSE_FAILURE
 * (unknown upstream), INTERNAL_FAILURE. */
proxy_status_t pw_grpc_call(const char *upstream, const char *service, const char *method,
                            const pw_pair_t *metadata, size_t nmetadata, const char *message,
                            size_t message_len, uint32_t timeout_ms, uint32_t *token);
/* Opens a gRPC stream; send with pw_grpc_send. Errors as pw_grpc_call. */
proxy_status_t pw_grpc_stream(const char *upstream, const char *service, const char *method,
                              const pw_pair_t *metadata, size_t nmetadata, uint32_t *token);
/* One message on a stream; end_of_stream half-closes after it. Errors:
 * NOT_FOUND (unknown token), BAD_ARGUMENT (a unary call, or closed). */
proxy_status_t pw_grpc_send(uint32_t token, const char *message, size_t len, int end_of_stream);
/* Half-closes a stream (answers go on), cancels a unary call. */
proxy_status_t pw_grpc_close(uint32_t token);
/* Abandons a call or stream: no callback follows. */
proxy_status_t pw_grpc_cancel(uint32_t token);
/* The status of the answer being delivered: in on_grpc_close the gRPC
 * status and message; in on_http_call_response after a failure 11
 * (BrokenConnection) and the reason. *message may be NULL (free it). */
proxy_status_t pw_get_status(uint32_t *code, char **message, size_t *len);

/* ---- Foreign functions (§3.3 "Foreign functions"). ----
 * Host extensions called by name. pwasm has Envoy's compress and
 * uncompress (zlib) and set_envoy_filter_state; others are the host's. */

/* Calls function `name` with args[0, len) (NULL when len is 0); its result
 * in *result (malloc'ed, NULL when none; free it). Errors: NOT_FOUND (no
 * such function), BAD_ARGUMENT, SERIALIZATION_FAILURE (bad arguments for
 * it), INTERNAL_FAILURE. */
proxy_status_t pw_call_foreign(const char *name, const char *args, size_t len, char **result,
                               size_t *result_len);
/* Envoy's set_envoy_filter_state(path, value) (C strings; the SDK encodes
 * the protobuf argument): e.g. path "envoy.tcp_proxy.cluster" picks the
 * upstream of a TCP connection. pwasm stores it as the property
 * filter_state.<path> of the current stream (NOT_FOUND outside one). */
proxy_status_t pw_set_envoy_filter_state(const char *path, const char *value);

/* Text utilities for configuration parsing. pw_trim strips spaces, tabs, CR
 * and LF at both ends in place and returns the first kept byte.
 * pw_is_header_name: 1 if s[0..len) is a non-empty RFC 9110 token. */
char *pw_trim(char *s);
int pw_is_header_name(const char *s, size_t len);

/* ------------------------------------------------------------------------ */
/* 3. Dispatch (not in the -DPW_NO_DISPATCH variant).                       */
/* ------------------------------------------------------------------------ */

/* Callbacks of a plugin; every member is optional (NULL = default shown).
 * Root context (one per plugin instance, id = root_id, §8.1). */
typedef struct pw_plugin {
    /* After proxy_on_context_create of the root. Return 1 ok, 0 fail (1). */
    int (*on_vm_start)(uint32_t root_id, size_t vm_config_size);
    /* Plugin configuration ready (pw_get_plugin_config). 1 ok, 0 fail (1). */
    int (*on_configure)(uint32_t root_id, size_t config_size);
    /* Timer set with proxy_set_tick_period_milliseconds. */
    void (*on_tick)(uint32_t root_id);
    /* An item arrived in queue_id, which this root context registered
     * (pw_register_queue): take it with pw_dequeue, until EMPTY (hosts may
     * call once for several items). */
    void (*on_queue_ready)(uint32_t root_id, uint32_t queue_id);
    /* Root shutting down: 1 = done, 0 = will call proxy_done() later (1). */
    int (*on_root_done)(uint32_t root_id);
    /* Root forgotten: free its data. */
    void (*on_root_delete)(uint32_t root_id);

    /* HTTP stream contexts (§8.2). `ctx` is the stream's context id. */
    void (*on_context_create)(uint32_t ctx, uint32_t root_id);
    /* Headers: PROXY_ACTION_CONTINUE or PROXY_ACTION_PAUSE (CONTINUE). Pause
     * stops the stream in that direction (headers and body, §8.7) until
     * pw_continue_stream or a local response. */
    proxy_action_t (*on_request_headers)(uint32_t ctx, size_t nheaders, int end_of_stream);
    proxy_action_t (*on_response_headers)(uint32_t ctx, size_t nheaders, int end_of_stream);
    /* Bodies: body_size is the size of the body buffer now (the chunk, or
     * all of it so far when buffering). Return a PW_BODY_* value (CONTINUE):
     * PW_BODY_CONTINUE passes the buffer on; PW_BODY_BUFFER (= Pause) keeps
     * it and calls again with the accumulated size when more arrives and at
     * end_of_stream; PW_BODY_NO_BUFFER holds the chunk without growing the
     * buffer until pw_continue_stream. */
    proxy_action_t (*on_request_body)(uint32_t ctx, size_t body_size, int end_of_stream);
    proxy_action_t (*on_response_body)(uint32_t ctx, size_t body_size, int end_of_stream);
    /* Trailers (maps 1 and 3): PROXY_ACTION_CONTINUE, or PROXY_ACTION_PAUSE
     * (StopIteration) until pw_continue_stream (CONTINUE). */
    proxy_action_t (*on_request_trailers)(uint32_t ctx, size_t ntrailers);
    proxy_action_t (*on_response_trailers)(uint32_t ctx, size_t ntrailers);
    /* Request complete, all maps readable. */
    void (*on_log)(uint32_t ctx);
    /* Stream finishing (1). */
    int (*on_done)(uint32_t ctx);
    /* Stream forgotten: free its data; its id is not valid afterwards. */
    void (*on_delete)(uint32_t ctx);

    /* Answers of call-outs (pw_http_call, pw_grpc_*). `ctx` is the context
     * that made the call (a stream, or the root), already the effective
     * context. HTTP: nheaders 0 means the call failed (timeout, reset, ...;
     * pw_get_status says why); else read the answer with
     * pw_get_headers(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS) (":status"
     * first), pw_get_buffer(PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY) and
     * PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS, during the callback only. */
    void (*on_http_call_response)(uint32_t ctx, uint32_t token, size_t nheaders,
                                  size_t body_size, size_t ntrailers);
    /* gRPC: initial metadata (PROXY_MAP_GRPC_RECEIVE_INITIAL_METADATA), each
     * message (PROXY_BUFFER_GRPC_RECEIVE_BUFFER, without its frame),
     * trailing metadata (PROXY_MAP_GRPC_RECEIVE_TRAILING_METADATA), then the
     * close with the gRPC status (0 OK; pw_get_status has the message). */
    void (*on_grpc_initial_metadata)(uint32_t ctx, uint32_t token, size_t nelements);
    void (*on_grpc_receive)(uint32_t ctx, uint32_t token, size_t size);
    void (*on_grpc_trailing_metadata)(uint32_t ctx, uint32_t token, size_t nelements);
    void (*on_grpc_close)(uint32_t ctx, uint32_t token, uint32_t status);

    /* TCP stream contexts (network filters, §8.3): one per connection,
     * `ctx` as for HTTP streams (on_context_create comes first, on_delete
     * last). Return PROXY_ACTION_CONTINUE or PROXY_ACTION_PAUSE (CONTINUE).
     * on_new_connection: Pause holds the client's bytes until
     * pw_continue_stream(PROXY_STREAM_DOWNSTREAM). */
    proxy_action_t (*on_new_connection)(uint32_t ctx);
    /* Bytes from the client (downstream) or the upstream: `size` bytes are
     * in PROXY_BUFFER_DOWNSTREAM_DATA / _UPSTREAM_DATA (pw_get_buffer;
     * pw_set_buffer to change, drop or add bytes), all of them held since
     * a Pause; end_of_stream: that side closed its sending half. Pause
     * holds the direction (the callback comes again with more) until
     * pw_continue_stream(PROXY_STREAM_DOWNSTREAM / _UPSTREAM). */
    proxy_action_t (*on_downstream_data)(uint32_t ctx, size_t size, int end_of_stream);
    proxy_action_t (*on_upstream_data)(uint32_t ctx, size_t size, int end_of_stream);
    /* A side closed: peer PROXY_PEER_LOCAL (the proxy closed it) or
     * PROXY_PEER_REMOTE (the peer did). on_done, on_log and on_delete
     * follow once both are closed (Envoy's order for connections). */
    void (*on_downstream_close)(uint32_t ctx, proxy_peer_type_t peer);
    void (*on_upstream_close)(uint32_t ctx, proxy_peer_type_t peer);
} pw_plugin_t;

/* What body callbacks return (§5.5 FilterDataStatus, typed for the table;
 * §8.7 says what hosts do with them). The first two equal PROXY_ACTION_*. */
#define PW_BODY_CONTINUE PROXY_ACTION_CONTINUE /* 0: pass the buffer on */
#define PW_BODY_BUFFER PROXY_ACTION_PAUSE      /* 1: StopIterationAndBuffer */
/* 2: StopIterationAndWatermark (pwasm treats it as 1) */
#define PW_BODY_WATERMARK ((proxy_action_t)PROXY_FILTER_DATA_STOP_ITERATION_AND_WATERMARK)
/* 3: StopIterationNoBuffer */
#define PW_BODY_NO_BUFFER ((proxy_action_t)PROXY_FILTER_DATA_STOP_ITERATION_NO_BUFFER)

/* Defined once by the plugin, e.g.
 *   const pw_plugin_t pw_plugin = {.on_request_headers = my_headers};  */
extern const pw_plugin_t pw_plugin;

/* Per-context user data, kept from proxy_on_context_create to the end of
 * proxy_on_delete. pw_set_context_data returns NOT_FOUND for an unknown id;
 * pw_get_context_data returns NULL for an unknown id or no data. */
proxy_status_t pw_set_context_data(uint32_t context_id, void *data);
void *pw_get_context_data(uint32_t context_id);
/* The root context of a stream context, the id itself for a root context,
 * 0 for an unknown id. */
uint32_t pw_get_root_id(uint32_t context_id);

#ifdef __cplusplus
}
#endif

#endif /* PROXY_WASM_SDK_H */
