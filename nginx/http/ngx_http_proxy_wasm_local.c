/*
 * ngx_http_proxy_wasm_local.c -- local responses (proxy_send_local_response)
 * and the error pages of a failure, in place of the response headers.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


static ngx_str_t  ngx_http_proxy_wasm_503_body = ngx_string(
    "<html>" CRLF
    "<head><title>503 Service Temporarily Unavailable</title></head>" CRLF
    "<body>" CRLF
    "<center><h1>503 Service Temporarily Unavailable</h1></center>" CRLF
    "<hr><center>nginx</center>" CRLF
    "</body>" CRLF
    "</html>" CRLF);


static ngx_str_t  ngx_http_proxy_wasm_500_body = ngx_string(
    "<html>" CRLF
    "<head><title>500 Internal Server Error</title></head>" CRLF
    "<body>" CRLF
    "<center><h1>500 Internal Server Error</h1></center>" CRLF
    "<hr><center>nginx</center>" CRLF
    "</body>" CRLF
    "</html>" CRLF);


/*
 * Replaces the response headers by status, headers and body (a local
 * response, or the 503 of a failure); the body is kept in ctx->body.
 */
static ngx_int_t
ngx_http_proxy_wasm_set_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t status, pw_str body,
    pw_str type, const pw_kv *headers, size_t nheaders, int32_t grpc_status)
{
    size_t   i;
    u_char  *p;
    pw_str   grpc_key, grpc_value;

    if (status < 200 || status > 599) {     /* the core refuses them */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm: local response with invalid status %ui, "
                      "answering 500", status);
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_list_init(&r->headers_out.headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_proxy_wasm_out_reset(r);

    r->headers_out.status = status;
    ngx_str_null(&r->headers_out.status_line);
    r->expect_trailers = 0;

    for (i = 0; i < nheaders; i++) {
        if (headers[i].key.len && headers[i].key.data[0] == ':') {
            continue;
        }

        if (!ngx_http_proxy_wasm_valid(headers[i].key, 1)) {
            /* not logged: it may hold CR or LF */
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "proxy_wasm: invalid local response header name "
                          "(%uz bytes) ignored", headers[i].key.len);
            continue;
        }

        if (!ngx_http_proxy_wasm_valid(headers[i].value, 0)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "proxy_wasm: invalid local response header "
                          "\"%*s\" ignored",
                          headers[i].key.len, headers[i].key.data);
            continue;
        }

        if (ngx_http_proxy_wasm_out_add(r, headers[i].key, headers[i].value)
            == PROXY_RESULT_INTERNAL_FAILURE)
        {
            return NGX_ERROR;
        }
    }

    if (grpc_status >= 0) {
        p = ngx_pnalloc(r->pool, NGX_INT32_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        grpc_key.data = "grpc-status";
        grpc_key.len = sizeof("grpc-status") - 1;
        grpc_value.data = (const char *) p;
        grpc_value.len = ngx_sprintf(p, "%D", grpc_status) - p;

        if (ngx_http_proxy_wasm_out_add(r, grpc_key, grpc_value)
            != PROXY_RESULT_OK)
        {
            return NGX_ERROR;
        }
    }

    if (body.len && r->headers_out.content_type.len == 0) {
        r->headers_out.content_type.data = (u_char *) type.data;
        r->headers_out.content_type.len = type.len;
        r->headers_out.content_type_len = type.len;
    }

    ctx->body.len = body.len;
    ctx->body.data = ngx_pnalloc(r->pool, body.len ? body.len : 1);
    if (ctx->body.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->body.data, body.data, body.len);

    /* the body is ours: whatever length the plugin announced */
    ngx_http_clear_content_length(r);
    r->headers_out.content_length_n = body.len;

    return NGX_OK;
}


ngx_int_t
ngx_http_proxy_wasm_set_local(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s)
{
    pw_str                    type;
    const pw_local_response  *lr;

    lr = pw_stream_local_response(s->link->stream);
    if (lr == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm \"%V\": local response action without a "
                      "local response", &s->filter->name);
        return NGX_DECLINED;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm \"%V\": local response %uD \"%*s\"",
                   &s->filter->name, lr->status, lr->details.len,
                   lr->details.data);

    type.data = "text/plain";
    type.len = sizeof("text/plain") - 1;

    ctx->local = 1;

    return ngx_http_proxy_wasm_set_response(r, ctx, lr->status, lr->body,
                                            type, lr->headers, lr->nheaders,
                                            lr->grpc_status);
}


/* Sends a local response from the request phase; returns what
 * ngx_http_finalize_request() expects. */
ngx_int_t
ngx_http_proxy_wasm_send_local(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s)
{
    ngx_int_t  rc;

    if (r->request_body == NULL) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (!ctx->body_read) {
        r->keepalive = 0;       /* the rest of the body is not read */
    }

    rc = ngx_http_proxy_wasm_set_local(r, ctx, s);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->replace = 1;           /* the body filter emits ctx->body */

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, NULL);
}


ngx_int_t
ngx_http_proxy_wasm_fail_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t status)
{
    pw_str     body, type;
    ngx_str_t  page;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        page = ngx_http_proxy_wasm_503_body;

    } else {
        page = ngx_http_proxy_wasm_500_body;
    }

    body = ngx_proxy_wasm_pw(&page);
    type.data = "text/html";
    type.len = sizeof("text/html") - 1;

    ctx->replace = 1;
    ctx->replace_sent = 0;
    ctx->failed = 1;            /* no more callbacks for this response */

    return ngx_http_proxy_wasm_set_response(r, ctx, status, body, type,
                                            NULL, 0, -1);
}
