/*
 * ngx_proxy_wasm_conf.c -- configuration: proxy_wasm_module,
 * proxy_wasm_cache_dir, the proxy_wasm chain elements, proxy_wasm_service
 * (root contexts attached to no request), and loading the modules in the
 * master (any subsystem).
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <stdlib.h>

#include "ngx_proxy_wasm.h"


static ngx_int_t ngx_proxy_wasm_canary(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc);
static ngx_int_t ngx_proxy_wasm_limit_param(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_proxy_wasm_mod_t *mod);
static ngx_int_t ngx_proxy_wasm_failure_param(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_proxy_wasm_filter_t *filter);
static ngx_int_t ngx_proxy_wasm_set_limits(ngx_conf_t *cf,
    ngx_proxy_wasm_mod_t *mod);
static ngx_int_t ngx_proxy_wasm_canary_vms(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc);
static void ngx_proxy_wasm_cleanup_runtime(void *data);
static void ngx_proxy_wasm_runtime_warn(void *data, const char *msg);


ngx_int_t
ngx_proxy_wasm_pstr(ngx_pool_t *pool, ngx_str_t *dst, u_char *src,
    size_t len)
{
    /* a NUL-terminated copy, for the library's const char * arguments */

    dst->data = ngx_pnalloc(pool, len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->data[len] = '\0';
    dst->len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_proxy_wasm_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


static ngx_int_t
ngx_proxy_wasm_read_file(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *out)
{
    off_t            size;
    ssize_t          n;
    ngx_str_t        path;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    path = *name;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = path;
    file.log = cf->log;

    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", &path);
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);

    out->data = ngx_pnalloc(cf->pool, size + 1);
    if (out->data == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, out->data, size, 0);

    (void) ngx_close_file(file.fd);

    if (n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read \"%V\" (%z of %O bytes)",
                           &path, n, size);
        return NGX_ERROR;
    }

    out->len = size;
    out->data[size] = '\0';

    return NGX_OK;
}


/*
 * Matches one "key=value" parameter: the value of `key` goes to *str; the
 * file named by the value of `file_key` (may be NULL) is read into *data.
 * NGX_OK: matched; NGX_DECLINED: another parameter; NGX_ERROR: reported.
 */
static ngx_int_t
ngx_proxy_wasm_param(ngx_conf_t *cf, ngx_str_t *arg, const char *key,
    ngx_str_t *str, const char *file_key, ngx_str_t *data, ngx_flag_t *seen)
{
    size_t     klen;
    ngx_str_t  v;

    klen = ngx_strlen(key);

    if (arg->len > klen && arg->data[klen] == '='
        && ngx_strncmp(arg->data, key, klen) == 0)
    {
        if (str->data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%s=\"", key);
            return NGX_ERROR;
        }

        str->data = arg->data + klen + 1;
        str->len = arg->len - klen - 1;
        return NGX_OK;
    }

    if (file_key == NULL) {
        return NGX_DECLINED;
    }

    klen = ngx_strlen(file_key);

    if (arg->len > klen && arg->data[klen] == '='
        && ngx_strncmp(arg->data, file_key, klen) == 0)
    {
        if (*seen) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%s=\"", file_key);
            return NGX_ERROR;
        }

        *seen = 1;

        v.data = arg->data + klen + 1;
        v.len = arg->len - klen - 1;

        return ngx_proxy_wasm_read_file(cf, &v, data);
    }

    return NGX_DECLINED;
}


/* wc: in the subsystem's main configuration, zeroed (ngx_pcalloc). */
ngx_int_t
ngx_proxy_wasm_conf_init(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    const ngx_proxy_wasm_subsys_t *subsys)
{
    /*
     * set by ngx_pcalloc():
     *
     *     wc->cache_dir = { 0, NULL };
     *     wc->runtime = NULL;
     *     wc->shm_zone = NULL;
     *     wc->store = NULL;
     *     wc->wake = NULL;
     *     wc->ticks = NULL;
     *     wc->running = 0;
     */

    if (ngx_array_init(&wc->mods, cf->pool, 4,
                       sizeof(ngx_proxy_wasm_mod_t *))
        != NGX_OK
        || ngx_array_init(&wc->plugins, cf->pool, 4,
                          sizeof(ngx_proxy_wasm_plugin_t *))
           != NGX_OK
        || ngx_array_init(&wc->filters, cf->pool, 4,
                          sizeof(ngx_proxy_wasm_filter_t *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    wc->compile_timeout = NGX_CONF_UNSET_MSEC;
    wc->compile_memory = NGX_CONF_UNSET_SIZE;
    wc->module_max_size = NGX_CONF_UNSET_SIZE;
    wc->subsys = subsys;
    wc->cycle = cf->cycle;
    wc->shm_size = NGX_CONF_UNSET_SIZE;
    wc->shm_evict = NGX_CONF_UNSET_UINT;
    wc->grpc_max_message = NGX_CONF_UNSET_SIZE;

    ngx_proxy_wasm_callout_conf_init(wc);

    return NGX_OK;
}


/* allow=LIST or deny=LIST of proxy_wasm_module: the capabilities of its
 * VM (docs/DIRECTIVES.md). NGX_DECLINED: another parameter. */
static ngx_int_t
ngx_proxy_wasm_caps_param(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_proxy_wasm_mod_t *mod)
{
    char  err[PW_ERRLEN];

    if (!(arg->len >= 6 && ngx_strncmp(arg->data, "allow=", 6) == 0)
        && !(arg->len >= 5 && ngx_strncmp(arg->data, "deny=", 5) == 0))
    {
        return NGX_DECLINED;
    }

    if (mod->caps_set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "takes one \"allow=\" or \"deny=\" list, "
                           "\"%V\" is a second one", arg);
        return NGX_ERROR;
    }

    if (pw_capability_parse((const char *) arg->data, arg->len, &mod->caps,
                            err, sizeof(err))
        != PW_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %s", arg, err);
        return NGX_ERROR;
    }

    mod->caps_set = 1;

    return NGX_OK;
}


/* A denied import of a module, reported at load (pw_module_restrict). */
static void
ngx_proxy_wasm_caps_warn(void *data, const char *msg)
{
    ngx_proxy_wasm_mod_t *mod = data;

    ngx_log_error(NGX_LOG_WARN, mod->conf->cycle->log, 0,
                  "proxy_wasm_module \"%V\": %s in %V:%ui", &mod->name, msg,
                  &mod->file, mod->line);
}


/* proxy_wasm_module NAME PATH [vm_id=ID] [vm_config=STR|vm_config_file=P]
 *                   [sha256=HEX] [precompiled] [allow=LIST|deny=LIST] */
char *
ngx_proxy_wasm_module_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t *wc = (ngx_proxy_wasm_conf_t *)
                                    ((char *) conf + cmd->offset);

    ngx_int_t              rc;
    ngx_str_t             *value, path, cfg_inline, cfg_file, vm_id;
    ngx_str_t              sha256;
    ngx_uint_t             i;
    ngx_flag_t             file_seen;
    ngx_proxy_wasm_mod_t  *mod, **mods, **pm;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty module name";
    }

    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        if (mods[i]->name.len == value[1].len
            && ngx_strncmp(mods[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate proxy_wasm_module \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    mod = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_mod_t));
    if (mod == NULL) {
        return NGX_CONF_ERROR;
    }

    mod->caps = PW_CAP_ALL;

    path = value[2];

    if (path.len == 0) {
        return "has an empty module path";
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_proxy_wasm_pstr(cf->pool, &mod->name, value[1].data,
                            value[1].len)
        != NGX_OK
        || ngx_proxy_wasm_pstr(cf->pool, &mod->path, path.data, path.len)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&vm_id);
    ngx_str_null(&cfg_inline);
    ngx_str_null(&cfg_file);
    ngx_str_null(&sha256);
    file_seen = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (value[i].len == 11
            && ngx_strncmp(value[i].data, "precompiled", 11) == 0)
        {
            mod->precompiled = 1;
            continue;
        }

        rc = ngx_proxy_wasm_limit_param(cf, &value[i], mod);

        if (rc == NGX_DECLINED) {
            rc = ngx_proxy_wasm_caps_param(cf, &value[i], mod);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_proxy_wasm_param(cf, &value[i], "vm_id", &vm_id, NULL,
                                      NULL, NULL);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_proxy_wasm_param(cf, &value[i], "sha256", &sha256,
                                      NULL, NULL, NULL);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_proxy_wasm_param(cf, &value[i], "vm_config",
                                      &cfg_inline, "vm_config_file",
                                      &cfg_file, &file_seen);
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (cfg_inline.data && file_seen) {
        return "takes either \"vm_config=\" or \"vm_config_file=\", "
               "not both";
    }

    /* a precompiled artifact is native code: it runs unsandboxed, so it
     * is loaded only when named as such, with the digest of the file; a
     * .wasm may be pinned to its digest too */
    if (mod->precompiled && sha256.data == NULL) {
        return "needs \"sha256=\" (the SHA-256 of the precompiled file) "
               "with \"precompiled\"";
    }

    if (sha256.data) {
        if (sha256.len != 64) {
            return "needs \"sha256=\" with 64 hexadecimal digits";
        }

        for (i = 0; i < 64; i++) {
            if (ngx_hextoi(&sha256.data[i], 1) == NGX_ERROR) {
                return "needs \"sha256=\" with 64 hexadecimal digits";
            }
        }

        if (ngx_proxy_wasm_pstr(cf->pool, &mod->sha256, sha256.data,
                                sha256.len)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    mod->vm_id = vm_id;
    mod->vm_config = file_seen ? cfg_file : cfg_inline;
    mod->subsys = wc->subsys;
    mod->conf = wc;
    mod->file = cf->conf_file->file.name;
    mod->line = cf->conf_file->line;

    pm = ngx_array_push(&wc->mods);
    if (pm == NULL) {
        return NGX_CONF_ERROR;
    }

    *pm = mod;

    return NGX_CONF_OK;
}


/* proxy_wasm NAME [root_id=ID] [config=STR | config_file=PATH]: an element
 * of *chain (created when NGX_CONF_UNSET_PTR), and of wc->filters. chain
 * NULL: proxy_wasm_service NAME ... [singleton], in wc->filters only. */
char *
ngx_proxy_wasm_filter_directive(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_array_t **chain)
{
    ngx_int_t                 rc;
    ngx_str_t                *value, cfg_inline, cfg_file, root_id;
    ngx_uint_t                i;
    ngx_flag_t                file_seen;
    ngx_proxy_wasm_filter_t  *filter, **pf;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty module name";
    }

    filter = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_filter_t));
    if (filter == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&root_id);
    ngx_str_null(&cfg_inline);
    ngx_str_null(&cfg_file);
    file_seen = 0;
    filter->failure = -1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (chain != NULL) {
            rc = ngx_proxy_wasm_failure_param(cf, &value[i], filter);

            if (rc == NGX_ERROR) {
                return NGX_CONF_ERROR;
            }

            if (rc == NGX_OK) {
                continue;
            }
        }

        if (chain == NULL && value[i].len == 9
            && ngx_strncmp(value[i].data, "singleton", 9) == 0)
        {
            filter->singleton = 1;
            continue;
        }

        rc = ngx_proxy_wasm_param(cf, &value[i], "root_id", &root_id,
                                  NULL, NULL, NULL);

        if (rc == NGX_DECLINED) {
            rc = ngx_proxy_wasm_param(cf, &value[i], "config",
                                      &cfg_inline, "config_file",
                                      &cfg_file, &file_seen);
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (cfg_inline.data && file_seen) {
        return "takes either \"config=\" or \"config_file=\", not both";
    }

    filter->name = value[1];
    filter->root_id = root_id;
    filter->config = file_seen ? cfg_file : cfg_inline;
    filter->file = cf->conf_file->file.name;
    filter->line = cf->conf_file->line;

    if (chain == NULL) {
        filter->service = 1;
        goto done;
    }

    if (*chain == NGX_CONF_UNSET_PTR) {
        *chain = ngx_array_create(cf->pool, 2,
                                  sizeof(ngx_proxy_wasm_filter_t *));
        if (*chain == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    pf = ngx_array_push(*chain);
    if (pf == NULL) {
        return NGX_CONF_ERROR;
    }

    *pf = filter;

done:

    pf = ngx_array_push(&wc->filters);
    if (pf == NULL) {
        return NGX_CONF_ERROR;
    }

    *pf = filter;

    return NGX_CONF_OK;
}


/* failure_policy=open|closed of a proxy_wasm chain element: NGX_OK,
 * NGX_DECLINED (another parameter), NGX_ERROR (reported). */
static ngx_int_t
ngx_proxy_wasm_failure_param(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_proxy_wasm_filter_t *filter)
{
    ngx_str_t  v;

    if (arg->len < 15 || ngx_strncmp(arg->data, "failure_policy=", 15) != 0) {
        return NGX_DECLINED;
    }

    if (filter->failure != -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate parameter \"failure_policy=\"");
        return NGX_ERROR;
    }

    v.data = arg->data + 15;
    v.len = arg->len - 15;

    if (v.len == 4 && ngx_strncmp(v.data, "open", 4) == 0) {
        filter->failure = PW_FAIL_OPEN;
        return NGX_OK;
    }

    if (v.len == 6 && ngx_strncmp(v.data, "closed", 6) == 0) {
        filter->failure = PW_FAIL_CLOSED;
        return NGX_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" of \"failure_policy=\" "
                       "(open or closed)", &v);

    return NGX_ERROR;
}


/* A chain element's own failure policy on its link; the chain's when it
 * has none. */
void
ngx_proxy_wasm_link_policy(pw_link *link, ngx_proxy_wasm_filter_t *filter)
{
    if (filter->failure != -1) {
        link->has_policy = 1;
        link->policy = (pw_failure_policy) filter->failure;
    }
}


/*
 * The limits of a proxy_wasm_module (docs/DIRECTIVES.md "Limits"):
 *
 *   max_call_time=TIME|off     CPU time per callback (default 1s)
 *   max_memory=SIZE            linear memory per VM (default 1g; 64 KiB
 *                              pages, at most 65535)
 *   max_callback_bytes=SIZE    bytes the host takes from one callback
 *   max_header_name=SIZE       longest header name a plugin may write
 *   max_header_value=SIZE      longest header value
 *   brake=N/TIME|off           the crash-loop brake: N failures within
 *                              TIME take the VM out (default 5/10s)
 *   brake_backoff=TIME[/TIME]  first back-off, and its most after doubling
 *                              (default 1s/60s)
 *   max_callouts=N|off         outstanding HTTP and gRPC call-outs per VM
 *                              (default 1024)
 *   max_map_pairs=N|off        pairs of a header map handed to a plugin
 *                              (default 8192)
 *   max_map_bytes=SIZE|off     serialised bytes of such a map, or of one
 *                              header value (default 1m)
 *   max_buffer=SIZE|off        bytes of one proxy_get_buffer_bytes answer
 *                              (default 64m)
 *
 * NGX_OK, NGX_DECLINED (another parameter), NGX_ERROR (reported).
 */
static ngx_int_t
ngx_proxy_wasm_limit_param(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_proxy_wasm_mod_t *mod)
{
    u_char     *slash;
    ngx_int_t   n, t, t2;
    ngx_str_t   v, a, b;
    ngx_uint_t  k, off;

    static const char  *keys[] = {
        "max_call_time", "max_memory", "max_callback_bytes",
        "max_header_name", "max_header_value", "brake", "brake_backoff",
        "max_callouts", "max_map_pairs", "max_map_bytes", "max_buffer", NULL
    };

    for (k = 0; keys[k]; k++) {
        n = ngx_strlen(keys[k]);

        if (arg->len > (size_t) n && arg->data[n] == '='
            && ngx_strncmp(arg->data, keys[k], n) == 0)
        {
            break;
        }
    }

    if (keys[k] == NULL) {
        return NGX_DECLINED;
    }

    v.data = arg->data + ngx_strlen(keys[k]) + 1;
    v.len = arg->len - ngx_strlen(keys[k]) - 1;

    off = (v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0);

    /* "a/b": a and b (b empty without a slash) */
    a = v;
    ngx_str_null(&b);
    slash = ngx_strlchr(v.data, v.data + v.len, '/');

    if (slash) {
        a.len = slash - v.data;
        b.data = slash + 1;
        b.len = v.data + v.len - b.data;
    }

    switch (k) {

    case 0: /* max_call_time */
        if (off) {
            mod->max_call_ms = UINT32_MAX;
            return NGX_OK;
        }

        t = ngx_parse_time(&v, 0);
        if (t == NGX_ERROR || t == 0 || t >= (ngx_int_t) UINT32_MAX) {
            goto invalid;
        }

        mod->max_call_ms = (uint32_t) t;
        return NGX_OK;

    case 5: /* brake */
        if (off) {
            mod->limits.brake_traps = UINT32_MAX;
            return NGX_OK;
        }

        n = ngx_atoi(a.data, a.len);
        t = b.len ? ngx_parse_time(&b, 0) : NGX_ERROR;

        if (n == NGX_ERROR || n < 1 || n > 64 || t == NGX_ERROR || t == 0
            || t >= (ngx_int_t) UINT32_MAX)
        {
            goto invalid;
        }

        mod->limits.brake_traps = (uint32_t) n;
        mod->limits.brake_window_ms = (uint32_t) t;
        return NGX_OK;

    case 7: /* max_callouts */
    case 8: /* max_map_pairs */
        if (off) {
            n = UINT32_MAX;

        } else {
            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR || n == 0 || n >= (ngx_int_t) UINT32_MAX) {
                goto invalid;
            }
        }

        *(k == 7 ? &mod->limits.max_callouts : &mod->limits.max_map_pairs) =
                                                                   (uint32_t) n;
        return NGX_OK;

    case 9: /* max_map_bytes */
    case 10: /* max_buffer */
        t = off ? (ngx_int_t) UINT32_MAX : ngx_parse_size(&v);
        if (t == NGX_ERROR || t == 0 || t > (ngx_int_t) UINT32_MAX) {
            goto invalid;
        }

        *(k == 9 ? &mod->limits.max_map_bytes : &mod->limits.max_buffer_bytes) =
                                                                   (uint32_t) t;
        return NGX_OK;

    case 6: /* brake_backoff */
        t = ngx_parse_time(&a, 0);
        t2 = b.len ? ngx_parse_time(&b, 0) : t;

        if (t == NGX_ERROR || t == 0 || t >= (ngx_int_t) UINT32_MAX
            || t2 == NGX_ERROR || t2 < t || t2 >= (ngx_int_t) UINT32_MAX)
        {
            goto invalid;
        }

        mod->limits.brake_backoff_ms = (uint32_t) t;
        mod->limits.brake_max_backoff_ms = (uint32_t) (b.len ? t2 : 60000);

        if (mod->limits.brake_max_backoff_ms < mod->limits.brake_backoff_ms) {
            mod->limits.brake_max_backoff_ms = mod->limits.brake_backoff_ms;
        }

        return NGX_OK;

    default: /* sizes */
        t = ngx_parse_offset(&v);
        if (t == NGX_ERROR || t == 0) {
            goto invalid;
        }

        if (k == 1) {
            if (t < 65536) {
                goto invalid;
            }

            mod->max_memory = (uint64_t) t;

        } else if (k == 2) {
            mod->limits.max_callback_bytes = (uint64_t) t;

        } else if (t >= (ngx_int_t) UINT32_MAX) {
            goto invalid;

        } else if (k == 3) {
            mod->limits.max_header_name_bytes = (uint32_t) t;

        } else {
            mod->limits.max_header_value_bytes = (uint32_t) t;
        }

        return NGX_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" of \"%s=\"", &v, keys[k]);

    return NGX_ERROR;
}


/* Gives the loaded module the limits of its declaration. */
static ngx_int_t
ngx_proxy_wasm_set_limits(ngx_conf_t *cf, ngx_proxy_wasm_mod_t *mod)
{
    if (pw_module_set_limits(mod->module, &mod->limits, mod->max_call_ms,
                             mod->max_memory)
        != PW_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "proxy_wasm_module \"%V\": cannot set its limits",
                      &mod->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* proxy_wasm_service NAME [root_id=ID] [config=STR | config_file=PATH]
 *                    [singleton] */
char *
ngx_proxy_wasm_service_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t *wc = (ngx_proxy_wasm_conf_t *)
                                    ((char *) conf + cmd->offset);

    return ngx_proxy_wasm_filter_directive(cf, wc, NULL);
}


/* proxy_wasm_cache_dir PATH | off */
char *
ngx_proxy_wasm_cache_dir_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t *wc = (ngx_proxy_wasm_conf_t *)
                                    ((char *) conf + cmd->offset);

    ngx_str_t  *value, path;

    if (wc->cache_dir.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&wc->cache_dir, "");
        return NGX_CONF_OK;
    }

    path = value[1];

    if (path.len == 0) {
        return "has an empty path";
    }

    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_proxy_wasm_pstr(cf->pool, &wc->cache_dir, path.data,
                            path.len)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_proxy_wasm_mod_t *
ngx_proxy_wasm_find_mod(ngx_proxy_wasm_conf_t *wc, ngx_str_t *name)
{
    ngx_uint_t              i;
    ngx_proxy_wasm_mod_t  **mods;

    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        if (mods[i]->name.len == name->len
            && ngx_strncmp(mods[i]->name.data, name->data, name->len) == 0)
        {
            return mods[i];
        }
    }

    return NULL;
}


/* One plugin per distinct (module, root_id, configuration) of the chains;
 * each service is a plugin of its own. */
static ngx_proxy_wasm_plugin_t *
ngx_proxy_wasm_find_plugin(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_proxy_wasm_mod_t *mod, ngx_proxy_wasm_filter_t *filter)
{
    ngx_uint_t                i;
    ngx_proxy_wasm_plugin_t  *p, **plugins, **pp;

    plugins = wc->plugins.elts;

    for (i = 0; !filter->service && i < wc->plugins.nelts; i++) {
        p = plugins[i];

        if (!p->service
            && p->mod == mod
            && ngx_proxy_wasm_str_eq(&p->root_id, &filter->root_id)
            && ngx_proxy_wasm_str_eq(&p->config, &filter->config))
        {
            return p;
        }
    }

    p = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_plugin_t));
    if (p == NULL) {
        return NULL;
    }

    p->mod = mod;
    p->root_id = filter->root_id;
    p->config = filter->config;
    p->service = filter->service;
    p->singleton = filter->singleton;

    pp = ngx_array_push(&wc->plugins);
    if (pp == NULL) {
        return NULL;
    }

    *pp = p;

    return p;
}


/* Every chain element gets its plugin: one per distinct (module, root_id,
 * configuration). */
ngx_int_t
ngx_proxy_wasm_resolve(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc)
{
    ngx_uint_t                 i;
    ngx_proxy_wasm_mod_t      *mod;
    ngx_proxy_wasm_filter_t  **filters;

    filters = wc->filters.elts;

    for (i = 0; i < wc->filters.nelts; i++) {
        mod = ngx_proxy_wasm_find_mod(wc, &filters[i]->name);

        if (mod == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "%s \"%V\": no proxy_wasm_module with "
                          "this name in %V:%ui",
                          filters[i]->service ? "proxy_wasm_service"
                                              : "proxy_wasm",
                          &filters[i]->name,
                          &filters[i]->file, filters[i]->line);
            return NGX_ERROR;
        }

        filters[i]->plugin = ngx_proxy_wasm_find_plugin(cf, wc, mod,
                                                        filters[i]);
        if (filters[i]->plugin == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Creates the runtime (wc->runtime, freed with the configuration's pool),
 * loads every module (compiled, or from the compile cache), gives each its
 * VM owner, and starts every plugin once (the canary); then detaches the
 * runtime from this process.
 */
ngx_int_t
ngx_proxy_wasm_load(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc)
{
    int                     rc;
    char                    err[PW_ERRLEN];
    char                   *env;
    ngx_uint_t              i, j;
    pw_runtime_config       rcf;
    ngx_pool_cleanup_t     *cln;
    ngx_proxy_wasm_mod_t  **mods, *mod;

    ngx_memzero(&rcf, sizeof(pw_runtime_config));

    if (wc->cache_dir.data == NULL) {
        /* the environment of the process that reads the configuration */
        env = getenv("PWASM_CACHE_DIR");
        rcf.cache_dir = (env && env[0]) ? env : NULL;

#ifdef NGX_PROXY_WASM_CACHE_DIR
        /* the build's default (the Debian packages: /var/cache/pwasm) */
        if (rcf.cache_dir == NULL) {
            rcf.cache_dir = NGX_PROXY_WASM_CACHE_DIR;
        }
#endif

    } else {
        /* "off" is "": the library's "no cache" that does not fall back
         * to $PWASM_CACHE_DIR as NULL does */
        rcf.cache_dir = (const char *) wc->cache_dir.data;
    }

    ngx_conf_init_msec_value(wc->compile_timeout, 120000);
    ngx_conf_init_size_value(wc->compile_memory, 4096 * 1024 * 1024ULL);
    ngx_conf_init_size_value(wc->module_max_size, 64 * 1024 * 1024);
    ngx_conf_init_size_value(wc->grpc_max_message, 4 * 1024 * 1024);

    /* 0 is "no limit" in the directives, the maximum in the library */
    rcf.compile_timeout_ms = wc->compile_timeout ? wc->compile_timeout
                                                   : UINT32_MAX;
    rcf.compile_max_memory = wc->compile_memory ? wc->compile_memory
                                                  : UINT64_MAX;
    rcf.max_module_bytes = wc->module_max_size ? wc->module_max_size
                                                 : UINT64_MAX;
    rcf.warn = ngx_proxy_wasm_runtime_warn;
    rcf.warn_data = cf->cycle->log;

    rc = pw_runtime_new(&rcf, &wc->runtime, err, sizeof(err));
    if (rc != PW_OK) {
        wc->runtime = NULL;
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "proxy_wasm: cannot create the Wasm runtime: %s", err);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        pw_runtime_free(wc->runtime);
        wc->runtime = NULL;
        return NGX_ERROR;
    }

    cln->handler = ngx_proxy_wasm_cleanup_runtime;
    cln->data = wc;

    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        mod = mods[i];

        if (mod->precompiled) {
            rc = pw_module_load_precompiled(wc->runtime,
                                            (const char *) mod->name.data,
                                            (const char *) mod->path.data,
                                            (const char *) mod->sha256.data,
                                            &mod->module, err, sizeof(err));

        } else {
            rc = pw_module_load_file_digest(wc->runtime,
                                            (const char *) mod->name.data,
                                            (const char *) mod->path.data,
                                            (const char *) mod->sha256.data,
                                            &mod->module, err, sizeof(err));
        }
        if (rc != PW_OK) {
            mod->module = NULL;
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm_module \"%V\": %s in %V:%ui",
                          &mod->name, err, &mod->file, mod->line);
            return NGX_ERROR;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_CORE, cf->log, 0,
                       "proxy_wasm_module \"%V\": ABI %s", &mod->name,
                       pw_module_abi_version(mod->module));

        if (ngx_proxy_wasm_set_limits(cf, mod) != NGX_OK) {
            return NGX_ERROR;
        }

        if (mod->caps_set) {
            pw_module_restrict(mod->module, mod->caps,
                               ngx_proxy_wasm_caps_warn, mod);
        }

        /* one VM per worker per (module, vm_id): declarations of the same
         * file with the same vm_id and vm_config share it */
        mod->owner = mod;

        for (j = 0; j < i; j++) {
            if (ngx_proxy_wasm_str_eq(&mods[j]->path, &mod->path)
                && ngx_proxy_wasm_str_eq(&mods[j]->vm_id, &mod->vm_id)
                && ngx_proxy_wasm_str_eq(&mods[j]->vm_config,
                                         &mod->vm_config)
                && ngx_memcmp(&mods[j]->limits, &mod->limits,
                              sizeof(pw_limits)) == 0
                && mods[j]->max_call_ms == mod->max_call_ms
                && mods[j]->max_memory == mod->max_memory
                && mods[j]->caps == mod->caps)
            {
                mod->owner = mods[j]->owner;
                break;
            }
        }
    }

    if (ngx_proxy_wasm_canary(cf, wc) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the master runs no plugin code from here on: no trap handlers or
     * CPU timer in it (workers attach in init_process); a reload to a
     * configuration without this module can then unload it safely */
    pw_runtime_detach(wc->runtime);

    return NGX_OK;
}


static void
ngx_proxy_wasm_cleanup_runtime(void *data)
{
    ngx_proxy_wasm_conf_t *wc = data;

    ngx_uint_t              i;
    ngx_proxy_wasm_mod_t  **mods;

    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        if (mods[i]->vm) {
            pw_vm_free(mods[i]->vm);
            mods[i]->vm = NULL;
        }

        if (mods[i]->module) {
            pw_module_free(mods[i]->module);
            mods[i]->module = NULL;
        }
    }

    if (wc->runtime) {
        pw_runtime_free(wc->runtime);
        wc->runtime = NULL;
    }
}


static void
ngx_proxy_wasm_runtime_warn(void *data, const char *msg)
{
    ngx_log_error(NGX_LOG_WARN, (ngx_log_t *) data, 0, "proxy_wasm: %s", msg);
}


/*
 * Starts every plugin once on a throw-away VM, so that a plugin refusing
 * its configuration fails the configuration (nginx -t). The shared zone
 * does not exist yet (nginx maps zones after reading the configuration),
 * and what a canary writes must not reach it anyway: its VMs get a scratch
 * store of their own in process memory, dropped afterwards.
 */
static ngx_int_t
ngx_proxy_wasm_canary(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc)
{
    ngx_int_t    rc;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, cf->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_proxy_wasm_scratch_store_open(wc, pool, cf->log) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    rc = ngx_proxy_wasm_canary_vms(cf, wc);

    ngx_proxy_wasm_scratch_store_close(wc);
    ngx_destroy_pool(pool);

    return rc;
}


static ngx_int_t
ngx_proxy_wasm_canary_vms(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc)
{
    int                        rc;
    char                       err[PW_ERRLEN];
    ngx_uint_t                 i, j, k;
    pw_plugin                 *plugin;
    ngx_proxy_wasm_mod_t     **mods, *mod;
    ngx_proxy_wasm_filter_t  **filters;
    ngx_proxy_wasm_plugin_t  **plugins;

    mods = wc->mods.elts;
    plugins = wc->plugins.elts;
    filters = wc->filters.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        mod = mods[i];
        mod->log = cf->log;

        rc = pw_vm_new(mod->module, ngx_proxy_wasm_pw(&mod->vm_id),
                       ngx_proxy_wasm_pw(&mod->vm_config),
                       mod->subsys->ops, mod, &mod->vm, err,
                       sizeof(err));
        if (rc != PW_OK) {
            mod->vm = NULL;
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm_module \"%V\": cannot start: %s "
                          "in %V:%ui", &mod->name, err, &mod->file,
                          mod->line);
            return NGX_ERROR;
        }

        for (j = 0; j < wc->plugins.nelts; j++) {
            if (plugins[j]->mod != mod) {
                continue;
            }

            rc = pw_plugin_new(mod->vm, ngx_proxy_wasm_pw(&mod->name),
                               ngx_proxy_wasm_pw(&plugins[j]->root_id),
                               ngx_proxy_wasm_pw(&plugins[j]->config),
                               &plugin, err, sizeof(err));
            if (rc == PW_OK) {
                continue;
            }

            for (k = 0; k < wc->filters.nelts; k++) {
                if (filters[k]->plugin == plugins[j]) {
                    break;
                }
            }

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "%s \"%V\": plugin failed to start: %s "
                          "in %V:%ui",
                          filters[k]->service ? "proxy_wasm_service"
                                              : "proxy_wasm",
                          &mod->name, err, &filters[k]->file,
                          filters[k]->line);

            pw_vm_free(mod->vm);
            mod->vm = NULL;
            return NGX_ERROR;
        }

        pw_vm_free(mod->vm);
        mod->vm = NULL;
    }

    return NGX_OK;
}
