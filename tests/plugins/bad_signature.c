/*
 * bad_signature.wasm (no SDK): imports env.proxy_log with a wrong signature,
 * (i32, i32) -> i32 instead of (i32, i32, i32) -> i32, and calls it from
 * proxy_on_request_headers so the import is kept. Otherwise a valid 0.2.1
 * plugin (marker, allocator), so a host must refuse it for the signature.
 */
#include <stdint.h>
#include <stdlib.h>

__attribute__((import_module("env"), import_name("proxy_log")))
int32_t proxy_log_with_two_args(int32_t level, int32_t message);

__attribute__((export_name("proxy_abi_version_0_2_1"))) void abi_marker(void) {}

__attribute__((export_name("proxy_on_memory_allocate"))) void *allocate(size_t size) {
    return malloc(size);
}

__attribute__((export_name("proxy_on_request_headers")))
uint32_t on_request_headers(uint32_t ctx, uint32_t nheaders, uint32_t eos) {
    (void)nheaders;
    (void)eos;
    static const char msg[] = "bad_signature";
    return proxy_log_with_two_args(2, (int32_t)(uintptr_t)msg) != 0 && ctx == 0;
}
