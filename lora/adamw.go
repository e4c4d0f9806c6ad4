package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// AdamW is torch.optim.AdamW with its defaults (betas 0.9/0.999, eps 1e-8,
// weight_decay 0.01), computing each update as torch's
// _single_tensor_adamw does, in f32 with float64 scalars:
//
//	p *= 1 − lr·wd
//	m = m·β1 + (1−β1)·g
//	v = v·β2 + (1−β2)·g²
//	p −= lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + eps)
//
// with t counted per parameter. A parameter with no gradient (Grad nil) is
// not touched and its step count does not advance, as torch skips
// parameters whose .grad is None.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	state                          map[string]*adamState
}

type adamState struct {
	step int
	m, v []float32
}

// NewAdamW returns AdamW with torch's defaults.
func NewAdamW() *AdamW {
	return &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, state: map[string]*adamState{}}
}

// Step updates every parameter that has a gradient with learning rate lr.
// Parameters are identified by name across steps (and in saved state).
func (o *AdamW) Step(params []*autograd.Param, lr float64) {
	for _, p := range params {
		if p.Grad == nil {
			continue
		}
		s := o.state[p.Name]
		if s == nil {
			s = &adamState{m: make([]float32, len(p.Data)), v: make([]float32, len(p.Data))}
			o.state[p.Name] = s
		}
		s.step++
		decay := float32(1 - lr*o.WeightDecay)
		b1, b2 := float32(o.Beta1), float32(o.Beta2)
		c1, c2 := float32(1-o.Beta1), float32(1-o.Beta2)
		bc1 := 1 - math.Pow(o.Beta1, float64(s.step))
		bc2sqrt := float32(math.Sqrt(1 - math.Pow(o.Beta2, float64(s.step))))
		stepSize := float32(-lr / bc1)
		eps := float32(o.Eps)
		engine.ParallelFor((len(p.Data)+4095)/4096, func(chunk int) {
			lo, hi := chunk*4096, min((chunk+1)*4096, len(p.Data))
			for i := lo; i < hi; i++ {
				g := p.Grad[i]
				p.Data[i] *= decay
				s.m[i] = s.m[i]*b1 + c1*g
				s.v[i] = s.v[i]*b2 + c2*g*g
				denom := float32(math.Sqrt(float64(s.v[i])))/bc2sqrt + eps
				p.Data[i] += stepSize * s.m[i] / denom // addcdiv: (value·m)/denom
			}
		})
	}
}

// StepCount is the number of updates parameter name has received.
func (o *AdamW) StepCount(name string) int {
	if s := o.state[name]; s != nil {
		return s.step
	}
	return 0
}

// SaveState writes the optimiser state (exp_avg and exp_avg_sq per
// parameter, step counts and hyperparameters in the metadata) to path as a
// safetensors file, atomically.
func (o *AdamW) SaveState(path string) error {
	tensors := map[string]*engine.Tensor{}
	steps := map[string]int{}
	for name, s := range o.state {
		tensors[name+".exp_avg"] = engine.FromF32(s.m, len(s.m))
		tensors[name+".exp_avg_sq"] = engine.FromF32(s.v, len(s.v))
		steps[name] = s.step
	}
	js, err := json.Marshal(steps)
	if err != nil {
		return err
	}
	meta := map[string]string{
		"optimizer": "AdamW", "steps": string(js),
		"beta1": fmtF(o.Beta1), "beta2": fmtF(o.Beta2), "eps": fmtF(o.Eps), "weight_decay": fmtF(o.WeightDecay),
	}
	return llama.WriteSafetensors(path, tensors, meta)
}

func fmtF(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// MaxAdamSteps is the largest per-parameter step count LoadAdamW accepts
// (far more updates than any run makes; larger counts are a corrupt file and
// would overflow the count as it advances).
const MaxAdamSteps = 1 << 30

// LoadAdamW reads state written by SaveState. When params is not nil,
// every saved parameter must be among them with the same size. Each
// parameter needs exp_avg and exp_avg_sq F32 tensors of one size with
// finite values (exp_avg_sq ≥ 0) and a step count in [1, MaxAdamSteps];
// the hyperparameters must be in range (betas in [0, 1), eps > 0,
// weight_decay ≥ 0, all finite). Errors name the file, parameter or
// metadata key, the value and what was expected.
func LoadAdamW(path string, params []*autograd.Param) (*AdamW, error) {
	tensors, meta, err := llama.ReadSafetensors(path) // refuses NaN/Inf, naming the tensor
	if err != nil {
		return nil, err
	}
	if meta["optimizer"] != "AdamW" {
		return nil, fmt.Errorf("%s: not an AdamW state file (metadata optimizer=%q, want \"AdamW\")", path, meta["optimizer"])
	}
	if _, shapes, err := llama.ReadSafetensorsInts(path); err != nil {
		return nil, err
	} else if len(shapes) > 0 {
		names := make([]string, 0, len(shapes))
		for n := range shapes {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%s: tensor %q is I64, want F32 exp_avg/exp_avg_sq", path, names[0])
	}
	o := NewAdamW()
	for _, h := range []struct {
		key    string
		dst    *float64
		lo, hi float64 // lo ≤ v < hi
		want   string
	}{
		{"beta1", &o.Beta1, 0, 1, "in [0, 1)"},
		{"beta2", &o.Beta2, 0, 1, "in [0, 1)"},
		{"eps", &o.Eps, math.SmallestNonzeroFloat64, math.MaxFloat64, "a positive finite number"},
		{"weight_decay", &o.WeightDecay, 0, math.MaxFloat64, "a finite number ≥ 0"},
	} {
		s, ok := meta[h.key]
		if !ok {
			return nil, fmt.Errorf("%s: metadata %q is missing (want %s)", path, h.key, h.want)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v >= h.lo && v < h.hi) {
			return nil, fmt.Errorf("%s: metadata %q is %q, want %s", path, h.key, clipStr(s), h.want)
		}
		*h.dst = v
	}
	js, ok := meta["steps"]
	if !ok {
		return nil, fmt.Errorf("%s: metadata \"steps\" is missing (want a JSON object of parameter name to step count)", path)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(js), &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("%s: metadata \"steps\" is %q, want a JSON object of parameter name to step count", path, clipStr(js))
	}
	sizes := map[string]int{}
	for _, p := range params {
		sizes[p.Name] = len(p.Data)
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var f float64
		if err := json.Unmarshal(raw[name], &f); err != nil || f != math.Trunc(f) || f < 1 || f > MaxAdamSteps {
			return nil, fmt.Errorf("%s: parameter %q: step count %s, want an integer in [1, %d]", path, name, clip(raw[name]), int64(MaxAdamSteps))
		}
		step := int(f)
		for _, k := range []string{".exp_avg", ".exp_avg_sq"} {
			t := tensors[name+k]
			if t == nil {
				return nil, fmt.Errorf("%s: parameter %q: tensor %q is missing", path, name, name+k)
			}
			if t.DType != engine.F32 {
				return nil, fmt.Errorf("%s: tensor %q is %v, want f32", path, name+k, t.DType)
			}
		}
		m, v := tensors[name+".exp_avg"], tensors[name+".exp_avg_sq"]
		if m.Numel() != v.Numel() {
			return nil, fmt.Errorf("%s: parameter %q: exp_avg has %d values, exp_avg_sq %d", path, name, m.Numel(), v.Numel())
		}
		if params != nil {
			n, ok := sizes[name]
			if !ok {
				return nil, fmt.Errorf("%s: state for parameter %q, which the adapter does not have", path, name)
			}
			if n != m.Numel() {
				return nil, fmt.Errorf("%s: parameter %q has %d values in the state, %d in the adapter", path, name, m.Numel(), n)
			}
		}
		for i, x := range v.F32 {
			if x < 0 {
				return nil, fmt.Errorf("%s: tensor %q element %d is %v, want ≥ 0 (a running mean of squared gradients)", path, name+".exp_avg_sq", i, x)
			}
		}
		o.state[name] = &adamState{step: step, m: m.F32, v: v.F32}
	}
	for _, name := range sortedKeys(tensors) {
		base, ok := strings.CutSuffix(name, ".exp_avg")
		if !ok {
			base, ok = strings.CutSuffix(name, ".exp_avg_sq")
		}
		if _, listed := raw[base]; !ok || !listed {
			return nil, fmt.Errorf("%s: unexpected tensor %q (not the exp_avg or exp_avg_sq of a parameter in metadata \"steps\")", path, name)
		}
	}
	return o, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// clipStr shortens s to 60 characters for an error message.
func clipStr(s string) string { return clip([]byte(s)) }

// LinearSchedule is the learning-rate factor of
// transformers.get_linear_schedule_with_warmup at scheduler step `step`:
// step/warmup during warm-up, then (total−step)/(total−warmup), never below
// 0. The k-th optimiser update (k = 0, 1, ...) uses the factor at step k, so
// with warm-up the first update has learning rate 0.
func LinearSchedule(step, warmup, total int) float64 {
	if step < warmup {
		return float64(step) / float64(max(1, warmup))
	}
	return math.Max(0, float64(total-step)/float64(max(1, total-warmup)))
}

// ClipGradNorm scales the gradients of params (those that have one) so that
// their global L2 norm is at most maxNorm, as torch.nn.utils.clip_grad_norm_
// does: coef = maxNorm/(norm + 1e-6), applied when below 1. It returns the
// norm before clipping. The norm is accumulated in float64.
func ClipGradNorm(params []*autograd.Param, maxNorm float64) float64 {
	var ss float64
	for _, p := range params {
		for _, g := range p.Grad {
			ss += float64(g) * float64(g)
		}
	}
	norm := math.Sqrt(ss)
	if coef := maxNorm / (norm + 1e-6); coef < 1 {
		for _, p := range params {
			for i := range p.Grad {
				p.Grad[i] *= float32(coef)
			}
		}
	}
	return norm
}
