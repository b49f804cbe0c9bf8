;; Single-precision GEMM for the wasm backend, run directly on tfjs-wasm's heap (the memory is imported):
;;   C = act(op(A)·op(B) + bias),  op(X) = X or Xᵀ,  C is M×N row-major with leading dimension ldc,
;;   act = identity or relu, bias = a length-N vector or none (address 0).
;;
;; Blocked as in Goto/BLIS: N in blocks of NC columns, K in blocks of at most KC, M in blocks of at
;; most MC; each K×N block of op(B) is packed into panels of 8 columns and each M×K block of op(A)
;; into panels of 4 rows, so the micro-kernel reads both contiguously. The micro-kernel keeps a 4×8
;; tile of C in eight f32x4 accumulators (plus two B vectors and one broadcast A value: 11 of the
;; 15 xmm registers V8 allocates).
;;
;; Summation order: every C element is the chain ((0 + a₀b₀) + a₁b₁) + … over k = 0..K−1, in order:
;; a later K block reloads the tile from C and continues the chain. So the result does not depend on
;; the blocking, the tile position, alignment or the transposition case, and it is the same on every
;; run. Bias and relu are applied once, after the last K block (as "GEMM, then bias, then relu").
;;
;; `f32x4.relaxed_madd` below is the multiply-add: build-simd.ts compiles this text twice, as is
;; (gemm-relaxed.wasm: fused on CPUs with FMA) and with each relaxed_madd rewritten to an
;; f32x4.mul then f32x4.add (gemm.wasm: plain SIMD, each product rounded to float32 before the add).
(module
  (import "env" "memory" (memory 1))

  (global $MC i32 (i32.const 128))
  (global $KC i32 (i32.const 256))
  (global $NC i32 (i32.const 256))

  ;; Scratch layout (one block the caller allocates, `scratchBytes()` long):
  ;; packed A (MC·KC floats), packed B (KC·NC), an edge tile (4×8), the padded bias (NC).
  (func $apOff (result i32) (i32.const 0))
  (func $bpOff (result i32) (i32.mul (i32.mul (global.get $MC) (global.get $KC)) (i32.const 4)))
  (func $tileOff (result i32) (i32.add (call $bpOff) (i32.mul (i32.mul (global.get $KC) (global.get $NC)) (i32.const 4))))
  (func $biasOff (result i32) (i32.add (call $tileOff) (i32.const 128)))
  (func (export "scratchBytes") (result i32) (i32.add (call $biasOff) (i32.mul (global.get $NC) (i32.const 4))))

  ;; The 4×8 micro-kernel over kc steps: ap = 4-row panel (k-major), bp = 8 columns of B for step 0,
  ;; bs = bytes from one step's 8 columns to the next (32 in a packed panel, ldb·4 reading B in place).
  ;; flags: 1 = start from C (a later K block; else from 0), 2 = last K block: add the bias (bias ≠ 0),
  ;; 4 = and then relu. The C tile is 4 rows at c, c + ldc·4, … bytes, 8 floats each.
  (func $kernel (param $kc i32) (param $ap i32) (param $bp i32) (param $bs i32) (param $c i32) (param $ldc i32) (param $flags i32) (param $bias i32)
    (local $c1 i32) (local $c2 i32) (local $c3 i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $c1 (i32.add (local.get $c) (i32.shl (local.get $ldc) (i32.const 2))))
    (local.set $c2 (i32.add (local.get $c1) (i32.shl (local.get $ldc) (i32.const 2))))
    (local.set $c3 (i32.add (local.get $c2) (i32.shl (local.get $ldc) (i32.const 2))))
    (if (i32.and (local.get $flags) (i32.const 1))
      (then
        (local.set $c00 (v128.load (local.get $c)))
        (local.set $c01 (v128.load offset=16 (local.get $c)))
        (local.set $c10 (v128.load (local.get $c1)))
        (local.set $c11 (v128.load offset=16 (local.get $c1)))
        (local.set $c20 (v128.load (local.get $c2)))
        (local.set $c21 (v128.load offset=16 (local.get $c2)))
        (local.set $c30 (v128.load (local.get $c3)))
        (local.set $c31 (v128.load offset=16 (local.get $c3)))))
    (block $done
      (br_if $done (i32.eqz (local.get $kc)))
      (loop $ks
        (local.set $b0 (v128.load (local.get $bp)))
        (local.set $b1 (v128.load offset=16 (local.get $bp)))
        (local.set $a (v128.load32_splat (local.get $ap)))
        (local.set $c00 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c00)))
        (local.set $c01 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c01)))
        (local.set $a (v128.load32_splat offset=4 (local.get $ap)))
        (local.set $c10 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c10)))
        (local.set $c11 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c11)))
        (local.set $a (v128.load32_splat offset=8 (local.get $ap)))
        (local.set $c20 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c20)))
        (local.set $c21 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c21)))
        (local.set $a (v128.load32_splat offset=12 (local.get $ap)))
        (local.set $c30 (f32x4.relaxed_madd (local.get $a) (local.get $b0) (local.get $c30)))
        (local.set $c31 (f32x4.relaxed_madd (local.get $a) (local.get $b1) (local.get $c31)))
        (local.set $ap (i32.add (local.get $ap) (i32.const 16)))
        (local.set $bp (i32.add (local.get $bp) (local.get $bs)))
        (local.set $kc (i32.sub (local.get $kc) (i32.const 1)))
        (br_if $ks (local.get $kc))))
    (if (i32.and (local.get $flags) (i32.const 2))
      (then
        (if (local.get $bias)
          (then
            (local.set $b0 (v128.load (local.get $bias)))
            (local.set $b1 (v128.load offset=16 (local.get $bias)))
            (local.set $c00 (f32x4.add (local.get $c00) (local.get $b0)))
            (local.set $c01 (f32x4.add (local.get $c01) (local.get $b1)))
            (local.set $c10 (f32x4.add (local.get $c10) (local.get $b0)))
            (local.set $c11 (f32x4.add (local.get $c11) (local.get $b1)))
            (local.set $c20 (f32x4.add (local.get $c20) (local.get $b0)))
            (local.set $c21 (f32x4.add (local.get $c21) (local.get $b1)))
            (local.set $c30 (f32x4.add (local.get $c30) (local.get $b0)))
            (local.set $c31 (f32x4.add (local.get $c31) (local.get $b1)))))
        (if (i32.and (local.get $flags) (i32.const 4))
          (then
            (local.set $a (f32x4.splat (f32.const 0)))
            (local.set $c00 (f32x4.max (local.get $c00) (local.get $a)))
            (local.set $c01 (f32x4.max (local.get $c01) (local.get $a)))
            (local.set $c10 (f32x4.max (local.get $c10) (local.get $a)))
            (local.set $c11 (f32x4.max (local.get $c11) (local.get $a)))
            (local.set $c20 (f32x4.max (local.get $c20) (local.get $a)))
            (local.set $c21 (f32x4.max (local.get $c21) (local.get $a)))
            (local.set $c30 (f32x4.max (local.get $c30) (local.get $a)))
            (local.set $c31 (f32x4.max (local.get $c31) (local.get $a)))))))
    (v128.store (local.get $c) (local.get $c00))
    (v128.store offset=16 (local.get $c) (local.get $c01))
    (v128.store (local.get $c1) (local.get $c10))
    (v128.store offset=16 (local.get $c1) (local.get $c11))
    (v128.store (local.get $c2) (local.get $c20))
    (v128.store offset=16 (local.get $c2) (local.get $c21))
    (v128.store (local.get $c3) (local.get $c30))
    (v128.store offset=16 (local.get $c3) (local.get $c31)))

  ;; A tile at the right or bottom edge (mr < 4 or nr < 8): run the kernel on a 4×8 scratch tile.
  (func $edge (param $kc i32) (param $ap i32) (param $bp i32) (param $bs i32) (param $c i32) (param $ldc i32) (param $flags i32) (param $bias i32)
    (param $mr i32) (param $nr i32) (param $tile i32)
    (local $i i32) (local $j i32)
    (if (i32.and (local.get $flags) (i32.const 1))
      (then
        (local.set $i (i32.const 0))
        (loop $rows
          (local.set $j (i32.const 0))
          (loop $cols
            (f32.store
              (i32.add (local.get $tile) (i32.shl (i32.add (i32.shl (local.get $i) (i32.const 3)) (local.get $j)) (i32.const 2)))
              (f32.load (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $ldc)) (local.get $j)) (i32.const 2)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $cols (i32.lt_u (local.get $j) (local.get $nr))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $rows (i32.lt_u (local.get $i) (local.get $mr))))))
    (call $kernel (local.get $kc) (local.get $ap) (local.get $bp) (local.get $bs) (local.get $tile) (i32.const 8) (local.get $flags) (local.get $bias))
    (local.set $i (i32.const 0))
    (loop $rows
      (local.set $j (i32.const 0))
      (loop $cols
        (f32.store
          (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $ldc)) (local.get $j)) (i32.const 2)))
          (f32.load (i32.add (local.get $tile) (i32.shl (i32.add (i32.shl (local.get $i) (i32.const 3)) (local.get $j)) (i32.const 2)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $cols (i32.lt_u (local.get $j) (local.get $nr))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $i) (local.get $mr)))))

  ;; Pack rows i0..i0+mc of op(A), columns p0..p0+kc, into 4-row panels at dst:
  ;; panel r holds op(A)[i0+4r+i, p0+k] at float (r·kc + k)·4 + i; rows past mc are zero.
  ;; op(A)[i, k] = A[i·lda + k], or A[k·lda + i] when transposed.
  (func $packA (param $tA i32) (param $a i32) (param $lda i32) (param $i0 i32) (param $mc i32) (param $p0 i32) (param $kc i32) (param $dst i32)
    (local $r i32) (local $i i32) (local $k i32) (local $k4 i32) (local $src i32) (local $d i32) (local $ld4 i32)
    (local $r0 i32) (local $r1 i32) (local $r2 i32) (local $r3 i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $ld4 (i32.shl (local.get $lda) (i32.const 2)))
    (local.set $k4 (i32.and (local.get $kc) (i32.const -4)))
    (block $panelsDone
      (loop $panels
        (br_if $panelsDone (i32.ge_u (local.get $r) (local.get $mc)))
        (local.set $d (i32.add (local.get $dst) (i32.shl (i32.mul (local.get $r) (local.get $kc)) (i32.const 2))))
        (if (i32.le_u (i32.add (local.get $r) (i32.const 4)) (local.get $mc))
          (then
            (if (local.get $tA)
              (then
                ;; Aᵀ: the 4 values for step k are contiguous in A's row p0+k.
                (local.set $src (i32.add (local.get $a)
                  (i32.shl (i32.add (i32.mul (local.get $p0) (local.get $lda)) (i32.add (local.get $i0) (local.get $r))) (i32.const 2))))
                (local.set $k (i32.const 0))
                (block $done
                  (loop $ks
                    (br_if $done (i32.ge_u (local.get $k) (local.get $kc)))
                    (v128.store (local.get $d) (v128.load (local.get $src)))
                    (local.set $src (i32.add (local.get $src) (local.get $ld4)))
                    (local.set $d (i32.add (local.get $d) (i32.const 16)))
                    (local.set $k (i32.add (local.get $k) (i32.const 1)))
                    (br $ks))))
              (else
                ;; A: 4 rows, 4 steps at a time, transposed 4×4 in registers.
                (local.set $r0 (i32.add (local.get $a)
                  (i32.shl (i32.add (i32.mul (i32.add (local.get $i0) (local.get $r)) (local.get $lda)) (local.get $p0)) (i32.const 2))))
                (local.set $r1 (i32.add (local.get $r0) (local.get $ld4)))
                (local.set $r2 (i32.add (local.get $r1) (local.get $ld4)))
                (local.set $r3 (i32.add (local.get $r2) (local.get $ld4)))
                (local.set $k (i32.const 0))
                (block $done
                  (loop $ks
                    (br_if $done (i32.ge_u (local.get $k) (local.get $k4)))
                    (local.set $src (i32.shl (local.get $k) (i32.const 2)))
                    (local.set $v0 (v128.load (i32.add (local.get $r0) (local.get $src))))
                    (local.set $v1 (v128.load (i32.add (local.get $r1) (local.get $src))))
                    (local.set $v2 (v128.load (i32.add (local.get $r2) (local.get $src))))
                    (local.set $v3 (v128.load (i32.add (local.get $r3) (local.get $src))))
                    (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v0) (local.get $v1)))
                    (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v0) (local.get $v1)))
                    (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v2) (local.get $v3)))
                    (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v2) (local.get $v3)))
                    (v128.store (local.get $d) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
                    (v128.store offset=16 (local.get $d) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
                    (v128.store offset=32 (local.get $d) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
                    (v128.store offset=48 (local.get $d) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
                    (local.set $d (i32.add (local.get $d) (i32.const 64)))
                    (local.set $k (i32.add (local.get $k) (i32.const 4)))
                    (br $ks)))
                (block $done
                  (loop $ks
                    (br_if $done (i32.ge_u (local.get $k) (local.get $kc)))
                    (local.set $src (i32.shl (local.get $k) (i32.const 2)))
                    (f32.store (local.get $d) (f32.load (i32.add (local.get $r0) (local.get $src))))
                    (f32.store offset=4 (local.get $d) (f32.load (i32.add (local.get $r1) (local.get $src))))
                    (f32.store offset=8 (local.get $d) (f32.load (i32.add (local.get $r2) (local.get $src))))
                    (f32.store offset=12 (local.get $d) (f32.load (i32.add (local.get $r3) (local.get $src))))
                    (local.set $d (i32.add (local.get $d) (i32.const 16)))
                    (local.set $k (i32.add (local.get $k) (i32.const 1)))
                    (br $ks))))))
          (else
            ;; The last, partial panel: element by element, zeros past mc.
            (local.set $k (i32.const 0))
            (block $done
              (loop $ks
                (br_if $done (i32.ge_u (local.get $k) (local.get $kc)))
                (local.set $i (i32.const 0))
                (loop $is
                  (f32.store (i32.add (local.get $d) (i32.shl (local.get $i) (i32.const 2)))
                    (if (result f32) (i32.lt_u (i32.add (local.get $r) (local.get $i)) (local.get $mc))
                      (then
                        (f32.load (i32.add (local.get $a) (i32.shl
                          (if (result i32) (local.get $tA)
                            (then (i32.add (i32.mul (i32.add (local.get $p0) (local.get $k)) (local.get $lda)) (i32.add (i32.add (local.get $i0) (local.get $r)) (local.get $i))))
                            (else (i32.add (i32.mul (i32.add (i32.add (local.get $i0) (local.get $r)) (local.get $i)) (local.get $lda)) (i32.add (local.get $p0) (local.get $k)))))
                          (i32.const 2)))))
                      (else (f32.const 0))))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $is (i32.lt_u (local.get $i) (i32.const 4))))
                (local.set $d (i32.add (local.get $d) (i32.const 16)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $ks)))))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $panels))))

  ;; Pack rows p0..p0+kc of op(B), columns j0..j0+nc, into 8-column panels at dst:
  ;; panel q holds op(B)[p0+k, j0+8q+j] at float (q·kc + k)·8 + j; columns past nc are zero.
  ;; op(B)[k, j] = B[k·ldb + j], or B[j·ldb + k] when transposed.
  (func $packB (param $tB i32) (param $b i32) (param $ldb i32) (param $p0 i32) (param $kc i32) (param $j0 i32) (param $nc i32) (param $dst i32)
    (local $q i32) (local $j i32) (local $k i32) (local $k4 i32) (local $src i32) (local $d i32) (local $ld4 i32) (local $h i32)
    (local $r0 i32) (local $r1 i32) (local $r2 i32) (local $r3 i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $ld4 (i32.shl (local.get $ldb) (i32.const 2)))
    (local.set $k4 (i32.and (local.get $kc) (i32.const -4)))
    (block $panelsDone
      (loop $panels
        (br_if $panelsDone (i32.ge_u (local.get $q) (local.get $nc)))
        (local.set $d (i32.add (local.get $dst) (i32.shl (i32.mul (local.get $q) (local.get $kc)) (i32.const 2))))
        (if (i32.le_u (i32.add (local.get $q) (i32.const 8)) (local.get $nc))
          (then
            (if (local.get $tB)
              (then
                ;; Bᵀ: two groups of 4 rows of B (4 columns of op(B) each), 4 steps at a time, transposed
                ;; 4×4 in registers into the low (h = 0) then high (h = 16 bytes) half of each panel row.
                (local.set $h (i32.const 0))
                (loop $halves
                  (local.set $r0 (i32.add (local.get $b)
                    (i32.shl (i32.add (i32.mul (i32.add (i32.add (local.get $j0) (local.get $q)) (i32.shr_u (local.get $h) (i32.const 2))) (local.get $ldb)) (local.get $p0)) (i32.const 2))))
                  (local.set $r1 (i32.add (local.get $r0) (local.get $ld4)))
                  (local.set $r2 (i32.add (local.get $r1) (local.get $ld4)))
                  (local.set $r3 (i32.add (local.get $r2) (local.get $ld4)))
                  (local.set $d (i32.add (i32.add (local.get $dst) (i32.shl (i32.mul (local.get $q) (local.get $kc)) (i32.const 2))) (local.get $h)))
                  (local.set $k (i32.const 0))
                  (block $done
                    (loop $ks
                      (br_if $done (i32.ge_u (local.get $k) (local.get $k4)))
                      (local.set $src (i32.shl (local.get $k) (i32.const 2)))
                      (local.set $v0 (v128.load (i32.add (local.get $r0) (local.get $src))))
                      (local.set $v1 (v128.load (i32.add (local.get $r1) (local.get $src))))
                      (local.set $v2 (v128.load (i32.add (local.get $r2) (local.get $src))))
                      (local.set $v3 (v128.load (i32.add (local.get $r3) (local.get $src))))
                      (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v0) (local.get $v1)))
                      (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v0) (local.get $v1)))
                      (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v2) (local.get $v3)))
                      (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v2) (local.get $v3)))
                      (v128.store (local.get $d) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
                      (v128.store offset=32 (local.get $d) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
                      (v128.store offset=64 (local.get $d) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
                      (v128.store offset=96 (local.get $d) (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
                      (local.set $d (i32.add (local.get $d) (i32.const 128)))
                      (local.set $k (i32.add (local.get $k) (i32.const 4)))
                      (br $ks)))
                  (block $done
                    (loop $ks
                      (br_if $done (i32.ge_u (local.get $k) (local.get $kc)))
                      (local.set $src (i32.shl (local.get $k) (i32.const 2)))
                      (f32.store (local.get $d) (f32.load (i32.add (local.get $r0) (local.get $src))))
                      (f32.store offset=4 (local.get $d) (f32.load (i32.add (local.get $r1) (local.get $src))))
                      (f32.store offset=8 (local.get $d) (f32.load (i32.add (local.get $r2) (local.get $src))))
                      (f32.store offset=12 (local.get $d) (f32.load (i32.add (local.get $r3) (local.get $src))))
                      (local.set $d (i32.add (local.get $d) (i32.const 32)))
                      (local.set $k (i32.add (local.get $k) (i32.const 1)))
                      (br $ks)))
                  (local.set $h (i32.add (local.get $h) (i32.const 16)))
                  (br_if $halves (i32.lt_u (local.get $h) (i32.const 32)))))
              (else
                ;; B: the 8 values for step k are contiguous in B's row p0+k.
                (local.set $src (i32.add (local.get $b)
                  (i32.shl (i32.add (i32.mul (local.get $p0) (local.get $ldb)) (i32.add (local.get $j0) (local.get $q))) (i32.const 2))))
                (local.set $k (i32.const 0))
                (block $done
                  (loop $ks
                    (br_if $done (i32.ge_u (local.get $k) (local.get $kc)))
                    (v128.store (local.get $d) (v128.load (local.get $src)))
                    (v128.store offset=16 (local.get $d) (v128.load offset=16 (local.get $src)))
                    (local.set $src (i32.add (local.get $src) (local.get $ld4)))
                    (local.set $d (i32.add (local.get $d) (i32.const 32)))
                    (local.set $k (i32.add (local.get $k) (i32.const 1)))
                    (br $ks))))))
          (else
            ;; The last, partial panel: element by element, zeros past nc.
            (local.set $k (i32.const 0))
            (block $done
              (loop $ks
                (br_if $done (i32.ge_u (local.get $k) (local.get $kc)))
                (local.set $j (i32.const 0))
                (loop $js
                  (f32.store (i32.add (local.get $d) (i32.shl (local.get $j) (i32.const 2)))
                    (if (result f32) (i32.lt_u (i32.add (local.get $q) (local.get $j)) (local.get $nc))
                      (then
                        (f32.load (i32.add (local.get $b) (i32.shl
                          (if (result i32) (local.get $tB)
                            (then (i32.add (i32.mul (i32.add (i32.add (local.get $j0) (local.get $q)) (local.get $j)) (local.get $ldb)) (i32.add (local.get $p0) (local.get $k))))
                            (else (i32.add (i32.mul (i32.add (local.get $p0) (local.get $k)) (local.get $ldb)) (i32.add (i32.add (local.get $j0) (local.get $q)) (local.get $j)))))
                          (i32.const 2)))))
                      (else (f32.const 0))))
                  (local.set $j (i32.add (local.get $j) (i32.const 1)))
                  (br_if $js (i32.lt_u (local.get $j) (i32.const 8))))
                (local.set $d (i32.add (local.get $d) (i32.const 32)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $ks)))))
        (local.set $q (i32.add (local.get $q) (i32.const 8)))
        (br $panels))))

  ;; ceil(x / ceil(x / cap)): the most even split of x into blocks of at most cap.
  (func $evenBlock (param $x i32) (param $cap i32) (result i32)
    (local $n i32)
    (local.set $n (i32.div_u (i32.add (local.get $x) (i32.sub (local.get $cap) (i32.const 1))) (local.get $cap)))
    (i32.div_u (i32.add (local.get $x) (i32.sub (local.get $n) (i32.const 1))) (local.get $n)))

  ;; C (M×N, leading dimension ldc) = act(op(A)·op(B) + bias). Addresses are byte offsets; bias = 0 for
  ;; none; relu = 1 for relu; scratch = scratchBytes() bytes. M, N, K ≥ 1.
  (func (export "gemm")
    (param $tA i32) (param $tB i32) (param $M i32) (param $N i32) (param $K i32)
    (param $a i32) (param $lda i32) (param $b i32) (param $ldb i32) (param $c i32) (param $ldc i32)
    (param $bias i32) (param $relu i32) (param $scratch i32)
    (local $jc i32) (local $nc i32) (local $pc i32) (local $kc i32) (local $kStep i32) (local $ic i32) (local $mc i32) (local $mStep i32)
    (local $jr i32) (local $ir i32) (local $nr i32) (local $mr i32) (local $flags i32) (local $j i32)
    (local $ap i32) (local $bp i32) (local $tile i32) (local $biasBuf i32) (local $biasPtr i32) (local $cptr i32)
    (local $direct i32) (local $nfull i32) (local $bpj i32) (local $bs i32)
    (local.set $ap (i32.add (local.get $scratch) (call $apOff)))
    (local.set $bp (i32.add (local.get $scratch) (call $bpOff)))
    (local.set $tile (i32.add (local.get $scratch) (call $tileOff)))
    (local.set $biasBuf (i32.add (local.get $scratch) (call $biasOff)))
    (local.set $kStep (call $evenBlock (local.get $K) (global.get $KC)))
    (local.set $mStep (call $evenBlock (local.get $M) (global.get $MC)))
    ;; With few rows, packing B costs more than it saves (each panel serves ≤ 16 tiles): the kernel
    ;; reads B's rows in place then, and only a last partial panel (zero-padded) is packed.
    (local.set $direct (i32.and (i32.eqz (local.get $tB)) (i32.le_u (local.get $M) (i32.const 64))))
    (block $jcDone
      (loop $jcLoop
        (br_if $jcDone (i32.ge_u (local.get $jc) (local.get $N)))
        (local.set $nc (select (global.get $NC) (i32.sub (local.get $N) (local.get $jc))
          (i32.lt_u (global.get $NC) (i32.sub (local.get $N) (local.get $jc)))))
        ;; This block's bias, padded with zeros to whole 8-column panels.
        (if (local.get $bias)
          (then
            (local.set $j (i32.const 0))
            (loop $copy
              (f32.store (i32.add (local.get $biasBuf) (i32.shl (local.get $j) (i32.const 2)))
                (if (result f32) (i32.lt_u (local.get $j) (local.get $nc))
                  (then (f32.load (i32.add (local.get $bias) (i32.shl (i32.add (local.get $jc) (local.get $j)) (i32.const 2)))))
                  (else (f32.const 0))))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $copy (i32.lt_u (local.get $j) (i32.and (i32.add (local.get $nc) (i32.const 7)) (i32.const -8)))))))
        (local.set $pc (i32.const 0))
        (block $pcDone
          (loop $pcLoop
            (br_if $pcDone (i32.ge_u (local.get $pc) (local.get $K)))
            (local.set $kc (select (local.get $kStep) (i32.sub (local.get $K) (local.get $pc))
              (i32.lt_u (local.get $kStep) (i32.sub (local.get $K) (local.get $pc)))))
            (local.set $nfull (select (i32.and (local.get $nc) (i32.const -8)) (i32.const 0) (local.get $direct)))
            (call $packB (local.get $tB) (local.get $b) (local.get $ldb) (local.get $pc) (local.get $kc)
              (i32.add (local.get $jc) (local.get $nfull)) (i32.sub (local.get $nc) (local.get $nfull)) (local.get $bp))
            (local.set $flags (i32.or
              (select (i32.const 1) (i32.const 0) (local.get $pc))
              (select (i32.or (i32.const 2) (select (i32.const 4) (i32.const 0) (local.get $relu))) (i32.const 0)
                (i32.ge_u (i32.add (local.get $pc) (local.get $kc)) (local.get $K)))))
            (local.set $ic (i32.const 0))
            (block $icDone
              (loop $icLoop
                (br_if $icDone (i32.ge_u (local.get $ic) (local.get $M)))
                (local.set $mc (select (local.get $mStep) (i32.sub (local.get $M) (local.get $ic))
                  (i32.lt_u (local.get $mStep) (i32.sub (local.get $M) (local.get $ic)))))
                (call $packA (local.get $tA) (local.get $a) (local.get $lda) (local.get $ic) (local.get $mc) (local.get $pc) (local.get $kc) (local.get $ap))
                (local.set $jr (i32.const 0))
                (block $jrDone
                  (loop $jrLoop
                    (br_if $jrDone (i32.ge_u (local.get $jr) (local.get $nc)))
                    (local.set $nr (select (i32.const 8) (i32.sub (local.get $nc) (local.get $jr))
                      (i32.lt_u (i32.const 8) (i32.sub (local.get $nc) (local.get $jr)))))
                    (local.set $biasPtr (select (i32.add (local.get $biasBuf) (i32.shl (local.get $jr) (i32.const 2))) (i32.const 0) (local.get $bias)))
                    ;; This panel's B: in place (columns before nfull, when direct) or packed.
                    (if (i32.lt_u (local.get $jr) (local.get $nfull))
                      (then
                        (local.set $bpj (i32.add (local.get $b)
                          (i32.shl (i32.add (i32.mul (local.get $pc) (local.get $ldb)) (i32.add (local.get $jc) (local.get $jr))) (i32.const 2))))
                        (local.set $bs (i32.shl (local.get $ldb) (i32.const 2))))
                      (else
                        (local.set $bpj (i32.add (local.get $bp) (i32.shl (i32.mul (i32.sub (local.get $jr) (local.get $nfull)) (local.get $kc)) (i32.const 2))))
                        (local.set $bs (i32.const 32))))
                    (local.set $ir (i32.const 0))
                    (block $irDone
                      (loop $irLoop
                        (br_if $irDone (i32.ge_u (local.get $ir) (local.get $mc)))
                        (local.set $mr (select (i32.const 4) (i32.sub (local.get $mc) (local.get $ir))
                          (i32.lt_u (i32.const 4) (i32.sub (local.get $mc) (local.get $ir)))))
                        (local.set $cptr (i32.add (local.get $c)
                          (i32.shl (i32.add (i32.mul (i32.add (local.get $ic) (local.get $ir)) (local.get $ldc)) (i32.add (local.get $jc) (local.get $jr))) (i32.const 2))))
                        (if (i32.and (i32.eq (local.get $mr) (i32.const 4)) (i32.eq (local.get $nr) (i32.const 8)))
                          (then
                            (call $kernel (local.get $kc)
                              (i32.add (local.get $ap) (i32.shl (i32.mul (local.get $ir) (local.get $kc)) (i32.const 2)))
                              (local.get $bpj) (local.get $bs)
                              (local.get $cptr) (local.get $ldc) (local.get $flags) (local.get $biasPtr)))
                          (else
                            (call $edge (local.get $kc)
                              (i32.add (local.get $ap) (i32.shl (i32.mul (local.get $ir) (local.get $kc)) (i32.const 2)))
                              (local.get $bpj) (local.get $bs)
                              (local.get $cptr) (local.get $ldc) (local.get $flags) (local.get $biasPtr)
                              (local.get $mr) (local.get $nr) (local.get $tile))))
                        (local.set $ir (i32.add (local.get $ir) (i32.const 4)))
                        (br $irLoop)))
                    (local.set $jr (i32.add (local.get $jr) (i32.const 8)))
                    (br $jrLoop)))
                (local.set $ic (i32.add (local.get $ic) (local.get $mc)))
                (br $icLoop)))
            (local.set $pc (i32.add (local.get $pc) (local.get $kc)))
            (br $pcLoop)))
        (local.set $jc (i32.add (local.get $jc) (local.get $nc)))
        (br $jcLoop))))
)
