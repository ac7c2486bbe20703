;; abi010.wasm -- an ABI 0.1.0 module in plain WebAssembly text, for the
;; core's unit tests of what only 0.1.0 has: two-argument header callbacks,
;; proxy_get_configuration, Ok + empty for a missing header. It also checks
;; proxy_get_header_map_size, proxy_get_buffer_status, a valid
;; proxy_set_effective_context and proxy_done outside a pending done.
;; Every check logs one fixed word at INFO: "<check>-ok" or "<check>-bad".
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_configuration" (func $get_config (param i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $map_size (param i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func $buf_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_eff (param i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 256) "missing-ok")   ;; 10
  (data (i32.const 272) "missing-bad")  ;; 11
  (data (i32.const 288) "size-ok")      ;; 7
  (data (i32.const 304) "size-bad")     ;; 8
  (data (i32.const 320) "status-ok")    ;; 9
  (data (i32.const 336) "status-bad")   ;; 10
  (data (i32.const 352) "eff-ok")       ;; 6
  (data (i32.const 368) "eff-bad")      ;; 7
  (data (i32.const 384) "x-missing")    ;; 9
  (data (i32.const 400) "done-ok")      ;; 7
  (data (i32.const 416) "done-bad")     ;; 8
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $say (param $ok i32) (param $okp i32) (param $okn i32) (param $badp i32) (param $badn i32)
    (if (local.get $ok)
      (then (drop (call $log (i32.const 2) (local.get $okp) (local.get $okn))))
      (else (drop (call $log (i32.const 2) (local.get $badp) (local.get $badn))))))
  ;; Logs the configuration proxy_get_configuration returns ("vm:" or plain).
  (func $log_config
    (drop (call $get_config (i32.const 8) (i32.const 12)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 8)) (i32.load (i32.const 12)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (call $log_config) (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (call $log_config)
    ;; buffer status of the plugin configuration: Ok and its size
    (call $say (i32.and (i32.eqz (call $buf_status (i32.const 7) (i32.const 28) (i32.const 32)))
                        (i32.eq (i32.load (i32.const 28)) (local.get $size)))
      (i32.const 320) (i32.const 9) (i32.const 336) (i32.const 10))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (result i32)
    ;; 0.1.0: a missing header is Ok with an empty value (0, 0)
    (i32.store (i32.const 16) (i32.const 77))
    (call $say (i32.and (i32.eqz (call $get_value (i32.const 0) (i32.const 384) (i32.const 9) (i32.const 16) (i32.const 20)))
                        (i32.eqz (i32.load (i32.const 16))))
      (i32.const 256) (i32.const 10) (i32.const 272) (i32.const 11))
    ;; serialized size of {":path": "/", "x-a": "1"} = 4 + 16 + 14
    (call $say (i32.and (i32.eqz (call $map_size (i32.const 0) (i32.const 24)))
                        (i32.eq (i32.load (i32.const 24)) (i32.const 34)))
      (i32.const 288) (i32.const 7) (i32.const 304) (i32.const 8))
    (call $say (i32.eqz (call $set_eff (local.get $ctx)))
      (i32.const 352) (i32.const 6) (i32.const 368) (i32.const 7))
    (call $say (i32.eq (call $done) (i32.const 1))
      (i32.const 400) (i32.const 7) (i32.const 416) (i32.const 8))
    (i32.const 0)))
