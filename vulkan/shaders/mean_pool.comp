#version 450
// Mean pooling over packed sequences: out[s][d] = the mean of x[t][d] over
// the tokens t of sequence s (tokens [Off[s], Off[s+1]), clamped to the
// tokens) whose mask[t] is not 0, or 0 when none is. One invocation per
// (s, d), laid over x and y of the dispatch.

layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer Obuf { float O[]; };
layout(std430, binding = 1) readonly buffer Xbuf { float X[]; };
layout(std430, binding = 2) readonly buffer Mbuf { uint Mask[]; };
layout(std430, binding = 3) readonly buffer Offbuf { uint Off[]; };

layout(push_constant) uniform Push { uint tokens, dim, nSeq, pad; } p;

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (idx >= p.nSeq * p.dim) {
        return;
    }
    uint s = idx / p.dim;
    uint d = idx % p.dim;
    uint end = min(Off[s + 1], p.tokens);
    float sum = 0.0;
    uint cnt = 0;
    for (uint t = Off[s]; t < end; t++) {
        if (Mask[t] != 0u) {
            sum += X[t * p.dim + d];
            cnt++;
        }
    }
    O[idx] = cnt > 0u ? sum / float(cnt) : 0.0;
}
