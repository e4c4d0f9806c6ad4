//go:build !purego

#include "textflag.h"

// Exp-based element-wise kernels for NEON, 4 lanes (see act.go and
// expGeneric in act_generic.go for the algorithm). Hand-written; the float
// instructions the Go assembler lacks are WORD encodings, each with its
// mnemonic. Every function takes n > 0, a multiple of 4.

// SETUPN loads the constants: V16 lo, V17 hi, V18 log2e, V19 −C1, V20 −C2,
// V21..V26 P0..P5, V27 1, V28 sign bit, V29 −MaxFloat32, V30 MaxFloat32,
// V31 the exponent bias 127 (int32).
#define SETUPN \
	MOVW $0xc2d00000, R10; VDUP R10, V16.S4; \
	MOVW $0x42b20000, R10; VDUP R10, V17.S4; \
	MOVW $0x3fb8aa3b, R10; VDUP R10, V18.S4; \
	MOVW $0xbf318000, R10; VDUP R10, V19.S4; \
	MOVW $0x395e8083, R10; VDUP R10, V20.S4; \
	MOVW $0x39506967, R10; VDUP R10, V21.S4; \
	MOVW $0x3ab743ce, R10; VDUP R10, V22.S4; \
	MOVW $0x3c088908, R10; VDUP R10, V23.S4; \
	MOVW $0x3d2aa9c1, R10; VDUP R10, V24.S4; \
	MOVW $0x3e2aaaaa, R10; VDUP R10, V25.S4; \
	MOVW $0x3f000000, R10; VDUP R10, V26.S4; \
	MOVW $0x3f800000, R10; VDUP R10, V27.S4; \
	MOVW $0x80000000, R10; VDUP R10, V28.S4; \
	MOVW $0xff7fffff, R10; VDUP R10, V29.S4; \
	MOVW $0x7f7fffff, R10; VDUP R10, V30.S4; \
	MOVW $127, R10; VDUP R10, V31.S4

// EXPN: V0 = exp(V0), clobbers V1..V3. FMAX/FMIN propagate NaN; the scale
// by 2^n is two exact exponent-field factors, the second multiply rounding
// once.
#define EXPN \
	WORD $0x4e30f400 /* fmax v0.4s, v0.4s, v16.4s */; \
	WORD $0x4eb1f400 /* fmin v0.4s, v0.4s, v17.4s */; \
	WORD $0x6e32dc01 /* fmul v1.4s, v0.4s, v18.4s */; \
	WORD $0x4e218821 /* frintn v1.4s, v1.4s */; \
	WORD $0x4e33cc20 /* fmla v0.4s, v1.4s, v19.4s */; \
	WORD $0x4e34cc20 /* fmla v0.4s, v1.4s, v20.4s */; \
	VMOV V21.B16, V2.B16; \
	VMOV V22.B16, V3.B16; \
	WORD $0x4e20cc43 /* fmla v3.4s, v2.4s, v0.4s */; \
	VMOV V23.B16, V2.B16; \
	WORD $0x4e20cc62 /* fmla v2.4s, v3.4s, v0.4s */; \
	VMOV V24.B16, V3.B16; \
	WORD $0x4e20cc43 /* fmla v3.4s, v2.4s, v0.4s */; \
	VMOV V25.B16, V2.B16; \
	WORD $0x4e20cc62 /* fmla v2.4s, v3.4s, v0.4s */; \
	VMOV V26.B16, V3.B16; \
	WORD $0x4e20cc43 /* fmla v3.4s, v2.4s, v0.4s */; \
	VMOV V27.B16, V2.B16; \
	WORD $0x4e20cc62 /* fmla v2.4s, v3.4s, v0.4s */; \
	VMOV V27.B16, V3.B16; \
	WORD $0x4e20cc43 /* fmla v3.4s, v2.4s, v0.4s */; \
	WORD $0x4ea1b821 /* fcvtzs v1.4s, v1.4s */; \
	WORD $0x4f3f0422 /* sshr v2.4s, v1.4s, #1 */; \
	WORD $0x6ea28421 /* sub v1.4s, v1.4s, v2.4s */; \
	WORD $0x4ebf8442 /* add v2.4s, v2.4s, v31.4s */; \
	WORD $0x4f375442 /* shl v2.4s, v2.4s, #23 */; \
	WORD $0x4ebf8421 /* add v1.4s, v1.4s, v31.4s */; \
	WORD $0x4f375421 /* shl v1.4s, v1.4s, #23 */; \
	WORD $0x6e22dc63 /* fmul v3.4s, v3.4s, v2.4s */; \
	WORD $0x6e21dc60 // fmul v0.4s, v3.4s, v1.4s

// SIGN: from g in V4, V0 = t = exp(−|g|), V1 = 1 + t, V6 = (g < 0) mask,
// V2 = σ(g) = (g < 0 ? t : 1)/(1 + t).
#define SIGN \
	WORD $0x4ebc1c80 /* orr v0.16b, v4.16b, v28.16b */; \
	EXPN; \
	WORD $0x4e3bd401 /* fadd v1.4s, v0.4s, v27.4s */; \
	WORD $0x4ea0e886 /* fcmlt v6.4s, v4.4s, #0.0 */; \
	WORD $0x4ea61cc2 /* mov v2.16b, v6.16b */; \
	WORD $0x6e7b1c02 /* bsl v2.16b, v0.16b, v27.16b */; \
	WORD $0x6e21fc42 // fdiv v2.4s, v2.4s, v1.4s

// func siluMulN(out, gate, up *float32, n int)
TEXT ·siluMulN(SB), NOSPLIT, $0-32
	MOVD out+0(FP), R0
	MOVD gate+8(FP), R1
	MOVD up+16(FP), R2
	MOVD n+24(FP), R3
	SETUPN
loop:
	VLD1.P 16(R1), [V4.S4]
	VLD1.P 16(R2), [V5.S4]
	SIGN
	WORD $0x4e3df483 // fmax v3.4s, v4.4s, v29.4s
	WORD $0x6e22dc63 // fmul v3.4s, v3.4s, v2.4s
	WORD $0x6e25dc63 // fmul v3.4s, v3.4s, v5.4s
	VST1.P [V3.S4], 16(R0)
	SUBS $4, R3, R3
	BNE loop
	RET

// func siluMulBwdN(dgate, dup, dy, gate, up *float32, n int)
TEXT ·siluMulBwdN(SB), NOSPLIT, $0-48
	MOVD dgate+0(FP), R0
	MOVD dup+8(FP), R1
	MOVD dy+16(FP), R2
	MOVD gate+24(FP), R3
	MOVD up+32(FP), R4
	MOVD n+40(FP), R5
	SETUPN
loopb:
	VLD1.P 16(R3), [V4.S4]
	VLD1.P 16(R4), [V5.S4]
	VLD1.P 16(R2), [V10.S4]
	SIGN
	WORD $0x4ea61cc7 // mov v7.16b, v6.16b
	WORD $0x6e601f67 // bsl v7.16b, v27.16b, v0.16b
	WORD $0x6e21fce7 // fdiv v7.4s, v7.4s, v1.4s
	WORD $0x4e3df483 // fmax v3.4s, v4.4s, v29.4s
	WORD $0x4ebef468 // fmin v8.4s, v3.4s, v30.4s
	VMOV V27.B16, V9.B16
	WORD $0x4e27cd09 // fmla v9.4s, v8.4s, v7.4s
	WORD $0x6e22dc63 // fmul v3.4s, v3.4s, v2.4s
	WORD $0x6e2adc63 // fmul v3.4s, v3.4s, v10.4s
	WORD $0x6e25dd4a // fmul v10.4s, v10.4s, v5.4s
	WORD $0x6e29dc49 // fmul v9.4s, v2.4s, v9.4s
	WORD $0x6e29dd4a // fmul v10.4s, v10.4s, v9.4s
	VST1.P [V10.S4], 16(R0)
	VST1.P [V3.S4], 16(R1)
	SUBS $4, R5, R5
	BNE loopb
	RET

// func expSumN(x *float32, n int, shift float32) float32
TEXT ·expSumN(SB), NOSPLIT, $0-28
	MOVD x+0(FP), R0
	MOVD n+8(FP), R1
	MOVWU shift+16(FP), R2
	SETUPN
	VDUP R2, V15.S4
	VEOR V14.B16, V14.B16, V14.B16
loope:
	VLD1 (R0), [V0.S4]
	WORD $0x4eafd400 // fsub v0.4s, v0.4s, v15.4s
	EXPN
	VST1.P [V0.S4], 16(R0)
	WORD $0x4e20d5ce // fadd v14.4s, v14.4s, v0.4s
	SUBS $4, R1, R1
	BNE loope
	WORD $0x6e2ed5ce // faddp v14.4s, v14.4s, v14.4s
	WORD $0x7e30d9c0 // faddp s0, v14.2s
	FMOVS F0, ret+24(FP)
	RET

