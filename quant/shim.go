package quant

import "github.com/tli-project/tli/kernels"

// mulTBF16 is MulTBF16 on panels of dequantised bf16 rows fed to the bf16
// product of the kernels.
func (t *Tensor) mulTBF16(y, x []float32, m int, acc bool) {
	buf := make([]uint16, panelRows*t.Cols)
	for r0 := 0; r0 < t.Rows; r0 += panelRows {
		r1 := min(r0+panelRows, t.Rows)
		t.dequantBF16(r0, r1, buf)
		kernels.GemmNTBF16Fast(m, r1-r0, t.Cols, x, t.Cols, buf, t.Cols, y[r0:], t.Rows, acc)
	}
}

// dequantBF16 writes rows [r0, r1) as bf16 bits into dst.
func (t *Tensor) dequantBF16(r0, r1 int, dst []uint16) {
	row := make([]float32, t.Cols)
	for r := r0; r < r1; r++ {
		t.DequantizeRow(r, row)
		d := dst[(r-r0)*t.Cols : (r-r0+1)*t.Cols]
		for i, v := range row {
			d[i] = kernels.F32ToBF16(v)
		}
	}
}
