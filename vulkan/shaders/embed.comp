#version 450
// Embedding gather: out[t][j] = table[ids[t]][j] for a [vocab × dim] table
// of f32 (WTYPE 0), bf16 (1) or f16 (2), read as 32-bit words and widened.
// An id outside [0, vocab) gives a row of zeros. Elements of out are laid
// over x and y of the dispatch. A table too large for one binding is
// gathered in pieces: this dispatch covers rows [v0, v0+vn), bound from
// element tBase, and writes only the tokens whose id falls there (the
// piece with v0 = 0 also writes the zero rows).

layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WTYPE = 0;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Tbuf { uint T[]; };
layout(std430, binding = 2) readonly buffer Ibuf { uint Ids[]; };

layout(push_constant) uniform Push { uint tokens, dim, vocab, v0, vn, tBase; } p;

float value(uint idx) {
    if (WTYPE == 0u) {
        return uintBitsToFloat(T[idx]);
    }
    uint w = T[idx >> 1];
    uint h = (idx & 1u) != 0u ? (w >> 16) : (w & 0xffffu);
    if (WTYPE == 1u) {
        return uintBitsToFloat(h << 16);
    }
    return unpackHalf2x16(h).x;
}

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (idx >= p.tokens * p.dim) {
        return;
    }
    uint t = idx / p.dim;
    uint j = idx % p.dim;
    uint id = Ids[t];
    if (id >= p.v0 && id - p.v0 < p.vn) {
        O[idx] = value(p.tBase + (id - p.v0) * p.dim + j);
    } else if (id >= p.vocab && p.v0 == 0u) {
        O[idx] = 0.0;
    }
}
