//go:build !purego

#include "textflag.h"

// 4-bit weight kernels (see q4.go). Common registers:
//	AX absmax, BX code, CX shift (log2 blocksize), DX packed (byte e/2),
//	R12 mid (rows left in the dequantisers), R14 element index e, R11 end, R13 end of the current block's
//	run, R15 block index.
// Per block the 16 values code[i]·absmax are rounded to f16 (mid 2: bf16
// rounding for mid 1 is the same as the final one) and to bf16 (nearest
// even, by integer arithmetic so that subnormals are kept).

// BLOCKSTART: R15 = e >> shift, R13 = min((R15+1) << shift, R11).
#define BLOCKSTART \
	MOVQ R14, R15; \
	SHRQ CX, R15; \
	LEAQ 1(R15), R13; \
	SHLQ CX, R13; \
	CMPQ R13, R11; \
	CMOVQGT R11, R13

// ZCONST: Z26 = 0x000f0000, Z27 = 0xffff0000, Z28 = 1, Z29 = 0x7fff, Z30
// = code.
#define ZCONST \
	MOVL $0x000f0000, R8; \
	VPBROADCASTD R8, Z26; \
	MOVL $0xffff0000, R8; \
	VPBROADCASTD R8, Z27; \
	MOVL $1, R8; \
	VPBROADCASTD R8, Z28; \
	MOVL $0x7fff, R8; \
	VPBROADCASTD R8, Z29; \
	VMOVUPS (BX), Z30

// ZPRODUCT: Z20 = code · absmax[R15].
#define ZPRODUCT \
	VBROADCASTSS (AX)(R15*4), Z20; \
	VMULPS Z30, Z20, Z20

// ZF16: Z20 rounded to f16 and back.
#define ZF16 \
	VCVTPS2PH $0, Z20, Y21; \
	VCVTPH2PS Y21, Z20

// ZBF16: Z20 rounded to bf16, low 16 bits zero.
#define ZBF16 \
	VPSRLD $16, Z20, Z21; \
	VPANDD Z28, Z21, Z21; \
	VPADDD Z29, Z20, Z20; \
	VPADDD Z21, Z20, Z20; \
	VPANDD Z27, Z20, Z20

// ZWORDS: from 16 bytes at DX, Z10 = the 32 bf16 values of their nibbles
// in element order (table in Y31): word 2i of the index is byte i >> 4,
// word 2i+1 byte i & 15 (VPTERNLOGD 0xf8: Z11 | Z10 & Z26).
#define ZWORDS \
	VPMOVZXBD (DX), Z10; \
	VPSRLD $4, Z10, Z11; \
	VPSLLD $16, Z10, Z10; \
	VPTERNLOGD $0xf8, Z26, Z10, Z11; \
	VPERMW Z31, Z11, Z10

// HSUMZ: x = the sum of z's 16 lanes (clobbers Z13).
#define HSUMZ(z, y, x) \
	VEXTRACTF64X4 $1, z, Y13; \
	VADDPS Y13, y, y; \
	VEXTRACTF128 $1, y, X13; \
	VADDPS X13, x, x; \
	VMOVHLPS x, x, X13; \
	VADDPS X13, x, x; \
	VSHUFPS $1, x, x, X13; \
	VADDSS X13, x, x

// func q4BF16Z(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
//
// Rows rows of n elements, ldw apart, from e0 on; packed is element 0.
TEXT ·q4BF16Z(SB), NOSPLIT, $0-88
	MOVQ dst+0(FP), SI
	MOVQ absmax+16(FP), AX
	MOVQ code+24(FP), BX
	MOVQ e0+32(FP), DI
	MOVQ rows+48(FP), R12
	MOVQ pfd+64(FP), R10
	MOVQ R10, R9
	SHRQ $1, R9
	MOVQ shift+72(FP), CX
	ZCONST
	TESTQ R12, R12
	JEQ bdone
bblockrow:
	MOVQ DI, R14
	MOVQ n+40(FP), R11
	ADDQ R14, R11
	MOVQ R14, DX
	SHRQ $1, DX
	ADDQ packed+8(FP), DX
bblock:
	CMPQ R14, R11
	JGE bdonenext
	BLOCKSTART
	LEAQ (R14)(R10*1), R8
	SHRQ CX, R8
	PREFETCHT0 (AX)(R8*4)
	ZPRODUCT
	CMPQ mid+80(FP), $2
	JNE bround
	ZF16
bround:
	ZBF16
	VPSRLD $16, Z20, Z20
	VPMOVDW Z20, Y31
bchunk:
	ZWORDS
	VMOVDQU32 Z10, (SI)
	PREFETCHT0 (DX)(R9*1)
	ADDQ $16, DX
	ADDQ $64, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT bchunk
	JMP bblock
bdonenext:
	ADDQ ldw+56(FP), DI
	DECQ R12
	JNZ bblockrow
bdone:
	VZEROUPPER
	RET

// func q4F32Z(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
//
// Rows rows of n elements, ldw apart, from e0 on; packed is element 0.
TEXT ·q4F32Z(SB), NOSPLIT, $0-88
	MOVQ dst+0(FP), SI
	MOVQ absmax+16(FP), AX
	MOVQ code+24(FP), BX
	MOVQ e0+32(FP), DI
	MOVQ rows+48(FP), R12
	MOVQ pfd+64(FP), R10
	MOVQ R10, R9
	SHRQ $1, R9
	MOVQ shift+72(FP), CX
	ZCONST
	TESTQ R12, R12
	JEQ fdone
fblockrow:
	MOVQ DI, R14
	MOVQ n+40(FP), R11
	ADDQ R14, R11
	MOVQ R14, DX
	SHRQ $1, DX
	ADDQ packed+8(FP), DX
fblock:
	CMPQ R14, R11
	JGE fdonenext
	BLOCKSTART
	LEAQ (R14)(R10*1), R8
	SHRQ CX, R8
	PREFETCHT0 (AX)(R8*4)
	ZPRODUCT
	CMPQ mid+80(FP), $2
	JNE fround
	ZF16
fround:
	ZBF16
	VPSRLD $16, Z20, Z20
	VPMOVDW Z20, Y31
fchunk:
	ZWORDS
	VEXTRACTI64X4 $1, Z10, Y12
	VPMOVZXWD Y10, Z11
	VPSLLD $16, Z11, Z11
	VMOVUPS Z11, (SI)
	VPMOVZXWD Y12, Z12
	VPSLLD $16, Z12, Z12
	VMOVUPS Z12, 64(SI)
	PREFETCHT0 (DX)(R9*1)
	ADDQ $16, DX
	ADDQ $128, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT fchunk
	JMP fblock
fdonenext:
	ADDQ ldw+56(FP), DI
	DECQ R12
	JNZ fblockrow
fdone:
	VZEROUPPER
	RET

// func q4Dot1Z(a *float32, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4Dot1Z(SB), NOSPLIT, $0-80
	MOVQ a+0(FP), SI
	MOVQ packed+16(FP), DX
	MOVQ absmax+24(FP), AX
	MOVQ code+32(FP), BX
	MOVQ e0+40(FP), R14
	MOVQ k+48(FP), R11
	MOVQ shift+56(FP), CX
	MOVQ mid+64(FP), R12
	MOVQ out+72(FP), DI
	ADDQ R14, R11
	ZCONST
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
d1block:
	CMPQ R14, R11
	JGE d1done
	BLOCKSTART
	PREFETCHT0 128(AX)(R15*4)
	ZPRODUCT
	CMPQ R12, $2
	JNE d1round
	ZF16
d1round:
	ZBF16
	VMOVAPS Z20, Z31
	// Two chunks at a time while the block has them.
	LEAQ 64(R14), R8
	CMPQ R8, R13
	JGT d1chunk
d1pair:
	PREFETCHT0 1024(DX)
	VPMOVZXBD (DX), Z10
	VPMOVZXBD 16(DX), Z12
	VPSRLD $4, Z10, Z11
	VPSRLD $4, Z12, Z14
	VPERMPS Z31, Z11, Z11
	VPERMPS Z31, Z10, Z10
	VPERMPS Z31, Z14, Z14
	VPERMPS Z31, Z12, Z12
	VFMADD231PS (SI), Z11, Z0
	VFMADD231PS 64(SI), Z10, Z1
	VFMADD231PS 128(SI), Z14, Z2
	VFMADD231PS 192(SI), Z12, Z3
	ADDQ $32, DX
	ADDQ $256, SI
	ADDQ $64, R14
	LEAQ 64(R14), R8
	CMPQ R8, R13
	JLE d1pair
	CMPQ R14, R13
	JGE d1block
d1chunk:
	VPMOVZXBD (DX), Z10
	VPSRLD $4, Z10, Z11
	VPERMPS Z31, Z11, Z11
	VPERMPS Z31, Z10, Z10
	VFMADD231PS (SI), Z11, Z0
	VFMADD231PS 64(SI), Z10, Z1
	ADDQ $16, DX
	ADDQ $128, SI
	ADDQ $32, R14
	JMP d1block
d1done:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	HSUMZ(Z0, Y0, X0)
	MOVSS X0, (DI)
	VZEROUPPER
	RET

// func q4Dot4Z(a *float32, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4Dot4Z(SB), NOSPLIT, $0-80
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), R9
	MOVQ packed+16(FP), DX
	MOVQ absmax+24(FP), AX
	MOVQ code+32(FP), BX
	MOVQ e0+40(FP), R14
	MOVQ k+48(FP), R11
	MOVQ shift+56(FP), CX
	MOVQ mid+64(FP), R12
	MOVQ out+72(FP), DI
	LEAQ (R9)(R9*2), R10
	ADDQ R14, R11
	ZCONST
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
d4block:
	CMPQ R14, R11
	JGE d4done
	BLOCKSTART
	PREFETCHT0 128(AX)(R15*4)
	ZPRODUCT
	CMPQ R12, $2
	JNE d4round
	ZF16
d4round:
	ZBF16
	VMOVAPS Z20, Z31
d4chunk:
	PREFETCHT0 1024(DX)
	VPMOVZXBD (DX), Z10
	VPSRLD $4, Z10, Z11
	VPERMPS Z31, Z11, Z11
	VPERMPS Z31, Z10, Z10
	VFMADD231PS (SI), Z11, Z0
	VFMADD231PS 64(SI), Z10, Z1
	VFMADD231PS (SI)(R9*1), Z11, Z2
	VFMADD231PS 64(SI)(R9*1), Z10, Z3
	VFMADD231PS (SI)(R9*2), Z11, Z4
	VFMADD231PS 64(SI)(R9*2), Z10, Z5
	VFMADD231PS (SI)(R10*1), Z11, Z6
	VFMADD231PS 64(SI)(R10*1), Z10, Z7
	ADDQ $16, DX
	ADDQ $128, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT d4chunk
	JMP d4block
d4done:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z5, Z4, Z4
	VADDPS Z7, Z6, Z6
	HSUMZ(Z0, Y0, X0)
	HSUMZ(Z2, Y2, X2)
	HSUMZ(Z4, Y4, X4)
	HSUMZ(Z6, Y6, X6)
	MOVSS X0, (DI)
	MOVSS X2, 4(DI)
	MOVSS X4, 8(DI)
	MOVSS X6, 12(DI)
	VZEROUPPER
	RET

// ZWORDS16: ZWORDS for the 16 bytes at 16(DX), into Z12 (clobbers Z13).
#define ZWORDS16 \
	VPMOVZXBD 16(DX), Z12; \
	VPSRLD $4, Z12, Z13; \
	VPSLLD $16, Z12, Z12; \
	VPTERNLOGD $0xf8, Z26, Z12, Z13; \
	VPERMW Z31, Z13, Z12

// ZTABLEW: Y31 = the bf16 values of block R15 (words).
#define ZTABLEW \
	VPSRLD $16, Z20, Z20; \
	VPMOVDW Z20, Y31

// The small-m kernels for CPUs with AVX512_BF16: A as bf16 in natural
// order (rows lda bytes apart), the weight as bf16 words (ZWORDS), one
// VDPBF16PS per 32 elements and row, as GemmNTBF16Fast computes (the Go
// assembler lacks VDPBF16PS: BYTE encodings).

// func q4DotB1Z(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4DotB1Z(SB), NOSPLIT, $0-80
	MOVQ a+0(FP), SI
	MOVQ packed+16(FP), DX
	MOVQ absmax+24(FP), AX
	MOVQ code+32(FP), BX
	MOVQ e0+40(FP), R14
	MOVQ k+48(FP), R11
	MOVQ shift+56(FP), CX
	MOVQ mid+64(FP), R12
	MOVQ out+72(FP), DI
	ADDQ R14, R11
	ZCONST
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
e1block:
	CMPQ R14, R11
	JGE e1done
	BLOCKSTART
	PREFETCHT0 128(AX)(R15*4)
	ZPRODUCT
	CMPQ R12, $2
	JNE e1round
	ZF16
e1round:
	ZBF16
	ZTABLEW
	LEAQ 64(R14), R8
	CMPQ R8, R13
	JGT e1chunk
e1pair:
	PREFETCHT0 1024(DX)
	ZWORDS
	ZWORDS16
	BYTE $0x62; BYTE $0xF2; BYTE $0x2E; BYTE $0x48; BYTE $0x52; BYTE $0x06 // VDPBF16PS (SI), Z10, Z0
	BYTE $0x62; BYTE $0xF2; BYTE $0x1E; BYTE $0x48; BYTE $0x52; BYTE $0x4E; BYTE $0x01 // VDPBF16PS 64(SI), Z12, Z1
	ADDQ $32, DX
	ADDQ $128, SI
	ADDQ $64, R14
	LEAQ 64(R14), R8
	CMPQ R8, R13
	JLE e1pair
	CMPQ R14, R13
	JGE e1block
e1chunk:
	ZWORDS
	BYTE $0x62; BYTE $0xF2; BYTE $0x2E; BYTE $0x48; BYTE $0x52; BYTE $0x06 // VDPBF16PS (SI), Z10, Z0
	ADDQ $16, DX
	ADDQ $64, SI
	ADDQ $32, R14
	JMP e1block
e1done:
	VADDPS Z1, Z0, Z0
	HSUMZ(Z0, Y0, X0)
	MOVSS X0, (DI)
	VZEROUPPER
	RET

// func q4DotB4Z(a unsafe.Pointer, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4DotB4Z(SB), NOSPLIT, $0-80
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), R9
	MOVQ packed+16(FP), DX
	MOVQ absmax+24(FP), AX
	MOVQ code+32(FP), BX
	MOVQ e0+40(FP), R14
	MOVQ k+48(FP), R11
	MOVQ shift+56(FP), CX
	MOVQ mid+64(FP), R12
	MOVQ out+72(FP), DI
	LEAQ (R9)(R9*2), R10
	ADDQ R14, R11
	ZCONST
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
e4block:
	CMPQ R14, R11
	JGE e4done
	BLOCKSTART
	PREFETCHT0 128(AX)(R15*4)
	ZPRODUCT
	CMPQ R12, $2
	JNE e4round
	ZF16
e4round:
	ZBF16
	ZTABLEW
e4chunk:
	PREFETCHT0 1024(DX)
	ZWORDS
	BYTE $0x62; BYTE $0xF2; BYTE $0x2E; BYTE $0x48; BYTE $0x52; BYTE $0x06 // VDPBF16PS (SI), Z10, Z0
	BYTE $0x62; BYTE $0xB2; BYTE $0x2E; BYTE $0x48; BYTE $0x52; BYTE $0x0C; BYTE $0x0E // VDPBF16PS (SI)(R9*1), Z10, Z1
	BYTE $0x62; BYTE $0xB2; BYTE $0x2E; BYTE $0x48; BYTE $0x52; BYTE $0x14; BYTE $0x4E // VDPBF16PS (SI)(R9*2), Z10, Z2
	BYTE $0x62; BYTE $0xB2; BYTE $0x2E; BYTE $0x48; BYTE $0x52; BYTE $0x1C; BYTE $0x16 // VDPBF16PS (SI)(R10*1), Z10, Z3
	ADDQ $16, DX
	ADDQ $64, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT e4chunk
	JMP e4block
e4done:
	HSUMZ(Z0, Y0, X0)
	HSUMZ(Z1, Y1, X1)
	HSUMZ(Z2, Y2, X2)
	HSUMZ(Z3, Y3, X3)
	MOVSS X0, (DI)
	MOVSS X1, 4(DI)
	MOVSS X2, 8(DI)
	MOVSS X3, 12(DI)
	VZEROUPPER
	RET

// ---------------------------------------------------------------- AVX2
// The 16 values are two tables of 8 (Y14 codes 0-7, Y15 codes 8-15); a
// lookup is two VPERMPS and a blend on bit 3 of the index.

// YTABLE: Y14, Y15 = the rounded values of block R15 (clobbers Y4, Y5).
// Constants: Y9 = 1, Y10 = 0x7fff, Y11 = 0xffff0000.
#define YROUND(y) \
	VPSRLD $16, y, Y5; \
	VPAND Y9, Y5, Y5; \
	VPADDD Y10, y, y; \
	VPADDD Y5, y, y; \
	VPAND Y11, y, y

#define YF16(y) \
	VCVTPS2PH $0, y, X5; \
	VCVTPH2PS X5, y

#define YCONST \
	MOVL $1, R8; \
	MOVQ R8, X9; \
	VPBROADCASTD X9, Y9; \
	MOVL $0x7fff, R8; \
	MOVQ R8, X10; \
	VPBROADCASTD X10, Y10; \
	MOVL $0xffff0000, R8; \
	MOVQ R8, X11; \
	VPBROADCASTD X11, Y11

// YLOOK: d = table[idx] for 8 dword indices (bit 3 picks Y15); clobbers
// t.
#define YLOOK(idx, d, t) \
	VPERMPS Y15, idx, t; \
	VPERMPS Y14, idx, d; \
	VPSLLD $28, idx, idx; \
	VBLENDVPS idx, t, d, d

// func q4F32Y(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
//
// Rows rows of n elements, ldw apart, from e0 on; packed is element 0.
TEXT ·q4F32Y(SB), NOSPLIT, $0-88
	MOVQ dst+0(FP), SI
	MOVQ absmax+16(FP), AX
	MOVQ code+24(FP), BX
	MOVQ e0+32(FP), DI
	MOVQ rows+48(FP), R12
	MOVQ pfd+64(FP), R10
	MOVQ R10, R9
	SHRQ $1, R9
	MOVQ shift+72(FP), CX
	YCONST
	TESTQ R12, R12
	JEQ yfdone
yfblockrow:
	MOVQ DI, R14
	MOVQ n+40(FP), R11
	ADDQ R14, R11
	MOVQ R14, DX
	SHRQ $1, DX
	ADDQ packed+8(FP), DX
yfblock:
	CMPQ R14, R11
	JGE yfdonenext
	BLOCKSTART
	LEAQ (R14)(R10*1), R8
	SHRQ CX, R8
	PREFETCHT0 (AX)(R8*4)
	VBROADCASTSS (AX)(R15*4), Y4
	VMULPS (BX), Y4, Y14
	VMULPS 32(BX), Y4, Y15
	CMPQ mid+80(FP), $2
	JNE yfround
	YF16(Y14)
	YF16(Y15)
yfround:
	YROUND(Y14)
	YROUND(Y15)
yfchunk:
	// 8 elements per 4 bytes: qword i = byte i, made into the dword
	// indices (hi, lo).
	VPMOVZXBQ (DX), Y0
	VPMOVZXBQ 4(DX), Y1
	VPMOVZXBQ 8(DX), Y2
	VPMOVZXBQ 12(DX), Y3
	VPSRLQ $4, Y0, Y4
	VPSLLQ $32, Y0, Y0
	VPOR Y4, Y0, Y0
	VPSRLQ $4, Y1, Y4
	VPSLLQ $32, Y1, Y1
	VPOR Y4, Y1, Y1
	VPSRLQ $4, Y2, Y4
	VPSLLQ $32, Y2, Y2
	VPOR Y4, Y2, Y2
	VPSRLQ $4, Y3, Y4
	VPSLLQ $32, Y3, Y3
	VPOR Y4, Y3, Y3
	YLOOK(Y0, Y4, Y8)
	YLOOK(Y1, Y5, Y8)
	YLOOK(Y2, Y6, Y8)
	YLOOK(Y3, Y7, Y8)
	VMOVUPS Y4, (SI)
	VMOVUPS Y5, 32(SI)
	VMOVUPS Y6, 64(SI)
	VMOVUPS Y7, 96(SI)
	PREFETCHT0 (DX)(R9*1)
	ADDQ $16, DX
	ADDQ $128, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT yfchunk
	JMP yfblock
yfdonenext:
	ADDQ ldw+56(FP), DI
	DECQ R12
	JNZ yfblockrow
yfdone:
	VZEROUPPER
	RET

// func q4BF16Y(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
//
// Rows rows of n elements, ldw apart, from e0 on; packed is element 0.
TEXT ·q4BF16Y(SB), NOSPLIT, $0-88
	MOVQ dst+0(FP), SI
	MOVQ absmax+16(FP), AX
	MOVQ code+24(FP), BX
	MOVQ e0+32(FP), DI
	MOVQ rows+48(FP), R12
	MOVQ pfd+64(FP), R10
	MOVQ R10, R9
	SHRQ $1, R9
	MOVQ shift+72(FP), CX
	YCONST
	TESTQ R12, R12
	JEQ ybdone
ybblockrow:
	MOVQ DI, R14
	MOVQ n+40(FP), R11
	ADDQ R14, R11
	MOVQ R14, DX
	SHRQ $1, DX
	ADDQ packed+8(FP), DX
ybblock:
	CMPQ R14, R11
	JGE ybdonenext
	BLOCKSTART
	LEAQ (R14)(R10*1), R8
	SHRQ CX, R8
	PREFETCHT0 (AX)(R8*4)
	VBROADCASTSS (AX)(R15*4), Y4
	VMULPS (BX), Y4, Y14
	VMULPS 32(BX), Y4, Y15
	CMPQ mid+80(FP), $2
	JNE ybround
	YF16(Y14)
	YF16(Y15)
ybround:
	YROUND(Y14)
	YROUND(Y15)
ybchunk:
	// 8 elements per 4 bytes: qword i = byte i, made into the dword
	// indices (hi, lo).
	VPMOVZXBQ (DX), Y0
	VPMOVZXBQ 4(DX), Y1
	VPMOVZXBQ 8(DX), Y2
	VPMOVZXBQ 12(DX), Y3
	VPSRLQ $4, Y0, Y4
	VPSLLQ $32, Y0, Y0
	VPOR Y4, Y0, Y0
	VPSRLQ $4, Y1, Y4
	VPSLLQ $32, Y1, Y1
	VPOR Y4, Y1, Y1
	VPSRLQ $4, Y2, Y4
	VPSLLQ $32, Y2, Y2
	VPOR Y4, Y2, Y2
	VPSRLQ $4, Y3, Y4
	VPSLLQ $32, Y3, Y3
	VPOR Y4, Y3, Y3
	YLOOK(Y0, Y4, Y8)
	YLOOK(Y1, Y5, Y8)
	YLOOK(Y2, Y6, Y8)
	YLOOK(Y3, Y7, Y8)
	VPSRLD $16, Y4, Y4
	VPSRLD $16, Y5, Y5
	VPSRLD $16, Y6, Y6
	VPSRLD $16, Y7, Y7
	VPACKUSDW Y5, Y4, Y4
	VPACKUSDW Y7, Y6, Y6
	VPERMQ $0xd8, Y4, Y4
	VPERMQ $0xd8, Y6, Y6
	VMOVDQU Y4, (SI)
	VMOVDQU Y6, 32(SI)
	PREFETCHT0 (DX)(R9*1)
	ADDQ $16, DX
	ADDQ $64, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT ybchunk
	JMP ybblock
ybdonenext:
	ADDQ ldw+56(FP), DI
	DECQ R12
	JNZ ybblockrow
ybdone:
	VZEROUPPER
	RET

// HSUMY: x = the sum of y's 8 lanes (clobbers X13).
#define HSUMY(y, x) \
	VEXTRACTF128 $1, y, X13; \
	VADDPS X13, x, x; \
	VMOVHLPS x, x, X13; \
	VADDPS X13, x, x; \
	VSHUFPS $1, x, x, X13; \
	VADDSS X13, x, x

// func q4Dot1Y(a *float32, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4Dot1Y(SB), NOSPLIT, $0-80
	MOVQ a+0(FP), SI
	MOVQ packed+16(FP), DX
	MOVQ absmax+24(FP), AX
	MOVQ code+32(FP), BX
	MOVQ e0+40(FP), R14
	MOVQ k+48(FP), R11
	MOVQ shift+56(FP), CX
	MOVQ mid+64(FP), R12
	MOVQ out+72(FP), DI
	ADDQ R14, R11
	YCONST
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
y1block:
	CMPQ R14, R11
	JGE y1done
	BLOCKSTART
	PREFETCHT0 128(AX)(R15*4)
	VBROADCASTSS (AX)(R15*4), Y4
	VMULPS (BX), Y4, Y14
	VMULPS 32(BX), Y4, Y15
	CMPQ R12, $2
	JNE y1round
	YF16(Y14)
	YF16(Y15)
y1round:
	YROUND(Y14)
	YROUND(Y15)
y1chunk:
	PREFETCHT0 1024(DX)
	VPMOVZXBD (DX), Y4
	VPMOVZXBD 8(DX), Y6
	VPSRLD $4, Y4, Y5
	VPSRLD $4, Y6, Y7
	YLOOK(Y5, Y12, Y8)
	VFMADD231PS (SI), Y12, Y0
	YLOOK(Y7, Y12, Y8)
	VFMADD231PS 32(SI), Y12, Y1
	YLOOK(Y4, Y12, Y8)
	VFMADD231PS 64(SI), Y12, Y2
	YLOOK(Y6, Y12, Y8)
	VFMADD231PS 96(SI), Y12, Y3
	ADDQ $16, DX
	ADDQ $128, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT y1chunk
	JMP y1block
y1done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUMY(Y0, X0)
	MOVSS X0, (DI)
	VZEROUPPER
	RET

// func q4Dot4Y(a *float32, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4Dot4Y(SB), NOSPLIT, $0-80
	MOVQ a+0(FP), SI
	MOVQ lda+8(FP), R9
	MOVQ packed+16(FP), DX
	MOVQ absmax+24(FP), AX
	MOVQ code+32(FP), BX
	MOVQ e0+40(FP), R14
	MOVQ k+48(FP), R11
	MOVQ shift+56(FP), CX
	MOVQ mid+64(FP), R12
	MOVQ out+72(FP), DI
	LEAQ (R9)(R9*2), R10
	ADDQ R14, R11
	YCONST
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
y4block:
	CMPQ R14, R11
	JGE y4done
	BLOCKSTART
	PREFETCHT0 128(AX)(R15*4)
	VBROADCASTSS (AX)(R15*4), Y4
	VMULPS (BX), Y4, Y14
	VMULPS 32(BX), Y4, Y15
	CMPQ R12, $2
	JNE y4round
	YF16(Y14)
	YF16(Y15)
y4round:
	YROUND(Y14)
	YROUND(Y15)
y4chunk:
	PREFETCHT0 1024(DX)
	VPMOVZXBD (DX), Y4
	VPSRLD $4, Y4, Y5
	YLOOK(Y5, Y12, Y8)
	VFMADD231PS (SI), Y12, Y0
	VFMADD231PS (SI)(R9*1), Y12, Y1
	VFMADD231PS (SI)(R9*2), Y12, Y2
	VFMADD231PS (SI)(R10*1), Y12, Y3
	YLOOK(Y4, Y12, Y8)
	VFMADD231PS 64(SI), Y12, Y0
	VFMADD231PS 64(SI)(R9*1), Y12, Y1
	VFMADD231PS 64(SI)(R9*2), Y12, Y2
	VFMADD231PS 64(SI)(R10*1), Y12, Y3
	VPMOVZXBD 8(DX), Y4
	VPSRLD $4, Y4, Y5
	YLOOK(Y5, Y12, Y8)
	VFMADD231PS 32(SI), Y12, Y0
	VFMADD231PS 32(SI)(R9*1), Y12, Y1
	VFMADD231PS 32(SI)(R9*2), Y12, Y2
	VFMADD231PS 32(SI)(R10*1), Y12, Y3
	YLOOK(Y4, Y12, Y8)
	VFMADD231PS 96(SI), Y12, Y0
	VFMADD231PS 96(SI)(R9*1), Y12, Y1
	VFMADD231PS 96(SI)(R9*2), Y12, Y2
	VFMADD231PS 96(SI)(R10*1), Y12, Y3
	ADDQ $16, DX
	ADDQ $128, SI
	ADDQ $32, R14
	CMPQ R14, R13
	JLT y4chunk
	JMP y4block
y4done:
	HSUMY(Y0, X0)
	HSUMY(Y1, X1)
	HSUMY(Y2, X2)
	HSUMY(Y3, X3)
	MOVSS X0, (DI)
	MOVSS X1, 4(DI)
	MOVSS X2, 8(DI)
	MOVSS X3, 12(DI)
	VZEROUPPER
	RET
