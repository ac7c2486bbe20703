/*
 * body: rewrites every response body chunk (benchmark scenario 7): ASCII
 * letters upper-cased in place, so the length is unchanged ("ok\n" becomes
 * "OK\n"). One proxy_get_buffer_bytes and one proxy_set_buffer_bytes per
 * non-empty chunk, on top of the no-op plugin's callbacks.
 */
#include <stdlib.h>

#include "proxy_wasm.h"

static proxy_action_t on_response_body(uint32_t ctx, size_t body_size, int end_of_stream) {
    (void)ctx;
    (void)end_of_stream;
    if (body_size == 0)
        return PROXY_ACTION_CONTINUE;
    char *data;
    size_t size;
    if (pw_get_buffer(PROXY_BUFFER_HTTP_RESPONSE_BODY, 0, PW_BUFFER_END, &data, &size) !=
        PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    for (size_t i = 0; i < size; i++)
        if (data[i] >= 'a' && data[i] <= 'z')
            data[i] = (char)(data[i] - 'a' + 'A');
    pw_set_buffer(PROXY_BUFFER_HTTP_RESPONSE_BODY, 0, PW_BUFFER_END, data, size);
    free(data);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_response_body = on_response_body,
};
