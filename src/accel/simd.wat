;; SIMD loops for the wasm backend, run directly on tfjs-wasm's heap (the memory is imported).
;; Each matches, rounding for rounding, the float32 op-by-op arithmetic of the JS fallbacks in
;; step.ts and kernels.ts. Compiled to simd.wasm by `npm run build` (src/accel/build-simd.ts).
(module
  (import "env" "memory" (memory 1))

  ;; One SGD pass over n floats (n a multiple of 4; the caller does the tail), lr negative:
  ;;   D = W' + lr·((G + l1·sign(W)) + l2x2·W), W' = W + (W·wd)·lr when wd ≠ 0 (decoupled decay),
  ;; every operation rounded to float32, and at out: f64 Σ|W| when bit 1 of `sums` is set, f64 ΣW² when bit 2
  ;; is (else 0), the penalty's sums at the old weights: a sum no penalty uses costs nothing. l1·sign(W) is
  ;; ±l1 by W's sign bit and +0 at W = ±0, the product's own bits for l1 ≥ 0 (fewer operations than the
  ;; product). Each sum runs in four float64 lanes (element i in lane i mod 4).
  (func (export "sgd")
    (param $w i32) (param $g i32) (param $d i32) (param $n i32)
    (param $l1 f32) (param $l2x2 f32) (param $lr f32) (param $wd f32) (param $out i32) (param $sums i32)
    (local $i i32) (local $end i32) (local $end16 i32) (local $sumAbs i32) (local $sumSq i32) (local $decay i32)
    (local $vw v128) (local $vg v128) (local $a v128) (local $q v128)
    (local $abs0 v128) (local $abs1 v128) (local $sq0 v128) (local $sq1 v128)
    (local $vl1 v128) (local $vl2 v128) (local $vlr v128) (local $vwd v128) (local $signBit v128) (local $zero v128)
    (local.set $vl1 (f32x4.splat (local.get $l1)))
    (local.set $vl2 (f32x4.splat (local.get $l2x2)))
    (local.set $vlr (f32x4.splat (local.get $lr)))
    (local.set $vwd (f32x4.splat (local.get $wd)))
    (local.set $signBit (i32x4.splat (i32.const 0x80000000)))
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $sumAbs (i32.and (local.get $sums) (i32.const 1)))
    (local.set $sumSq (i32.and (local.get $sums) (i32.const 2)))
    (local.set $decay (f32.ne (local.get $wd) (f32.const 0)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    ;; Sixteen floats a turn while they last (four copies of the same steps, 16 bytes apart), then a vector a
    ;; turn: each lane's sums in the same order either way. On the tutorial's first kernel (156,800 floats, the
    ;; L1 sum) 77 → 58 µs against a vector a turn; with no sum 77 → 39 (the loop's own steps were half of it).
    (local.set $end16 (i32.and (local.get $end) (i32.const -64)))
    (block $done16
      (loop $loop16
        (br_if $done16 (i32.ge_u (local.get $i) (local.get $end16)))
        (local.set $vw (v128.load (i32.add (local.get $w) (local.get $i))))
        (local.set $vg
          (f32x4.add
            (f32x4.add (v128.load (i32.add (local.get $g) (local.get $i)))
              (v128.and (f32x4.ne (local.get $vw) (local.get $zero))
                (v128.xor (local.get $vl1) (v128.and (local.get $vw) (local.get $signBit)))))
            (f32x4.mul (local.get $vl2) (local.get $vw))))
        (if (local.get $sumAbs)
          (then
            (local.set $a (f32x4.abs (local.get $vw)))
            (local.set $abs0 (f64x2.add (local.get $abs0) (f64x2.promote_low_f32x4 (local.get $a))))
            (local.set $abs1 (f64x2.add (local.get $abs1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a)))))))
        (if (local.get $sumSq)
          (then
            (local.set $q (f32x4.mul (local.get $vw) (local.get $vw)))
            (local.set $sq0 (f64x2.add (local.get $sq0) (f64x2.promote_low_f32x4 (local.get $q))))
            (local.set $sq1 (f64x2.add (local.get $sq1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))))
        (local.set $a (local.get $vw))
        (if (local.get $decay)
          (then (local.set $a (f32x4.add (local.get $vw) (f32x4.mul (f32x4.mul (local.get $vw) (local.get $vwd)) (local.get $vlr))))))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.add (local.get $a) (f32x4.mul (local.get $vlr) (local.get $vg))))
        (local.set $vw (v128.load offset=16 (i32.add (local.get $w) (local.get $i))))
        (local.set $vg
          (f32x4.add
            (f32x4.add (v128.load offset=16 (i32.add (local.get $g) (local.get $i)))
              (v128.and (f32x4.ne (local.get $vw) (local.get $zero))
                (v128.xor (local.get $vl1) (v128.and (local.get $vw) (local.get $signBit)))))
            (f32x4.mul (local.get $vl2) (local.get $vw))))
        (if (local.get $sumAbs)
          (then
            (local.set $a (f32x4.abs (local.get $vw)))
            (local.set $abs0 (f64x2.add (local.get $abs0) (f64x2.promote_low_f32x4 (local.get $a))))
            (local.set $abs1 (f64x2.add (local.get $abs1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a)))))))
        (if (local.get $sumSq)
          (then
            (local.set $q (f32x4.mul (local.get $vw) (local.get $vw)))
            (local.set $sq0 (f64x2.add (local.get $sq0) (f64x2.promote_low_f32x4 (local.get $q))))
            (local.set $sq1 (f64x2.add (local.get $sq1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))))
        (local.set $a (local.get $vw))
        (if (local.get $decay)
          (then (local.set $a (f32x4.add (local.get $vw) (f32x4.mul (f32x4.mul (local.get $vw) (local.get $vwd)) (local.get $vlr))))))
        (v128.store offset=16 (i32.add (local.get $d) (local.get $i))
          (f32x4.add (local.get $a) (f32x4.mul (local.get $vlr) (local.get $vg))))
        (local.set $vw (v128.load offset=32 (i32.add (local.get $w) (local.get $i))))
        (local.set $vg
          (f32x4.add
            (f32x4.add (v128.load offset=32 (i32.add (local.get $g) (local.get $i)))
              (v128.and (f32x4.ne (local.get $vw) (local.get $zero))
                (v128.xor (local.get $vl1) (v128.and (local.get $vw) (local.get $signBit)))))
            (f32x4.mul (local.get $vl2) (local.get $vw))))
        (if (local.get $sumAbs)
          (then
            (local.set $a (f32x4.abs (local.get $vw)))
            (local.set $abs0 (f64x2.add (local.get $abs0) (f64x2.promote_low_f32x4 (local.get $a))))
            (local.set $abs1 (f64x2.add (local.get $abs1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a)))))))
        (if (local.get $sumSq)
          (then
            (local.set $q (f32x4.mul (local.get $vw) (local.get $vw)))
            (local.set $sq0 (f64x2.add (local.get $sq0) (f64x2.promote_low_f32x4 (local.get $q))))
            (local.set $sq1 (f64x2.add (local.get $sq1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))))
        (local.set $a (local.get $vw))
        (if (local.get $decay)
          (then (local.set $a (f32x4.add (local.get $vw) (f32x4.mul (f32x4.mul (local.get $vw) (local.get $vwd)) (local.get $vlr))))))
        (v128.store offset=32 (i32.add (local.get $d) (local.get $i))
          (f32x4.add (local.get $a) (f32x4.mul (local.get $vlr) (local.get $vg))))
        (local.set $vw (v128.load offset=48 (i32.add (local.get $w) (local.get $i))))
        (local.set $vg
          (f32x4.add
            (f32x4.add (v128.load offset=48 (i32.add (local.get $g) (local.get $i)))
              (v128.and (f32x4.ne (local.get $vw) (local.get $zero))
                (v128.xor (local.get $vl1) (v128.and (local.get $vw) (local.get $signBit)))))
            (f32x4.mul (local.get $vl2) (local.get $vw))))
        (if (local.get $sumAbs)
          (then
            (local.set $a (f32x4.abs (local.get $vw)))
            (local.set $abs0 (f64x2.add (local.get $abs0) (f64x2.promote_low_f32x4 (local.get $a))))
            (local.set $abs1 (f64x2.add (local.get $abs1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a)))))))
        (if (local.get $sumSq)
          (then
            (local.set $q (f32x4.mul (local.get $vw) (local.get $vw)))
            (local.set $sq0 (f64x2.add (local.get $sq0) (f64x2.promote_low_f32x4 (local.get $q))))
            (local.set $sq1 (f64x2.add (local.get $sq1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))))
        (local.set $a (local.get $vw))
        (if (local.get $decay)
          (then (local.set $a (f32x4.add (local.get $vw) (f32x4.mul (f32x4.mul (local.get $vw) (local.get $vwd)) (local.get $vlr))))))
        (v128.store offset=48 (i32.add (local.get $d) (local.get $i))
          (f32x4.add (local.get $a) (f32x4.mul (local.get $vlr) (local.get $vg))))
        (local.set $i (i32.add (local.get $i) (i32.const 64)))
        (br $loop16)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $vw (v128.load (i32.add (local.get $w) (local.get $i))))
        (local.set $vg
          (f32x4.add
            (f32x4.add (v128.load (i32.add (local.get $g) (local.get $i)))
              (v128.and (f32x4.ne (local.get $vw) (local.get $zero))
                (v128.xor (local.get $vl1) (v128.and (local.get $vw) (local.get $signBit)))))
            (f32x4.mul (local.get $vl2) (local.get $vw))))
        (if (local.get $sumAbs)
          (then
            (local.set $a (f32x4.abs (local.get $vw)))
            (local.set $abs0 (f64x2.add (local.get $abs0) (f64x2.promote_low_f32x4 (local.get $a))))
            (local.set $abs1 (f64x2.add (local.get $abs1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a)))))))
        (if (local.get $sumSq)
          (then
            (local.set $q (f32x4.mul (local.get $vw) (local.get $vw)))
            (local.set $sq0 (f64x2.add (local.get $sq0) (f64x2.promote_low_f32x4 (local.get $q))))
            (local.set $sq1 (f64x2.add (local.get $sq1)
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))))
        (local.set $a (local.get $vw))
        (if (local.get $decay)
          (then (local.set $a (f32x4.add (local.get $vw) (f32x4.mul (f32x4.mul (local.get $vw) (local.get $vwd)) (local.get $vlr))))))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.add (local.get $a) (f32x4.mul (local.get $vlr) (local.get $vg))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $loop)))
    (local.set $abs0 (f64x2.add (local.get $abs0) (local.get $abs1)))
    (local.set $sq0 (f64x2.add (local.get $sq0) (local.get $sq1)))
    (f64.store (local.get $out)
      (f64.add (f64x2.extract_lane 0 (local.get $abs0)) (f64x2.extract_lane 1 (local.get $abs0))))
    (f64.store offset=8 (local.get $out)
      (f64.add (f64x2.extract_lane 0 (local.get $sq0)) (f64x2.extract_lane 1 (local.get $sq0)))))

  ;; One Adam pass over n floats (n a multiple of 4; the caller does the tail), Keras's update with
  ;; the penalty gradient folded in, every operation rounded to float32 as optimizers.ts's adamPass:
  ;;   g = (G + l1·sign(W)) + l2x2·W;  W' = W − (W·wd)·lr when wd ≠ 0
  ;;   M = M + (g − M)·omb1;  V = V + (g·g − V)·omb2;  (AMSGrad: VH = max(VH, V), used for V)
  ;;   D = W' − (M·alpha)/(sqrt(V) + eps)
  ;; and at out: f64 Σ|W|, f64 ΣW² at the old weights.
  (func (export "adam")
    (param $w i32) (param $g i32) (param $d i32) (param $m i32) (param $v i32) (param $vh i32) (param $ams i32) (param $n i32)
    (param $l1 f32) (param $l2x2 f32) (param $lr f32) (param $wd f32) (param $alpha f32) (param $omb1 f32) (param $omb2 f32) (param $eps f32)
    (param $out i32)
    (local $i i32) (local $end i32)
    (local $vw v128) (local $s v128) (local $vg v128) (local $a v128) (local $q v128) (local $dec v128)
    (local $vm v128) (local $vv v128) (local $abs v128) (local $sq v128)
    (local $one v128) (local $zero v128)
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $abs (f64x2.splat (f64.const 0)))
    (local.set $sq (f64x2.splat (f64.const 0)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $vw (v128.load (i32.add (local.get $w) (local.get $i))))
        (local.set $s
          (f32x4.sub
            (v128.and (f32x4.gt (local.get $vw) (local.get $zero)) (local.get $one))
            (v128.and (f32x4.lt (local.get $vw) (local.get $zero)) (local.get $one))))
        (local.set $a (f32x4.abs (local.get $vw)))
        (local.set $q (f32x4.mul (local.get $vw) (local.get $vw)))
        (local.set $abs (f64x2.add (local.get $abs) (f64x2.promote_low_f32x4 (local.get $a))))
        (local.set $abs (f64x2.add (local.get $abs)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a)))))
        (local.set $sq (f64x2.add (local.get $sq) (f64x2.promote_low_f32x4 (local.get $q))))
        (local.set $sq (f64x2.add (local.get $sq)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))
        (local.set $vg
          (f32x4.add
            (f32x4.add (v128.load (i32.add (local.get $g) (local.get $i))) (f32x4.mul (f32x4.splat (local.get $l1)) (local.get $s)))
            (f32x4.mul (f32x4.splat (local.get $l2x2)) (local.get $vw))))
        (local.set $dec (local.get $vw))
        (if (f32.ne (local.get $wd) (f32.const 0))
          (then (local.set $dec (f32x4.sub (local.get $vw)
            (f32x4.mul (f32x4.mul (local.get $vw) (f32x4.splat (local.get $wd))) (f32x4.splat (local.get $lr)))))))
        (local.set $vm (v128.load (i32.add (local.get $m) (local.get $i))))
        (local.set $vm (f32x4.add (local.get $vm) (f32x4.mul (f32x4.sub (local.get $vg) (local.get $vm)) (f32x4.splat (local.get $omb1)))))
        (v128.store (i32.add (local.get $m) (local.get $i)) (local.get $vm))
        (local.set $vv (v128.load (i32.add (local.get $v) (local.get $i))))
        (local.set $vv (f32x4.add (local.get $vv)
          (f32x4.mul (f32x4.sub (f32x4.mul (local.get $vg) (local.get $vg)) (local.get $vv)) (f32x4.splat (local.get $omb2)))))
        (v128.store (i32.add (local.get $v) (local.get $i)) (local.get $vv))
        (if (local.get $ams)
          (then
            (local.set $vv (f32x4.max (v128.load (i32.add (local.get $vh) (local.get $i))) (local.get $vv)))
            (v128.store (i32.add (local.get $vh) (local.get $i)) (local.get $vv))))
        (v128.store (i32.add (local.get $d) (local.get $i))
          (f32x4.sub (local.get $dec)
            (f32x4.div
              (f32x4.mul (local.get $vm) (f32x4.splat (local.get $alpha)))
              (f32x4.add (f32x4.sqrt (local.get $vv)) (f32x4.splat (local.get $eps))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $loop)))
    (f64.store (local.get $out)
      (f64.add (f64x2.extract_lane 0 (local.get $abs)) (f64x2.extract_lane 1 (local.get $abs))))
    (f64.store offset=8 (local.get $out)
      (f64.add (f64x2.extract_lane 0 (local.get $sq)) (f64x2.extract_lane 1 (local.get $sq)))))

  ;; C[r, j] = act(C[r, j] + bias[j]) over rows × n (bias = 0: no bias; relu = 1: max(·, 0)).
  (func (export "biasAct")
    (param $c i32) (param $rows i32) (param $n i32) (param $bias i32) (param $relu i32)
    (local $r i32) (local $j i32) (local $row i32) (local $n4 i32)
    (local $v v128) (local $x f32) (local $zero v128)
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $rowsDone
      (loop $rowLoop
        (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $row (i32.add (local.get $c) (i32.shl (i32.mul (local.get $r) (local.get $n)) (i32.const 2))))
        (local.set $j (i32.const 0))
        (block $vecDone
          (loop $vecLoop
            (br_if $vecDone (i32.ge_u (local.get $j) (local.get $n4)))
            (local.set $v (v128.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2)))))
            (if (local.get $bias)
              (then (local.set $v (f32x4.add (local.get $v) (v128.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))))))
            (if (local.get $relu)
              (then (local.set $v (f32x4.max (local.get $v) (local.get $zero)))))
            (v128.store (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))) (local.get $v))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))
            (br $vecLoop)))
        (block $tailDone
          (loop $tailLoop
            (br_if $tailDone (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $x (f32.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2)))))
            (if (local.get $bias)
              (then (local.set $x (f32.add (local.get $x) (f32.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))))))
            (if (local.get $relu)
              (then (local.set $x (f32.max (local.get $x) (f32.const 0)))))
            (f32.store (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))) (local.get $x))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $tailLoop)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rowLoop))))
;; The relu gradient in place: d[i] = d[i] · (a[i] > 0 ? 1 : 0), as tfjs's mul(d, step(a)) computes it
  ;; (including −0 for a negative d and NaN for a NaN d where the mask is 0).
  (func (export "reluGrad") (param $d i32) (param $a i32) (param $n i32)
    (local $i i32) (local $n4 i32) (local $one v128) (local $zero v128)
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $n4 (i32.and (local.get $n) (i32.const -4)))
    (block $vecDone
      (loop $vecLoop
        (br_if $vecDone (i32.ge_u (local.get $i) (local.get $n4)))
        (v128.store (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2)))
          (f32x4.mul
            (v128.load (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2))))
            (v128.bitselect (local.get $one) (local.get $zero)
              (f32x4.gt (v128.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2)))) (local.get $zero)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $vecLoop)))
    (block $tailDone
      (loop $tailLoop
        (br_if $tailDone (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2)))
          (f32.mul
            (f32.load (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2))))
            (select (f32.const 1) (f32.const 0)
              (f32.gt (f32.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2)))) (f32.const 0)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $tailLoop))))

  ;; useEma's pass over n floats (n a multiple of 4; the caller does the tail): A = m·A + rest·W in
  ;; place, every operation rounded to float32, as Optimizer.updateAverages.
  (func (export "ema") (param $a i32) (param $w i32) (param $n i32) (param $m f32) (param $rest f32)
    (local $i i32) (local $end i32) (local $vm v128) (local $vr v128)
    (local.set $vm (f32x4.splat (local.get $m)))
    (local.set $vr (f32x4.splat (local.get $rest)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $a) (local.get $i))
          (f32x4.add
            (f32x4.mul (local.get $vm) (v128.load (i32.add (local.get $a) (local.get $i))))
            (f32x4.mul (local.get $vr) (v128.load (i32.add (local.get $w) (local.get $i))))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $loop))))

  ;; Gradient clipping's first pass over n floats (n a multiple of 4; the caller does the tail): with
  ;; fold ≠ 0 the penalty's gradient goes into G in place, G = (G + l1·sign(W)) + l2x2·W (as the sgd
  ;; pass); then at out: f64 ΣG² of the result, each square exact in float64 (two lanes: elements
  ;; 0,2,4,6… and 1,3,5,7…, added at the end).
  (func (export "clipSumSq")
    (param $w i32) (param $g i32) (param $n i32) (param $fold i32) (param $l1 f32) (param $l2x2 f32) (param $out i32)
    (local $i i32) (local $end i32) (local $vg v128) (local $vw v128) (local $s v128) (local $h v128) (local $sq v128)
    (local $vl1 v128) (local $vl2 v128) (local $one v128) (local $zero v128)
    (local.set $vl1 (f32x4.splat (local.get $l1)))
    (local.set $vl2 (f32x4.splat (local.get $l2x2)))
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $sq (f64x2.splat (f64.const 0)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $vg (v128.load (i32.add (local.get $g) (local.get $i))))
        (if (local.get $fold)
          (then
            (local.set $vw (v128.load (i32.add (local.get $w) (local.get $i))))
            (local.set $s
              (f32x4.sub
                (v128.and (f32x4.gt (local.get $vw) (local.get $zero)) (local.get $one))
                (v128.and (f32x4.lt (local.get $vw) (local.get $zero)) (local.get $one))))
            (local.set $vg
              (f32x4.add
                (f32x4.add (local.get $vg) (f32x4.mul (local.get $vl1) (local.get $s)))
                (f32x4.mul (local.get $vl2) (local.get $vw))))
            (v128.store (i32.add (local.get $g) (local.get $i)) (local.get $vg))))
        (local.set $h (f64x2.promote_low_f32x4 (local.get $vg)))
        (local.set $sq (f64x2.add (local.get $sq) (f64x2.mul (local.get $h) (local.get $h))))
        (local.set $h (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vg) (local.get $vg))))
        (local.set $sq (f64x2.add (local.get $sq) (f64x2.mul (local.get $h) (local.get $h))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $loop)))
    (f64.store (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $sq)) (f64x2.extract_lane 1 (local.get $sq)))))

  ;; Gradient clipping's second pass, in place over n floats (n a multiple of 4): mode 0 (clipvalue)
  ;; G = min(max(G, −c), c); mode 1 (clipnorm) G = (G·c)/d; mode 2 (globalClipnorm's scale) G = G·c;
  ;; every operation rounded to float32, as clipping.ts.
  (func (export "clipScale") (param $g i32) (param $n i32) (param $mode i32) (param $c f32) (param $d f32)
    (local $i i32) (local $end i32) (local $vg v128) (local $vc v128) (local $vd v128)
    (local.set $vc (f32x4.splat (local.get $c)))
    (local.set $vd (f32x4.splat (local.get $d)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $vg (v128.load (i32.add (local.get $g) (local.get $i))))
        (if (i32.eqz (local.get $mode))
          (then (local.set $vg (f32x4.min (f32x4.max (local.get $vg) (f32x4.neg (local.get $vc))) (local.get $vc))))
          (else
            (local.set $vg (f32x4.mul (local.get $vg) (local.get $vc)))
            (if (i32.eq (local.get $mode) (i32.const 1))
              (then (local.set $vg (f32x4.div (local.get $vg) (local.get $vd)))))))
        (v128.store (i32.add (local.get $g) (local.get $i)) (local.get $vg))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $loop))))
)
