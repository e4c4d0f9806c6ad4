#version 450
// SwiGLU's product: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
// Elements are laid over x and y of the dispatch. out may be gate or up.

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Gbuf { float G[]; };
layout(std430, binding = 2) readonly buffer Ubuf { float U[]; };

layout(push_constant) uniform Push { uint n, pad; } p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    float g = G[i];
    O[i] = g / (1.0 + exp(-g)) * U[i];
}
