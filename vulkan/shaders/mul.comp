#version 450
// Element-wise product: out[i] = a[i] * b[i] (a dropout mask applied to a
// LoRA input and to its gradient). Elements are laid over x and y of the
// dispatch. out may be a or b (in place).

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Abuf { float A[]; };
layout(std430, binding = 2) readonly buffer Bbuf { float B[]; };

layout(push_constant) uniform Push { uint n, pad; } p;

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    O[i] = A[i] * B[i];
}
