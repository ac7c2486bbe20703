/*
 * chain.c -- the plugins one stream passes through and their failure
 * policy (pw_chain, pw_link in pwasm.h): stream contexts created on first
 * use, failed links skipped, the policy applied to every way a plugin can
 * fail, pending actions taken across links, contexts ended in order.
 * Shared by the nginx modules and the CLI.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/core.h"

static const char *const event_names[PW_EVENT_COUNT] = {
    "on_request_headers",  "on_request_body",  "on_request_trailers",
    "on_response_headers", "on_response_body", "on_response_trailers",
    "on_new_connection",   "on_downstream_data", "on_upstream_data",
    "on_downstream_connection_close", "on_upstream_connection_close",
};

const char *pw_event_name(int event) {
    return event >= 0 && event < PW_EVENT_COUNT ? event_names[event] : "?";
}

static void whyf(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void whyf(char *why, size_t whylen, const char *fmt, ...) {
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* The link cannot run: it is skipped from now on, and the policy (the
 * link's own, else the chain's) decides for the stream. */
static pw_action link_failed(pw_chain *c, pw_link *l) {
    l->failed = 1;
    pw_failure_policy p = l->has_policy ? l->policy : c->policy;
    return p == PW_FAIL_OPEN ? PW_ACTION_CONTINUE : PW_ACTION_ERROR;
}

/* The reason a link's plugin failed: its VM's last error. */
static const char *vm_error(const pw_link *l) {
    const char *e = l->plugin ? pw_vm_last_error(l->plugin->vm) : "";
    return e[0] ? e : "plugin unavailable";
}

/* A link's stream context, of the chain's kind. */
static int chain_stream_new(const pw_chain *c, pw_link *l, char *err, size_t errlen) {
    return c->tcp ? pw_stream_new_tcp(l->plugin, l->host_stream, &l->stream, err, errlen)
                  : pw_stream_new(l->plugin, l->host_stream, &l->stream, err, errlen);
}

/* pw_chain_call (vm.c, next to the stream callbacks it inlines) when the
 * link has no context yet, failed or ended, or its callback failed
 * (`called`). */
pw_action pw_chain_call_slow(pw_chain *c, pw_link *l, pw_event event, size_t n, int end_of_stream,
                             char *why, size_t whylen, int called) {
    if (!called) {
        if (l->failed || l->ended)
            return PW_ACTION_CONTINUE;
        if (!l->plugin) {
            whyf(why, whylen, "plugin unavailable");
            return link_failed(c, l);
        }
        char err[PW_ERRLEN];
        if (chain_stream_new(c, l, err, sizeof err) != PW_OK) {
            l->stream = NULL;
            if (pw_vm_braked(l->plugin->vm, NULL))
                whyf(why, whylen, "%s", err); /* the brake's reason */
            else
                whyf(why, whylen, "no stream context: %s", err);
            return link_failed(c, l);
        }
        pw_action a = pw_stream_call(l->stream, event, n, end_of_stream);
        if (a != PW_ACTION_ERROR)
            return a;
    }
    whyf(why, whylen, "%s", vm_error(l));
    return link_failed(c, l);
}

pw_action pw_chain_stranded(pw_chain *c, size_t i, char *why, size_t whylen) {
    pw_link *l = &c->links[i];
    whyf(why, whylen, "paused, and its VM was discarded after a trap in another context (%s)",
         l->plugin ? pw_vm_last_error(l->plugin->vm) : "");
    return link_failed(c, l);
}

pw_action pw_chain_fail(pw_chain *c, size_t i) {
    return link_failed(c, &c->links[i]);
}

unsigned pw_chain_take(pw_chain *c, unsigned mask, size_t *first_local) {
    unsigned all = 0;
    if (first_local)
        *first_local = c->n;
    for (size_t i = 0; i < c->n; i++) {
        pw_link *l = &c->links[i];
        if (!l->stream || l->ended)
            continue;
        unsigned b = pw_stream_take(l->stream, mask);
        if ((b & PW_PENDING_LOCAL_RESPONSE) && first_local && *first_local == c->n)
            *first_local = i;
        if (b & PW_PENDING_FAILED)
            l->discarded = 1;
        all |= b;
    }
    return all;
}

void pw_chain_end(pw_chain *c, int late) {
    for (size_t i = 0; i < c->n; i++) {
        pw_link *l = &c->links[i];
        if (late && !l->stream && !l->failed && !l->ended) {
            char err[PW_ERRLEN];
            if (!l->plugin || chain_stream_new(c, l, err, sizeof err) != PW_OK) {
                l->stream = NULL;
                l->failed = 1;
            }
        }
        if (l->stream && !l->ended) {
            l->ended = 1;
            pw_stream_free(l->stream); /* on_log, on_done, on_delete (TCP: on_done first) */
        }
    }
}
