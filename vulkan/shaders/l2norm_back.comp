#version 450
// Backward of l2norm.comp: with ν = ‖x‖₂ of the row, recomputed, and
// y = x/ν, dx = (dy − y·(y·dy))/ν when ν > eps, else dx = dy/eps (the
// clamp's branch). One workgroup per row; Σx² and Σx·dy are reduced in
// shared memory in f32. dx may be dy.

layout(constant_id = 0) const uint WG = 256; // a power of two
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer DXbuf { float DX[]; };
layout(std430, binding = 1) readonly buffer DYbuf { float DY[]; };
layout(std430, binding = 2) readonly buffer Xbuf { float X[]; };

layout(push_constant) uniform Push { uint rows, n; float eps; } p;

shared vec2 red[WG];

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) {
        return;
    }
    uint lid = gl_LocalInvocationID.x;
    uint base = row * p.n;
    vec2 s = vec2(0.0);
    for (uint i = lid; i < p.n; i += WG) {
        float v = X[base + i];
        s.x = fma(v, v, s.x);
        s.y = fma(v, DY[base + i], s.y);
    }
    red[lid] = s;
    barrier();
    for (uint st = WG / 2; st > 0; st >>= 1) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        barrier();
    }
    float nrm = sqrt(red[0].x);
    float inv, c;
    if (nrm > p.eps) {
        inv = 1.0 / nrm;
        c = red[0].y * inv * inv * inv; // (x·dy)/ν³
    } else {
        inv = 1.0 / p.eps;
        c = 0.0;
    }
    for (uint i = lid; i < p.n; i += WG) {
        DX[base + i] = DY[base + i] * inv - X[base + i] * c;
    }
}
