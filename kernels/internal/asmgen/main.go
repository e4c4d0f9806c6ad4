// Command asmgen writes kernels/gemm_amd64.s: the register-blocked GEMM
// micro-kernels for AVX-512 and AVX2 and the small widening and vector
// helpers. The micro-kernels differ only in tile shape (R broadcast rows by V
// vectors) and in the multiply instruction, so they are generated rather than
// written out by hand 60 times. Run it with `go generate ./kernels/`.
//
// Every micro-kernel has the Go signature
//
//	func k(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int)
//
// and computes, for r < R and lane l < V·lanes,
//
//	c[r·ldc + l] (+)= Σ_{p<kc} bc[r·rs + p·ps] · panel[p·V·lanes + l]
//
// (rs, ps and ldc in bytes). The f32 kernels broadcast one float32; the bf16
// dot-product kernels broadcast a pair of bf16 values and use VDPBF16PS, so p
// then counts pairs.
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"strings"
)

var out bytes.Buffer

func p(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }

// rowAddr is the broadcast address of row r: SI + r·rs with R8 = rs,
// R9 = 3·rs and R10 = 5·rs.
var rowAddr = []string{"(SI)", "(SI)(R8*1)", "(SI)(R8*2)", "(SI)(R9*1)", "(SI)(R8*4)", "(SI)(R10*1)"}

type isa struct {
	name   string // Z or Y
	reg    string // register prefix
	vbytes int    // bytes per vector
	vecReg int    // first vector register
	bcReg  [2]int // broadcast registers, used alternately
}

var avx512 = isa{"Z", "Z", 64, 24, [2]int{30, 31}}
var avx2 = isa{"Y", "Y", 32, 12, [2]int{14, 15}}

func kernel(x isa, op string, r, v int) {
	name := fmt.Sprintf("k%s%sR%dV%d", op, x.name, r, v)
	p("// func %s(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-64", name)
	p("\tMOVQ kc+0(FP), CX")
	p("\tMOVQ bc+8(FP), SI")
	p("\tMOVQ rs+16(FP), R8")
	p("\tMOVQ ps+24(FP), R11")
	p("\tMOVQ panel+32(FP), DI")
	p("\tMOVQ c+40(FP), DX")
	p("\tMOVQ ldc+48(FP), R12")
	p("\tLEAQ (R8)(R8*2), R9")
	p("\tLEAQ (R8)(R8*4), R10")
	// Full-height AVX-512 tiles prefetch the rows the next group of six
	// will broadcast (SI + 6·rs, one line ahead): the driver walks B
	// group after group, and its rows come from memory the first time.
	pfNext := x.name == "Z" && r == 6
	if pfNext {
		p("\tLEAQ (SI)(R9*2), R13")
	}
	acc := func(i, j int) string { return fmt.Sprintf("%s%d", x.reg, i*v+j) }
	for i := 0; i < r; i++ {
		for j := 0; j < v; j++ {
			if x.name == "Z" {
				p("\tVPXORD %s, %s, %s", acc(i, j), acc(i, j), acc(i, j))
			} else {
				p("\tVXORPS %s, %s, %s", acc(i, j), acc(i, j), acc(i, j))
			}
		}
	}
	step := func() {
		for j := 0; j < v; j++ {
			if op == "BF16" {
				p("\tVMOVDQU32 %d(DI), %s%d", j*x.vbytes, x.reg, x.vecReg+j)
			} else {
				p("\tVMOVUPS %d(DI), %s%d", j*x.vbytes, x.reg, x.vecReg+j)
			}
		}
		for i := 0; i < r; i++ {
			bc := fmt.Sprintf("%s%d", x.reg, x.bcReg[i%2])
			if op == "BF16" {
				p("\tVPBROADCASTD %s, %s", rowAddr[i], bc)
			} else {
				p("\tVBROADCASTSS %s, %s", rowAddr[i], bc)
			}
			for j := 0; j < v; j++ {
				if op == "BF16" {
					p("\t%s // VDPBF16PS %s%d, %s, %s", vdpbf16ps(i*v+j, x.bcReg[i%2], x.vecReg+j), x.reg, x.vecReg+j, bc, acc(i, j))
				} else {
					p("\tVFMADD231PS %s%d, %s, %s", x.reg, x.vecReg+j, bc, acc(i, j))
				}
			}
		}
		p("\tADDQ R11, SI")
		p("\tADDQ $%d, DI", v*x.vbytes)
	}
	p("\tCMPQ CX, $4")
	p("\tJLT tail")
	p("loop4:")
	if pfNext {
		for _, a := range rowAddr {
			p("\tPREFETCHT0 64%s", strings.Replace(a, "SI", "R13", 1))
		}
	}
	for u := 0; u < 4; u++ {
		step()
		if pfNext {
			p("\tADDQ R11, R13")
		}
	}
	p("\tSUBQ $4, CX")
	p("\tCMPQ CX, $4")
	p("\tJGE loop4")
	p("tail:")
	p("\tTESTQ CX, CX")
	p("\tJEQ store")
	p("loop1:")
	step()
	p("\tDECQ CX")
	p("\tJNE loop1")
	p("store:")
	p("\tMOVQ acc+56(FP), AX")
	p("\tTESTQ AX, AX")
	p("\tJEQ overwrite")
	for i := 0; i < r; i++ {
		for j := 0; j < v; j++ {
			p("\tVADDPS %d(DX), %s, %s", j*x.vbytes, acc(i, j), acc(i, j))
			p("\tVMOVUPS %s, %d(DX)", acc(i, j), j*x.vbytes)
		}
		if i+1 < r {
			p("\tADDQ R12, DX")
		}
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("overwrite:")
	for i := 0; i < r; i++ {
		for j := 0; j < v; j++ {
			p("\tVMOVUPS %s, %d(DX)", acc(i, j), j*x.vbytes)
		}
		if i+1 < r {
			p("\tADDQ R12, DX")
		}
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// vdpbf16ps encodes VDPBF16PS zmm(dst), zmm(src1), zmm(src2) (Intel operand
// order: dst += src1·src2 over bf16 pairs), which the Go assembler does not
// know: EVEX.512.F3.0F38.W0 52 /r.
func vdpbf16ps(dst, src1, src2 int) string {
	inv := func(b int) int { return 1 - b }
	bit := func(x, i int) int { return (x >> i) & 1 }
	p0 := inv(bit(dst, 3))<<7 | inv(bit(src2, 4))<<6 | inv(bit(src2, 3))<<5 | inv(bit(dst, 4))<<4 | 0b10
	p1 := 0<<7 | (^src1&15)<<3 | 1<<2 | 0b10
	p2 := 0<<7 | 0b10<<5 | 0<<4 | inv(bit(src1, 4))<<3
	modrm := 0b11<<6 | (dst&7)<<3 | (src2 & 7)
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02X; BYTE $0x%02X; BYTE $0x%02X; BYTE $0x52; BYTE $0x%02X", p0, p1, p2, modrm)
}

// widen writes a loop converting n (a multiple of 16) 16-bit
// values at src to float32 at dst, prefetching the same span at pf.
func widen(x isa, kind string) {
	name := fmt.Sprintf("widen%s%s", kind, x.name)
	lanes := x.vbytes / 4
	p("// func %s(dst *float32, src, pf *uint16, n int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-32", name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ pf+16(FP), R9")
	p("\tMOVQ n+24(FP), CX")
	p("\tTESTQ CX, CX")
	p("\tJEQ done")
	p("loop:")
	p("\tPREFETCHT0 (R9)")
	p("\tADDQ $%d, R9", lanes*2)
	if kind == "BF16" {
		p("\tVPMOVZXWD (SI), %s0", x.reg)
		p("\tVPSLLD $16, %s0, %s0", x.reg, x.reg)
	} else {
		p("\tVCVTPH2PS (SI), %s0", x.reg)
	}
	p("\tVMOVUPS %s0, (DI)", x.reg)
	p("\tADDQ $%d, SI", lanes*2)
	p("\tADDQ $%d, DI", lanes*4)
	p("\tSUBQ $%d, CX", lanes)
	p("\tJNE loop")
	p("done:")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// vecOps writes dot, axpy and scale over n float32s, n a multiple of the
// vector width: four vectors per iteration while possible, then one.
func vecOps(x isa) {
	lanes := x.vbytes / 4
	r := func(i int) string { return fmt.Sprintf("%s%d", x.reg, i) }
	zero := func(i int) {
		if x.name == "Z" {
			p("\tVPXORD %s, %s, %s", r(i), r(i), r(i))
		} else {
			p("\tVXORPS %s, %s, %s", r(i), r(i), r(i))
		}
	}
	// dot
	p("// func dot%s(x, y *float32, n int) float32", x.name)
	p("TEXT ·dot%s(SB), NOSPLIT, $0-28", x.name)
	p("\tMOVQ x+0(FP), SI")
	p("\tMOVQ y+8(FP), DI")
	p("\tMOVQ n+16(FP), CX")
	for i := 0; i < 4; i++ {
		zero(i)
	}
	p("\tCMPQ CX, $%d", 4*lanes)
	p("\tJLT one")
	p("four:")
	for i := 0; i < 4; i++ {
		p("\tVMOVUPS %d(SI), %s", i*x.vbytes, r(4+i))
		p("\tVFMADD231PS %d(DI), %s, %s", i*x.vbytes, r(4+i), r(i))
	}
	p("\tADDQ $%d, SI", 4*x.vbytes)
	p("\tADDQ $%d, DI", 4*x.vbytes)
	p("\tSUBQ $%d, CX", 4*lanes)
	p("\tCMPQ CX, $%d", 4*lanes)
	p("\tJGE four")
	p("one:")
	p("\tTESTQ CX, CX")
	p("\tJEQ reduce")
	p("\tVMOVUPS (SI), %s", r(4))
	p("\tVFMADD231PS (DI), %s, %s", r(4), r(0))
	p("\tADDQ $%d, SI", x.vbytes)
	p("\tADDQ $%d, DI", x.vbytes)
	p("\tSUBQ $%d, CX", lanes)
	p("\tJMP one")
	p("reduce:")
	p("\tVADDPS %s, %s, %s", r(1), r(0), r(0))
	p("\tVADDPS %s, %s, %s", r(3), r(2), r(2))
	p("\tVADDPS %s, %s, %s", r(2), r(0), r(0))
	if x.name == "Z" {
		p("\tVEXTRACTF32X8 $1, Z0, Y1")
		p("\tVADDPS Y1, Y0, Y0")
	}
	p("\tVEXTRACTF128 $1, Y0, X1")
	p("\tVADDPS X1, X0, X0")
	p("\tVMOVHLPS X0, X0, X1")
	p("\tVADDPS X1, X0, X0")
	p("\tVSHUFPS $1, X0, X0, X1")
	p("\tVADDSS X1, X0, X0")
	p("\tVZEROUPPER")
	p("\tMOVSS X0, ret+24(FP)")
	p("\tRET")
	p("")
	// axpy and scale
	for _, op := range []string{"axpy", "scale"} {
		if op == "axpy" {
			p("// func axpy%s(alpha float32, x, y *float32, n int)", x.name)
			p("TEXT ·axpy%s(SB), NOSPLIT, $0-32", x.name)
			p("\tVBROADCASTSS alpha+0(FP), %s", r(8))
			p("\tMOVQ x+8(FP), SI")
			p("\tMOVQ y+16(FP), DI")
			p("\tMOVQ n+24(FP), CX")
		} else {
			p("// func scale%s(alpha float32, x *float32, n int)", x.name)
			p("TEXT ·scale%s(SB), NOSPLIT, $0-24", x.name)
			p("\tVBROADCASTSS alpha+0(FP), %s", r(8))
			p("\tMOVQ x+8(FP), SI")
			p("\tMOVQ SI, DI")
			p("\tMOVQ n+16(FP), CX")
		}
		body := func(i int) {
			p("\tVMOVUPS %d(SI), %s", i*x.vbytes, r(i))
			if op == "axpy" {
				p("\tVFMADD213PS %d(DI), %s, %s", i*x.vbytes, r(8), r(i))
			} else {
				p("\tVMULPS %s, %s, %s", r(8), r(i), r(i))
			}
			p("\tVMOVUPS %s, %d(DI)", r(i), i*x.vbytes)
		}
		p("\tCMPQ CX, $%d", 4*lanes)
		p("\tJLT one")
		p("four:")
		for i := 0; i < 4; i++ {
			body(i)
		}
		p("\tADDQ $%d, SI", 4*x.vbytes)
		p("\tADDQ $%d, DI", 4*x.vbytes)
		p("\tSUBQ $%d, CX", 4*lanes)
		p("\tCMPQ CX, $%d", 4*lanes)
		p("\tJGE four")
		p("one:")
		p("\tTESTQ CX, CX")
		p("\tJEQ done")
		body(0)
		p("\tADDQ $%d, SI", x.vbytes)
		p("\tADDQ $%d, DI", x.vbytes)
		p("\tSUBQ $%d, CX", lanes)
		p("\tJMP one")
		p("done:")
		p("\tVZEROUPPER")
		p("\tRET")
		p("")
	}
}

// packRow writes one row of B into npan panels: w floats (a multiple of the
// vector width) from src+i·w to dst+i·pstride for i < npan. It prefetches
// the same span at pf (a row a few rows ahead), so that the reads of B from
// memory overlap the copying.
func packRow(x isa) {
	lanes := x.vbytes / 4
	p("// func packRow%s(dst, src, pf *float32, npan, w int, pstride uintptr)", x.name)
	p("TEXT ·packRow%s(SB), NOSPLIT, $0-48", x.name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ pf+16(FP), R9")
	p("\tMOVQ npan+24(FP), CX")
	p("\tMOVQ pstride+40(FP), R8")
	p("\tTESTQ CX, CX")
	p("\tJEQ done")
	p("panel:")
	p("\tMOVQ w+32(FP), DX")
	p("\tMOVQ DI, BX")
	p("vec:")
	if x.vbytes == 64 {
		p("\tPREFETCHT0 (R9)")
	} else {
		p("\tPREFETCHT0 (R9)")
		p("\tPREFETCHT0 32(R9)")
	}
	p("\tVMOVUPS (SI), %s0", x.reg)
	p("\tVMOVUPS %s0, (BX)", x.reg)
	p("\tADDQ $%d, SI", x.vbytes)
	p("\tADDQ $%d, R9", x.vbytes)
	p("\tADDQ $%d, BX", x.vbytes)
	p("\tSUBQ $%d, DX", lanes)
	p("\tJNE vec")
	p("\tADDQ R8, DI")
	p("\tDECQ CX")
	p("\tJNE panel")
	p("done:")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// rows4 writes the small-m kernel: for four rows a0..a3 of A (f32) and
// four rows b0..b3 of B (f32, bf16 or f16, widened in registers), the 16
// dot products over k (a multiple of 16) into out[4·r+i] = a_i·b_r. Products
// with one to four rows of A (decoding, m <= 4) run on it: vectorised along
// k, they stream B at memory speed instead of broadcasting it.
func rows4(kind string) {
	name := "rows4" + kind + "Z"
	p("// func %s(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-80", name)
	p("\tMOVQ a0+0(FP), AX")
	p("\tMOVQ a1+8(FP), BX")
	p("\tMOVQ a2+16(FP), CX")
	p("\tMOVQ a3+24(FP), DX")
	p("\tMOVQ b0+32(FP), SI")
	p("\tMOVQ b1+40(FP), DI")
	p("\tMOVQ b2+48(FP), R8")
	p("\tMOVQ b3+56(FP), R9")
	p("\tMOVQ k+64(FP), R10")
	p("\tXORQ R11, R11")
	for i := 0; i < 16; i++ {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	p("\tTESTQ R10, R10")
	p("\tJEQ reduce")
	p("loop:")
	for i, r := range []string{"AX", "BX", "CX", "DX"} {
		p("\tVMOVUPS (%s)(R11*4), Z%d", r, 16+i)
	}
	for rr, r := range []string{"SI", "DI", "R8", "R9"} {
		switch kind {
		case "F32":
			p("\tVMOVUPS (%s)(R11*4), Z20", r)
		case "BF16":
			p("\tVPMOVZXWD (%s)(R11*2), Z20", r)
			p("\tVPSLLD $16, Z20, Z20")
		case "F16":
			p("\tVCVTPH2PS (%s)(R11*2), Z20", r)
		}
		for i := 0; i < 4; i++ {
			p("\tVFMADD231PS Z20, Z%d, Z%d", 16+i, 4*rr+i)
		}
	}
	p("\tADDQ $16, R11")
	p("\tCMPQ R11, R10")
	p("\tJLT loop")
	p("reduce:")
	// Reduce each accumulator to a scalar and store out[j] for j < 16.
	p("\tMOVQ out+72(FP), DI")
	for j := 0; j < 16; j++ {
		p("\tVEXTRACTF32X8 $1, Z%d, Y21", j)
		p("\tVADDPS Y21, Y%d, Y21", j)
		p("\tVEXTRACTF32X4 $1, Y21, X22")
		p("\tVADDPS X22, X21, X21")
		p("\tVMOVHLPS X21, X21, X22")
		p("\tVADDPS X22, X21, X21")
		p("\tVSHUFPS $1, X21, X21, X22")
		p("\tVADDSS X22, X21, X21")
		p("\tVMOVSS X21, %d(DI)", 4*j)
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// rows2x4 is the AVX2 form of rows4, for two rows of A (16 registers do
// not hold 16 accumulators and the operands): out[4·r+i] = a_i·b_r for
// i < 2, r < 4. rows4Y runs it twice.
func rows2x4(kind string) {
	name := "rows2x4" + kind + "Y"
	p("// func %s(a0, a1 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-64", name)
	p("\tMOVQ a0+0(FP), AX")
	p("\tMOVQ a1+8(FP), BX")
	p("\tMOVQ b0+16(FP), SI")
	p("\tMOVQ b1+24(FP), DI")
	p("\tMOVQ b2+32(FP), R8")
	p("\tMOVQ b3+40(FP), R9")
	p("\tMOVQ k+48(FP), R10")
	p("\tXORQ R11, R11")
	for i := 0; i < 8; i++ {
		p("\tVXORPS Y%d, Y%d, Y%d", i, i, i)
	}
	p("\tTESTQ R10, R10")
	p("\tJEQ reduce")
	p("loop:")
	p("\tVMOVUPS (AX)(R11*4), Y8")
	p("\tVMOVUPS (BX)(R11*4), Y9")
	for rr, r := range []string{"SI", "DI", "R8", "R9"} {
		switch kind {
		case "F32":
			p("\tVMOVUPS (%s)(R11*4), Y10", r)
		case "BF16":
			p("\tVPMOVZXWD (%s)(R11*2), Y10", r)
			p("\tVPSLLD $16, Y10, Y10")
		case "F16":
			p("\tVCVTPH2PS (%s)(R11*2), Y10", r)
		}
		p("\tVFMADD231PS Y10, Y8, Y%d", 2*rr)
		p("\tVFMADD231PS Y10, Y9, Y%d", 2*rr+1)
	}
	p("\tADDQ $8, R11")
	p("\tCMPQ R11, R10")
	p("\tJLT loop")
	p("reduce:")
	p("\tMOVQ out+56(FP), DI")
	for j := 0; j < 8; j++ {
		r, i := j/2, j%2
		p("\tVEXTRACTF128 $1, Y%d, X13", j)
		p("\tVADDPS X13, X%d, X13", j)
		p("\tVMOVHLPS X13, X13, X14")
		p("\tVADDPS X14, X13, X13")
		p("\tVSHUFPS $1, X13, X13, X14")
		p("\tVADDSS X14, X13, X13")
		p("\tVMOVSS X13, %d(DI)", 4*(4*r+i))
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// ctStore writes a 16-column strip of the swapped driver's Cᵀ scratch into
// C: for each of rows rows, the 16 values src[q·mw] (q < 16) are gathered and
// stored (acc 0), added (acc 1) or stored non-temporally (acc 2, for whole
// blocks of 16 rows; dst and ldc must then be 64-byte aligned, and the
// caller issues an SFENCE before C is read) to 16 consecutive floats at dst;
// then src moves one float and dst one row (ldc bytes).
func ctStore() {
	// Blocks of 16 rows are transposed in registers: the 16 columns
	// src[q·mw + r0 … r0+15] are loaded into Z0–Z15 and turned into the
	// 16 rows of dst by 64 shuffles (32-bit and 64-bit unpacks within
	// 128-bit lanes, then two rounds of 128-bit lane shuffles); the last
	// rows % 16 go through a gather each.
	ctStoreHead("ctStoreZ", 16)
	src := []string{"(SI)", "(SI)(R9*1)", "(SI)(R9*2)", "(SI)(R10*1)", "(SI)(R9*4)", "(SI)(R11*1)", "(SI)(R10*2)", "(SI)(R12*1)",
		"(R13)", "(R13)(R9*1)", "(R13)(R9*2)", "(R13)(R10*1)", "(R13)(R9*4)", "(R13)(R11*1)", "(R13)(R10*2)", "(R13)(R12*1)"}
	for q := 0; q < 16; q++ {
		p("\tVMOVUPS %s, Z%d", src[q], q)
	}
	// Stage 1: 32-bit unpacks of row pairs into Z16–Z31.
	for q := 0; q < 16; q += 2 {
		p("\tVUNPCKLPS Z%d, Z%d, Z%d", q+1, q, 16+q)
		p("\tVUNPCKHPS Z%d, Z%d, Z%d", q+1, q, 17+q)
	}
	// Stage 2: 64-bit unpacks; Z(4g+j) holds, in 128-bit lane k, column
	// 4k+j of rows 4g…4g+3.
	for g := 0; g < 4; g++ {
		t := 16 + 4*g
		p("\tVUNPCKLPD Z%d, Z%d, Z%d", t+2, t, 4*g+0)
		p("\tVUNPCKHPD Z%d, Z%d, Z%d", t+2, t, 4*g+1)
		p("\tVUNPCKLPD Z%d, Z%d, Z%d", t+3, t+1, 4*g+2)
		p("\tVUNPCKHPD Z%d, Z%d, Z%d", t+3, t+1, 4*g+3)
	}
	// Stages 3 and 4: a 4×4 transpose of 128-bit lanes for each j; output
	// row 4k+j ends in Z(16 + 4k + j).
	for j := 0; j < 4; j++ {
		g0, g1, g2, g3 := j, 4+j, 8+j, 12+j
		s0, s1, s2, s3 := 16+j, 20+j, 24+j, 28+j
		p("\tVSHUFF32X4 $0x44, Z%d, Z%d, Z%d", g1, g0, s0)
		p("\tVSHUFF32X4 $0xEE, Z%d, Z%d, Z%d", g1, g0, s1)
		p("\tVSHUFF32X4 $0x44, Z%d, Z%d, Z%d", g3, g2, s2)
		p("\tVSHUFF32X4 $0xEE, Z%d, Z%d, Z%d", g3, g2, s3)
		p("\tVSHUFF32X4 $0x88, Z%d, Z%d, Z%d", s2, s0, g0)
		p("\tVSHUFF32X4 $0xDD, Z%d, Z%d, Z%d", s2, s0, g1)
		p("\tVSHUFF32X4 $0x88, Z%d, Z%d, Z%d", s3, s1, g2)
		p("\tVSHUFF32X4 $0xDD, Z%d, Z%d, Z%d", s3, s1, g3)
	}
	// After stage 4, Z(j + 4k) holds output row 4k + j.
	dst := []string{"(DI)", "(DI)(R8*1)", "(DI)(R8*2)", "(DI)(BX*1)", "(DI)(R8*4)", "(DI)(DX*1)", "(DI)(BX*2)", "(DI)(R14*1)",
		"(R13)", "(R13)(R8*1)", "(R13)(R8*2)", "(R13)(BX*1)", "(R13)(R8*4)", "(R13)(DX*1)", "(R13)(BX*2)", "(R13)(R14*1)"}
	p("\tLEAQ (DI)(R8*8), R13")
	p("\tTESTQ AX, AX")
	p("\tJEQ blockstore")
	p("\tCMPQ AX, $2")
	p("\tJEQ blockstream")
	for r := 0; r < 16; r++ {
		p("\tVADDPS %s, Z%d, Z%d", dst[r], r, r)
	}
	p("\tJMP blockstore")
	// acc = 2: non-temporal stores (dst and ldc 64-byte aligned), which
	// write whole lines without reading them first.
	p("blockstream:")
	for r := 0; r < 16; r++ {
		p("\tVMOVNTPS Z%d, %s", r, dst[r])
	}
	p("\tJMP blocknext")
	p("blockstore:")
	for r := 0; r < 16; r++ {
		p("\tVMOVUPS Z%d, %s", r, dst[r])
	}
	p("blocknext:")
	p("\tADDQ $64, SI")
	p("\tLEAQ (R13)(R8*8), DI")
	p("\tSUBQ $16, CX")
	p("\tJMP block")
	p("tail:")
	p("\tTESTQ CX, CX")
	p("\tJEQ done")
	p("\tMOVQ mw+24(FP), R9")
	p("\tVPBROADCASTD R9, Z2")
	p("\tVPMULLD iota16<>(SB), Z2, Z1")
	p("loop:")
	p("\tKXNORW K1, K1, K1")
	p("\tVGATHERDPS (SI)(Z1*4), K1, Z0")
	p("\tCMPQ AX, $1")
	p("\tJNE store")
	p("\tVADDPS (DI), Z0, Z0")
	p("store:")
	p("\tVMOVUPS Z0, (DI)")
	p("\tADDQ $4, SI")
	p("\tADDQ R8, DI")
	p("\tDECQ CX")
	p("\tJNE loop")
	p("done:")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// ctStoreHead writes the start of ctStoreZ or ctStoreY, up to the first
// block of rows: DI = dst, SI = src, R8 = ldc and BX, DX, R14 = 3, 5 and 7
// ldc; R9 = mw·4 and R10, R11, R12 = 3, 5 and 7 times that; CX = rows,
// AX = acc, R13 = SI + 8·R9 (column 8 of the strip). Fewer than block rows
// left jump to tail.
func ctStoreHead(name string, block int) {
	// iota<block>: 0, 1, …, block-1, the gather's column numbers.
	for q := 0; q < block; q++ {
		p("DATA iota%d<>+%d(SB)/4, $%d", block, 4*q, q)
	}
	p("GLOBL iota%d<>(SB), RODATA|NOPTR, $%d", block, 4*block)
	p("")
	p("// func %s(dst unsafe.Pointer, ldc uintptr, src unsafe.Pointer, mw, rows, acc int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-48", name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ ldc+8(FP), R8")
	p("\tMOVQ src+16(FP), SI")
	p("\tMOVQ mw+24(FP), R9")
	p("\tSHLQ $2, R9")
	p("\tLEAQ (R9)(R9*2), R10")
	p("\tLEAQ (R9)(R9*4), R11")
	p("\tLEAQ (R10)(R9*4), R12")
	p("\tLEAQ (R8)(R8*2), BX")
	p("\tLEAQ (R8)(R8*4), DX")
	p("\tLEAQ (BX)(R8*4), R14")
	p("\tMOVQ rows+32(FP), CX")
	p("\tMOVQ acc+40(FP), AX")
	p("block:")
	p("\tCMPQ CX, $%d", block)
	p("\tJLT tail")
	p("\tLEAQ (SI)(R9*8), R13")
}

// ctStoreY is ctStore for AVX2: the same contract, with blocks of 8 rows
// transposed in registers as two 8×8 tiles (columns 0-7, then 8-15: 8
// loads, 24 shuffles and 8 stores each) and the last rows % 8 gathered.
func ctStoreY() {
	ctStoreHead("ctStoreY", 8)
	for h := 0; h < 2; h++ {
		b := "SI"
		if h == 1 {
			b = "R13"
		}
		src := []string{"(%s)", "(%s)(R9*1)", "(%s)(R9*2)", "(%s)(R10*1)", "(%s)(R9*4)", "(%s)(R11*1)", "(%s)(R10*2)", "(%s)(R12*1)"}
		for q := 0; q < 8; q++ {
			p("\tVMOVUPS "+src[q]+", Y%d", b, q)
		}
		// Y8+2g, Y9+2g: columns 2g, 2g+1 interleaved (rows 0,1,4,5 and
		// 2,3,6,7 by 128-bit lane).
		for g := 0; g < 4; g++ {
			p("\tVUNPCKLPS Y%d, Y%d, Y%d", 2*g+1, 2*g, 8+2*g)
			p("\tVUNPCKHPS Y%d, Y%d, Y%d", 2*g+1, 2*g, 9+2*g)
		}
		// Y(r) for r < 4: columns 0-3 of rows r | r+4; Y(4+r): columns 4-7.
		for hh := 0; hh < 2; hh++ {
			lo, hi := 8+4*hh, 10+4*hh
			p("\tVSHUFPS $0x44, Y%d, Y%d, Y%d", hi, lo, 4*hh+0)
			p("\tVSHUFPS $0xEE, Y%d, Y%d, Y%d", hi, lo, 4*hh+1)
			p("\tVSHUFPS $0x44, Y%d, Y%d, Y%d", hi+1, lo+1, 4*hh+2)
			p("\tVSHUFPS $0xEE, Y%d, Y%d, Y%d", hi+1, lo+1, 4*hh+3)
		}
		// Output row r in Y(8+r).
		for r := 0; r < 4; r++ {
			p("\tVPERM2F128 $0x20, Y%d, Y%d, Y%d", 4+r, r, 8+r)
			p("\tVPERM2F128 $0x31, Y%d, Y%d, Y%d", 4+r, r, 12+r)
		}
		dst := []string{"(DI)", "(DI)(R8*1)", "(DI)(R8*2)", "(DI)(BX*1)", "(DI)(R8*4)", "(DI)(DX*1)", "(DI)(BX*2)", "(DI)(R14*1)"}
		off := ""
		if h == 1 {
			off = "32"
		}
		p("\tTESTQ AX, AX")
		p("\tJEQ store%d", h)
		p("\tCMPQ AX, $2")
		p("\tJEQ stream%d", h)
		for r := 0; r < 8; r++ {
			p("\tVADDPS %s%s, Y%d, Y%d", off, dst[r], 8+r, 8+r)
		}
		p("store%d:", h)
		for r := 0; r < 8; r++ {
			p("\tVMOVUPS Y%d, %s%s", 8+r, off, dst[r])
		}
		p("\tJMP next%d", h)
		p("stream%d:", h)
		for r := 0; r < 8; r++ {
			p("\tVMOVNTPS Y%d, %s%s", 8+r, off, dst[r])
		}
		p("next%d:", h)
	}
	p("\tADDQ $32, SI")
	p("\tLEAQ (DI)(R8*8), DI")
	p("\tSUBQ $8, CX")
	p("\tJMP block")
	p("tail:")
	p("\tTESTQ CX, CX")
	p("\tJEQ done")
	p("\tMOVQ mw+24(FP), R9")
	p("\tMOVQ R9, X2")
	p("\tVPBROADCASTD X2, Y2")
	p("\tVPMULLD iota8<>(SB), Y2, Y1")
	p("\tVPSLLD $3, Y2, Y2")
	p("\tVPADDD Y2, Y1, Y3")
	p("loop:")
	p("\tVPCMPEQD Y4, Y4, Y4")
	p("\tVPCMPEQD Y5, Y5, Y5")
	p("\tVXORPS Y0, Y0, Y0")
	p("\tVXORPS Y6, Y6, Y6")
	p("\tVGATHERDPS Y4, (SI)(Y1*4), Y0")
	p("\tVGATHERDPS Y5, (SI)(Y3*4), Y6")
	p("\tCMPQ AX, $1")
	p("\tJNE tstore")
	p("\tVADDPS (DI), Y0, Y0")
	p("\tVADDPS 32(DI), Y6, Y6")
	p("tstore:")
	p("\tVMOVUPS Y0, (DI)")
	p("\tVMOVUPS Y6, 32(DI)")
	p("\tADDQ $4, SI")
	p("\tADDQ R8, DI")
	p("\tDECQ CX")
	p("\tJNE loop")
	p("done:")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// roundF32Y writes the AVX2 loop that rounds n float32s (n a multiple of
// 16; the loop takes 8 a step) to bf16 kept as float32 bits: u + 0x7fff +
// bit 16 of u, low half cleared (round to nearest even), and for NaNs
// u | 0x400000 with the low half cleared (made quiet), as F32ToBF16 does.
func roundF32Y() {
	p("DATA rnd7fff<>+0(SB)/4, $0x7fff")
	p("GLOBL rnd7fff<>(SB), RODATA|NOPTR, $4")
	p("DATA rndquiet<>+0(SB)/4, $0x400000")
	p("GLOBL rndquiet<>(SB), RODATA|NOPTR, $4")
	p("DATA rndhigh<>+0(SB)/4, $0xffff0000")
	p("GLOBL rndhigh<>(SB), RODATA|NOPTR, $4")
	p("DATA rndone<>+0(SB)/4, $1")
	p("GLOBL rndone<>(SB), RODATA|NOPTR, $4")
	p("")
	p("// func roundF32Y(dst *uint32, src *float32, n int)")
	p("TEXT ·roundF32Y(SB), NOSPLIT, $0-24")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("\tVPBROADCASTD rnd7fff<>(SB), Y8")
	p("\tVPBROADCASTD rndquiet<>(SB), Y9")
	p("\tVPBROADCASTD rndhigh<>(SB), Y10")
	p("\tVPBROADCASTD rndone<>(SB), Y11")
	p("\tTESTQ CX, CX")
	p("\tJEQ done")
	p("loop:")
	p("\tVMOVDQU (SI), Y0")
	p("\tVPSRLD $16, Y0, Y1")
	p("\tVPAND Y11, Y1, Y1")
	p("\tVPADDD Y0, Y1, Y1")
	p("\tVPADDD Y8, Y1, Y1")
	p("\tVPAND Y10, Y1, Y1")
	p("\tVCMPPS $3, Y0, Y0, Y2")
	p("\tVPOR Y9, Y0, Y3")
	p("\tVPAND Y10, Y3, Y3")
	p("\tVBLENDVPS Y2, Y3, Y1, Y1")
	p("\tVMOVDQU Y1, (DI)")
	p("\tADDQ $32, SI")
	p("\tADDQ $32, DI")
	p("\tSUBQ $8, CX")
	p("\tJNE loop")
	p("done:")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// roundBF16 writes the loop that rounds n float32s (n a multiple of 16) to
// bf16 with VCVTNEPS2BF16 (round to nearest even; AVX512_BF16, which the
// Go assembler does not know: EVEX.512.F3.0F38.W0 72 /r, ymm1 <- zmm0).
func roundBF16() {
	p("// func roundBF16Z(dst *uint16, src *float32, n int)")
	p("TEXT ·roundBF16Z(SB), NOSPLIT, $0-24")
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("\tTESTQ CX, CX")
	p("\tJEQ done")
	p("loop:")
	p("\tVMOVUPS (SI), Z0")
	p("\tBYTE $0x62; BYTE $0xF2; BYTE $0x7E; BYTE $0x48; BYTE $0x72; BYTE $0xC8 // VCVTNEPS2BF16 Z0, Y1")
	p("\tVMOVDQU Y1, (DI)")
	p("\tADDQ $64, SI")
	p("\tADDQ $32, DI")
	p("\tSUBQ $16, CX")
	p("\tJNE loop")
	p("done:")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// sfence orders the non-temporal stores before it (ctStore with acc = 2)
// before any later store, so that C is complete when a task ends.
func sfence() {
	p("// func sfence()")
	p("TEXT ·sfence(SB), NOSPLIT, $0-0")
	p("\tSFENCE")
	p("\tRET")
	p("")
}

func main() {
	p("// Code generated by kernels/internal/asmgen; DO NOT EDIT.")
	p("")
	p("//go:build !purego")
	p("")
	p("#include \"textflag.h\"")
	p("")
	for v := 1; v <= 4; v++ {
		for r := 1; r <= 6; r++ {
			kernel(avx512, "F32", r, v)
			kernel(avx512, "BF16", r, v)
		}
	}
	for v := 1; v <= 2; v++ {
		for r := 1; r <= 6; r++ {
			kernel(avx2, "F32", r, v)
		}
	}
	widen(avx512, "BF16")
	widen(avx512, "F16")
	widen(avx2, "BF16")
	widen(avx2, "F16")
	vecOps(avx512)
	vecOps(avx2)
	packRow(avx512)
	packRow(avx2)
	for _, k := range []string{"F32", "BF16", "F16"} {
		rows4(k)
		rows2x4(k)
	}
	ctStore()
	ctStoreY()
	roundF32Y()
	roundBF16()
	sfence()
	write("gemm_amd64.s")
	declarations()
	write("kernels_amd64.go")
	arm64()
}

// neonKernel writes an arm64 micro-kernel with R rows and V vectors of 4
// lanes: accumulators V0..V23, panel vectors V24..V27, broadcasts V28/V29.
// With acc set the accumulators start from C instead of zero.
func neonKernel(r, v int) {
	name := fmt.Sprintf("kF32NR%dV%d", r, v)
	p("// func %s(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-64", name)
	p("\tMOVD kc+0(FP), R0")
	p("\tMOVD bc+8(FP), R10")
	p("\tMOVD rs+16(FP), R2")
	p("\tMOVD ps+24(FP), R3")
	p("\tMOVD panel+32(FP), R4")
	p("\tMOVD c+40(FP), R5")
	p("\tMOVD ldc+48(FP), R6")
	p("\tMOVD acc+56(FP), R7")
	for i := 1; i < r; i++ {
		p("\tADD R2, R%d, R%d", 9+i, 10+i)
	}
	list := func(first, n int) string {
		s := "["
		for j := 0; j < n; j++ {
			if j > 0 {
				s += ", "
			}
			s += fmt.Sprintf("V%d.S4", first+j)
		}
		return s + "]"
	}
	p("\tCBZ R7, zero")
	p("\tMOVD R5, R8")
	for i := 0; i < r; i++ {
		p("\tVLD1 (R8), %s", list(i*v, v))
		if i+1 < r {
			p("\tADD R6, R8, R8")
		}
	}
	p("\tB start")
	p("zero:")
	for i := 0; i < r*v; i++ {
		p("\tVEOR V%d.B16, V%d.B16, V%d.B16", i, i, i)
	}
	p("start:")
	p("\tCBZ R0, store")
	p("loop:")
	p("\tVLD1.P %d(R4), %s", 16*v, list(24, v))
	for i := 0; i < r; i++ {
		bc := 28 + i%2
		p("\tVLD1R (R%d), [V%d.S4]", 10+i, bc)
		p("\tADD R3, R%d, R%d", 10+i, 10+i)
		for j := 0; j < v; j++ {
			p("\tVFMLA V%d.S4, V%d.S4, V%d.S4", 24+j, bc, i*v+j)
		}
	}
	p("\tSUBS $1, R0, R0")
	p("\tBNE loop")
	p("store:")
	for i := 0; i < r; i++ {
		p("\tVST1 %s, (R5)", list(i*v, v))
		if i+1 < r {
			p("\tADD R6, R5, R5")
		}
	}
	p("\tRET")
	p("")
}

func arm64() {
	p("// Code generated by kernels/internal/asmgen; DO NOT EDIT.")
	p("")
	p("//go:build !purego")
	p("")
	p("#include \"textflag.h\"")
	p("")
	for v := 1; v <= 4; v++ {
		for r := 1; r <= 6; r++ {
			neonKernel(r, v)
		}
	}
	// Widening loops over n (a multiple of 16) values.
	p("// func widenBF16N(dst *float32, src, pf *uint16, n int)")
	p("TEXT ·widenBF16N(SB), NOSPLIT, $0-32")
	p("\tMOVD dst+0(FP), R0")
	p("\tMOVD src+8(FP), R1")
	p("\tMOVD n+24(FP), R2")
	p("\tCBZ R2, done")
	p("loop:")
	p("\tVLD1.P 16(R1), [V0.H8]")
	p("\tVUSHLL $8, V0.H4, V1.S4")
	p("\tVUSHLL2 $8, V0.H8, V2.S4")
	p("\tVSHL $8, V1.S4, V1.S4")
	p("\tVSHL $8, V2.S4, V2.S4")
	p("\tVST1.P [V1.S4, V2.S4], 32(R0)")
	p("\tSUBS $8, R2, R2")
	p("\tBNE loop")
	p("done:")
	p("\tRET")
	p("")
	p("// func widenF16N(dst *float32, src, pf *uint16, n int)")
	p("TEXT ·widenF16N(SB), NOSPLIT, $0-32")
	p("\tMOVD dst+0(FP), R0")
	p("\tMOVD src+8(FP), R1")
	p("\tMOVD n+24(FP), R2")
	p("\tCBZ R2, done")
	p("loop:")
	p("\tVLD1.P 16(R1), [V0.H8]")
	p("\tWORD $0x0E217801 // FCVTL V1.S4, V0.H4")
	p("\tWORD $0x4E217802 // FCVTL2 V2.S4, V0.H8")
	p("\tVST1.P [V1.S4, V2.S4], 32(R0)")
	p("\tSUBS $8, R2, R2")
	p("\tBNE loop")
	p("done:")
	p("\tRET")
	p("")
	write("gemm_arm64.s")
	p("// Code generated by kernels/internal/asmgen; DO NOT EDIT.")
	p("")
	p("//go:build !purego")
	p("")
	p("package kernels")
	p("")
	p("import \"unsafe\"")
	p("")
	for v := 1; v <= 4; v++ {
		for r := 1; r <= 6; r++ {
			p("//go:noescape")
			p("func kF32NR%dV%d(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int)", r, v)
			p("")
		}
	}
	p("var kernF32N = [5][7]kernFn{")
	for v := 1; v <= 4; v++ {
		fmt.Fprintf(&out, "\t%d: {", v)
		for r := 1; r <= 6; r++ {
			fmt.Fprintf(&out, "%d: kF32NR%dV%d, ", r, r, v)
		}
		p("},")
	}
	p("}")
	p("")
	for _, w := range []string{"widenBF16N", "widenF16N"} {
		p("//go:noescape")
		p("func %s(dst *float32, src, pf *uint16, n int)", w)
		p("")
	}
	write("kernels_arm64.go")
}

func write(name string) {
	b := out.Bytes()
	if strings.HasSuffix(name, ".go") {
		var err error
		if b, err = format.Source(b); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out.Reset()
}

// declarations writes the Go declarations of the generated functions and
// the tables that index the micro-kernels by [V][R].
func declarations() {
	p("// Code generated by kernels/internal/asmgen; DO NOT EDIT.")
	p("")
	p("//go:build !purego")
	p("")
	p("package kernels")
	p("")
	p("import \"unsafe\"")
	p("")
	type set struct {
		op, x string
		vmax  int
	}
	for _, s := range []set{{"F32", "Z", 4}, {"BF16", "Z", 4}, {"F32", "Y", 2}} {
		for v := 1; v <= s.vmax; v++ {
			for r := 1; r <= 6; r++ {
				p("//go:noescape")
				p("func k%s%sR%dV%d(kc int, bc unsafe.Pointer, rs, ps uintptr, panel, c unsafe.Pointer, ldc uintptr, acc int)", s.op, s.x, r, v)
				p("")
			}
		}
		p("var kern%s%s = [5][7]kernFn{", s.op, s.x)
		for v := 1; v <= s.vmax; v++ {
			fmt.Fprintf(&out, "\t%d: {", v)
			for r := 1; r <= 6; r++ {
				fmt.Fprintf(&out, "%d: k%s%sR%dV%d, ", r, s.op, s.x, r, v)
			}
			p("},")
		}
		p("}")
		p("")
	}
	for _, w := range []string{"widenBF16Z", "widenF16Z", "widenBF16Y", "widenF16Y"} {
		p("//go:noescape")
		p("func %s(dst *float32, src, pf *uint16, n int)", w)
		p("")
	}
	for _, k := range []string{"F32", "BF16", "F16"} {
		p("//go:noescape")
		p("func rows4%sZ(a0, a1, a2, a3 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32)", k)
		p("")
		p("//go:noescape")
		p("func rows2x4%sY(a0, a1 *float32, b0, b1, b2, b3 unsafe.Pointer, k int, out *float32)", k)
		p("")
	}
	p("//go:noescape")
	p("func roundBF16Z(dst *uint16, src *float32, n int)")
	p("")
	p("func sfence()")
	p("")
	p("//go:noescape")
	p("func ctStoreY(dst unsafe.Pointer, ldc uintptr, src unsafe.Pointer, mw, rows, acc int)")
	p("")
	p("//go:noescape")
	p("func roundF32Y(dst *uint32, src *float32, n int)")
	p("")
	p("//go:noescape")
	p("func ctStoreZ(dst unsafe.Pointer, ldc uintptr, src unsafe.Pointer, mw, rows, acc int)")
	p("")
	for _, x := range []string{"Z", "Y"} {
		p("//go:noescape")
		p("func dot%s(x, y *float32, n int) float32", x)
		p("")
		p("//go:noescape")
		p("func axpy%s(alpha float32, x, y *float32, n int)", x)
		p("")
		p("//go:noescape")
		p("func scale%s(alpha float32, x *float32, n int)", x)
		p("")
		p("//go:noescape")
		p("func packRow%s(dst, src, pf *float32, npan, w int, pstride uintptr)", x)
		p("")
	}
}
