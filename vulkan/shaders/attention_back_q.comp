#version 450
// Backward of attention.comp, part 1: one workgroup per (query token t,
// head h). With the scores s_j = q·k_j·scale over the keys j that t attends
// to (its sequence up to itself), P_j = softmax(s)_j and dP_j = dout·v_j,
// it computes in three passes over the keys (scores recomputed each time,
// WG keys at a time): lse = log Σ_j e^{s_j}, D = Σ_j P_j·dP_j (= dout·out),
// and dq = scale·Σ_j P_j·(dP_j − D)·k_j. lse and D go to stats[2g] and
// stats[2g+1] (g = t·nHead + h) for part 2 (attention_back_kv.comp).

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DPT = 2;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer DQbuf { float DQ[]; };
layout(std430, binding = 1) writeonly buffer Sbuf { float St[]; };
layout(std430, binding = 2) readonly buffer DObuf { float DO[]; };
layout(std430, binding = 3) readonly buffer Qbuf { float Q[]; };
layout(std430, binding = 4) readonly buffer Kbuf { float K[]; };
layout(std430, binding = 5) readonly buffer Vbuf { float V[]; };
layout(std430, binding = 6) readonly buffer Offbuf { uint Off[]; };

layout(push_constant) uniform Push { uint tokens, nHead, nKV, headDim, nSeq; float scale; } p;

shared float qs[WG * DPT];
shared float gs[WG * DPT];
shared float sc[WG];

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (g >= p.tokens * p.nHead) {
        return;
    }
    uint lid = gl_LocalInvocationID.x;
    uint t = g / p.nHead;
    uint h = g % p.nHead;
    uint kvh = h / (p.nHead / p.nKV);
    uint start = t;
    for (uint s = 0; s < p.nSeq; s++) {
        if (Off[s] <= t && t < Off[s + 1]) {
            start = Off[s];
            break;
        }
    }
    uint qbase = g * p.headDim;
    for (uint d = lid; d < p.headDim; d += WG) {
        qs[d] = Q[qbase + d];
        gs[d] = DO[qbase + d];
    }
    barrier();
    uint kvStride = p.nKV * p.headDim;

    // Pass 1: the log of the softmax's denominator, online over chunks.
    float m = -1.0 / 0.0;
    float l = 0.0;
    for (uint j0 = start; j0 <= t; j0 += WG) {
        uint cnt = min(WG, t + 1 - j0);
        if (lid < cnt) {
            uint kb = (j0 + lid) * kvStride + kvh * p.headDim;
            float s = 0.0;
            for (uint d = 0; d < p.headDim; d++) {
                s = fma(qs[d], K[kb + d], s);
            }
            sc[lid] = s * p.scale;
        }
        barrier();
        float cmax = m;
        for (uint i = 0; i < cnt; i++) {
            cmax = max(cmax, sc[i]);
        }
        float csum = 0.0;
        for (uint i = 0; i < cnt; i++) {
            csum += exp(sc[i] - cmax);
        }
        l = l * exp(m - cmax) + csum;
        m = cmax;
        barrier();
    }
    float lse = m + log(l);

    // Pass 2: D = Σ P_j·dP_j.
    float D = 0.0;
    for (uint j0 = start; j0 <= t; j0 += WG) {
        uint cnt = min(WG, t + 1 - j0);
        if (lid < cnt) {
            uint kb = (j0 + lid) * kvStride + kvh * p.headDim;
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < p.headDim; d++) {
                s = fma(qs[d], K[kb + d], s);
                dp = fma(gs[d], V[kb + d], dp);
            }
            sc[lid] = exp(s * p.scale - lse) * dp;
        }
        barrier();
        for (uint i = 0; i < cnt; i++) {
            D += sc[i];
        }
        barrier();
    }

    // Pass 3: dq = scale·Σ P_j·(dP_j − D)·k_j.
    float acc[DPT];
    for (uint r = 0; r < DPT; r++) {
        acc[r] = 0.0;
    }
    for (uint j0 = start; j0 <= t; j0 += WG) {
        uint cnt = min(WG, t + 1 - j0);
        if (lid < cnt) {
            uint kb = (j0 + lid) * kvStride + kvh * p.headDim;
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < p.headDim; d++) {
                s = fma(qs[d], K[kb + d], s);
                dp = fma(gs[d], V[kb + d], dp);
            }
            sc[lid] = exp(s * p.scale - lse) * (dp - D);
        }
        barrier();
        for (uint i = 0; i < cnt; i++) {
            float ds = sc[i];
            uint kb = (j0 + i) * kvStride + kvh * p.headDim;
            for (uint r = 0; r < DPT; r++) {
                uint d = lid + r * WG;
                if (d < p.headDim) {
                    acc[r] = fma(ds, K[kb + d], acc[r]);
                }
            }
        }
        barrier();
    }
    for (uint r = 0; r < DPT; r++) {
        uint d = lid + r * WG;
        if (d < p.headDim) {
            DQ[qbase + d] = acc[r] * p.scale;
        }
    }
    if (lid == 0u) {
        St[2u * g] = lse;
        St[2u * g + 1u] = D;
    }
}
