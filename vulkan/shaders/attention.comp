#version 450
// Causal attention over packed sequences, one workgroup per (token, head).
// q and out are [tokens × nHead × headDim], k and v [tokens × nKV × headDim]
// (grouped-query attention: head h reads KV head h / (nHead/nKV)); offsets
// holds nSeq+1 token offsets, sequence s being tokens [offsets[s],
// offsets[s+1]). Token t attends to the tokens of its own sequence up to
// itself, with scores q·k·scale and an online softmax in f32: keys are taken
// WG at a time, each invocation scoring one key, then every invocation
// updates the running max, the sum and its DPT output dimensions
// (headDim ≤ WG·DPT).

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DPT = 2;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Qbuf { float Q[]; };
layout(std430, binding = 2) readonly buffer Kbuf { float K[]; };
layout(std430, binding = 3) readonly buffer Vbuf { float V[]; };
layout(std430, binding = 4) readonly buffer Offbuf { uint Off[]; };

layout(push_constant) uniform Push { uint tokens, nHead, nKV, headDim, nSeq; float scale; } p;

shared float qs[WG * DPT];
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
        qs[d] = Q[qbase + d] * p.scale;
    }
    barrier();

    float m = -1.0 / 0.0;
    float l = 0.0;
    float acc[DPT];
    for (uint r = 0; r < DPT; r++) {
        acc[r] = 0.0;
    }
    uint kvStride = p.nKV * p.headDim;
    for (uint j0 = start; j0 <= t; j0 += WG) {
        uint cnt = min(WG, t + 1 - j0);
        uint j = j0 + lid;
        if (lid < cnt) {
            uint kb = j * kvStride + kvh * p.headDim;
            float s = 0.0;
            for (uint d = 0; d < p.headDim; d++) {
                s = fma(qs[d], K[kb + d], s);
            }
            sc[lid] = s;
        }
        barrier();
        float cmax = m;
        for (uint i = 0; i < cnt; i++) {
            cmax = max(cmax, sc[i]);
        }
        float corr = exp(m - cmax);
        barrier();
        if (lid < cnt) {
            sc[lid] = exp(sc[lid] - cmax);
        }
        barrier();
        l *= corr;
        for (uint r = 0; r < DPT; r++) {
            acc[r] *= corr;
        }
        for (uint i = 0; i < cnt; i++) {
            float w = sc[i];
            l += w;
            uint vb = (j0 + i) * kvStride + kvh * p.headDim;
            for (uint r = 0; r < DPT; r++) {
                uint d = lid + r * WG;
                if (d < p.headDim) {
                    acc[r] = fma(w, V[vb + d], acc[r]);
                }
            }
        }
        m = cmax;
        barrier();
    }
    for (uint r = 0; r < DPT; r++) {
        uint d = lid + r * WG;
        if (d < p.headDim) {
            O[qbase + d] = acc[r] / l;
        }
    }
}
