package quant

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// littleEndian reports whether this machine stores a uint16's low byte
// first (as safetensors files do).
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Blob is one named tensor of a checkpoint as a safetensors file holds it:
// its dtype ("U8", "F32", ...), shape and little-endian bytes.
type Blob struct {
	DType string
	Shape []int
	Data  []byte
}

// The suffixes, after "<name>.weight", of the tensors bitsandbytes'
// Linear4bit saves (QuantState.as_dict(packed=True)).
const (
	keyAbsmax       = ".absmax"
	keyQuantMap     = ".quant_map"
	keyNestedAbsmax = ".nested_absmax"
	keyNestedMap    = ".nested_quant_map"
	keyQuantState   = ".quant_state.bitsandbytes__"
)

// Export returns the tensors transformers writes for a bitsandbytes 4-bit
// Linear named name (e.g. "model.layers.0.mlp.down_proj"):
//
//	name.weight                                   U8 [PackedLen(n), 1]  packed codes
//	name.weight.absmax                            F32 [blocks] (U8 with double quantisation)
//	name.weight.quant_map                         F32 [16]  the codebook
//	name.weight.nested_absmax                     F32 [ceil(blocks/256)]   (double only)
//	name.weight.nested_quant_map                  F32 [256] dynamic map    (double only)
//	name.weight.quant_state.bitsandbytes__<kind>  U8 [len]  JSON
//
// The JSON is what Python's json.dumps writes for QuantState's non-tensor
// fields, in their order: quant_type, blocksize, dtype, shape, and with
// double quantisation nested_blocksize, nested_dtype, nested_offset.
func Export(name string, t *Tensor) (map[string]Blob, error) {
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("quant: export %s: %v", name, err)
	}
	w := name + ".weight"
	out := map[string]Blob{
		w: {DType: "U8", Shape: []int{len(t.Packed), 1}, Data: append([]byte(nil), t.Packed...)},
	}
	out[w+keyQuantMap] = QuantMapBlob(t.Kind)
	if d := t.Double; d != nil {
		out[w+keyAbsmax] = Blob{DType: "U8", Shape: []int{len(d.Q)}, Data: append([]byte(nil), d.Q...)}
		out[w+keyNestedAbsmax] = f32Blob(d.Absmax)
		out[w+keyNestedMap] = f32Blob(d.Code[:])
	} else {
		out[w+keyAbsmax] = f32Blob(t.Absmax)
	}
	out[w+keyQuantState+t.Kind.String()] = StateBlob(t)
	return out, nil
}

// QuantMapBlob is the quant_map tensor of a kind: its 16 code values (FP4's
// value 8 as +0, as torch.tensor of bitsandbytes' Python list holds it).
func QuantMapBlob(kind Kind) Blob {
	cb := Codebook(kind)
	qm := cb[:]
	if kind == FP4 {
		qm = append([]float32(nil), qm...)
		qm[8] = 0 // torch.tensor(..., -0, ...) of a Python int is +0
	}
	return f32Blob(qm)
}

// StateBlob is the quant_state.bitsandbytes__<kind> tensor of t: the JSON
// of QuantState's non-tensor fields as Python's json.dumps writes them, in
// their order (quant_type, blocksize, dtype, shape, and with double
// quantisation nested_blocksize, nested_dtype, nested_offset). Only t's
// kind, block size, dtype, shape and Double's block size and offset are
// read.
func StateBlob(t *Tensor) Blob {
	var js strings.Builder
	fmt.Fprintf(&js, `{"quant_type": %q, "blocksize": %d, "dtype": %q, "shape": [%d, %d]`,
		t.Kind.String(), t.Blocksize, t.DType.String(), t.Rows, t.Cols)
	if d := t.Double; d != nil {
		fmt.Fprintf(&js, `, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`,
			d.Blocksize, pyFloat(float64(d.Offset)))
	}
	js.WriteString("}")
	return Blob{DType: "U8", Shape: []int{js.Len()}, Data: []byte(js.String())}
}

// check verifies the sizes of t's fields against each other.
func (t *Tensor) check() error {
	switch {
	case t.Kind != NF4 && t.Kind != FP4:
		return fmt.Errorf("unknown kind %d", int(t.Kind))
	case !ValidBlocksize(t.Blocksize):
		return fmt.Errorf("blocksize %d not allowed", t.Blocksize)
	case t.Rows <= 0 || t.Cols <= 0:
		return fmt.Errorf("shape %d×%d", t.Rows, t.Cols)
	case len(t.Packed) != PackedLen(t.Len()):
		return fmt.Errorf("%d packed bytes for %d values, want %d", len(t.Packed), t.Len(), PackedLen(t.Len()))
	case len(t.Absmax) != Blocks(t.Len(), t.Blocksize):
		return fmt.Errorf("%d absmax for %d blocks", len(t.Absmax), Blocks(t.Len(), t.Blocksize))
	case t.Double != nil && len(t.Double.Q) != len(t.Absmax):
		return fmt.Errorf("%d double-quantised absmax for %d blocks", len(t.Double.Q), len(t.Absmax))
	case t.Double != nil && (t.Double.Blocksize <= 0 || len(t.Double.Absmax) != Blocks(len(t.Double.Q), t.Double.Blocksize)):
		return fmt.Errorf("%d nested absmax for %d codes in blocks of %d", len(t.Double.Absmax), len(t.Double.Q), t.Double.Blocksize)
	}
	return nil
}

// pyFloat formats x as Python's repr of a float does (and so json.dumps):
// the shortest digits that read back, fixed notation for 1e-4 <= |x| <
// 1e16 with at least one decimal, scientific with a two-digit exponent
// otherwise.
func pyFloat(x float64) string {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "Infinity"
	case math.IsInf(x, -1):
		return "-Infinity"
	}
	a := math.Abs(x)
	if a == 0 || (a >= 1e-4 && a < 1e16) {
		s := strconv.FormatFloat(x, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	return strconv.FormatFloat(x, 'e', -1, 64)
}

func f32Blob(v []float32) Blob {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Blob{DType: "F32", Shape: []int{len(v)}, Data: b}
}

// quantState holds the JSON fields of a quant_state blob.
type quantState struct {
	QuantType       *string  `json:"quant_type"`
	Blocksize       *int     `json:"blocksize"`
	DType           *string  `json:"dtype"`
	Shape           []int    `json:"shape"`
	NestedBlocksize *int     `json:"nested_blocksize"`
	NestedDType     *string  `json:"nested_dtype"`
	NestedOffset    *float64 `json:"nested_offset"`
}

// Import reads the 4-bit Linear weight named name from blobs as Export
// writes it and as transformers saves it (bitsandbytes QuantState
// from_dict): the quant_state JSON gives quant_type, blocksize, dtype and
// the 2-D shape; the packed weight may be stored as U8 or, with another
// bnb_4bit_quant_storage, as any dtype holding the same bytes. Every size
// is checked, and a bad input is refused with an error naming the tensor
// and the field. The tensor's Packed shares the weight blob's Data (the
// codes of a memory-mapped checkpoint are not copied); scales are decoded
// into new slices.
func Import(name string, blobs map[string]Blob) (*Tensor, error) {
	w := name + ".weight"
	var stateKey string
	var kind Kind
	for _, k := range []Kind{NF4, FP4} {
		if _, ok := blobs[w+keyQuantState+k.String()]; ok {
			if stateKey != "" {
				return nil, fmt.Errorf("quant: %s: both %s and %s present", w, stateKey, w+keyQuantState+k.String())
			}
			stateKey, kind = w+keyQuantState+k.String(), k
		}
	}
	if stateKey == "" {
		return nil, fmt.Errorf("quant: %s: no %snf4 or %sfp4 tensor", w, w+keyQuantState, w+keyQuantState)
	}
	sb := blobs[stateKey]
	if sb.DType != "U8" {
		return nil, fmt.Errorf("quant: %s: dtype %s, want U8", stateKey, sb.DType)
	}
	var raw any
	if err := json.Unmarshal(sb.Data, &raw); err != nil {
		return nil, fmt.Errorf("quant: %s: not JSON: %v", stateKey, err)
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("quant: %s: JSON is not an object", stateKey)
	}
	for k := range obj {
		switch k {
		case "quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset":
		default:
			return nil, fmt.Errorf("quant: %s: unknown field %q", stateKey, k)
		}
	}
	var qs quantState
	dec := json.NewDecoder(bytes.NewReader(sb.Data))
	if err := dec.Decode(&qs); err != nil {
		return nil, fmt.Errorf("quant: %s: %v", stateKey, err)
	}
	field := func(f, format string, a ...any) error {
		return fmt.Errorf("quant: %s: %s: %s", stateKey, f, fmt.Sprintf(format, a...))
	}
	if qs.QuantType == nil {
		return nil, field("quant_type", "missing")
	}
	qk, err := ParseKind(*qs.QuantType)
	if err != nil {
		return nil, field("quant_type", "unknown %q (want nf4 or fp4)", *qs.QuantType)
	}
	if qk != kind {
		return nil, field("quant_type", "%q in a tensor named for %s", *qs.QuantType, kind)
	}
	if qs.Blocksize == nil {
		return nil, field("blocksize", "missing")
	}
	if !ValidBlocksize(*qs.Blocksize) {
		return nil, field("blocksize", "%d not allowed (a power of two from 32 to 4096)", *qs.Blocksize)
	}
	if qs.DType == nil {
		return nil, field("dtype", "missing")
	}
	dt, err := ParseDType(*qs.DType)
	if err != nil {
		return nil, field("dtype", "%q not supported (want float32, bfloat16 or float16)", *qs.DType)
	}
	if len(qs.Shape) != 2 || qs.Shape[0] <= 0 || qs.Shape[1] <= 0 || qs.Shape[0] > math.MaxInt32 || qs.Shape[1] > math.MaxInt32 {
		return nil, field("shape", "%v, want two positive sizes", qs.Shape)
	}
	t := &Tensor{Kind: kind, Blocksize: *qs.Blocksize, Rows: qs.Shape[0], Cols: qs.Shape[1], DType: dt}
	n := t.Len()
	blocks := Blocks(n, t.Blocksize)

	pb, ok := blobs[w]
	if !ok {
		return nil, fmt.Errorf("quant: %s: missing", w)
	}
	size, ok := dtypeSize[pb.DType]
	if !ok {
		return nil, fmt.Errorf("quant: %s: dtype %q not a storage dtype", w, pb.DType)
	}
	if err := checkBlob(w, pb, size, PackedLen(n)); err != nil {
		return nil, err
	}
	t.Packed = pb.Data[:PackedLen(n)] // shared: a mapped file's codes stay on disk until used

	mb, ok := blobs[w+keyQuantMap]
	if !ok {
		return nil, fmt.Errorf("quant: %s: missing", w+keyQuantMap)
	}
	qm, err := f32s(w+keyQuantMap, mb, 16)
	if err != nil {
		return nil, err
	}
	cb := Codebook(kind)
	for i, v := range qm {
		if d := math.Abs(float64(v - cb[i])); !(d <= 1e-6) {
			return nil, fmt.Errorf("quant: %s: value %d is %g, %s's code is %g", w+keyQuantMap, i, v, kind, cb[i])
		}
	}

	ab, ok := blobs[w+keyAbsmax]
	if !ok {
		return nil, fmt.Errorf("quant: %s: missing", w+keyAbsmax)
	}
	nested := qs.NestedBlocksize != nil || qs.NestedDType != nil || qs.NestedOffset != nil
	if !nested {
		for _, k := range []string{keyNestedAbsmax, keyNestedMap} {
			if _, ok := blobs[w+k]; ok {
				return nil, fmt.Errorf("quant: %s: present without nested fields in %s", w+k, stateKey)
			}
		}
		if t.Absmax, err = f32s(w+keyAbsmax, ab, blocks); err != nil {
			return nil, err
		}
		return t, nil
	}
	switch {
	case qs.NestedBlocksize == nil:
		return nil, field("nested_blocksize", "missing")
	case *qs.NestedBlocksize <= 0 || *qs.NestedBlocksize&(*qs.NestedBlocksize-1) != 0 || *qs.NestedBlocksize > 4096:
		return nil, field("nested_blocksize", "%d not allowed", *qs.NestedBlocksize)
	case qs.NestedDType == nil:
		return nil, field("nested_dtype", "missing")
	case *qs.NestedDType != "float32":
		return nil, field("nested_dtype", "%q, want float32", *qs.NestedDType)
	case qs.NestedOffset == nil:
		return nil, field("nested_offset", "missing")
	case math.IsNaN(*qs.NestedOffset) || math.IsInf(*qs.NestedOffset, 0):
		return nil, field("nested_offset", "%v", *qs.NestedOffset)
	}
	d := &Double{Blocksize: *qs.NestedBlocksize, Offset: float32(*qs.NestedOffset)}
	if ab.DType != "U8" {
		return nil, fmt.Errorf("quant: %s: dtype %s, want U8 with double quantisation", w+keyAbsmax, ab.DType)
	}
	if err := checkBlob(w+keyAbsmax, ab, 1, blocks); err != nil {
		return nil, err
	}
	d.Q = append([]byte(nil), ab.Data...)
	nb, ok := blobs[w+keyNestedAbsmax]
	if !ok {
		return nil, fmt.Errorf("quant: %s: missing", w+keyNestedAbsmax)
	}
	if d.Absmax, err = f32s(w+keyNestedAbsmax, nb, Blocks(blocks, d.Blocksize)); err != nil {
		return nil, err
	}
	cm, ok := blobs[w+keyNestedMap]
	if !ok {
		return nil, fmt.Errorf("quant: %s: missing", w+keyNestedMap)
	}
	code, err := f32s(w+keyNestedMap, cm, 256)
	if err != nil {
		return nil, err
	}
	copy(d.Code[:], code)
	t.Double = d
	if t.Absmax, err = d.Dequantize(); err != nil {
		return nil, fmt.Errorf("quant: %s: %v", w+keyAbsmax, err)
	}
	return t, nil
}

var dtypeSize = map[string]int{"U8": 1, "I8": 1, "BF16": 2, "F16": 2, "I16": 2, "F32": 4, "I32": 4, "F64": 8, "I64": 8}

// checkBlob verifies that b holds exactly want elements of size bytes
// (its shape either [want] or [want, 1] in elements of its own dtype).
func checkBlob(key string, b Blob, size, wantBytes int) error {
	es, ok := dtypeSize[b.DType]
	if !ok {
		return fmt.Errorf("quant: %s: dtype %q unknown", key, b.DType)
	}
	elems := 1
	for _, s := range b.Shape {
		if s < 0 || (s > 0 && elems > math.MaxInt32/s) {
			return fmt.Errorf("quant: %s: shape %v", key, b.Shape)
		}
		elems *= s
	}
	if len(b.Shape) == 0 || len(b.Shape) > 2 || (len(b.Shape) == 2 && b.Shape[1] != 1) {
		return fmt.Errorf("quant: %s: shape %v, want [%d] or [%d, 1] bytes", key, b.Shape, wantBytes/size, wantBytes/size)
	}
	if elems*es != wantBytes || len(b.Data) != elems*es {
		return fmt.Errorf("quant: %s: %d bytes (shape %v of %s), want %d", key, len(b.Data), b.Shape, b.DType, wantBytes)
	}
	_ = size
	return nil
}

// f32s reads b as want float32 values. Where b's bytes are 4-aligned on a
// little-endian machine they are used in place, as Packed is: the block
// scales of a mapped checkpoint (4.4 GB for a 70B model without double
// quantisation) stay in the page cache instead of the heap. Neither is
// ever written: a merge or a quantisation makes new slices.
func f32s(key string, b Blob, want int) ([]float32, error) {
	if b.DType != "F32" {
		return nil, fmt.Errorf("quant: %s: dtype %s, want F32", key, b.DType)
	}
	if err := checkBlob(key, b, 4, 4*want); err != nil {
		return nil, err
	}
	if want > 0 && littleEndian && uintptr(unsafe.Pointer(&b.Data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b.Data[0])), want), nil
	}
	out := make([]float32, want)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b.Data[4*i:]))
	}
	return out, nil
}
