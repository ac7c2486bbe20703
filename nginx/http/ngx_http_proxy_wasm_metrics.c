/*
 * ngx_http_proxy_wasm_metrics.c -- proxy_wasm_metrics: a location that
 * answers GET (and HEAD) with every metric plugins defined, summed across
 * the workers, in the Prometheus text format 0.0.4. The text is the
 * library's (pw_store_prometheus); this file only carries it: the pieces
 * are copied into buffers of the request's pool and sent with a
 * Content-Length.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


#define NGX_HTTP_PROXY_WASM_METRICS_BUF  4096


/* What pw_store_prometheus writes into: a chain of pool buffers. */
typedef struct {
    ngx_http_request_t              *r;
    ngx_chain_t                     *first;
    ngx_chain_t                     *last;
    off_t                            size;
    ngx_uint_t                       failed;
} ngx_http_proxy_wasm_metrics_out_t;


static void
ngx_http_proxy_wasm_metrics_write(void *data, const char *p, size_t n)
{
    ngx_http_proxy_wasm_metrics_out_t *out = data;

    size_t        room, len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (n && !out->failed) {
        b = out->last ? out->last->buf : NULL;
        room = b ? (size_t) (b->end - b->last) : 0;

        if (room == 0) {
            len = ngx_max(n, NGX_HTTP_PROXY_WASM_METRICS_BUF);

            b = ngx_create_temp_buf(out->r->pool, len);
            cl = ngx_alloc_chain_link(out->r->pool);

            if (b == NULL || cl == NULL) {
                out->failed = 1;
                return;
            }

            cl->buf = b;
            cl->next = NULL;

            if (out->last) {
                out->last->next = cl;
            } else {
                out->first = cl;
            }

            out->last = cl;
            room = b->end - b->last;
        }

        len = ngx_min(n, room);
        b->last = ngx_cpymem(b->last, p, len);
        out->size += len;
        p += len;
        n -= len;
    }
}


/* The content handler of a proxy_wasm_metrics location. */
ngx_int_t
ngx_http_proxy_wasm_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_buf_t                          *b;
    ngx_http_proxy_wasm_main_conf_t    *pmcf;
    ngx_http_proxy_wasm_metrics_out_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_proxy_wasm_module);

    if (pmcf->wasm.store == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm_metrics: no store in this process");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&out, sizeof(out));
    out.r = r;

    if (pw_store_prometheus(pmcf->wasm.store,
                            ngx_http_proxy_wasm_metrics_write, &out)
        != PW_OK
        || out.failed)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm_metrics: out of memory writing the "
                      "metrics");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = out.size;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_HEAD || out.size == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = out.last->buf;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return ngx_http_output_filter(r, out.first);
}
