;; Loops on WASI random_get (64 KiB a call) in proxy_on_request_headers: a
;; plugin that spends its time in the kernel, not in its own code. Found by
;; the red team: the CPU limit counted user time only and let it hold the
;; worker 136 s. It must be stopped like any loop, within about the limit.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $rnd (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $l (drop (call $rnd (i32.const 0) (i32.const 65536))) (br $l))
    (i32.const 0)))
