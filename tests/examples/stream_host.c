/* stream_host.c -- see stream_host.h. */
#include "stream_host.h"

#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

sh_buf sh_log;
int t_failed, t_run;

static const char *config_text;
static sh_conn *cur;
static uint32_t next_id = 2;
static int cur_dir;

void *proxy_on_memory_allocate(size_t size);
void proxy_on_context_create(uint32_t context_id, uint32_t parent_id);
uint32_t proxy_on_configure(uint32_t root_id, uint32_t size);
uint32_t proxy_on_new_connection(uint32_t ctx);
uint32_t proxy_on_downstream_data(uint32_t ctx, uint32_t size, uint32_t eos);
uint32_t proxy_on_upstream_data(uint32_t ctx, uint32_t size, uint32_t eos);
uint32_t proxy_on_done(uint32_t ctx);
void proxy_on_log(uint32_t ctx);
void proxy_on_delete(uint32_t ctx);

void sh_buf_add(sh_buf *b, const char *d, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->d = realloc(b->d, b->cap);
    }
    if (n)
        memcpy(b->d + b->n, d, n);
    b->n += n;
    b->d[b->n] = 0;
}

void sh_check_bytes(const sh_buf *b, const char *s, size_t n, const char *what, const char *file,
                    int line) {
    t_run++;
    if (b->n == n && (!n || !memcmp(b->d, s, n)))
        return;
    t_failed++;
    printf("FAIL %s:%d: %s is\n  '%.*s'\nexpected\n  '%.*s'\n", file, line, what, (int)b->n,
           b->d ? b->d : "", (int)n, s);
}

int sh_logged(const char *s) {
    return sh_log.d && strstr(sh_log.d, s) != NULL;
}

int sh_configure(const char *config) {
    static int root_made;
    if (!root_made) {
        proxy_on_context_create(1, 0);
        root_made = 1;
    }
    config_text = config;
    sh_log.n = 0;
    if (sh_log.d)
        sh_log.d[0] = 0;
    return (int)proxy_on_configure(1, (uint32_t)strlen(config));
}

sh_conn *sh_open(void) {
    sh_conn *c = calloc(1, sizeof *c);
    c->id = next_id++;
    proxy_on_context_create(c->id, 1);
    cur = c;
    proxy_on_new_connection(c->id);
    return c;
}

int sh_send(sh_conn *c, int dir, const char *d, size_t n, int eos) {
    sh_buf *h = &c->held[dir];
    sh_buf_add(h, d, n);
    cur = c;
    cur_dir = dir;
    uint32_t r = dir == SH_DOWN ? proxy_on_downstream_data(c->id, (uint32_t)h->n, (uint32_t)eos)
                                : proxy_on_upstream_data(c->id, (uint32_t)h->n, (uint32_t)eos);
    if (r == PROXY_ACTION_CONTINUE) {
        sh_buf_add(&c->out[dir], h->d, h->n);
        h->n = 0;
    }
    return (int)r;
}

void sh_free(sh_conn *c) {
    cur = c;
    proxy_on_done(c->id);
    proxy_on_log(c->id);
    proxy_on_delete(c->id);
    for (int i = 0; i < 2; i++) {
        free(c->held[i].d);
        free(c->out[i].d);
    }
    free(c);
    cur = NULL;
}

/* ------------------------------------------------------------ hostcalls */

static char *copy_out(const char *d, size_t n) {
    char *p = proxy_on_memory_allocate(n ? n : 1);
    if (n)
        memcpy(p, d, n);
    return p;
}

static sh_buf *buffer(proxy_buffer_type_t type) {
    if (!cur || (type != PROXY_BUFFER_DOWNSTREAM_DATA && type != PROXY_BUFFER_UPSTREAM_DATA))
        return NULL;
    return &cur->held[type == PROXY_BUFFER_DOWNSTREAM_DATA ? SH_DOWN : SH_UP];
}

proxy_status_t proxy_log(proxy_log_level_t level, const char *msg, size_t msg_size) {
    static const char *names[] = {"trace", "debug", "info", "warn", "error", "critical"};
    sh_buf_add(&sh_log, names[level % 6], strlen(names[level % 6]));
    sh_buf_add(&sh_log, " ", 1);
    sh_buf_add(&sh_log, msg, msg_size);
    sh_buf_add(&sh_log, "\n", 1);
    if (getenv("SH_VERBOSE"))
        printf("log %s %.*s\n", names[level % 6], (int)msg_size, msg);
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_get_log_level(uint32_t *return_level) {
    *return_level = PROXY_LOG_DEBUG;
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_get_current_time_nanoseconds(uint64_t *return_time) {
    *return_time = 0;
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_get_buffer_bytes(proxy_buffer_type_t type, uint32_t start, uint32_t max_size,
                                      char **return_data, size_t *return_size) {
    const char *d;
    size_t n;
    if (type == PROXY_BUFFER_PLUGIN_CONFIGURATION) {
        d = config_text;
        n = strlen(config_text);
    } else {
        sh_buf *b = buffer(type);
        if (!b)
            return PROXY_RESULT_NOT_FOUND;
        d = b->d;
        n = b->n;
    }
    if (start > n)
        start = (uint32_t)n;
    size_t len = n - start < max_size ? n - start : max_size;
    *return_data = copy_out(d + start, len);
    *return_size = len;
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_get_buffer_status(proxy_buffer_type_t type, size_t *return_size,
                                       uint32_t *return_flags) {
    sh_buf *b = buffer(type);
    if (!b)
        return PROXY_RESULT_NOT_FOUND;
    *return_size = b->n;
    *return_flags = 0;
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_set_buffer_bytes(proxy_buffer_type_t type, uint32_t start, uint32_t size,
                                      const char *data, size_t data_size) {
    sh_buf *b = buffer(type);
    if (!b)
        return PROXY_RESULT_NOT_FOUND;
    if (start > b->n)
        start = (uint32_t)b->n;
    if (size > b->n - start)
        size = (uint32_t)(b->n - start);
    sh_buf nb = {0};
    sh_buf_add(&nb, b->d, start);
    sh_buf_add(&nb, data, data_size);
    sh_buf_add(&nb, b->d + start + size, b->n - start - size);
    free(b->d);
    *b = nb;
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_continue_stream(proxy_stream_type_t type) {
    (void)type;
    return PROXY_RESULT_OK;
}

proxy_status_t proxy_close_stream(proxy_stream_type_t type) {
    if (!cur || (type != PROXY_STREAM_DOWNSTREAM && type != PROXY_STREAM_UPSTREAM))
        return PROXY_RESULT_BAD_ARGUMENT;
    cur->closed = 1;
    return PROXY_RESULT_OK;
}

/* set_envoy_filter_state only: { string path = 1; string value = 2; } */
proxy_status_t proxy_call_foreign_function(const char *name, size_t name_size, const char *args,
                                           size_t args_size, char **results, size_t *results_size) {
    *results = NULL;
    *results_size = 0;
    if (name_size != 22 || memcmp(name, "set_envoy_filter_state", 22) || !cur)
        return PROXY_RESULT_NOT_FOUND;
    char path[256] = "", value[256] = "";
    for (size_t i = 0; i + 2 <= args_size;) {
        unsigned char tag = (unsigned char)args[i], len = (unsigned char)args[i + 1];
        if (len > 127 || i + 2 + len > args_size)
            return PROXY_RESULT_SERIALIZATION_FAILURE;
        char *dst = tag == 0x0a ? path : tag == 0x12 ? value : NULL;
        if (dst)
            memcpy(dst, args + i + 2, len), dst[len] = 0;
        i += 2 + (size_t)len;
    }
    if (strcmp(path, "envoy.tcp_proxy.cluster"))
        return PROXY_RESULT_BAD_ARGUMENT;
    strcpy(cur->cluster, value);
    return PROXY_RESULT_OK;
}

/* ------------------------------------ the rest: not used by the examples */

proxy_status_t proxy_add_header_map_value(proxy_map_type_t type, const char *key, size_t key_size, const char *value, size_t value_size) {
    (void)type; (void)key; (void)key_size; (void)value; (void)value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_define_metric(proxy_metric_type_t type, const char *name, size_t name_size, uint32_t *return_metric_id) {
    (void)type; (void)name; (void)name_size; (void)return_metric_id;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_dequeue_shared_queue(uint32_t queue_id, char **return_value, size_t *return_value_size) {
    (void)queue_id; (void)return_value; (void)return_value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_enqueue_shared_queue(uint32_t queue_id, const char *value, size_t value_size) {
    (void)queue_id; (void)value; (void)value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_get_header_map_pairs(proxy_map_type_t type, char **return_data, size_t *return_size) {
    (void)type; (void)return_data; (void)return_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_get_header_map_value(proxy_map_type_t type, const char *key, size_t key_size, char **return_value, size_t *return_value_size) {
    (void)type; (void)key; (void)key_size; (void)return_value; (void)return_value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_get_metric(uint32_t metric_id, uint64_t *return_value) {
    (void)metric_id; (void)return_value;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_get_property(const char *path, size_t path_size, char **return_value, size_t *return_value_size) {
    (void)path; (void)path_size; (void)return_value; (void)return_value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_get_shared_data(const char *key, size_t key_size, char **return_value, size_t *return_value_size, uint32_t *return_cas) {
    (void)key; (void)key_size; (void)return_value; (void)return_value_size; (void)return_cas;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_get_status(uint32_t *return_code, char **return_msg, size_t *return_msg_size) {
    (void)return_code; (void)return_msg; (void)return_msg_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_grpc_call(const char *service, size_t service_size, const char *service_name, size_t service_name_size, const char *method, size_t method_size, const char *initial_metadata, size_t initial_metadata_size, const char *message, size_t message_size, uint32_t timeout_ms, uint32_t *return_token) {
    (void)service; (void)service_size; (void)service_name; (void)service_name_size; (void)method; (void)method_size; (void)initial_metadata; (void)initial_metadata_size; (void)message; (void)message_size; (void)timeout_ms; (void)return_token;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_grpc_cancel(uint32_t token) {
    (void)token;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_grpc_close(uint32_t token) {
    (void)token;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_grpc_send(uint32_t token, const char *message, size_t message_size, uint32_t end_stream) {
    (void)token; (void)message; (void)message_size; (void)end_stream;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_grpc_stream(const char *service, size_t service_size, const char *service_name, size_t service_name_size, const char *method, size_t method_size, const char *initial_metadata, size_t initial_metadata_size, uint32_t *return_token) {
    (void)service; (void)service_size; (void)service_name; (void)service_name_size; (void)method; (void)method_size; (void)initial_metadata; (void)initial_metadata_size; (void)return_token;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_http_call(const char *upstream, size_t upstream_size, const char *headers, size_t headers_size, const char *body, size_t body_size, const char *trailers, size_t trailers_size, uint32_t timeout_ms, uint32_t *return_token) {
    (void)upstream; (void)upstream_size; (void)headers; (void)headers_size; (void)body; (void)body_size; (void)trailers; (void)trailers_size; (void)timeout_ms; (void)return_token;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_increment_metric(uint32_t metric_id, int64_t delta) {
    (void)metric_id; (void)delta;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_record_metric(uint32_t metric_id, uint64_t value) {
    (void)metric_id; (void)value;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_register_shared_queue(const char *name, size_t name_size, uint32_t *return_queue_id) {
    (void)name; (void)name_size; (void)return_queue_id;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_remove_header_map_value(proxy_map_type_t type, const char *key, size_t key_size) {
    (void)type; (void)key; (void)key_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_replace_header_map_value(proxy_map_type_t type, const char *key, size_t key_size, const char *value, size_t value_size) {
    (void)type; (void)key; (void)key_size; (void)value; (void)value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_resolve_shared_queue(const char *vm_id, size_t vm_id_size, const char *name, size_t name_size, uint32_t *return_queue_id) {
    (void)vm_id; (void)vm_id_size; (void)name; (void)name_size; (void)return_queue_id;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_send_local_response(uint32_t status_code, const char *details, size_t details_size, const char *body, size_t body_size, const char *headers, size_t headers_size, int32_t grpc_status) {
    (void)status_code; (void)details; (void)details_size; (void)body; (void)body_size; (void)headers; (void)headers_size; (void)grpc_status;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_set_effective_context(uint32_t context_id) {
    (void)context_id;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_set_header_map_pairs(proxy_map_type_t type, const char *data, size_t size) {
    (void)type; (void)data; (void)size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_set_property(const char *path, size_t path_size, const char *value, size_t value_size) {
    (void)path; (void)path_size; (void)value; (void)value_size;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_set_shared_data(const char *key, size_t key_size, const char *value, size_t value_size, uint32_t cas) {
    (void)key; (void)key_size; (void)value; (void)value_size; (void)cas;
    return PROXY_RESULT_UNIMPLEMENTED;
}

proxy_status_t proxy_set_tick_period_milliseconds(uint32_t period_ms) {
    (void)period_ms;
    return PROXY_RESULT_UNIMPLEMENTED;
}
