;; grow_access.wasm -- linear memory accessed across memory.grow within one
;; function, for the generated code's per-function memory base (docs/ENGINE.md
;; "Memory and traps"): on_request_headers writes the last word of page 0,
;; grows the memory by one page, writes and reads back words of the new page
;; (and checks the old one), byte by byte copies 64 bytes across the old end,
;; then, when called with 1 header, reads past the new end (page 2), which
;; must trap as out of bounds. Any wrong value is `unreachable`.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32)
    (result i32)
    (local $i i32)
    (i32.store (i32.const 65532) (i32.const 0x11223344))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1))
      (then unreachable))
    (i32.store (i32.const 65636) (i32.const 0x55667788))
    (i64.store (i32.const 131064) (i64.const 0x0102030405060708))
    (if (i32.ne (i32.load (i32.const 65636)) (i32.const 0x55667788))
      (then unreachable))
    (if (i64.ne (i64.load (i32.const 131064)) (i64.const 0x0102030405060708))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 65532)) (i32.const 0x11223344))
      (then unreachable))
    ;; copy 64 bytes from 65500.. to 65700.. one at a time (a store per
    ;; iteration, then a load: the loop the base reload used to be in)
    (local.set $i (i32.const 0))
    (loop $copy
      (i32.store8 (i32.add (i32.const 65700) (local.get $i))
                  (i32.load8_u (i32.add (i32.const 65500) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $copy (i32.lt_u (local.get $i) (i32.const 64))))
    (if (i32.ne (i32.load (i32.const 65732)) (i32.const 0x11223344))
      (then unreachable))
    (if (i32.eq (local.get $n) (i32.const 1))
      (then (drop (i32.load (i32.const 131072)))))
    (i32.const 0)))
