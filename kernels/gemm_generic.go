package kernels

// Simple pure-Go implementations: the reference FuzzGemm compares every path
// against (the generic path itself runs the blocked drivers with a Go
// micro-kernel, see gemm_gokernel.go), and the initial values of the
// dispatch variables.

func gemmNTGeneric(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	parallel(m, func(i int) {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		for j := 0; j < n; j++ {
			s := dotGeneric(ar, b[j*ldb:j*ldb+k])
			if acc {
				cr[j] += s
			} else {
				cr[j] = s
			}
		}
	})
}

func gemmNNGeneric(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	parallel(m, func(i int) {
		cr := c[i*ldc : i*ldc+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			axpyGeneric(a[i*lda+p], b[p*ldb:p*ldb+n], cr)
		}
	})
}

func gemmTNGeneric(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	parallel(m, func(i int) {
		cr := c[i*ldc : i*ldc+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			axpyGeneric(a[p*lda+i], b[p*ldb:p*ldb+n], cr)
		}
	})
}

func gemmNTHalfGeneric(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool, widen func(uint16) float32) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	parallel(n, func(j int) {
		row := make([]float32, k)
		for p, h := range b[j*ldb : j*ldb+k] {
			row[p] = widen(h)
		}
		for i := 0; i < m; i++ {
			s := dotGeneric(a[i*lda:i*lda+k], row)
			if acc {
				c[i*ldc+j] += s
			} else {
				c[i*ldc+j] = s
			}
		}
	})
}

func gemmNNHalfGeneric(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool, widen func(uint16) float32) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	parallel(m, func(i int) {
		cr := c[i*ldc : i*ldc+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[i*lda+p]
			for j, h := range b[p*ldb : p*ldb+n] {
				cr[j] += av * widen(h)
			}
		}
	})
}

func gemmNTBF16Generic(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNTHalfGeneric(m, n, k, a, lda, b, ldb, c, ldc, acc, BF16ToF32)
}

func gemmNNBF16Generic(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNNHalfGeneric(m, n, k, a, lda, b, ldb, c, ldc, acc, BF16ToF32)
}

func gemmNTF16Generic(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNTHalfGeneric(m, n, k, a, lda, b, ldb, c, ldc, acc, F16ToF32)
}

func gemmNNF16Generic(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	gemmNNHalfGeneric(m, n, k, a, lda, b, ldb, c, ldc, acc, F16ToF32)
}

func gemmNTBF16FastGeneric(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		zeroOrKeep(m, n, c, ldc, acc)
		return
	}
	ar := make([]float32, m*k)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			ar[i*k+p] = BF16ToF32(F32ToBF16(a[i*lda+p]))
		}
	}
	gemmNTBF16Generic(m, n, k, ar, k, b, ldb, c, ldc, acc)
}

func dotGeneric(x, y []float32) float32 {
	var s0, s1, s2, s3 float32
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func scaleGeneric(alpha float32, x []float32) {
	for i := range x {
		x[i] *= alpha
	}
}

func sumSqGeneric(x []float32) float32 {
	return dotGeneric(x, x)
}

// zeroOrKeep handles k == 0: the product is zero.
func zeroOrKeep(m, n int, c []float32, ldc int, acc bool) {
	if acc {
		return
	}
	for i := 0; i < m; i++ {
		clear(c[i*ldc : i*ldc+n])
	}
}
