package llama

import (
	"fmt"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/quant"
)

// quantSuffixes are the tensors beside a 4-bit "….weight" that transformers
// saves for bitsandbytes' Linear4bit (see quant.Export).
var quantSuffixes = []string{".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
	".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4"}

// quantPart returns the weight name a 4-bit weight's auxiliary tensor
// belongs to ("….weight.absmax" -> "….weight").
func quantPart(name string) (string, bool) {
	for _, s := range quantSuffixes {
		if base, ok := strings.CutSuffix(name, s); ok && strings.HasSuffix(base, ".weight") {
			return base, true
		}
	}
	return "", false
}

// quantKeys are the names of the auxiliary tensors of 4-bit weight name.
func quantKeys(name string) []string {
	ks := make([]string, len(quantSuffixes))
	for i, s := range quantSuffixes {
		ks[i] = name + s
	}
	return ks
}

// quantized reports whether weight name is stored 4-bit (it has a
// quant_state beside it).
func (c *checkpoint) quantized(name string) bool {
	return c.has(name+".quant_state.bitsandbytes__nf4") || c.has(name+".quant_state.bitsandbytes__fp4")
}

// loadQ4 reads a pre-quantised 4-bit weight and its state; its codes stay
// in the mapped shard.
func (c *checkpoint) loadQ4(name string, shape []int) (*engine.Tensor, error) {
	blobs := map[string]quant.Blob{}
	var path string
	for _, key := range append([]string{name}, quantKeys(name)...) {
		if !c.has(key) {
			continue
		}
		f, stored, err := c.open(key)
		if err != nil {
			return nil, err
		}
		if key == name {
			path = f.path
		}
		blobs[key], _ = f.blob(stored)
	}
	q, err := quant.Import(strings.TrimSuffix(name, ".weight"), blobs)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if q.Rows != shape[0] || q.Cols != shape[1] {
		return nil, fmt.Errorf("%s: 4-bit tensor %q has shape [%d %d], config.json implies %v", path, name, q.Rows, q.Cols, shape)
	}
	t := engine.FromQuant(q)
	if i := t.FirstNonFinite(); i >= 0 {
		return nil, fmt.Errorf("%s: 4-bit tensor %q: the scale of block %d is NaN or Inf", path, name, i/q.Blocksize)
	}
	c.pinned = true
	return t, nil
}

// quantize reads weight name, rounds it to dt (the dtype it is held in
// before quantisation, as transformers casts to torch_dtype first) and
// quantises it as num says, releasing the mapped pages as it goes.
func (c *checkpoint) quantize(name string, shape []int, num Numerics, dt engine.DType) (*engine.Tensor, error) {
	kind, err := quant.ParseKind(num.Quant)
	if err != nil {
		return nil, err
	}
	t, path, err := c.raw(name)
	if err != nil {
		return nil, err
	}
	if !sameShape(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", path, name, t.Shape, shape)
	}
	// The f32 copy goes into one buffer reused for every weight: a new one
	// per weight would let the heap grow to twice the quantised model
	// before the collector runs.
	n := t.Numel()
	if cap(c.scratch) < n {
		c.scratch = make([]float32, n)
	}
	w := engine.FromF32(c.scratch[:n], n)
	if err := c.convert(w, t, path, name); err != nil {
		return nil, err
	}
	engine.RoundTo(w.F32, dt)
	q, err := quant.NewTensor(kind, w.F32, shape[0], shape[1], QuantBlocksize, quantDType(dt), num.DoubleQuant)
	if err != nil {
		return nil, fmt.Errorf("%s: quantising %q: %v", c.dir, name, err)
	}
	return engine.FromQuant(q), nil
}
