#version 450
// Backward of mean_pool.comp: dx[t][d] = dout[s][d] / count_s for a token t
// of sequence s whose mask is not 0 (count_s the sequence's tokens with a
// mask), else 0 (masked tokens, tokens outside every sequence). One
// workgroup per token: it finds the token's sequence, counts the mask over
// the sequence in parallel and writes the row.

layout(constant_id = 0) const uint WG = 256; // a power of two
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer DXbuf { float DX[]; };
layout(std430, binding = 1) readonly buffer DObuf { float DO[]; };
layout(std430, binding = 2) readonly buffer Mbuf { uint Mask[]; };
layout(std430, binding = 3) readonly buffer Offbuf { uint Off[]; };

layout(push_constant) uniform Push { uint tokens, dim, nSeq, pad; } p;

shared uint red[WG];

void main() {
    uint t = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (t >= p.tokens) {
        return;
    }
    uint lid = gl_LocalInvocationID.x;
    uint seq = p.nSeq;
    for (uint s = 0; s < p.nSeq; s++) {
        if (Off[s] <= t && t < Off[s + 1]) {
            seq = s;
            break;
        }
    }
    uint cnt = 0;
    if (seq < p.nSeq) {
        uint end = min(Off[seq + 1], p.tokens);
        for (uint i = Off[seq] + lid; i < end; i += WG) {
            cnt += Mask[i] != 0u ? 1u : 0u;
        }
    }
    red[lid] = cnt;
    barrier();
    for (uint st = WG / 2; st > 0; st >>= 1) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        barrier();
    }
    bool on = seq < p.nSeq && Mask[t] != 0u;
    float inv = on ? 1.0 / float(red[0]) : 0.0;
    for (uint d = lid; d < p.dim; d += WG) {
        DX[t * p.dim + d] = on ? DO[seq * p.dim + d] * inv : 0.0;
    }
}
