;; A recursion that calls a hostcall at every level, until the native stack
;; runs out (found by the red team: before the stack budget, the fault hit
;; inside the host -- nginx or malloc -- and was unwound as a trap, leaving
;; the heap corrupted). With the budget, the trampoline of the hostcall traps
;; first ("call stack exhausted"), in plugin code.
(module
  (import "env" "proxy_get_header_map_pairs" (func $p (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 65536))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $r (param $d i32) (result i32) (local $x i32)
    (drop (call $p (i32.const 0) (i32.const 16) (i32.const 20)))
    (local.set $x (call $r (i32.add (local.get $d) (i32.const 1))))
    (i32.store (i32.const 512) (local.get $x)) (local.get $x))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $r (i32.const 0))) (i32.const 0)))
