#version 450
// Rotary embedding in place, rotate-half convention (Hugging Face Llama):
// x is [tokens × heads × headDim]; for each head and i < headDim/2 the pair
// (x[i], x[i+half]) becomes (x[i]·c − x[i+half]·s, x[i+half]·c + x[i]·s)
// with c = cos[t][i], s = sin[t][i] from [tokens × headDim/2] tables.
// With inverse != 0 the angle is negated (s → −s): the rotation's inverse,
// which is also its backward (the gradient is rotated back).
// One invocation per pair; pairs are laid over x and y of the dispatch.

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Xbuf { float X[]; };
layout(std430, binding = 1) readonly buffer Cbuf { float Cos[]; };
layout(std430, binding = 2) readonly buffer Sbuf { float Sin[]; };

layout(push_constant) uniform Push { uint tokens, heads, headDim, inverse; } p;

void main() {
    uint half_ = p.headDim / 2;
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (idx >= p.tokens * p.heads * half_) {
        return;
    }
    uint i = idx % half_;
    uint th = idx / half_; // token * heads + head
    uint t = th / p.heads;
    uint base = th * p.headDim;
    float c = Cos[t * half_ + i];
    float s = p.inverse != 0u ? -Sin[t * half_ + i] : Sin[t * half_ + i];
    float x1 = X[base + i];
    float x2 = X[base + i + half_];
    X[base + i] = x1 * c - x2 * s;
    X[base + i + half_] = x2 * c + x1 * s;
}
