package engine

import "testing"

// HeadPart picks one part of every head of a fused projection, and with
// acc adds rows back into their places; nothing else is touched.
func TestHeadPart(t *testing.T) {
	const rows, nHeads, parts, hd = 3, 2, 3, 4
	src := make([]float32, rows*nHeads*parts*hd)
	for i := range src {
		src[i] = float32(i)
	}
	for part := 0; part < parts; part++ {
		buf := make([]float32, rows*nHeads*hd+2)
		buf[0], buf[len(buf)-1] = -7, -7 // guards
		dst := buf[1 : len(buf)-1]
		HeadPart(dst, src, rows, nHeads, parts, part, hd, false)
		for r := 0; r < rows*nHeads; r++ {
			for e := 0; e < hd; e++ {
				if want := float32((r*parts+part)*hd + e); dst[r*hd+e] != want {
					t.Fatalf("part %d row %d elem %d: %v, want %v", part, r, e, dst[r*hd+e], want)
				}
			}
		}
		if buf[0] != -7 || buf[len(buf)-1] != -7 {
			t.Fatal("HeadPart wrote outside dst")
		}
		grad := make([]float32, len(src))
		HeadPart(dst, grad, rows, nHeads, parts, part, hd, true)
		for i, g := range grad {
			inPart := (i/hd)%parts == part
			if (inPart && g != src[i]) || (!inPart && g != 0) {
				t.Fatalf("part %d: grad[%d] = %v", part, i, g)
			}
		}
	}
}
