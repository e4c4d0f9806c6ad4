package llama

import (
	"fmt"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/quant"
)

// Numerics is how a model holds its weights and rounds its activations,
// beyond tli's default of exact f32 arithmetic. The published TLI numbers
// were computed with transformers + bitsandbytes and no torch_dtype:
// {Activations: F16, Quant: "nf4"} for the scan and training, "fp4" for
// the evaluation.
type Numerics struct {
	// Activations is the dtype of the residual stream and of every op's
	// output, and the dtype the weights are held in before any
	// quantisation (transformers' torch_dtype): F32 (the default: nothing
	// is rounded), BF16 or F16. The rounding points are those of
	// transformers' eager modeling code: see the forward.
	Activations engine.DType
	// Quant is "" (none), "nf4" or "fp4": every Linear of the decoder
	// layers is quantised at load, blocksize 64, as bitsandbytes'
	// Linear4bit with compute dtype bfloat16 holds it (embeddings, norms
	// and the LM head are not). A checkpoint saved already quantised needs
	// no Quant: its 4-bit weights are used as they are.
	Quant string
	// DoubleQuant quantises the block scales too (bnb_4bit_use_double_quant).
	DoubleQuant bool
}

// QuantBlocksize is the block size of 4-bit quantisation at load, as
// transformers' BitsAndBytesConfig uses.
const QuantBlocksize = 64

// String describes the setting in a few words: "f32", "nf4 weights, fp16
// activations".
func (n Numerics) String() string {
	act := n.Activations.String()
	if n.Activations == engine.F16 {
		act = "fp16"
	}
	if n.Quant == "" {
		return act
	}
	dq := ""
	if n.DoubleQuant {
		dq = " (double quant)"
	}
	return fmt.Sprintf("%s weights%s, %s activations", n.Quant, dq, act)
}

// Check validates the setting.
func (n Numerics) Check() error {
	switch n.Activations {
	case engine.F32, engine.BF16, engine.F16:
	default:
		return fmt.Errorf("activations dtype %v not supported (want f32, bf16 or fp16)", n.Activations)
	}
	if n.Quant != "" {
		if _, err := quant.ParseKind(n.Quant); err != nil {
			return fmt.Errorf("quantisation %q not supported (want nf4 or fp4)", n.Quant)
		}
	} else if n.DoubleQuant {
		return fmt.Errorf("double quantisation needs a quantisation (nf4 or fp4)")
	}
	return nil
}

// quantDType is the dtype a quantised weight's dequantised values are
// rounded to: the one it was held in before quantisation.
func quantDType(d engine.DType) quant.DType {
	switch d {
	case engine.BF16:
		return quant.BF16
	case engine.F16:
		return quant.F16
	}
	return quant.F32
}

// act is the model's activation dtype.
func (m *Model) act() engine.DType { return m.Numerics.Activations }

// round rounds x to the activation dtype (nothing in f32).
func (m *Model) round(x []float32) { engine.RoundTo(x, m.act()) }
