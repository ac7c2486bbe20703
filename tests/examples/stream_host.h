/*
 * stream_host.h -- a native fake host for unit tests of the stream (TCP)
 * examples: the plugin's .c and sdk/c/proxy_wasm.c compile natively (the
 * SDK's hostcalls are plain functions without __wasm__) and link with
 * stream_host.c, which implements the hostcalls they use with Envoy's
 * semantics for TCP data: a callback's Continue forwards the buffer as it
 * is then, Pause keeps it and the next bytes are added to it.
 */
#ifndef TESTS_EXAMPLES_STREAM_HOST_H
#define TESTS_EXAMPLES_STREAM_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *d;
    size_t n, cap;
} sh_buf;

enum { SH_DOWN = 0, SH_UP = 1 };

typedef struct {
    uint32_t id;
    sh_buf held[2]; /* bytes the plugin holds (Pause), each direction */
    sh_buf out[2];  /* bytes forwarded: [SH_DOWN] to the upstream, [SH_UP] to the client */
    int closed;     /* proxy_close_stream was called */
    char cluster[256]; /* filter state envoy.tcp_proxy.cluster */
} sh_conn;

extern sh_buf sh_log; /* "LEVEL message\n" lines */
extern int t_failed, t_run;

void sh_buf_add(sh_buf *b, const char *d, size_t n);
/* Restarts the plugin with `config`: proxy_on_configure's result. */
int sh_configure(const char *config);
sh_conn *sh_open(void);
/* Sends n bytes in a direction: the callback's result (0 Continue). */
int sh_send(sh_conn *c, int dir, const char *d, size_t n, int eos);
void sh_free(sh_conn *c);
/* sh_log contains s. */
int sh_logged(const char *s);

#define CHECK(cond)                                                            \
    do {                                                                       \
        t_run++;                                                               \
        if (!(cond)) {                                                         \
            t_failed++;                                                        \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
        }                                                                      \
    } while (0)

/* Buffer b holds exactly the bytes given as (s, n). */
#define CHECK_BYTES(b, ...) sh_check_bytes(&(b), __VA_ARGS__, #b, __FILE__, __LINE__)
void sh_check_bytes(const sh_buf *b, const char *s, size_t n, const char *what, const char *file,
                    int line);

#endif
