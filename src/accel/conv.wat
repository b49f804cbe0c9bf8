;; SIMD loops of the wasm conv/pool gradients (src/accel/conv.ts), run on tfjs-wasm's heap (the memory
;; is imported; addresses are byte offsets). Each gives the same bits as its JS fallback in conv.ts:
;; float32 adds in the same order. Compiled to conv.wasm by `npm run build` (src/accel/build-simd.ts).
(module
  (import "env" "memory" (memory 1))

  ;; dst[i] += src[i] for n floats (col2im's runs of one filter row).
  (func (export "addTo") (param $dst i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end4 i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $dst) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done4
      (loop $loop4
        (br_if $done4 (i32.ge_u (local.get $dst) (local.get $end4)))
        (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $dst)) (v128.load (local.get $src))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (br $loop4)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
        (f32.store (local.get $dst) (f32.add (f32.load (local.get $dst)) (f32.load (local.get $src))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (br $loop))))

;; out[c] += x[r·cols + c] for every row r in order (out zeroed by the caller, cols a multiple of 4):
  ;; the sums over all but the last axis (a conv layer's bias gradient), float32, row by row.
  (func (export "colSum") (param $x i32) (param $out i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $p i32) (local $end i32)
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $cols) (i32.const 2))))
    (block $rDone
      (loop $rLoop
        (br_if $rDone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $p (local.get $out))
        (block $cDone
          (loop $cLoop
            (br_if $cDone (i32.ge_u (local.get $p) (local.get $end)))
            (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (v128.load (local.get $x))))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $x (i32.add (local.get $x) (i32.const 16)))
            (br $cLoop)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rLoop))))

  ;; The max-pool forward pass, NHWC, channels a multiple of 4: per window (b, oh, ow) and 4 channels at a
  ;; time, the maximum (the window's first value to start, strictly greater replaces: the first maximum in
  ;; row-major order) into y, and its input index (elements from x) into arg, both in output order.
  ;; The same values and indexes as maxPoolForward in conv.ts.
  (func (export "maxPoolFwd")
    (param $x i32) (param $y i32) (param $arg i32)
    (param $batch i32) (param $inH i32) (param $inW i32) (param $ch i32)
    (param $outH i32) (param $outW i32) (param $fH i32) (param $fW i32)
    (param $sH i32) (param $sW i32) (param $pT i32) (param $pL i32)
    (local $b i32) (local $oh i32) (local $ow i32) (local $h i32) (local $w i32) (local $c i32)
    (local $h0 i32) (local $h1 i32) (local $w0 i32) (local $w1 i32)
    (local $xb i32) (local $r i32) (local $d i32) (local $rowBytes i32) (local $pixBytes i32)
    (local $v v128) (local $best v128) (local $at v128) (local $m v128) (local $lanes v128)
    (local.set $lanes (v128.const i32x4 0 4 8 12))
    (local.set $pixBytes (i32.shl (local.get $ch) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $inW) (local.get $pixBytes)))
    (local.set $d (i32.const 0))
    (local.set $b (i32.const 0))
    (block $bDone (loop $bLoop
      (br_if $bDone (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $xb (i32.add (local.get $x) (i32.mul (local.get $b) (i32.mul (local.get $inH) (local.get $rowBytes)))))
      (local.set $oh (i32.const 0))
      (block $ohDone (loop $ohLoop
        (br_if $ohDone (i32.ge_u (local.get $oh) (local.get $outH)))
        (local.set $h0 (i32.sub (i32.mul (local.get $oh) (local.get $sH)) (local.get $pT)))
        (local.set $h1 (i32.add (local.get $h0) (local.get $fH)))
        (if (i32.lt_s (local.get $h0) (i32.const 0)) (then (local.set $h0 (i32.const 0))))
        (if (i32.gt_s (local.get $h1) (local.get $inH)) (then (local.set $h1 (local.get $inH))))
        (local.set $ow (i32.const 0))
        (block $owDone (loop $owLoop
          (br_if $owDone (i32.ge_u (local.get $ow) (local.get $outW)))
          (local.set $w0 (i32.sub (i32.mul (local.get $ow) (local.get $sW)) (local.get $pL)))
          (local.set $w1 (i32.add (local.get $w0) (local.get $fW)))
          (if (i32.lt_s (local.get $w0) (i32.const 0)) (then (local.set $w0 (i32.const 0))))
          (if (i32.gt_s (local.get $w1) (local.get $inW)) (then (local.set $w1 (local.get $inW))))
          (local.set $c (i32.const 0))
          (block $cDone (loop $cLoop
            (br_if $cDone (i32.ge_u (local.get $c) (local.get $pixBytes)))
            (local.set $r (i32.add (i32.add (local.get $xb) (i32.mul (local.get $h0) (local.get $rowBytes)))
              (i32.add (i32.mul (local.get $w0) (local.get $pixBytes)) (local.get $c))))
            (local.set $best (v128.load (local.get $r)))
            (local.set $at (i32x4.add (i32x4.splat (local.get $r)) (local.get $lanes)))
            (local.set $h (local.get $h0))
            (block $hDone (loop $hLoop
              (br_if $hDone (i32.ge_s (local.get $h) (local.get $h1)))
              (local.set $w (local.get $w0))
              (block $wDone (loop $wLoop
                (br_if $wDone (i32.ge_s (local.get $w) (local.get $w1)))
                (local.set $r (i32.add (i32.add (local.get $xb) (i32.mul (local.get $h) (local.get $rowBytes)))
                  (i32.add (i32.mul (local.get $w) (local.get $pixBytes)) (local.get $c))))
                (local.set $v (v128.load (local.get $r)))
                (local.set $m (f32x4.gt (local.get $v) (local.get $best)))
                (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $m)))
                (local.set $at (v128.bitselect (i32x4.add (i32x4.splat (local.get $r)) (local.get $lanes)) (local.get $at) (local.get $m)))
                (local.set $w (i32.add (local.get $w) (i32.const 1)))
                (br $wLoop)))
              (local.set $h (i32.add (local.get $h) (i32.const 1)))
              (br $hLoop)))
            (v128.store (i32.add (local.get $y) (local.get $d)) (local.get $best))
            (v128.store (i32.add (local.get $arg) (local.get $d))
              (i32x4.shr_u (i32x4.sub (local.get $at) (i32x4.splat (local.get $x))) (i32.const 2)))
            (local.set $d (i32.add (local.get $d) (i32.const 16)))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $cLoop)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $owLoop)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $ohLoop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bLoop))))

  ;; The max-pool backward pass from maxPoolFwd's indexes: dx (nx floats, a multiple of 4) zeroed, then
  ;; dx[arg[i]] += dy[i] for the n outputs in order (float32 adds in the order of conv.ts's JS loop).
  (func (export "maxPoolScatter") (param $dx i32) (param $nx i32) (param $dy i32) (param $arg i32) (param $n i32)
    (local $p i32) (local $end i32) (local $q i32)
    (local.set $p (local.get $dx))
    (local.set $end (i32.add (local.get $dx) (i32.shl (local.get $nx) (i32.const 2))))
    (block $zDone (loop $zLoop
      (br_if $zDone (i32.ge_u (local.get $p) (local.get $end)))
      (v128.store (local.get $p) (v128.const i32x4 0 0 0 0))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $zLoop)))
    (local.set $end (i32.add (local.get $dy) (i32.shl (local.get $n) (i32.const 2))))
    (block $sDone (loop $sLoop
      (br_if $sDone (i32.ge_u (local.get $dy) (local.get $end)))
      (local.set $q (i32.add (local.get $dx) (i32.shl (i32.load (local.get $arg)) (i32.const 2))))
      (f32.store (local.get $q) (f32.add (f32.load (local.get $q)) (f32.load (local.get $dy))))
      (local.set $dy (i32.add (local.get $dy) (i32.const 4)))
      (local.set $arg (i32.add (local.get $arg) (i32.const 4)))
      (br $sLoop))))

  ;; One lane of the scatter: dx[at − x] += dy lane, unless the window had no maximum (at = −1).
  (func $scatter (param $at i32) (param $x i32) (param $dx i32) (param $g f32)
    (local $p i32)
    (if (i32.ge_s (local.get $at) (i32.const 0))
      (then
        (local.set $p (i32.add (local.get $dx) (i32.sub (local.get $at) (local.get $x))))
        (f32.store (local.get $p) (f32.add (f32.load (local.get $p)) (local.get $g))))))

  ;; The max-pool gradient, NHWC, channels a multiple of 4, dx zeroed by the caller: per window
  ;; (b, oh, ow) and 4 channels at a time, the first position of the maximum (strictly greater
  ;; replaces), then dx there += dy, windows in order.
  (func (export "maxPoolGrad")
    (param $x i32) (param $dy i32) (param $dx i32)
    (param $batch i32) (param $inH i32) (param $inW i32) (param $ch i32)
    (param $outH i32) (param $outW i32) (param $fH i32) (param $fW i32)
    (param $sH i32) (param $sW i32) (param $pT i32) (param $pL i32)
    (local $b i32) (local $oh i32) (local $ow i32) (local $h i32) (local $w i32) (local $c i32)
    (local $h0 i32) (local $h1 i32) (local $w0 i32) (local $w1 i32)
    (local $xb i32) (local $r i32) (local $d i32) (local $rowBytes i32) (local $pixBytes i32)
    (local $v v128) (local $best v128) (local $at v128) (local $m v128) (local $g v128) (local $lanes v128)
    (local.set $lanes (v128.const i32x4 0 4 8 12))
    (local.set $pixBytes (i32.shl (local.get $ch) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $inW) (local.get $pixBytes)))
    (local.set $d (local.get $dy))
    (local.set $b (i32.const 0))
    (block $bDone (loop $bLoop
      (br_if $bDone (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $xb (i32.add (local.get $x) (i32.mul (local.get $b) (i32.mul (local.get $inH) (local.get $rowBytes)))))
      (local.set $oh (i32.const 0))
      (block $ohDone (loop $ohLoop
        (br_if $ohDone (i32.ge_u (local.get $oh) (local.get $outH)))
        (local.set $h0 (i32.sub (i32.mul (local.get $oh) (local.get $sH)) (local.get $pT)))
        (local.set $h1 (i32.add (local.get $h0) (local.get $fH)))
        (if (i32.lt_s (local.get $h0) (i32.const 0)) (then (local.set $h0 (i32.const 0))))
        (if (i32.gt_s (local.get $h1) (local.get $inH)) (then (local.set $h1 (local.get $inH))))
        (local.set $ow (i32.const 0))
        (block $owDone (loop $owLoop
          (br_if $owDone (i32.ge_u (local.get $ow) (local.get $outW)))
          (local.set $w0 (i32.sub (i32.mul (local.get $ow) (local.get $sW)) (local.get $pL)))
          (local.set $w1 (i32.add (local.get $w0) (local.get $fW)))
          (if (i32.lt_s (local.get $w0) (i32.const 0)) (then (local.set $w0 (i32.const 0))))
          (if (i32.gt_s (local.get $w1) (local.get $inW)) (then (local.set $w1 (local.get $inW))))
          (local.set $c (i32.const 0))
          (block $cDone (loop $cLoop
            (br_if $cDone (i32.ge_u (local.get $c) (local.get $pixBytes)))
            (local.set $best (f32x4.splat (f32.const -inf)))
            (local.set $at (i32x4.splat (i32.const -1)))
            (local.set $h (local.get $h0))
            (block $hDone (loop $hLoop
              (br_if $hDone (i32.ge_s (local.get $h) (local.get $h1)))
              (local.set $w (local.get $w0))
              (block $wDone (loop $wLoop
                (br_if $wDone (i32.ge_s (local.get $w) (local.get $w1)))
                (local.set $r (i32.add (i32.add (local.get $xb) (i32.mul (local.get $h) (local.get $rowBytes)))
                  (i32.add (i32.mul (local.get $w) (local.get $pixBytes)) (local.get $c))))
                (local.set $v (v128.load (local.get $r)))
                (local.set $m (f32x4.gt (local.get $v) (local.get $best)))
                (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $m)))
                (local.set $at (v128.bitselect (i32x4.add (i32x4.splat (local.get $r)) (local.get $lanes)) (local.get $at) (local.get $m)))
                (local.set $w (i32.add (local.get $w) (i32.const 1)))
                (br $wLoop)))
              (local.set $h (i32.add (local.get $h) (i32.const 1)))
              (br $hLoop)))
            (local.set $g (v128.load (local.get $d)))
            (call $scatter (i32x4.extract_lane 0 (local.get $at)) (local.get $x) (local.get $dx) (f32x4.extract_lane 0 (local.get $g)))
            (call $scatter (i32x4.extract_lane 1 (local.get $at)) (local.get $x) (local.get $dx) (f32x4.extract_lane 1 (local.get $g)))
            (call $scatter (i32x4.extract_lane 2 (local.get $at)) (local.get $x) (local.get $dx) (f32x4.extract_lane 2 (local.get $g)))
            (call $scatter (i32x4.extract_lane 3 (local.get $at)) (local.get $x) (local.get $dx) (f32x4.extract_lane 3 (local.get $g)))
            (local.set $d (i32.add (local.get $d) (i32.const 16)))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $cLoop)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $owLoop)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $ohLoop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bLoop))))
  ;; im2col, NHWC, channels a multiple of 4: per output position (b, oh, ow) one row of fH·fW·ch floats,
  ;; the window's pixels in row-major order with the channels innermost, zeros where the window is
  ;; outside the input (padding). The same copies as conv.ts im2col, in one call instead of one
  ;; TypedArray.copyWithin per filter row (7,744 × 3 calls a step on the CNN's second layer).
  (func (export "im2col")
    (param $x i32) (param $col i32)
    (param $batch i32) (param $inH i32) (param $inW i32) (param $ch i32)
    (param $outH i32) (param $outW i32) (param $fH i32) (param $fW i32)
    (param $sH i32) (param $sW i32) (param $pT i32) (param $pL i32)
    (local $b i32) (local $oh i32) (local $ow i32) (local $kh i32) (local $kw i32) (local $ih i32) (local $iw i32)
    (local $xb i32) (local $src i32) (local $end i32) (local $rowBytes i32) (local $pixBytes i32)
    (local.set $pixBytes (i32.shl (local.get $ch) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $inW) (local.get $pixBytes)))
    (block $bDone (loop $bLoop
      (br_if $bDone (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $xb (i32.add (local.get $x) (i32.mul (local.get $b) (i32.mul (local.get $inH) (local.get $rowBytes)))))
      (local.set $oh (i32.const 0))
      (block $ohDone (loop $ohLoop
        (br_if $ohDone (i32.ge_u (local.get $oh) (local.get $outH)))
        (local.set $ow (i32.const 0))
        (block $owDone (loop $owLoop
          (br_if $owDone (i32.ge_u (local.get $ow) (local.get $outW)))
          (local.set $kh (i32.const 0))
          (block $khDone (loop $khLoop
            (br_if $khDone (i32.ge_u (local.get $kh) (local.get $fH)))
            (local.set $ih (i32.sub (i32.add (i32.mul (local.get $oh) (local.get $sH)) (local.get $kh)) (local.get $pT)))
            (local.set $kw (i32.const 0))
            (block $kwDone (loop $kwLoop
              (br_if $kwDone (i32.ge_u (local.get $kw) (local.get $fW)))
              (local.set $iw (i32.sub (i32.add (i32.mul (local.get $ow) (local.get $sW)) (local.get $kw)) (local.get $pL)))
              (local.set $end (i32.add (local.get $col) (local.get $pixBytes)))
              (if (i32.and
                    (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.lt_s (local.get $ih) (local.get $inH)))
                    (i32.and (i32.ge_s (local.get $iw) (i32.const 0)) (i32.lt_s (local.get $iw) (local.get $inW))))
                (then
                  (local.set $src (i32.add (local.get $xb)
                    (i32.add (i32.mul (local.get $ih) (local.get $rowBytes)) (i32.mul (local.get $iw) (local.get $pixBytes)))))
                  (loop $copy
                    (v128.store (local.get $col) (v128.load (local.get $src)))
                    (local.set $src (i32.add (local.get $src) (i32.const 16)))
                    (local.set $col (i32.add (local.get $col) (i32.const 16)))
                    (br_if $copy (i32.lt_u (local.get $col) (local.get $end)))))
                (else
                  (loop $zero
                    (v128.store (local.get $col) (v128.const i32x4 0 0 0 0))
                    (local.set $col (i32.add (local.get $col) (i32.const 16)))
                    (br_if $zero (i32.lt_u (local.get $col) (local.get $end))))))
              (local.set $kw (i32.add (local.get $kw) (i32.const 1)))
              (br $kwLoop)))
            (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
            (br $khLoop)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $owLoop)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $ohLoop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bLoop))))

  ;; col2im, the reverse of im2col (channels a multiple of 4): dx (nx floats) zeroed, then each column
  ;; entry added at its input position, in the order (b, oh, ow, kh, kw, c): conv.ts col2im's float32
  ;; adds in its order, in one call instead of one addTo per filter row.
  (func (export "col2im")
    (param $col i32) (param $dx i32) (param $nx i32)
    (param $batch i32) (param $inH i32) (param $inW i32) (param $ch i32)
    (param $outH i32) (param $outW i32) (param $fH i32) (param $fW i32)
    (param $sH i32) (param $sW i32) (param $pT i32) (param $pL i32)
    (local $b i32) (local $oh i32) (local $ow i32) (local $kh i32) (local $kw i32) (local $ih i32) (local $iw i32)
    (local $xb i32) (local $dst i32) (local $end i32) (local $rowBytes i32) (local $pixBytes i32)
    (local.set $dst (local.get $dx))
    (local.set $end (i32.add (local.get $dx) (i32.shl (local.get $nx) (i32.const 2))))
    (block $zDone (loop $zLoop
      (br_if $zDone (i32.ge_u (local.get $dst) (local.get $end)))
      (v128.store (local.get $dst) (v128.const i32x4 0 0 0 0))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (br $zLoop)))
    (local.set $pixBytes (i32.shl (local.get $ch) (i32.const 2)))
    (local.set $rowBytes (i32.mul (local.get $inW) (local.get $pixBytes)))
    (block $bDone (loop $bLoop
      (br_if $bDone (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $xb (i32.add (local.get $dx) (i32.mul (local.get $b) (i32.mul (local.get $inH) (local.get $rowBytes)))))
      (local.set $oh (i32.const 0))
      (block $ohDone (loop $ohLoop
        (br_if $ohDone (i32.ge_u (local.get $oh) (local.get $outH)))
        (local.set $ow (i32.const 0))
        (block $owDone (loop $owLoop
          (br_if $owDone (i32.ge_u (local.get $ow) (local.get $outW)))
          (local.set $kh (i32.const 0))
          (block $khDone (loop $khLoop
            (br_if $khDone (i32.ge_u (local.get $kh) (local.get $fH)))
            (local.set $ih (i32.sub (i32.add (i32.mul (local.get $oh) (local.get $sH)) (local.get $kh)) (local.get $pT)))
            (local.set $kw (i32.const 0))
            (block $kwDone (loop $kwLoop
              (br_if $kwDone (i32.ge_u (local.get $kw) (local.get $fW)))
              (local.set $iw (i32.sub (i32.add (i32.mul (local.get $ow) (local.get $sW)) (local.get $kw)) (local.get $pL)))
              (local.set $end (i32.add (local.get $col) (local.get $pixBytes)))
              (if (i32.and
                    (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.lt_s (local.get $ih) (local.get $inH)))
                    (i32.and (i32.ge_s (local.get $iw) (i32.const 0)) (i32.lt_s (local.get $iw) (local.get $inW))))
                (then
                  (local.set $dst (i32.add (local.get $xb)
                    (i32.add (i32.mul (local.get $ih) (local.get $rowBytes)) (i32.mul (local.get $iw) (local.get $pixBytes)))))
                  (loop $add
                    (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $dst)) (v128.load (local.get $col))))
                    (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
                    (local.set $col (i32.add (local.get $col) (i32.const 16)))
                    (br_if $add (i32.lt_u (local.get $col) (local.get $end)))))
                (else (local.set $col (local.get $end))))
              (local.set $kw (i32.add (local.get $kw) (i32.const 1)))
              (br $kwLoop)))
            (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
            (br $khLoop)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $owLoop)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $ohLoop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bLoop))))

  ;; The relu gradient and the bias gradient in one pass (cols a multiple of 4): dz ← dz·step(y) as
  ;; simd.wat reluGrad (step(v) = 1 where v > 0, else 0; a multiply, so 0·∞ stays NaN), then
  ;; out[c] = Σ_r dz[r][c] from 0 in row order, as colSum: the same float32 operations in the same
  ;; order as those two passes, reading dz once.
  (func (export "reluGradColSum") (param $dz i32) (param $y i32) (param $out i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $p i32) (local $end i32) (local $d v128) (local $one v128) (local $zero v128)
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $cols) (i32.const 2))))
    (local.set $p (local.get $out))
    (block $zDone (loop $zLoop
      (br_if $zDone (i32.ge_u (local.get $p) (local.get $end)))
      (v128.store (local.get $p) (local.get $zero))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $zLoop)))
    (block $rDone
      (loop $rLoop
        (br_if $rDone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $p (local.get $out))
        (block $cDone
          (loop $cLoop
            (br_if $cDone (i32.ge_u (local.get $p) (local.get $end)))
            (local.set $d
              (f32x4.mul (v128.load (local.get $dz))
                (v128.bitselect (local.get $one) (local.get $zero) (f32x4.gt (v128.load (local.get $y)) (local.get $zero)))))
            (v128.store (local.get $dz) (local.get $d))
            (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $d)))
            (local.set $p (i32.add (local.get $p) (i32.const 16)))
            (local.set $dz (i32.add (local.get $dz) (i32.const 16)))
            (local.set $y (i32.add (local.get $y) (i32.const 16)))
            (br $cLoop)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rLoop))))

  ;; The max-pool gradient, the relu gradient and the bias gradient of the conv layer under the pool, in
  ;; one pass over that layer's output in row order, for pools whose windows do not overlap (strides =
  ;; pool size, no padding; inputs past the last window get none; channels a multiple of 4): per value,
  ;; g = 0 + dy[its window] where arg says it is the window's maximum, else 0 (maxPoolScatter's zeroing
  ;; and add); dz = g·step(y) when $relu (reluGrad); out[c] = Σ dz from 0 in row order (colSum). The
  ;; same float32 operations in the same order as those three passes.
  (func (export "poolReluGradColSum")
    (param $dy i32) (param $arg i32) (param $y i32) (param $dz i32) (param $out i32) (param $relu i32)
    (param $batch i32) (param $inH i32) (param $inW i32) (param $ch i32)
    (param $outH i32) (param $outW i32) (param $fH i32) (param $fW i32)
    (local $b i32) (local $h i32) (local $w i32) (local $p i32) (local $end i32)
    (local $oh i32) (local $ow i32) (local $dh i32) (local $dw i32) (local $o i32) (local $oRow i32) (local $q i32)
    (local $idx i32) (local $pixBytes i32) (local $outRowBytes i32) (local $covered i32)
    (local $g v128) (local $lanes v128) (local $one v128) (local $zero v128) (local $four v128) (local $vi v128)
    (local.set $lanes (v128.const i32x4 0 1 2 3))
    (local.set $four (i32x4.splat (i32.const 4)))
    (local.set $one (f32x4.splat (f32.const 1)))
    (local.set $zero (f32x4.splat (f32.const 0)))
    (local.set $pixBytes (i32.shl (local.get $ch) (i32.const 2)))
    (local.set $outRowBytes (i32.mul (local.get $outW) (local.get $pixBytes)))
    (local.set $end (i32.add (local.get $out) (local.get $pixBytes)))
    (local.set $p (local.get $out))
    (block $zDone (loop $zLoop
      (br_if $zDone (i32.ge_u (local.get $p) (local.get $end)))
      (v128.store (local.get $p) (local.get $zero))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $zLoop)))
    ;; $vi: the element indexes of the 4 values at hand from the layer output's start, as arg holds them;
    ;; $oRow: the byte offset of output row (b, oh) in dy and arg; $o: of the window (b, oh, ow).
    (local.set $vi (local.get $lanes))
    (block $bDone (loop $bLoop
      (br_if $bDone (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $oRow (i32.mul (i32.mul (local.get $b) (local.get $outH)) (local.get $outRowBytes)))
      (local.set $oh (i32.const 0))
      (local.set $dh (i32.const 0))
      (local.set $h (i32.const 0))
      (block $hDone (loop $hLoop
        (br_if $hDone (i32.ge_u (local.get $h) (local.get $inH)))
        (local.set $o (local.get $oRow))
        (local.set $ow (i32.const 0))
        (local.set $dw (i32.const 0))
        (local.set $w (i32.const 0))
        (block $wDone (loop $wLoop
          (br_if $wDone (i32.ge_u (local.get $w) (local.get $inW)))
          (local.set $covered (i32.and (i32.lt_u (local.get $oh) (local.get $outH)) (i32.lt_u (local.get $ow) (local.get $outW))))
          (local.set $q (i32.const 0))
          (block $cDone (loop $cLoop
            (br_if $cDone (i32.ge_u (local.get $q) (local.get $pixBytes)))
            (local.set $g (local.get $zero))
            (if (local.get $covered)
              (then
                (local.set $g
                  (v128.and
                    (f32x4.add (local.get $zero) (v128.load (i32.add (local.get $dy) (i32.add (local.get $o) (local.get $q)))))
                    (i32x4.eq (v128.load (i32.add (local.get $arg) (i32.add (local.get $o) (local.get $q)))) (local.get $vi))))))
            (if (local.get $relu)
              (then
                (local.set $g (f32x4.mul (local.get $g)
                  (v128.bitselect (local.get $one) (local.get $zero) (f32x4.gt (v128.load (local.get $y)) (local.get $zero)))))))
            (v128.store (local.get $dz) (local.get $g))
            (local.set $p (i32.add (local.get $out) (local.get $q)))
            (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p)) (local.get $g)))
            (local.set $dz (i32.add (local.get $dz) (i32.const 16)))
            (local.set $y (i32.add (local.get $y) (i32.const 16)))
            (local.set $vi (i32x4.add (local.get $vi) (local.get $four)))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (br $cLoop)))
          ;; Next input column: the next window every fW columns.
          (local.set $dw (i32.add (local.get $dw) (i32.const 1)))
          (if (i32.eq (local.get $dw) (local.get $fW))
            (then
              (local.set $dw (i32.const 0))
              (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
              (local.set $o (i32.add (local.get $o) (local.get $pixBytes)))))
          (local.set $w (i32.add (local.get $w) (i32.const 1)))
          (br $wLoop)))
        (local.set $dh (i32.add (local.get $dh) (i32.const 1)))
        (if (i32.eq (local.get $dh) (local.get $fH))
          (then
            (local.set $dh (i32.const 0))
            (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
            (local.set $oRow (i32.add (local.get $oRow) (local.get $outRowBytes)))))
        (local.set $h (i32.add (local.get $h) (i32.const 1)))
        (br $hLoop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bLoop))))

  ;; One row (kh, kw) of im2colT for a one-channel input, stride 1 across: per (b, oh) the outW floats
  ;; col[ow] = x[b, ih, ow + kw − padLeft] for ow in [lo, hi), zeros outside it and for rows ih outside
  ;; the input; the same bits as conv.ts im2colT's copies (bit copies, no arithmetic), in one call per
  ;; filter position instead of one TypedArray call per run. $iw0: the input column of ow = lo.
  (func (export "im2colTRow")
    (param $x i32) (param $col i32) (param $batch i32) (param $inH i32) (param $inW i32)
    (param $outH i32) (param $outW i32) (param $sH i32) (param $pT i32) (param $kh i32)
    (param $iw0 i32) (param $lo i32) (param $hi i32)
    (local $b i32) (local $oh i32) (local $ih i32) (local $src i32) (local $dst i32) (local $end i32)
    (local $xb i32) (local $imageBytes i32) (local $rowEnd i32)
    (local.set $imageBytes (i32.shl (i32.mul (local.get $inH) (local.get $inW)) (i32.const 2)))
    (block $bDone (loop $bLoop
      (br_if $bDone (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $xb (i32.add (local.get $x) (i32.mul (local.get $b) (local.get $imageBytes))))
      (local.set $oh (i32.const 0))
      (block $ohDone (loop $ohLoop
        (br_if $ohDone (i32.ge_u (local.get $oh) (local.get $outH)))
        (local.set $ih (i32.sub (i32.add (i32.mul (local.get $oh) (local.get $sH)) (local.get $kh)) (local.get $pT)))
        (local.set $rowEnd (i32.add (local.get $col) (i32.shl (local.get $outW) (i32.const 2))))
        (local.set $dst (local.get $col))
        (if (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.lt_s (local.get $ih) (local.get $inH)))
          (then
            ;; zeros before lo
            (local.set $end (i32.add (local.get $col) (i32.shl (local.get $lo) (i32.const 2))))
            (block $z0 (loop $z0l
              (br_if $z0 (i32.ge_u (local.get $dst) (local.get $end)))
              (i32.store (local.get $dst) (i32.const 0))
              (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
              (br $z0l)))
            ;; the run [lo, hi): four floats at a time, then one by one
            (local.set $src (i32.add (local.get $xb)
              (i32.shl (i32.add (i32.mul (local.get $ih) (local.get $inW)) (local.get $iw0)) (i32.const 2))))
            (local.set $end (i32.add (local.get $col) (i32.shl (local.get $hi) (i32.const 2))))
            (block $c4 (loop $c4l
              (br_if $c4 (i32.gt_u (i32.add (local.get $dst) (i32.const 16)) (local.get $end)))
              (v128.store align=4 (local.get $dst) (v128.load align=4 (local.get $src)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
              (local.set $src (i32.add (local.get $src) (i32.const 16)))
              (br $c4l)))
            (block $c1 (loop $c1l
              (br_if $c1 (i32.ge_u (local.get $dst) (local.get $end)))
              (i32.store (local.get $dst) (i32.load (local.get $src)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
              (local.set $src (i32.add (local.get $src) (i32.const 4)))
              (br $c1l)))))
        ;; zeros after hi (or the whole row when ih is outside)
        (block $z1 (loop $z1l
          (br_if $z1 (i32.ge_u (local.get $dst) (local.get $rowEnd)))
          (i32.store (local.get $dst) (i32.const 0))
          (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
          (br $z1l)))
        (local.set $col (local.get $rowEnd))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $ohLoop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bLoop))))
)
