;; mixed_abi010.wasm -- the ABI 0.1.0 marker with the header callbacks
;; of 0.2.x, (context_id, num_headers, end_of_stream) -> action, as C++
;; plugins built with Emscripten in 2020-21 have them. A host must load
;; it and call each callback with the arity it exports. Each header
;; callback logs its name at INFO and adds to the headers it was called
;; for x-args (its arity), x-ctx, x-n and x-eos (its arguments, one digit
;; each), then returns Continue.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 256) "x-args")            ;; 6
  (data (i32.const 264) "x-ctx")             ;; 5
  (data (i32.const 272) "x-n")               ;; 3
  (data (i32.const 280) "x-eos")             ;; 5
  (data (i32.const 288) "request_headers")   ;; 15
  (data (i32.const 304) "response_headers")  ;; 16
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  ;; Adds "key: <digit>" to map, the digit '0' + v.
  (func $put (param $map i32) (param $k i32) (param $kl i32) (param $v i32)
    (i32.store8 (i32.const 512) (i32.add (i32.const 48) (local.get $v)))
    (drop (call $add (local.get $map) (local.get $k) (local.get $kl) (i32.const 512) (i32.const 1))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 288) (i32.const 15)))
    (call $put (i32.const 0) (i32.const 256) (i32.const 6) (i32.const 3))
    (call $put (i32.const 0) (i32.const 264) (i32.const 5) (local.get $ctx))
    (call $put (i32.const 0) (i32.const 272) (i32.const 3) (local.get $n))
    (call $put (i32.const 0) (i32.const 280) (i32.const 5) (local.get $eos))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 304) (i32.const 16)))
    (call $put (i32.const 2) (i32.const 256) (i32.const 6) (i32.const 3))
    (call $put (i32.const 2) (i32.const 264) (i32.const 5) (local.get $ctx))
    (call $put (i32.const 2) (i32.const 272) (i32.const 3) (local.get $n))
    (call $put (i32.const 2) (i32.const 280) (i32.const 5) (local.get $eos))
    (i32.const 0)))
