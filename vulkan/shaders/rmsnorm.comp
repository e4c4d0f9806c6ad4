#version 450
// RMSNorm of rows: out[r][i] = x[r][i] * 1/sqrt(mean_i(x[r][i]²) + eps) * w[i].
// One workgroup per row (rows laid over x and y of the dispatch); the sum of
// squares is reduced in shared memory in f32. out may be x (in place). With
// SAVE the reciprocal RMS of each row goes to R[row] (the backward's input).

layout(constant_id = 0) const uint WG = 256; // a power of two
layout(constant_id = 1) const uint SAVE = 0;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Xbuf { float X[]; };
layout(std430, binding = 2) readonly buffer Wbuf { float Wt[]; };
layout(std430, binding = 3) buffer Rbuf { float R[]; };

layout(push_constant) uniform Push { uint rows, n; float eps; } p;

shared float red[WG];

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) {
        return;
    }
    uint lid = gl_LocalInvocationID.x;
    uint base = row * p.n;
    float s = 0.0;
    for (uint i = lid; i < p.n; i += WG) {
        float v = X[base + i];
        s = fma(v, v, s);
    }
    red[lid] = s;
    barrier();
    for (uint st = WG / 2; st > 0; st >>= 1) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        barrier();
    }
    float r = 1.0 / sqrt(red[0] / float(p.n) + p.eps);
    for (uint i = lid; i < p.n; i += WG) {
        O[base + i] = X[base + i] * r * Wt[i];
    }
    if (SAVE != 0u && lid == 0u) {
        R[row] = r;
    }
}
