#version 450
// Backward of attention.comp, part 2: one workgroup per (key token j, KV
// head). Over the heads h of the group and the queries t that attend to j
// (t ≥ j in j's sequence; only t = j for a token outside every sequence),
// WG queries at a time, it recomputes P = e^{q_t·k_j·scale − lse_t} and
// dP = dout_t·v_j with the lse and D of part 1 (stats) and accumulates
// dv = Σ P·dout_t and dk = scale·Σ P·(dP − D_t)·q_t, written (not added).

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DPT = 2;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer DKbuf { float DK[]; };
layout(std430, binding = 1) writeonly buffer DVbuf { float DV[]; };
layout(std430, binding = 2) readonly buffer Sbuf { float St[]; };
layout(std430, binding = 3) readonly buffer DObuf { float DO[]; };
layout(std430, binding = 4) readonly buffer Qbuf { float Q[]; };
layout(std430, binding = 5) readonly buffer Kbuf { float K[]; };
layout(std430, binding = 6) readonly buffer Vbuf { float V[]; };
layout(std430, binding = 7) readonly buffer Offbuf { uint Off[]; };

layout(push_constant) uniform Push { uint tokens, nHead, nKV, headDim, nSeq; float scale; } p;

shared float ks[WG * DPT];
shared float vs[WG * DPT];
shared float ps[WG];
shared float dss[WG];

void main() {
    uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (g >= p.tokens * p.nKV) {
        return;
    }
    uint lid = gl_LocalInvocationID.x;
    uint j = g / p.nKV;
    uint kvh = g % p.nKV;
    uint group = p.nHead / p.nKV;
    uint end = j + 1u;
    for (uint s = 0; s < p.nSeq; s++) {
        if (Off[s] <= j && j < Off[s + 1]) {
            end = Off[s + 1];
            break;
        }
    }
    uint kbase = g * p.headDim;
    for (uint d = lid; d < p.headDim; d += WG) {
        ks[d] = K[kbase + d];
        vs[d] = V[kbase + d];
    }
    barrier();
    float accK[DPT];
    float accV[DPT];
    for (uint r = 0; r < DPT; r++) {
        accK[r] = 0.0;
        accV[r] = 0.0;
    }
    for (uint hh = 0; hh < group; hh++) {
        uint h = kvh * group + hh;
        for (uint t0 = j; t0 < end; t0 += WG) {
            uint cnt = min(WG, end - t0);
            if (lid < cnt) {
                uint qg = (t0 + lid) * p.nHead + h;
                uint qb = qg * p.headDim;
                float s = 0.0, dp = 0.0;
                for (uint d = 0; d < p.headDim; d++) {
                    s = fma(Q[qb + d], ks[d], s);
                    dp = fma(DO[qb + d], vs[d], dp);
                }
                float pr = exp(s * p.scale - St[2u * qg]);
                ps[lid] = pr;
                dss[lid] = pr * (dp - St[2u * qg + 1u]);
            }
            barrier();
            for (uint i = 0; i < cnt; i++) {
                uint qb = ((t0 + i) * p.nHead + h) * p.headDim;
                float pr = ps[i], ds = dss[i];
                for (uint r = 0; r < DPT; r++) {
                    uint d = lid + r * WG;
                    if (d < p.headDim) {
                        accV[r] = fma(pr, DO[qb + d], accV[r]);
                        accK[r] = fma(ds, Q[qb + d], accK[r]);
                    }
                }
            }
            barrier();
        }
    }
    for (uint r = 0; r < DPT; r++) {
        uint d = lid + r * WG;
        if (d < p.headDim) {
            DK[kbase + d] = accK[r] * p.scale;
            DV[kbase + d] = accV[r];
        }
    }
}
