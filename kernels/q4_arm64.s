//go:build !purego

#include "textflag.h"

// 4-bit weight kernels for NEON (see q4.go). Instructions the Go assembler
// lacks are WORD encodings, each with its GNU form in the comment.
//
// Registers: R0 dst or A', R1 packed, R2 absmax, R4 element index e, R5
// end, R6 prefetch distance (elements), R7 shift, R8 mid, R9 block, R10
// end of the block's run. The 16 values of a block are held as two byte
// planes (V16 the low, V17 the high bytes of their bf16 bits), looked up
// with TBL and zipped back to bf16 and then to f32. Constants: V20-V23
// code, V24 0x7fff, V25 1 (words), V27 0x0f (bytes), V28 zero.

#define SETUP \
	VLD1 (R3), [V20.S4, V21.S4, V22.S4, V23.S4]; \
	MOVW $0x7fff, R11; \
	VDUP R11, V24.S4; \
	MOVW $1, R11; \
	VDUP R11, V25.S4; \
	MOVW $15, R11; \
	VDUP R11, V27.B16; \
	VEOR V28.B16, V28.B16, V28.B16

// BLOCKSTART: R9 = e >> shift, R10 = min((R9+1) << shift, R5).
#define BLOCKSTART \
	LSR R7, R4, R9; \
	ADD $1, R9, R10; \
	LSL R7, R10, R10; \
	CMP R5, R10; \
	CSEL GT, R5, R10, R10

// PRODUCT: V4-V7 = code · absmax[R9].
#define PRODUCT \
	ADD R9<<2, R2, R11; \
	FMOVS (R11), F26; \
	WORD $0x4f9a9284 /* fmul v4.4s, v20.4s, v26.s[0] */; \
	WORD $0x4f9a92a5 /* fmul v5.4s, v21.4s, v26.s[0] */; \
	WORD $0x4f9a92c6 /* fmul v6.4s, v22.4s, v26.s[0] */; \
	WORD $0x4f9a92e7 /* fmul v7.4s, v23.4s, v26.s[0] */

// F16: V4-V7 rounded to f16 and back.
#define F16 \
	WORD $0x0e216888 /* fcvtn v8.4h, v4.4s */; \
	WORD $0x4e2168a8 /* fcvtn2 v8.8h, v5.4s */; \
	WORD $0x0e2168c9 /* fcvtn v9.4h, v6.4s */; \
	WORD $0x4e2168e9 /* fcvtn2 v9.8h, v7.4s */; \
	WORD $0x0e217904 /* fcvtl v4.4s, v8.4h */; \
	WORD $0x4e217905 /* fcvtl2 v5.4s, v8.8h */; \
	WORD $0x0e217926 /* fcvtl v6.4s, v9.4h */; \
	WORD $0x4e217927 /* fcvtl2 v7.4s, v9.8h */

// PLANES: V4-V7 rounded to bf16 (nearest even), split into V16 and V17.
#define PLANES \
	WORD $0x6f300488 /* ushr v8.4s, v4.4s, #16 */; \
	WORD $0x4e391d08 /* and v8.16b, v8.16b, v25.16b */; \
	WORD $0x4eb88484 /* add v4.4s, v4.4s, v24.4s */; \
	WORD $0x4ea88484 /* add v4.4s, v4.4s, v8.4s */; \
	WORD $0x6f3004a8 /* ushr v8.4s, v5.4s, #16 */; \
	WORD $0x4e391d08 /* and v8.16b, v8.16b, v25.16b */; \
	WORD $0x4eb884a5 /* add v5.4s, v5.4s, v24.4s */; \
	WORD $0x4ea884a5 /* add v5.4s, v5.4s, v8.4s */; \
	WORD $0x6f3004c8 /* ushr v8.4s, v6.4s, #16 */; \
	WORD $0x4e391d08 /* and v8.16b, v8.16b, v25.16b */; \
	WORD $0x4eb884c6 /* add v6.4s, v6.4s, v24.4s */; \
	WORD $0x4ea884c6 /* add v6.4s, v6.4s, v8.4s */; \
	WORD $0x6f3004e8 /* ushr v8.4s, v7.4s, #16 */; \
	WORD $0x4e391d08 /* and v8.16b, v8.16b, v25.16b */; \
	WORD $0x4eb884e7 /* add v7.4s, v7.4s, v24.4s */; \
	WORD $0x4ea884e7 /* add v7.4s, v7.4s, v8.4s */; \
	WORD $0x4e455888 /* uzp2 v8.8h, v4.8h, v5.8h */; \
	WORD $0x4e4758c9 /* uzp2 v9.8h, v6.8h, v7.8h */; \
	WORD $0x4e091910 /* uzp1 v16.16b, v8.16b, v9.16b */; \
	WORD $0x4e095911 /* uzp2 v17.16b, v8.16b, v9.16b */

// LOOKUPn: V4-V7 = the f32 values of the 16 codes in V<codes>.
#define LOOKUP10 \
	WORD $0x4e0a0208 /* tbl v8.16b, {v16.16b}, v10.16b */; \
	WORD $0x4e0a0229 /* tbl v9.16b, {v17.16b}, v10.16b */; \
	LOOKUPREST
#define LOOKUP11 \
	WORD $0x4e0b0208 /* tbl v8.16b, {v16.16b}, v11.16b */; \
	WORD $0x4e0b0229 /* tbl v9.16b, {v17.16b}, v11.16b */; \
	LOOKUPREST
#define LOOKUP12 \
	WORD $0x4e0c0208 /* tbl v8.16b, {v16.16b}, v12.16b */; \
	WORD $0x4e0c0229 /* tbl v9.16b, {v17.16b}, v12.16b */; \
	LOOKUPREST
#define LOOKUP13 \
	WORD $0x4e0d0208 /* tbl v8.16b, {v16.16b}, v13.16b */; \
	WORD $0x4e0d0229 /* tbl v9.16b, {v17.16b}, v13.16b */; \
	LOOKUPREST
#define LOOKUPREST \
	WORD $0x4e09390e /* zip1 v14.16b, v8.16b, v9.16b */; \
	WORD $0x4e09790f /* zip2 v15.16b, v8.16b, v9.16b */; \
	WORD $0x4e4e3b84 /* zip1 v4.8h, v28.8h, v14.8h */; \
	WORD $0x4e4e7b85 /* zip2 v5.8h, v28.8h, v14.8h */; \
	WORD $0x4e4f3b86 /* zip1 v6.8h, v28.8h, v15.8h */; \
	WORD $0x4e4f7b87 /* zip2 v7.8h, v28.8h, v15.8h */

// func q4F32N(dst *float32, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
//
// Rows rows of n elements, ldw apart, from e0 on; packed is element 0.
TEXT ·q4F32N(SB), NOSPLIT, $0-88
	MOVD dst+0(FP), R0
	MOVD absmax+16(FP), R2
	MOVD code+24(FP), R3
	MOVD e0+32(FP), R13
	MOVD rows+48(FP), R14
	MOVD ldw+56(FP), R15
	MOVD pfd+64(FP), R6
	MOVD shift+72(FP), R7
	MOVD mid+80(FP), R8
	LSR $1, R6, R12
	SETUP
	CBZ R14, fdone
frow:
	MOVD R13, R4
	MOVD n+40(FP), R5
	ADD R4, R5, R5
	MOVD packed+8(FP), R1
	ADD R4>>1, R1, R1
fblock:
	CMP R5, R4
	BGE fnext
	BLOCKSTART
	ADD R4, R6, R11
	LSR R7, R11, R11
	ADD R11<<2, R2, R11
	PRFM (R11), PLDL1KEEP
	PRODUCT
	CMP $2, R8
	BNE fround
	F16
fround:
	PLANES
fchunk:
	ADD R12, R1, R11
	PRFM (R11), PLDL1KEEP
	VLD1.P 16(R1), [V10.B16]
	WORD $0x6f0c054b /* ushr v11.16b, v10.16b, #4 */
	WORD $0x4e3b1d4a /* and v10.16b, v10.16b, v27.16b */
	WORD $0x4e0a396c /* zip1 v12.16b, v11.16b, v10.16b */
	WORD $0x4e0a796d /* zip2 v13.16b, v11.16b, v10.16b */
	LOOKUP12
	VST1.P [V4.S4, V5.S4, V6.S4, V7.S4], 64(R0)
	LOOKUP13
	VST1.P [V4.S4, V5.S4, V6.S4, V7.S4], 64(R0)
	ADD $32, R4, R4
	CMP R10, R4
	BLT fchunk
	B fblock
fnext:
	ADD R15, R13, R13
	SUBS $1, R14, R14
	BNE frow
fdone:
	RET

// func q4BF16N(dst *uint16, packed *byte, absmax, code *float32, e0, n, rows, ldw, pfd, shift, mid int)
//
// Rows rows of n elements, ldw apart, from e0 on; packed is element 0.
TEXT ·q4BF16N(SB), NOSPLIT, $0-88
	MOVD dst+0(FP), R0
	MOVD absmax+16(FP), R2
	MOVD code+24(FP), R3
	MOVD e0+32(FP), R13
	MOVD rows+48(FP), R14
	MOVD ldw+56(FP), R15
	MOVD pfd+64(FP), R6
	MOVD shift+72(FP), R7
	MOVD mid+80(FP), R8
	LSR $1, R6, R12
	SETUP
	CBZ R14, bdone
brow:
	MOVD R13, R4
	MOVD n+40(FP), R5
	ADD R4, R5, R5
	MOVD packed+8(FP), R1
	ADD R4>>1, R1, R1
bblock:
	CMP R5, R4
	BGE bnext
	BLOCKSTART
	ADD R4, R6, R11
	LSR R7, R11, R11
	ADD R11<<2, R2, R11
	PRFM (R11), PLDL1KEEP
	PRODUCT
	CMP $2, R8
	BNE bround
	F16
bround:
	PLANES
bchunk:
	ADD R12, R1, R11
	PRFM (R11), PLDL1KEEP
	VLD1.P 16(R1), [V10.B16]
	WORD $0x6f0c054b /* ushr v11.16b, v10.16b, #4 */
	WORD $0x4e3b1d4a /* and v10.16b, v10.16b, v27.16b */
	WORD $0x4e0a396c /* zip1 v12.16b, v11.16b, v10.16b */
	WORD $0x4e0a796d /* zip2 v13.16b, v11.16b, v10.16b */
	WORD $0x4e0c0208 /* tbl v8.16b, {v16.16b}, v12.16b */
	WORD $0x4e0c0229 /* tbl v9.16b, {v17.16b}, v12.16b */
	WORD $0x4e09390e /* zip1 v14.16b, v8.16b, v9.16b */
	WORD $0x4e09790f /* zip2 v15.16b, v8.16b, v9.16b */
	VST1.P [V14.B16, V15.B16], 32(R0)
	WORD $0x4e0d0208 /* tbl v8.16b, {v16.16b}, v13.16b */
	WORD $0x4e0d0229 /* tbl v9.16b, {v17.16b}, v13.16b */
	WORD $0x4e09390e /* zip1 v14.16b, v8.16b, v9.16b */
	WORD $0x4e09790f /* zip2 v15.16b, v8.16b, v9.16b */
	VST1.P [V14.B16, V15.B16], 32(R0)
	ADD $32, R4, R4
	CMP R10, R4
	BLT bchunk
	B bblock
bnext:
	ADD R15, R13, R13
	SUBS $1, R14, R14
	BNE brow
bdone:
	RET

// func q4Dot1N(a *float32, lda int, packed *byte, absmax, code *float32, e0, k, shift, mid int, out *float32)
TEXT ·q4Dot1N(SB), NOSPLIT, $0-80
	MOVD a+0(FP), R0
	MOVD packed+16(FP), R1
	MOVD absmax+24(FP), R2
	MOVD code+32(FP), R3
	MOVD e0+40(FP), R4
	MOVD k+48(FP), R5
	MOVD shift+56(FP), R7
	MOVD mid+64(FP), R8
	MOVD out+72(FP), R13
	ADD R4, R5, R5
	SETUP
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
dblock:
	CMP R5, R4
	BGE ddone
	BLOCKSTART
	ADD R9<<2, R2, R11
	PRFM 128(R11), PLDL1KEEP
	PRODUCT
	CMP $2, R8
	BNE dround
	F16
dround:
	PLANES
dchunk:
	PRFM 1024(R1), PLDL1KEEP
	VLD1.P 16(R1), [V10.B16]
	WORD $0x6f0c054b /* ushr v11.16b, v10.16b, #4 */
	WORD $0x4e3b1d4a /* and v10.16b, v10.16b, v27.16b */
	LOOKUP11
	VLD1.P 64(R0), [V12.S4, V13.S4, V14.S4, V15.S4]
	WORD $0x4e2ccc80 /* fmla v0.4s, v4.4s, v12.4s */
	WORD $0x4e2dcca1 /* fmla v1.4s, v5.4s, v13.4s */
	WORD $0x4e2eccc2 /* fmla v2.4s, v6.4s, v14.4s */
	WORD $0x4e2fcce3 /* fmla v3.4s, v7.4s, v15.4s */
	LOOKUP10
	VLD1.P 64(R0), [V12.S4, V13.S4, V14.S4, V15.S4]
	WORD $0x4e2ccc80 /* fmla v0.4s, v4.4s, v12.4s */
	WORD $0x4e2dcca1 /* fmla v1.4s, v5.4s, v13.4s */
	WORD $0x4e2eccc2 /* fmla v2.4s, v6.4s, v14.4s */
	WORD $0x4e2fcce3 /* fmla v3.4s, v7.4s, v15.4s */
	ADD $32, R4, R4
	CMP R10, R4
	BLT dchunk
	B dblock
ddone:
	WORD $0x4e21d400 /* fadd v0.4s, v0.4s, v1.4s */
	WORD $0x4e23d442 /* fadd v2.4s, v2.4s, v3.4s */
	WORD $0x4e22d400 /* fadd v0.4s, v0.4s, v2.4s */
	WORD $0x6e20d400 /* faddp v0.4s, v0.4s, v0.4s */
	WORD $0x7e30d800 /* faddp s0, v0.2s */
	FMOVS F0, (R13)
	RET
