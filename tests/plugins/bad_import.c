/*
 * bad_import.wasm (no SDK): imports a hostcall that does not exist,
 * env.proxy_does_not_exist (i32) -> i32, and calls it from
 * proxy_on_request_headers so the import is kept. Otherwise a valid 0.2.1
 * plugin (marker, allocator), so a host must refuse it for the import alone.
 */
#include <stdint.h>
#include <stdlib.h>

__attribute__((import_module("env"), import_name("proxy_does_not_exist")))
int32_t proxy_does_not_exist(int32_t arg);

__attribute__((export_name("proxy_abi_version_0_2_1"))) void abi_marker(void) {}

__attribute__((export_name("proxy_on_memory_allocate"))) void *allocate(size_t size) {
    return malloc(size);
}

__attribute__((export_name("proxy_on_request_headers")))
uint32_t on_request_headers(uint32_t ctx, uint32_t nheaders, uint32_t eos) {
    (void)nheaders;
    (void)eos;
    return proxy_does_not_exist((int32_t)ctx) != 0;
}
