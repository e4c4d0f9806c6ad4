#version 450
// L2 normalisation of rows: out[r] = x[r] / max(‖x[r]‖₂, eps) (PyTorch's
// F.normalize). One workgroup per row, the sum of squares reduced in shared
// memory in f32. out may be x.

layout(constant_id = 0) const uint WG = 256; // a power of two
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Xbuf { float X[]; };

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
    float inv = 1.0 / max(sqrt(red[0]), p.eps);
    for (uint i = lid; i < p.n; i += WG) {
        O[base + i] = X[base + i] * inv;
    }
}
