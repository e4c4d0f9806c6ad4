#version 450
// Tiled GEMM with B [k×n] row-major: C[m×n] (+)= alpha·op(A)·B, op(A) = A
// [m×k] (TA 0: the backward dX = dY·W, W a Linear weight [out×in]) or Aᵀ
// with A [k×m] (TA 1: a weight gradient dW = dYᵀ·X). B is read as 32-bit
// words: f32 (BTYPE 0) or pairs of bf16 (1) / f16 (2), widened to f32 here.
// Tiles of op(A) and B go through shared memory as in gemm.comp; each
// invocation accumulates TM×TN outputs in f32.

layout(constant_id = 0) const uint BM = 64;
layout(constant_id = 1) const uint BN = 64;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
layout(constant_id = 5) const uint BTYPE = 0;
layout(constant_id = 6) const uint TA = 0;
layout(local_size_x_id = 7) in; // must be (BM/TM)*(BN/TN)

layout(std430, binding = 0) buffer Cbuf { float C[]; };
layout(std430, binding = 1) readonly buffer Abuf { float A[]; };
layout(std430, binding = 2) readonly buffer Bbuf { uint B[]; };

// Operands start at element aBase, bBase and cBase of their bindings (large
// operands are bound in pieces at aligned offsets); lda, ldb and ldc are
// their row strides in elements.
layout(push_constant) uniform Push { uint m, n, k, accumulate, lda, ldb, ldc, aBase, bBase, cBase; float alpha; } p;

shared float As[BK * BM];
shared float Bs[BK * BN];

float bval(uint idx) {
    if (BTYPE == 0u) {
        return uintBitsToFloat(B[idx]);
    }
    uint w = B[idx >> 1];
    uint h = (idx & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
    if (BTYPE == 1u) {
        return uintBitsToFloat(h << 16);
    }
    return unpackHalf2x16(h).x;
}

void main() {
    const uint WG = (BM / TM) * (BN / TN);
    const uint RS = BM / TM;
    const uint CS = BN / TN;
    uint lid = gl_LocalInvocationID.x;
    uint row0 = gl_WorkGroupID.y * BM;
    uint col0 = gl_WorkGroupID.x * BN;
    uint tr = lid / CS;
    uint tc = lid % CS;

    float acc[TM * TN];
    for (uint i = 0; i < TM * TN; i++) {
        acc[i] = 0.0;
    }
    float a[TM];
    float b[TN];
    for (uint k0 = 0; k0 < p.k; k0 += BK) {
        if (TA == 0u) {
            for (uint e = lid; e < BM * BK; e += WG) {
                uint r = e / BK, kk = e % BK;
                uint gr = row0 + r, gk = k0 + kk;
                As[kk * BM + r] = (gr < p.m && gk < p.k) ? A[p.aBase + gr * p.lda + gk] : 0.0;
            }
        } else {
            for (uint e = lid; e < BM * BK; e += WG) {
                uint r = e % BM, kk = e / BM;
                uint gr = row0 + r, gk = k0 + kk;
                As[kk * BM + r] = (gr < p.m && gk < p.k) ? A[p.aBase + gk * p.lda + gr] : 0.0;
            }
        }
        for (uint e = lid; e < BN * BK; e += WG) {
            uint c = e % BN, kk = e / BN;
            uint gc = col0 + c, gk = k0 + kk;
            Bs[kk * BN + c] = (gc < p.n && gk < p.k) ? bval(p.bBase + gk * p.ldb + gc) : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            for (uint i = 0; i < TM; i++) {
                a[i] = As[kk * BM + tr + i * RS];
            }
            for (uint j = 0; j < TN; j++) {
                b[j] = Bs[kk * BN + tc + j * CS];
            }
            for (uint i = 0; i < TM; i++) {
                for (uint j = 0; j < TN; j++) {
                    acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]);
                }
            }
        }
        barrier();
    }
    for (uint i = 0; i < TM; i++) {
        uint r = row0 + tr + i * RS;
        if (r >= p.m) {
            continue;
        }
        for (uint j = 0; j < TN; j++) {
            uint c = col0 + tc + j * CS;
            if (c < p.n) {
                float v = p.alpha * acc[i * TN + j];
                uint ci = p.cBase + r * p.ldc + c;
                if (p.accumulate != 0u) {
                    v += C[ci];
                }
                C[ci] = v;
            }
        }
    }
}
