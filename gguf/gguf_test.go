package gguf_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/gguf"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/lora"
)

func rawTensor(name string, typ gguf.TensorType, data []byte, dims ...uint64) gguf.Tensor {
	return gguf.Tensor{Name: name, Dims: dims, Type: typ, Data: func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}}
}

// TestRoundTrip writes every metadata type and tensors of odd sizes, reads
// them back and checks values, alignment and data.
func TestRoundTrip(t *testing.T) {
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "u8", Value: uint8(200)}, {Key: "i8", Value: int8(-100)},
		{Key: "u16", Value: uint16(60000)}, {Key: "i16", Value: int16(-30000)},
		{Key: "u32", Value: uint32(4e9)}, {Key: "i32", Value: int32(-2e9)},
		{Key: "f32", Value: float32(1.5e-5)}, {Key: "bool", Value: true},
		{Key: "str", Value: "héllo\x00world"}, {Key: "u64", Value: uint64(1 << 60)},
		{Key: "i64", Value: int64(-1 << 60)}, {Key: "f64", Value: 500000.25},
		{Key: "strs", Value: []string{"a", "", "Ġthe", "<|x|>"}},
		{Key: "i32s", Value: []int32{1, -2, 3}},
		{Key: "f32s", Value: []float32{0.5, -1e30}},
		{Key: "bools", Value: []bool{true, false}},
		{Key: "empty", Value: []string{}},
	}
	a := make([]byte, 4*3*5) // f32 [5×3]: 60 bytes, not a multiple of 32
	for i := range a {
		a[i] = byte(i)
	}
	b := []byte{1, 2, 3, 4, 5, 6} // f16 [3]
	c := bytes.Repeat([]byte{7}, 2*33)
	ts := []gguf.Tensor{rawTensor("a", gguf.F32, a, 3, 5), rawTensor("b", gguf.F16, b, 3), rawTensor("c", gguf.BF16, c, 11, 3)}
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := gguf.WriteFile(path, kvs, ts); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 32 {
		t.Errorf("version %d alignment %d", f.Version, f.Alignment)
	}
	if len(f.KV) != len(kvs) {
		t.Fatalf("%d keys, want %d", len(f.KV), len(kvs))
	}
	for i, kv := range kvs {
		if f.KV[i].Key != kv.Key || !reflect.DeepEqual(f.KV[i].Value, kv.Value) {
			t.Errorf("key %d: %q = %#v, want %q = %#v", i, f.KV[i].Key, f.KV[i].Value, kv.Key, kv.Value)
		}
	}
	for i, want := range [][]byte{a, b, c} {
		ti := f.Tensors[i]
		if ti.Name != ts[i].Name || !reflect.DeepEqual(ti.Dims, ts[i].Dims) || ti.Type != ts[i].Type {
			t.Errorf("tensor %d: %+v", i, ti)
		}
		if ti.Offset%32 != 0 {
			t.Errorf("tensor %s at offset %d, not 32-byte aligned", ti.Name, ti.Offset)
		}
		got, err := gguf.ReadTensor(path, ti)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("tensor %s: %v, data %v, want %v", ti.Name, err, got, want)
		}
	}
	// Every truncation is an error, never a panic.
	data, _ := os.ReadFile(path)
	for n := 0; n < int(f.Tensors[2].Offset)+len(c); n += 7 {
		if _, err := gguf.Read(bytes.NewReader(data[:n]), int64(n)); err == nil {
			t.Fatalf("reading %d of %d bytes: no error", n, len(data))
		}
	}
}

// TestWriteRefuses checks the writer's refusals: duplicate keys and
// tensors, a data function writing the wrong size, unknown value types.
func TestWriteRefuses(t *testing.T) {
	one := rawTensor("a", gguf.F32, make([]byte, 4), 1)
	for name, c := range map[string]struct {
		kvs []gguf.KV
		ts  []gguf.Tensor
	}{
		"duplicate key":    {kvs: []gguf.KV{{Key: "k", Value: "a"}, {Key: "k", Value: "b"}}},
		"duplicate tensor": {ts: []gguf.Tensor{one, one}},
		"short data":       {ts: []gguf.Tensor{rawTensor("a", gguf.F32, make([]byte, 3), 1)}},
		"bad value":        {kvs: []gguf.KV{{Key: "k", Value: struct{}{}}}},
		"bad alignment":    {kvs: []gguf.KV{{Key: "general.alignment", Value: uint32(12)}}},
	} {
		if err := gguf.Write(io.Discard, c.kvs, c.ts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestExportLayout reads back an export of a synthetic checkpoint: the
// metadata llama.cpp needs, the tensor names and dims, the q/k rows
// permuted per head and the other weights unchanged.
func TestExportLayout(t *testing.T) {
	dir, m, tok := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 1})
	path := export(t, m, dir, engine.F32)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	for k, want := range map[string]any{
		"general.architecture":                   "llama",
		"general.file_type":                      uint32(0),
		"llama.block_count":                      uint32(c.NumLayers),
		"llama.embedding_length":                 uint32(c.HiddenSize),
		"llama.feed_forward_length":              uint32(c.IntermediateSize),
		"llama.attention.head_count":             uint32(c.NumHeads),
		"llama.attention.head_count_kv":          uint32(c.NumKVHeads),
		"llama.rope.dimension_count":             uint32(c.HeadDim),
		"llama.rope.freq_base":                   float32(c.RopeTheta),
		"llama.attention.layer_norm_rms_epsilon": float32(c.RMSNormEps),
		"llama.context_length":                   uint32(c.MaxPositionEmbeddings),
		"llama.vocab_size":                       uint32(c.VocabSize),
		"tokenizer.ggml.model":                   "gpt2",
		"tokenizer.ggml.pre":                     "llama-bpe",
		"tokenizer.ggml.add_bos_token":           true,
	} {
		if got, ok := f.Get(k); !ok || got != want {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	toks, _ := f.Get("tokenizer.ggml.tokens")
	if ts := toks.([]string); len(ts) != c.VocabSize || ts[300] != tok.TokenString(300) {
		t.Errorf("%d tokens", len(ts))
	}
	merges, _ := f.Get("tokenizer.ggml.merges")
	if ms := merges.([]string); len(ms) == 0 || !strings.Contains(ms[0], " ") {
		t.Errorf("merges %v", ms[:min(3, len(ms))])
	}
	if bos, _ := tok.BOS(); !kvIs(f, "tokenizer.ggml.bos_token_id", uint32(bos)) {
		t.Error("bos_token_id")
	}
	for _, nw := range m.Weights() {
		name := gguf.Name(nw.Name)
		ti, ok := f.Tensor(name)
		if !ok {
			t.Errorf("%s (%s) missing", name, nw.Name)
			continue
		}
		w := nw.Tensor
		if len(w.Shape) == 2 && !reflect.DeepEqual(ti.Dims, []uint64{uint64(w.Cols()), uint64(w.Rows())}) {
			t.Errorf("%s: dims %v for shape %v", name, ti.Dims, w.Shape)
		}
		b, err := gguf.ReadTensor(path, ti)
		if err != nil {
			t.Fatal(err)
		}
		got := gguf.F32s(b)
		permuted := strings.HasSuffix(name, "attn_q.weight") || strings.HasSuffix(name, "attn_k.weight") // Llama only
		cols := w.Cols()
		for o := 0; o < len(got)/cols; o++ {
			src := o
			if permuted {
				src = gguf.PermuteRow(o, c.HeadDim)
			}
			for j := 0; j < cols; j++ {
				if got[o*cols+j] != w.At(src*cols+j) {
					t.Fatalf("%s[%d,%d] = %g, want row %d's %g", name, o, j, got[o*cols+j], src, w.At(src*cols+j))
				}
			}
		}
	}
	if _, ok := f.Tensor("output.weight"); ok == c.TieWordEmbeddings {
		t.Errorf("output.weight present: %v with tie_word_embeddings %v", ok, c.TieWordEmbeddings)
	}
}

func kvIs(f *gguf.File, k string, want any) bool {
	v, ok := f.Get(k)
	return ok && v == want
}

// TestPermuteRow checks the permutation against the converter's reshape
// (n_head, 2, head_dim/2) -> swap axes 1 and 2 on a head_dim of 8.
func TestPermuteRow(t *testing.T) {
	want := []int{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15}
	for o, w := range want {
		if got := gguf.PermuteRow(o, 8); got != w {
			t.Errorf("PermuteRow(%d, 8) = %d, want %d", o, got, w)
		}
	}
}

// TestExportDTypes checks the f16 and bf16 exports hold the weights
// rounded to nearest even.
func TestExportDTypes(t *testing.T) {
	dir, m, _ := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 1})
	for _, dt := range []engine.DType{engine.F16, engine.BF16} {
		path := export(t, m, dir, dt)
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ti, _ := f.Tensor("blk.0.ffn_down.weight")
		b, err := gguf.ReadTensor(path, ti)
		if err != nil {
			t.Fatal(err)
		}
		want := m.Layers[0].Down.Convert(dt)
		for i := range want.Half {
			if got := binary.LittleEndian.Uint16(b[2*i:]); got != want.Half[i] {
				t.Fatalf("%v: element %d = %#x, want %#x", dt, i, got, want.Half[i])
			}
		}
		if ti, _ := f.Tensor("blk.0.attn_norm.weight"); ti.Type != gguf.F32 {
			t.Errorf("%v: norm stored as %v", dt, ti.Type)
		}
	}
}

// TestExportLoRALayout reads back an adapter export: the adapter metadata,
// alpha as scale·r, lora_a and lora_b dims, and lora_b's q rows permuted.
func TestExportLoRALayout(t *testing.T) {
	_, m, _ := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 1, Layers: 2})
	c := m.Config
	a, err := lora.New(lora.Config{R: 4, Alpha: 6, TargetModules: []string{"q_proj", "down_proj"}, UseRSLoRA: true}, c, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Params() {
		for i := range p.Data {
			p.Data[i] = float32(i%11) - 5
		}
	}
	path := filepath.Join(t.TempDir(), "lora.gguf")
	if err := gguf.ExportLoRA(path, a, c, gguf.ExportOptions{DType: engine.F32}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"general.type": "adapter", "adapter.type": "lora", "general.architecture": "llama", "adapter.lora.alpha": float32(6.0 / 2 * 4)} {
		if got, ok := f.Get(k); !ok || got != want {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	if len(f.Tensors) != 2*2*2 {
		t.Errorf("%d tensors, want 8", len(f.Tensors))
	}
	q := a.Layers[1]["q_proj"]
	ta, _ := f.Tensor("blk.1.attn_q.weight.lora_a")
	tb, _ := f.Tensor("blk.1.attn_q.weight.lora_b")
	if !reflect.DeepEqual(ta.Dims, []uint64{uint64(c.HiddenSize), 4}) || !reflect.DeepEqual(tb.Dims, []uint64{4, uint64(c.NumHeads * c.HeadDim)}) {
		t.Fatalf("dims %v %v", ta.Dims, tb.Dims)
	}
	b, _ := gguf.ReadTensor(path, tb)
	got := gguf.F32s(b)
	for o := 0; o < q.B.Rows; o++ {
		src := gguf.PermuteRow(o, c.HeadDim)
		if !slices.Equal(got[o*4:o*4+4], q.B.Data[src*4:src*4+4]) {
			t.Fatalf("lora_b row %d is not B's row %d", o, src)
		}
	}
	if _, ok := f.Tensor("blk.0.ffn_down.weight.lora_b"); !ok {
		t.Error("no blk.0.ffn_down.weight.lora_b")
	}
}

// TestQ8_0 checks the Q8_0 block layout on known values and an export
// with Q8_0: matrices with rows of a multiple of 32 are Q8_0 within half a
// step of the weights, the others F16, norms F32, file_type 7.
func TestQ8_0(t *testing.T) {
	x := make([]float32, 32)
	for i := range x {
		x[i] = float32(i) - 12
	}
	b := make([]byte, 34)
	gguf.QuantizeQ8Block(b, x)
	got := gguf.DequantizeQ8(b)
	d := float32(19.0 / 127)
	if int8(b[2+31]) != 127 || int8(b[2]) != -80 {
		t.Errorf("q[0] %d q[31] %d, want -80 and 127", int8(b[2]), int8(b[2+31]))
	}
	for i := range x {
		if diff := got[i] - x[i]; diff > d/2+1e-3 || diff < -d/2-1e-3 {
			t.Errorf("x[%d] %g dequantizes to %g", i, x[i], got[i])
		}
	}

	dir, m, _ := synth(t, llama.SynthOptions{Shape: "tiny", Seed: 1, Layers: 1})
	path := exportOpts(t, m, dir, gguf.ExportOptions{DType: engine.F16, Q8_0: true})
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !kvIs(f, "general.file_type", uint32(7)) {
		t.Error("general.file_type is not 7 (MOSTLY_Q8_0)")
	}
	for name, typ := range map[string]gguf.TensorType{"blk.0.attn_v.weight": gguf.Q8_0, "token_embd.weight": gguf.Q8_0,
		"blk.0.ffn_down.weight": gguf.F16, "blk.0.ffn_norm.weight": gguf.F32} {
		if ti, _ := f.Tensor(name); ti.Type != typ {
			t.Errorf("%s stored as %v, want %v", name, ti.Type, typ)
		}
	}
	ti, _ := f.Tensor("blk.0.attn_v.weight")
	data, err := gguf.ReadTensor(path, ti)
	if err != nil {
		t.Fatal(err)
	}
	vals := gguf.DequantizeQ8(data)
	w := m.Layers[0].V
	if len(vals) != w.Numel() {
		t.Fatalf("%d values, want %d", len(vals), w.Numel())
	}
	for blk := 0; blk < len(vals)/32; blk++ {
		var amax float32
		for j := 0; j < 32; j++ {
			amax = max(amax, float32(math.Abs(float64(w.At(blk*32+j)))))
		}
		for j := 0; j < 32; j++ {
			i := blk*32 + j
			// Half a step, plus the f16 rounding of the step d.
			if diff := math.Abs(float64(vals[i] - w.At(i))); diff > float64(amax)/127*0.57+1e-6 {
				t.Fatalf("element %d: %g dequantized, weight %g (amax %g)", i, vals[i], w.At(i), amax)
			}
		}
	}
}

// FuzzRead feeds damaged GGUF headers to Read: an error or a header whose
// tensors lie inside the input, never a panic or a huge allocation.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	kvs := []gguf.KV{{Key: "a", Value: []string{"x", "yz"}}, {Key: "b", Value: uint32(7)}, {Key: "c", Value: []float32{1, 2}}}
	if err := gguf.Write(&buf, kvs, []gguf.Tensor{rawTensor("t", gguf.F32, make([]byte, 8), 2), rawTensor("q", gguf.Q8_0, make([]byte, 34), 32)}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := gguf.Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, ti := range h.Tensors {
			if ti.Size >= 0 && ti.Offset+ti.Size > int64(len(data)) {
				t.Fatalf("tensor %s [%d, %d) past the end %d", ti.Name, ti.Offset, ti.Offset+ti.Size, len(data))
			}
		}
	})
}
