#version 450
// Tiled GEMM: C[m×n] (+)= alpha·A[m×k]·Wᵀ with W a Linear weight [n×k].
// W is read as 32-bit words: f32 (WTYPE 0) or pairs of bf16 (1) / f16 (2),
// widened to f32 here, so no 16-bit storage feature is needed. Each
// workgroup computes a BM×BN tile of C through BK-wide slices of A and W
// staged in shared memory; each invocation accumulates TM×TN outputs in f32.
// Rows and columns of a tile are strided by BM/TM and BN/TN so that
// neighbouring invocations touch neighbouring shared-memory words.

layout(constant_id = 0) const uint BM = 64;
layout(constant_id = 1) const uint BN = 64;
layout(constant_id = 2) const uint BK = 16; // even
layout(constant_id = 3) const uint TM = 4;
layout(constant_id = 4) const uint TN = 4;
layout(constant_id = 5) const uint WTYPE = 0;
layout(local_size_x_id = 6) in; // must be (BM/TM)*(BN/TN)

layout(std430, binding = 0) buffer Cbuf { float C[]; };
layout(std430, binding = 1) readonly buffer Abuf { float A[]; };
layout(std430, binding = 2) readonly buffer Wbuf { uint W[]; };

// A, W and C start at element aBase, wBase and cBase of their bindings (a
// large operand is bound in pieces, at aligned offsets); C's rows are ldc
// apart (the host splits n into column blocks of one C).
layout(push_constant) uniform Push { uint m, n, k, accumulate, ldc, aBase, wBase, cBase; float alpha; } p;

shared float As[BK * BM];
shared float Ws[BK * BN];

float weight(uint idx) {
    if (WTYPE == 0u) {
        return uintBitsToFloat(W[idx]);
    }
    uint w = W[idx >> 1];
    uint h = (idx & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
    if (WTYPE == 1u) {
        return uintBitsToFloat(h << 16);
    }
    return unpackHalf2x16(h).x;
}

// widen2 widens the two 16-bit weights of a word (low half first).
vec2 widen2(uint w) {
    if (WTYPE == 1u) {
        return vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u));
    }
    return unpackHalf2x16(w);
}

void main() {
    const uint WG = (BM / TM) * (BN / TN);
    const uint RS = BM / TM; // row stride of an invocation's outputs
    const uint CS = BN / TN; // column stride
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
        for (uint e = lid; e < BM * BK; e += WG) {
            uint r = e / BK, kk = e % BK;
            uint gr = row0 + r, gk = k0 + kk;
            As[kk * BM + r] = (gr < p.m && gk < p.k) ? A[p.aBase + gr * p.k + gk] : 0.0;
        }
        if (WTYPE != 0u && ((p.k | p.wBase) & 1u) == 0u) {
            // 16-bit weights, k and wBase even: a word holds two weights of one row.
            for (uint e = lid; e < BN * BK / 2; e += WG) {
                uint c = e / (BK / 2), kk = 2u * (e % (BK / 2));
                uint gc = col0 + c, gk = k0 + kk;
                vec2 v = vec2(0.0);
                if (gc < p.n && gk < p.k) {
                    v = widen2(W[(p.wBase + gc * p.k + gk) >> 1]);
                }
                Ws[kk * BN + c] = v.x;
                Ws[(kk + 1u) * BN + c] = v.y;
            }
        } else {
            for (uint e = lid; e < BN * BK; e += WG) {
                uint c = e / BK, kk = e % BK;
                uint gc = col0 + c, gk = k0 + kk;
                Ws[kk * BN + c] = (gc < p.n && gk < p.k) ? weight(p.wBase + gc * p.k + gk) : 0.0;
            }
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            for (uint i = 0; i < TM; i++) {
                a[i] = As[kk * BM + tr + i * RS];
            }
            for (uint j = 0; j < TN; j++) {
                b[j] = Ws[kk * BN + tc + j * CS];
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
