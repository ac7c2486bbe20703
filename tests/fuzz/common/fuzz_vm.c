/* fuzz_vm.c -- see fuzz_vm.h. */
#include "fuzz_vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rt.h"

fz_vm fz;
const pw_host_ops *fz_ops;

#define S(lit) ((pw_str){lit, sizeof(lit) - 1})

static void die(const char *what, const char *err) {
    fprintf(stderr, "fuzz_vm: %s: %s\n", what, err);
    abort();
}

static void vm_free(void) {
    if (fz.st)
        pw_stream_free(fz.st);
    if (fz.vm)
        pw_vm_free(fz.vm);
    fz.st = NULL;
    fz.vm = NULL;
    fz.p = NULL;
}

static void vm_make(void) {
    char err[PW_ERRLEN];
    memset(&fz.host, 0, sizeof fz.host);
    fz.host.level = PROXY_LOG_TRACE;
    if (pw_vm_new(fz.m, S("fuzz-vm"), S("vm-config"), fz_ops ? fz_ops : &mh_ops, &fz.host, &fz.vm, err,
                  sizeof err) != PW_OK)
        die("pw_vm_new", err);
    if (pw_plugin_new(fz.vm, S("fuzz"), S("root"), S("x-fuzz=1"), &fz.p, err, sizeof err) !=
        PW_OK)
        die("pw_plugin_new", err);
    mh_stream_init(&fz.stream);
    mh_add(&fz.stream.req, ":path", "/fuzz");
    mh_add(&fz.stream.req, ":method", "GET");
    mh_add(&fz.stream.req, "host", "example.com");
    mh_add(&fz.stream.resp, ":status", "200");
    mh_body_set(&fz.stream.req_body, "request body");
    mh_body_set(&fz.stream.resp_body, "response body");
    if (pw_stream_new(fz.p, &fz.stream, &fz.st, err, sizeof err) != PW_OK)
        die("pw_stream_new", err);
    uint32_t len = FZ_SCRATCH, p = 0;
    if (pw_vm_callback(fz.vm, &fz.st->ctx, PW_CB_MALLOC, &len, &p) != 0 || !p)
        die("malloc", "the plugin's allocator failed");
    fz.scratch = p;
    fz.uses = 0;
}

void fz_vm_ready(void) {
    if (!fz.rt) {
        char err[PW_ERRLEN];
        const char *root = getenv("PWASM_FUZZ_ROOT");
        char path[4096];
        snprintf(path, sizeof path, "%s/build/examples/add_header.wasm", root ? root : ".");
        if (pw_runtime_new(NULL, &fz.rt, err, sizeof err) != PW_OK)
            die("pw_runtime_new", err);
        if (pw_module_load_file(fz.rt, "fuzz", path, &fz.m, err, sizeof err) != PW_OK)
            die(path, err);
    }
    if (fz.vm && (pw_vm_dead(fz.vm) || fz.uses >= FZ_VM_REUSE))
        vm_free();
    if (!fz.vm)
        vm_make();
    fz.uses++;
}

uint8_t *fz_mem(uint64_t *size) {
    return pw_winst_mem(fz.vm->inst, size);
}

uint32_t fz_put(const fz_input *in, size_t *len) {
    uint64_t msize;
    *len = in->size > FZ_SCRATCH - 8 ? FZ_SCRATCH - 8 : in->size;
    memcpy(fz_mem(&msize) + fz.scratch + 8, in->data, *len);
    return fz.scratch + 8;
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} thunk_arg;

static void thunk(void *a) {
    thunk_arg *t = a;
    t->fn(t->arg);
}

int fz_run(void (*fn)(void *), void *arg) {
    pw_vm *vm = fz.vm;
    vm->cur = &fz.st->ctx;
    vm->eff = NULL;
    vm->depth = 1;
    vm->budget = vm->lim.max_callback_bytes;
    vm->refusal_logged = 0;
    thunk_arg t = {fn, arg};
    pw_trap trap = {0};
    int rc = pw_rt_invoke(thunk, &t, 0, &trap);
    vm->depth = 0;
    vm->cur = NULL;
    vm->eff = NULL;
    if (rc != 0)
        vm->dead = 1; /* host state a trap unwound is not trusted again */
    return rc;
}
