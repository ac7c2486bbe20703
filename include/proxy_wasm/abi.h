/*
 * proxy_wasm/abi.h -- the numbers of the Proxy-Wasm ABI, and nothing else.
 *
 * Shared by the pwasm host (src/core) and the pwasm C SDK (sdk/c) so that both
 * sides of the ABI use one definition. Values follow docs/ABI.md §5
 * (ABI 0.1.0, 0.2.0 and 0.2.1). This header must stay freestanding:
 * it is compiled for wasm32-wasi plugins as well as for the host.
 */
#ifndef PROXY_WASM_ABI_H
#define PROXY_WASM_ABI_H

/* §5.1 proxy_status_t (WasmResult). Returned by every proxy_* hostcall. */
typedef enum proxy_status {
    PROXY_RESULT_OK = 0,
    PROXY_RESULT_NOT_FOUND = 1,
    PROXY_RESULT_BAD_ARGUMENT = 2,
    PROXY_RESULT_SERIALIZATION_FAILURE = 3,
    PROXY_RESULT_PARSE_FAILURE = 4,
    PROXY_RESULT_BAD_EXPRESSION = 5,
    PROXY_RESULT_INVALID_MEMORY_ACCESS = 6,
    PROXY_RESULT_EMPTY = 7,
    PROXY_RESULT_CAS_MISMATCH = 8,
    PROXY_RESULT_RESULT_MISMATCH = 9,
    PROXY_RESULT_INTERNAL_FAILURE = 10,
    PROXY_RESULT_BROKEN_CONNECTION = 11,
    PROXY_RESULT_UNIMPLEMENTED = 12
} proxy_status_t;

/* §5.2 proxy_log_level_t */
typedef enum proxy_log_level {
    PROXY_LOG_TRACE = 0,
    PROXY_LOG_DEBUG = 1,
    PROXY_LOG_INFO = 2,
    PROXY_LOG_WARN = 3,
    PROXY_LOG_ERROR = 4,
    PROXY_LOG_CRITICAL = 5
} proxy_log_level_t;

/* §5.3 proxy_action_t: 0 Continue, 1 Pause. */
typedef enum proxy_action {
    PROXY_ACTION_CONTINUE = 0,
    PROXY_ACTION_PAUSE = 1
} proxy_action_t;

/* §5.4 FilterHeadersStatus (values returned by on_*_headers). */
typedef enum proxy_filter_headers_status {
    PROXY_FILTER_HEADERS_CONTINUE = 0,
    PROXY_FILTER_HEADERS_STOP_ITERATION = 1,
    PROXY_FILTER_HEADERS_CONTINUE_AND_END_STREAM = 2,
    PROXY_FILTER_HEADERS_STOP_ALL_ITERATION_AND_BUFFER = 3,
    PROXY_FILTER_HEADERS_STOP_ALL_ITERATION_AND_WATERMARK = 4
} proxy_filter_headers_status_t;

/* §5.5 FilterDataStatus (values returned by on_*_body). */
typedef enum proxy_filter_data_status {
    PROXY_FILTER_DATA_CONTINUE = 0,
    PROXY_FILTER_DATA_STOP_ITERATION_AND_BUFFER = 1,
    PROXY_FILTER_DATA_STOP_ITERATION_AND_WATERMARK = 2,
    PROXY_FILTER_DATA_STOP_ITERATION_NO_BUFFER = 3
} proxy_filter_data_status_t;

/* §5.6 proxy_buffer_type_t */
typedef enum proxy_buffer_type {
    PROXY_BUFFER_HTTP_REQUEST_BODY = 0,
    PROXY_BUFFER_HTTP_RESPONSE_BODY = 1,
    PROXY_BUFFER_DOWNSTREAM_DATA = 2,
    PROXY_BUFFER_UPSTREAM_DATA = 3,
    PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
    PROXY_BUFFER_GRPC_RECEIVE_BUFFER = 5,
    PROXY_BUFFER_VM_CONFIGURATION = 6,
    PROXY_BUFFER_PLUGIN_CONFIGURATION = 7,
    PROXY_BUFFER_CALL_DATA = 8
} proxy_buffer_type_t;
#define PROXY_BUFFER_TYPE_MAX 8

/* §5.7 proxy_map_type_t */
typedef enum proxy_map_type {
    PROXY_MAP_HTTP_REQUEST_HEADERS = 0,
    PROXY_MAP_HTTP_REQUEST_TRAILERS = 1,
    PROXY_MAP_HTTP_RESPONSE_HEADERS = 2,
    PROXY_MAP_HTTP_RESPONSE_TRAILERS = 3,
    PROXY_MAP_GRPC_RECEIVE_INITIAL_METADATA = 4,
    PROXY_MAP_GRPC_RECEIVE_TRAILING_METADATA = 5,
    PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
    PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7
} proxy_map_type_t;
#define PROXY_MAP_TYPE_MAX 7

/* §5.8 proxy_peer_type_t */
typedef enum proxy_peer_type {
    PROXY_PEER_UNKNOWN = 0,
    PROXY_PEER_LOCAL = 1,
    PROXY_PEER_REMOTE = 2
} proxy_peer_type_t;

/* §5.9 proxy_stream_type_t (0.2.0+) */
typedef enum proxy_stream_type {
    PROXY_STREAM_HTTP_REQUEST = 0,
    PROXY_STREAM_HTTP_RESPONSE = 1,
    PROXY_STREAM_DOWNSTREAM = 2,
    PROXY_STREAM_UPSTREAM = 3
} proxy_stream_type_t;
#define PROXY_STREAM_TYPE_MAX 3

/* §5.11 proxy_metric_type_t */
typedef enum proxy_metric_type {
    PROXY_METRIC_COUNTER = 0,
    PROXY_METRIC_GAUGE = 1,
    PROXY_METRIC_HISTOGRAM = 2
} proxy_metric_type_t;

/* §5.10: "no gRPC status" for proxy_send_local_response. */
#define PROXY_GRPC_STATUS_NONE (-1)

#endif /* PROXY_WASM_ABI_H */
