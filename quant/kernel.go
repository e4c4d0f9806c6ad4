package quant

import "github.com/tli-project/tli/kernels"

// kernel describes t for the kernels' 4-bit products.
func (t *Tensor) kernel() *kernels.Q4 {
	cb := Codebook(t.Kind)
	mid := kernels.Q4MidF32
	switch t.DType {
	case BF16:
		mid = kernels.Q4MidBF16
	case F16:
		mid = kernels.Q4MidF16
	}
	return &kernels.Q4{Packed: t.Packed, Absmax: t.Absmax, Blocksize: t.Blocksize, Code: &cb, Mid: mid}
}

// mulTBF16 is MulTBF16 on the kernels' 4-bit product.
func (t *Tensor) mulTBF16(y, x []float32, m int, acc bool) {
	kernels.GemmNTQ4(m, t.Rows, t.Cols, x, t.Cols, t.kernel(), y, t.Rows, acc)
}

// dequantBF16 writes rows [r0, r1) as bf16 bits into dst.
func (t *Tensor) dequantBF16(r0, r1 int, dst []uint16) {
	kernels.DequantQ4BF16(t.kernel(), t.Cols, r0, r1, dst)
}
