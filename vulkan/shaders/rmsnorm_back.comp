#version 450
// Backward of RMSNorm: with r the saved reciprocal RMS of a row,
// dx[i] = r·(w[i]·dy[i] − x[i]·r²·Σ_j w[j]·dy[j]·x[j] / n), written or (with
// accumulate) added. One workgroup per row; the sum is reduced in shared
// memory in f32. dx may be dy when not accumulating.

layout(constant_id = 0) const uint WG = 256; // a power of two
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer DXbuf { float DX[]; };
layout(std430, binding = 1) readonly buffer DYbuf { float DY[]; };
layout(std430, binding = 2) readonly buffer Xbuf { float X[]; };
layout(std430, binding = 3) readonly buffer Wbuf { float Wt[]; };
layout(std430, binding = 4) readonly buffer Rbuf { float R[]; };

layout(push_constant) uniform Push { uint rows, n, accumulate; } p;

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
        s = fma(Wt[i] * DY[base + i], X[base + i], s);
    }
    red[lid] = s;
    barrier();
    for (uint st = WG / 2; st > 0; st >>= 1) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        barrier();
    }
    float r = R[row];
    float c = red[0] / float(p.n) * r * r;
    for (uint i = lid; i < p.n; i += WG) {
        float g = r * (Wt[i] * DY[base + i] - X[base + i] * c);
        if (p.accumulate != 0u) {
            g += DX[base + i];
        }
        DX[base + i] = g;
    }
}
