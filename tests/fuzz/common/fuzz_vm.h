/*
 * fuzz_vm.h -- a live VM for the fuzz targets that reach guest memory
 * (pairs, property paths, hostcalls): one real plugin (examples'
 * add_header, compiled once through the compile cache), an in-memory host
 * (tests/unit/memhost), a plugin and an HTTP stream context, and a
 * scratch area in the guest's linear memory the targets write inputs to.
 *
 * fz_run() calls fn as a hostcall is called from plugin code: inside a
 * Wasm call of the engine (so a trap a hostcall raises unwinds to it), with
 * the stream context current and a fresh callback budget. When a trap
 * killed the VM, or after FZ_VM_REUSE inputs (the guest's allocator is
 * never given back what hostcalls allocate), the VM is made again.
 */
#ifndef PW_FUZZ_VM_H
#define PW_FUZZ_VM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "memhost.h"

#define FZ_SCRATCH 65536u /* bytes of guest memory at fz.scratch */
#define FZ_VM_REUSE 2000

typedef struct fz_vm {
    pw_runtime *rt;
    pw_module *m;
    pw_vm *vm;
    pw_plugin *p;
    pw_stream *st;
    mh_host host;
    mh_stream stream;
    uint32_t scratch; /* guest address of FZ_SCRATCH bytes */
    unsigned uses;
} fz_vm;

extern fz_vm fz;
/* The host's hooks; NULL: memhost's (mh_ops). Set before fz_vm_ready. */
extern const pw_host_ops *fz_ops;

/* Makes the VM (first call) or makes it again when needed; aborts when the
 * plugin cannot be loaded (run from the repository root or with
 * PWASM_FUZZ_ROOT set, after make). */
void fz_vm_ready(void);

/* Guest memory base and size. */
uint8_t *fz_mem(uint64_t *size);

/* A fuzz input. */
typedef struct fz_input {
    const uint8_t *data;
    size_t size;
} fz_input;

/* Copies the input (its first FZ_SCRATCH - 8 bytes) into the scratch area
 * after its first 8 bytes (left for two out-pointers, at fz.scratch and
 * fz.scratch + 4); returns its guest address, the bytes copied in *len. */
uint32_t fz_put(const fz_input *in, size_t *len);

/* Runs fn(arg) as from a hostcall of the stream context. 0, or -1 when a
 * trap ended it (the VM is made again at the next fz_vm_ready). */
int fz_run(void (*fn)(void *), void *arg);

#endif
