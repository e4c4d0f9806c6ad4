package engine

import (
	"fmt"
	"math"
)

// RopeScaling is the rope_scaling entry of a Hugging Face config.
type RopeScaling struct {
	Type                          string  // "", "default", "llama3", "linear", "dynamic"
	Factor                        float64 // all types
	LowFreqFactor                 float64 // llama3
	HighFreqFactor                float64 // llama3
	OriginalMaxPositionEmbeddings int     // llama3
}

// Rope holds the rotary-embedding frequencies of one model. It applies HF's
// rotate-half convention: within each head, element i is paired with element
// i+headDim/2 and the pair is rotated by pos·invFreq[i].
type Rope struct {
	HeadDim       int
	Theta         float64
	Scaling       RopeScaling
	MaxPositions  int       // max_position_embeddings (for dynamic scaling)
	InvFreq       []float32 // headDim/2 frequencies (after llama3/linear scaling)
	AttentionGain float32   // multiplies cos and sin (1 for the supported types)
}

// NewRope computes the inverse frequencies as transformers'
// ROPE_INIT_FUNCTIONS do for the given scaling type.
func NewRope(headDim int, theta float64, maxPos int, sc RopeScaling) (*Rope, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("rope: head_dim %d must be positive and even", headDim)
	}
	r := &Rope{HeadDim: headDim, Theta: theta, Scaling: sc, MaxPositions: maxPos, AttentionGain: 1}
	r.InvFreq = baseInvFreq(headDim, theta)
	switch sc.Type {
	case "", "default":
	case "linear":
		if sc.Factor <= 0 {
			return nil, fmt.Errorf("rope_scaling linear: factor %v must be > 0", sc.Factor)
		}
		for i := range r.InvFreq {
			r.InvFreq[i] = float32(float64(r.InvFreq[i]) / sc.Factor)
		}
	case "dynamic":
		if sc.Factor <= 0 {
			return nil, fmt.Errorf("rope_scaling dynamic: factor %v must be > 0", sc.Factor)
		}
	case "llama3":
		if sc.Factor <= 0 || sc.LowFreqFactor <= 0 || sc.HighFreqFactor <= sc.LowFreqFactor || sc.OriginalMaxPositionEmbeddings <= 0 {
			return nil, fmt.Errorf("rope_scaling llama3: need factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0, got %+v", sc)
		}
		old := float64(sc.OriginalMaxPositionEmbeddings)
		lowWave := old / sc.LowFreqFactor
		highWave := old / sc.HighFreqFactor
		for i, f32 := range r.InvFreq {
			f := float64(f32)
			wave := 2 * math.Pi / f
			switch {
			case wave > lowWave:
				f /= sc.Factor
			case wave < highWave:
			default:
				smooth := (old/wave - sc.LowFreqFactor) / (sc.HighFreqFactor - sc.LowFreqFactor)
				f = (1-smooth)*f/sc.Factor + smooth*f
			}
			r.InvFreq[i] = float32(f)
		}
	default:
		return nil, fmt.Errorf("rope_scaling type %q is not supported (want llama3, linear or dynamic)", sc.Type)
	}
	return r, nil
}

// baseInvFreq is 1 / theta^(2i/headDim), computed as PyTorch does it in f32:
// theta ** (arange(0, dim, 2).float() / dim).
func baseInvFreq(headDim int, theta float64) []float32 {
	inv := make([]float32, headDim/2)
	for i := range inv {
		e := float32(2*i) / float32(headDim)
		inv[i] = float32(1 / math.Pow(theta, float64(e)))
	}
	return inv
}

// invFreqFor returns the frequencies used for a forward whose longest
// sequence has seqLen tokens (only dynamic scaling depends on it).
func (r *Rope) invFreqFor(seqLen int) []float32 {
	if r.Scaling.Type != "dynamic" || seqLen <= r.MaxPositions {
		return r.InvFreq
	}
	f := r.Scaling.Factor
	d := float64(r.HeadDim)
	base := r.Theta * math.Pow(f*float64(seqLen)/float64(r.MaxPositions)-(f-1), d/(d-2))
	return baseInvFreq(r.HeadDim, base)
}

// Tables returns cos and sin [T × headDim/2] for the given positions; maxLen
// is the longest sequence of the batch (it selects dynamic-scaling
// frequencies as transformers does per forward).
func (r *Rope) Tables(pos []int, maxLen int) (cos, sin []float32) {
	inv := r.invFreqFor(maxLen)
	half := r.HeadDim / 2
	cos = make([]float32, len(pos)*half)
	sin = make([]float32, len(pos)*half)
	for t, p := range pos {
		for i, f := range inv {
			a := float32(p) * f // one f32 product, as PyTorch's f32 matmul of inv_freq and positions
			cos[t*half+i] = float32(math.Cos(float64(a))) * r.AttentionGain
			sin[t*half+i] = float32(math.Sin(float64(a))) * r.AttentionGain
		}
	}
	return cos, sin
}

// ApplyRope rotates x [T × nHeads·headDim] in place with the tables from
// Tables: for each head, (x1, x2) = (x[i], x[i+half]) becomes
// (x1·cos − x2·sin, x2·cos + x1·sin).
func ApplyRope(x []float32, T, nHeads, headDim int, cos, sin []float32) {
	rotate(x, T, nHeads, headDim, cos, sin, 1)
}

// ApplyRopeBackward turns dy into dx in place for ApplyRope with the same
// tables: the transpose of a rotation is the rotation by the opposite angle,
// (d1, d2) becomes (d1·cos + d2·sin, d2·cos − d1·sin).
func ApplyRopeBackward(dx []float32, T, nHeads, headDim int, cos, sin []float32) {
	rotate(dx, T, nHeads, headDim, cos, sin, -1)
}

// rotate is ApplyRope with sin scaled by sign (±1: an exact negation, so
// the backward rounds exactly as its own formula would).
func rotate(x []float32, T, nHeads, headDim int, cos, sin []float32, sign float32) {
	half := headDim / 2
	w := nHeads * headDim
	ParallelFor(T, func(t int) {
		c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for h := 0; h < nHeads; h++ {
			base := t*w + h*headDim
			x1, x2 := x[base:base+half], x[base+half:base+headDim]
			for i := 0; i < half; i++ {
				a, b, sn := x1[i], x2[i], sign*s[i]
				x1[i] = a*c[i] - b*sn
				x2[i] = b*c[i] + a*sn
			}
		}
	})
}
