package engine

import "math"

// This file holds the options of the attention ops (AttentionWith, its
// backward, AttentionCachedWith) and the per-score work they share.

// AttentionOptions selects the attention variants of the model families
// beside Llama. The zero value is Llama's attention; the options combine.
// Positions are those of a token within its sequence (in a packed batch
// they restart at 0 with each sequence; with a KV cache they are absolute).
type AttentionOptions struct {
	// Scale multiplies q·k; 0 means 1/sqrt(headDim). Gemma 2 uses
	// query_pre_attn_scalar^−0.5.
	Scale float32
	// Window, when > 0, is a sliding window (Mistral, Qwen2, Gemma 2's
	// local layers): the query at position i sees the key at position j
	// only when 0 ≤ i − j < Window, so Window keys at most, itself
	// included. It is transformers' sliding_window_overlay (kv_idx >
	// q_idx − sliding_window) on top of the causal mask.
	Window int
	// Slopes, when not nil, holds one ALiBi slope per query head
	// (ALiBiSlopes): score(i, j) += float32(j)·Slopes[h] with j the key's
	// position, as BLOOM adds slope·key_position; up to the softmax this
	// is slope·(j − i). It is a constant, so it leaves the backward alone.
	Slopes []float32
	// SoftCap, when > 0, caps the scaled scores as Gemma 2 does
	// (attn_logit_softcapping): score = SoftCap·tanh(score/SoftCap), before
	// the ALiBi term and the mask.
	SoftCap float32
}

// attnParams is an AttentionOptions resolved for one call.
type attnParams struct {
	scale, cap float32
	window     int
	slopes     []float32
	plain      bool // no cap and no ALiBi: the scores are only scaled
}

// params resolves o for nHeads query heads of headDim; it panics when
// Slopes does not hold one slope per query head.
func (o *AttentionOptions) params(nHeads, headDim int) attnParams {
	p := attnParams{scale: o.Scale, cap: max(o.SoftCap, 0), window: max(o.Window, 0), slopes: o.Slopes}
	if p.scale == 0 {
		p.scale = float32(1 / math.Sqrt(float64(headDim)))
	}
	if p.slopes != nil && len(p.slopes) != nHeads {
		panic("engine: AttentionOptions.Slopes must hold one slope per query head")
	}
	p.plain = p.cap == 0 && p.slopes == nil
	return p
}

// first is the first key position the query at position i sees.
func (p *attnParams) first(i int) int {
	if p.window > 0 && i-p.window+1 > 0 {
		return i - p.window + 1
	}
	return 0
}

// slope is query head h's ALiBi slope (0 without ALiBi).
func (p *attnParams) slope(h int) float32 {
	if p.slopes == nil {
		return 0
	}
	return p.slopes[h]
}

// scores turns the dot products row[j] = q·k of the keys at positions
// j0+j into attention scores in place (scaled, capped, ALiBi added) and
// returns their maximum.
func (p *attnParams) scores(row []float32, j0 int, slope float32) float32 {
	mx := float32(math.Inf(-1))
	if p.plain {
		for j, x := range row {
			x *= p.scale
			row[j] = x
			if x > mx {
				mx = x
			}
		}
		return mx
	}
	for j, x := range row {
		x *= p.scale
		if p.cap > 0 {
			x = softCap(x, p.cap)
		}
		if p.slopes != nil {
			x += float32(j0+j) * slope
		}
		row[j] = x
		if x > mx {
			mx = x
		}
	}
	return mx
}

// softCap is c·tanh(x/c), each step rounded to f32 as Gemma 2's eager
// attention computes it.
func softCap(x, c float32) float32 {
	return float32(math.Tanh(float64(x/c))) * c
}

// softCapGrad is the derivative of softCap at x, 1 − tanh²(y) with
// y = x/c, computed in float64 as 4e/(1 + e)² with e = exp(−2|y|), which
// keeps its relative precision where |tanh(y)| is near 1 (1 − t² from the
// rounded t would not).
func softCapGrad(x, c float32) float32 {
	e := math.Exp(-2 * math.Abs(float64(x/c)))
	return float32(4 * e / ((1 + e) * (1 + e)))
}
