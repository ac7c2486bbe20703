;; loop.wasm -- a plugin stuck in an infinite loop in on_request_headers when
;; the request has a header `x-loop` (any value); otherwise it continues.
;; For the CPU time limit (the watchdog): the call must be interrupted as a
;; trap and the next request served by a fresh VM.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 256) "x-loop")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 256) (i32.const 6)
                            (i32.const 16) (i32.const 20)))
      (then (loop $forever (br $forever))))
    (i32.const 0)))
