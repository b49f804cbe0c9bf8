;; A shuffled training batch gathered and normalized in one pass, run directly on tfjs-wasm's heap (the
;; memory is imported), where the split's images are kept as bytes (src/data/dataset.ts): image k of
;; the batch is the 784 bytes at pixels + 784·order[k], and out[p] = lut[byte p] as float32. The table
;; holds the values src/data/dataset.ts computes (float64 arithmetic rounded once to float32), so the
;; output is the JS loop's bit for bit. Compiled to gather.wasm by `npm run build` (src/accel/build-simd.ts).
(module
  (import "env" "memory" (memory 1))

  ;; b images (order: b int32 at $order, image indices) from the bytes at $pixels through the float32
  ;; table at $lut into the floats at $dst (784 per image, consecutive). Four pixels per iteration from
  ;; one 32-bit load (little-endian: byte k in bits 8k..8k+7; 784 = 4·196, no tail). Before each image
  ;; one byte of each of the next image's 13 cache lines is read and dropped: the images are random
  ;; reads of a 16–47 MB array and wasm has no prefetch instruction. Measured (20,000 images at batch
  ;; 512, CPU ms an epoch): ~13 for copying each image into a staging area with TypedArray.set and then
  ;; normalizing it there, ~12.7 for this loop without the touches, ~10 with them; computing each
  ;; value in SIMD float64 (v·a + c, rounded to float32) instead of the lookup was no faster (~8 against
  ;; ~8.5): the pass is bound by writing the batch's floats.
  (func (export "gather") (param $order i32) (param $b i32) (param $pixels i32) (param $lut i32) (param $dst i32)
    (local $end i32) (local $src i32) (local $srcEnd i32) (local $w i32) (local $next i32) (local $touch i32)
    (local.set $end (i32.add (local.get $order) (i32.shl (local.get $b) (i32.const 2))))
    (block $done
      (loop $image
        (br_if $done (i32.ge_u (local.get $order) (local.get $end)))
        (local.set $src (i32.add (local.get $pixels) (i32.mul (i32.load (local.get $order)) (i32.const 784))))
        (if (i32.lt_u (i32.add (local.get $order) (i32.const 4)) (local.get $end))
          (then
            (local.set $next (i32.add (local.get $pixels) (i32.mul (i32.load offset=4 (local.get $order)) (i32.const 784))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=64 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=128 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=192 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=256 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=320 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=384 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=448 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=512 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=576 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=640 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=704 (local.get $next))))
            (local.set $touch (i32.xor (local.get $touch) (i32.load8_u offset=783 (local.get $next))))))
        (local.set $srcEnd (i32.add (local.get $src) (i32.const 784)))
        (loop $four
          (local.set $w (i32.load align=1 (local.get $src)))
          (f32.store (local.get $dst)
            (f32.load (i32.add (local.get $lut) (i32.shl (i32.and (local.get $w) (i32.const 255)) (i32.const 2)))))
          (f32.store offset=4 (local.get $dst)
            (f32.load (i32.add (local.get $lut) (i32.and (i32.shr_u (local.get $w) (i32.const 6)) (i32.const 1020)))))
          (f32.store offset=8 (local.get $dst)
            (f32.load (i32.add (local.get $lut) (i32.and (i32.shr_u (local.get $w) (i32.const 14)) (i32.const 1020)))))
          (f32.store offset=12 (local.get $dst)
            (f32.load (i32.add (local.get $lut) (i32.shl (i32.shr_u (local.get $w) (i32.const 24)) (i32.const 2)))))
          (local.set $src (i32.add (local.get $src) (i32.const 4)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
          (br_if $four (i32.lt_u (local.get $src) (local.get $srcEnd))))
        (local.set $order (i32.add (local.get $order) (i32.const 4)))
        (br $image)))
    ;; The touches' result is dropped here (wasm loads can trap, so they are not removed as dead code).
    (drop (local.get $touch)))
)
