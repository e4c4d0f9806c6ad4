#version 450
// Backward of out = silu(gate)·up: with s = σ(g), dup = dy·g·s and
// dgate = dy·up·s·(1 + g·(1 − s)); 1 − s is computed directly (t/(1+t) or
// 1/(1+t) with t = e^−|g|), not by subtraction. Elements are laid over x and
// y of the dispatch; each invocation reads its inputs before writing, so
// dgate may be gate and dup may be up (or dy).

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer DGbuf { float DG[]; };
layout(std430, binding = 1) buffer DUbuf { float DU[]; };
layout(std430, binding = 2) readonly buffer DYbuf { float DY[]; };
layout(std430, binding = 3) readonly buffer Gbuf { float G[]; };
layout(std430, binding = 4) readonly buffer Ubuf { float U[]; };

layout(push_constant) uniform Push { uint n, pad; } p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    float g = G[i];
    float u = U[i];
    float dy = DY[i];
    float t = exp(-abs(g));
    float s, oms; // σ(g), 1 − σ(g)
    if (g >= 0.0) {
        s = 1.0 / (1.0 + t);
        oms = t / (1.0 + t);
    } else {
        s = t / (1.0 + t);
        oms = 1.0 / (1.0 + t);
    }
    DU[i] = dy * g * s;
    DG[i] = dy * u * s * (1.0 + g * oms);
}
