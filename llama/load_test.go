package llama

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
)

// synthTiny writes a small checkpoint and returns its folder.
func synthTiny(t *testing.T, opts SynthOptions) string {
	t.Helper()
	dir := t.TempDir()
	if opts.Layers == 0 {
		opts.Layers = 2
	}
	if err := Synth(dir, opts); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawSafetensors writes a file with the given JSON header and data bytes.
func rawSafetensors(t *testing.T, path, header string, data []byte) {
	t.Helper()
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(append(b, header...), data...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got nil", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a := engine.FromF32([]float32{1, -2.5, 3, 4, 5, 6}, 2, 3)
	b := a.Convert(engine.BF16)
	b.Shape = []int{3, 2}
	c := engine.FromF32([]float32{0.5}, 1).Convert(engine.F16)
	p := filepath.Join(dir, "x.safetensors")
	if err := WriteSafetensors(p, map[string]*engine.Tensor{"a": a, "b.w": b, "c": c}, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	ts, meta, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" || len(ts) != 3 {
		t.Fatalf("meta %v, %d tensors", meta, len(ts))
	}
	for i, v := range []float32{1, -2.5, 3, 4, 5, 6} {
		if ts["a"].F32[i] != v || ts["b.w"].At(i) != v {
			t.Fatalf("element %d: %v %v, want %v", i, ts["a"].F32[i], ts["b.w"].At(i), v)
		}
	}
	if ts["b.w"].DType != engine.BF16 || ts["b.w"].Shape[0] != 3 || ts["c"].DType != engine.F16 || ts["c"].At(0) != 0.5 {
		t.Fatalf("dtype/shape not kept: %v %v %v", ts["b.w"].DType, ts["b.w"].Shape, ts["c"].DType)
	}
	// I64 tensors go beside float ones.
	p3 := filepath.Join(dir, "mixed.safetensors")
	if err := WriteSafetensorsMixed(p3, []NamedTensor{{"f", a}}, []NamedInts{{"ids", []int{2, 2}, []int64{1, -2, 1 << 40, 4}}}, nil); err != nil {
		t.Fatal(err)
	}
	ints, shapes, err := ReadSafetensorsInts(p3)
	if err != nil || len(ints["ids"]) != 4 || ints["ids"][1] != -2 || ints["ids"][2] != 1<<40 || shapes["ids"][0] != 2 {
		t.Fatalf("ints %v %v %v", ints, shapes, err)
	}
	if fl, _, err := ReadSafetensors(p3); err != nil || len(fl) != 1 || fl["f"].F32[1] != -2.5 {
		t.Fatalf("floats of a mixed file: %v %v", fl, err)
	}
	// The data section starts 8-byte aligned.
	raw, _ := os.ReadFile(p)
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Fatalf("header length %d leaves the data misaligned", n)
	}
	// A misaligned f32 tensor (after a 1-element bf16 one) reads correctly.
	p2 := filepath.Join(dir, "mis.safetensors")
	data := []byte{0x80, 0x3f} // bf16 1.0
	for _, v := range []float32{7, 8} {
		u := math.Float32bits(v)
		data = append(data, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	rawSafetensors(t, p2, `{"h":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"f":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}`, data)
	ts, _, err = ReadSafetensors(p2)
	if err != nil {
		t.Fatal(err)
	}
	if ts["f"].F32[0] != 7 || ts["f"].F32[1] != 8 || ts["h"].At(0) != 1 {
		t.Fatalf("misaligned read: %v %v", ts["f"].F32, ts["h"].At(0))
	}
}

func TestLoadPartialAndDTypes(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 9, Layers: 3, ShardBytes: 60000})
	full, err := Load(dir, LoadOptions{DType: engine.F32, MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if full.Norm == nil || full.LMHead == nil || full.Layers[2] == nil {
		t.Fatal("full load is missing parts")
	}
	part, err := Load(dir, LoadOptions{DType: engine.BF16, MaxLayer: 1})
	if err != nil {
		t.Fatal(err)
	}
	if part.Layers[0] == nil || part.Layers[1] != nil || part.Norm != nil || part.LMHead != nil {
		t.Fatal("MaxLayer 1 must load the embedding and layer 0 only")
	}
	if part.closer != nil {
		t.Fatal("an F32 checkpoint held as BF16 must not keep the shards mapped")
	}
	// BF16 holding is the round-to-nearest-even of the stored f32.
	w, g := full.Layers[0].Q, part.Layers[0].Q
	for i := 0; i < w.Numel(); i += 97 {
		if g.DType != engine.BF16 || g.Half[i] != engine.FromF32([]float32{w.F32[i]}, 1).Convert(engine.BF16).Half[0] {
			t.Fatalf("Q[%d] held as %v %x, stored %v", i, g.DType, g.Half[i], w.F32[i])
		}
	}
	if err := part.Forward(NewBatch([][]int{{1, 2}}), []int{2}, func(int, []float32) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "not loaded") {
		t.Fatalf("forward past the loaded layers: %v", err)
	}
	head, err := Load(dir, LoadOptions{DType: engine.F32, MaxLayer: 0, NeedLMHead: true})
	if err != nil {
		t.Fatal(err)
	}
	if head.Norm == nil || head.LMHead == nil || head.Layers[0] != nil {
		t.Fatal("NeedLMHead must load the norm and head")
	}
}

func TestLoadBadInput(t *testing.T) {
	t.Run("missing-shard", func(t *testing.T) {
		dir := synthTiny(t, SynthOptions{Seed: 1, ShardBytes: 60000})
		shards, _ := filepath.Glob(filepath.Join(dir, "model-00002-of-*.safetensors"))
		if len(shards) != 1 {
			t.Fatalf("want a second shard, got %v", shards)
		}
		os.Remove(shards[0])
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, filepath.Base(shards[0]), "missing")
	})
	t.Run("truncated-shard", func(t *testing.T) {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		p := filepath.Join(dir, "model.safetensors")
		st, _ := os.Stat(p)
		os.Truncate(p, st.Size()-10)
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, p, "past the end", "truncated")
	})
	t.Run("no-checkpoint", func(t *testing.T) {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		os.Remove(filepath.Join(dir, "model.safetensors"))
		_, err := Load(dir, LoadOptions{})
		wantErr(t, err, "no model.safetensors")
	})
	t.Run("shape-vs-config", func(t *testing.T) {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		cfg, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(cfg), `"intermediate_size": 172`, `"intermediate_size": 170`, 1)), 0o644)
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, "model.layers.0.mlp.gate_proj.weight", "[172 64]", "[170 64]")
	})
	t.Run("config-wrong-type", func(t *testing.T) {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		cfg, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(cfg), `"hidden_size": 64`, `"hidden_size": "64"`, 1)), 0o644)
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, "config.json", "hidden_size", "integer")
	})
	for _, c := range []struct{ from, to, want string }{
		{`"attention_bias": false`, `"attention_bias": true`, "attention_bias"},
		{`"hidden_act": "silu"`, `"hidden_act": "gelu"`, "gelu"},
		{`"rope_theta": 500000`, `"rope_theta": -1`, "rope_theta"},
		{`"num_key_value_heads": 2`, `"num_key_value_heads": 3`, "num_key_value_heads"},
	} {
		t.Run("config-"+c.want, func(t *testing.T) {
			dir := synthTiny(t, SynthOptions{Seed: 1})
			cfg, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			if !strings.Contains(string(cfg), c.from) {
				t.Fatalf("config.json lacks %s", c.from)
			}
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(cfg), c.from, c.to, 1)), 0o644)
			_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
			wantErr(t, err, "config.json", c.want)
		})
	}
	// Rewrites the single-file checkpoint with one tensor changed or removed.
	rewrite := func(t *testing.T, edit func(map[string]*engine.Tensor)) string {
		dir := synthTiny(t, SynthOptions{Seed: 1})
		p := filepath.Join(dir, "model.safetensors")
		ts, meta, err := ReadSafetensors(p)
		if err != nil {
			t.Fatal(err)
		}
		edit(ts)
		if err := WriteSafetensors(p, ts, meta); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("missing-tensor", func(t *testing.T) {
		dir := rewrite(t, func(ts map[string]*engine.Tensor) { delete(ts, "lm_head.weight") })
		if _, err := Load(dir, LoadOptions{MaxLayer: 1}); err != nil {
			t.Fatalf("the head is not needed for MaxLayer 1: %v", err)
		}
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, "missing tensor", "lm_head.weight")
	})
	t.Run("nan", func(t *testing.T) {
		dir := rewrite(t, func(ts map[string]*engine.Tensor) {
			ts["model.layers.1.mlp.up_proj.weight"].F32[5] = float32(math.NaN())
		})
		// Held as bf16, the weight is converted while loading: Load fails.
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers, DType: engine.BF16})
		wantErr(t, err, "model.safetensors", "model.layers.1.mlp.up_proj.weight", "element 5", "NaN")
		// Held as f32 it stays in the mapped file, unread, until layer 1 is
		// first used: every use of layer 1 fails, layer 0 alone does not.
		m, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		if err != nil {
			t.Fatalf("a mapped weight is checked at first use, not by Load: %v", err)
		}
		defer m.Close()
		b := NewBatch([][]int{{1, 2, 3}})
		if err := m.Forward(b, []int{0, 1}, func(int, []float32) error { return nil }); err != nil {
			t.Fatalf("hidden state 1 needs only layer 0: %v", err)
		}
		if err := m.VerifyLayer(0); err != nil {
			t.Fatal(err)
		}
		want := []string{"model.safetensors", "model.layers.1.mlp.up_proj.weight", "element 5", "NaN"}
		for i := 0; i < 2; i++ { // a failed check stays failed
			err = m.Forward(b, []int{2}, func(int, []float32) error { t.Fatal("fn called"); return nil })
			wantErr(t, err, want...)
		}
		wantErr(t, m.VerifyLayer(1), want...)
		wantErr(t, m.Verify(), want...)
		_, err = m.ForwardTrain(autograd.NewTape(), b, 2, nil)
		wantErr(t, err, want...)
		_, err = m.Generate([]int{1, 2}, GenerateOptions{MaxNewTokens: 1})
		wantErr(t, err, want...)
	})
	t.Run("inf-head", func(t *testing.T) {
		dir := rewrite(t, func(ts map[string]*engine.Tensor) {
			ts["lm_head.weight"].F32[7] = float32(math.Inf(-1))
		})
		m, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		_, err = m.Logits(make([]float32, m.Config.HiddenSize), 1)
		wantErr(t, err, "lm_head.weight", "element 7", "Inf")
	})
	t.Run("inf-bf16", func(t *testing.T) {
		dir := rewrite(t, func(ts map[string]*engine.Tensor) {
			ts["model.norm.weight"].F32[3] = float32(math.Inf(1))
			ts["model.norm.weight"] = ts["model.norm.weight"].Convert(engine.BF16)
		})
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers, DType: engine.BF16})
		wantErr(t, err, "model.norm.weight", "Inf")
	})
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	for _, c := range []struct {
		name, header string
		data         int
		want         []string
	}{
		{"past-end", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8, []string{`"a"`, "past the end"}},
		{"overlap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12, []string{"overlap", `"a"`, `"b"`}},
		{"size-mismatch", `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8, []string{`"a"`, "needs 12"}},
		{"unsupported-dtype", `{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}`, 8, []string{`"a"`, "unsupported dtype I32"}},
		{"unknown-dtype", `{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,8]}}`, 8, []string{"Q4"}},
		{"not-json", `{"a":`, 0, []string{"bad safetensors header"}},
		{"header-too-long", "", -1, []string{"past the end"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.data < 0 {
				os.WriteFile(p, []byte{200, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, 0o644)
			} else {
				rawSafetensors(t, p, c.header, make([]byte, c.data))
			}
			_, _, err := ReadSafetensors(p)
			wantErr(t, err, append([]string{p}, c.want...)...)
		})
	}
}

func TestSynthDeterministic(t *testing.T) {
	a := synthTiny(t, SynthOptions{Seed: 5, DType: engine.BF16})
	b := synthTiny(t, SynthOptions{Seed: 5, DType: engine.BF16})
	c := synthTiny(t, SynthOptions{Seed: 6, DType: engine.BF16})
	fa, _ := os.ReadFile(filepath.Join(a, "model.safetensors"))
	fb, _ := os.ReadFile(filepath.Join(b, "model.safetensors"))
	fc, _ := os.ReadFile(filepath.Join(c, "model.safetensors"))
	if string(fa) != string(fb) || string(fa) == string(fc) {
		t.Fatal("same seed must give the same file, another seed another")
	}
	// Weight statistics: linear weights have std 1/sqrt(fan_in), norms ≈ 1.
	ts, _, err := ReadSafetensors(filepath.Join(a, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, mean, std float64) {
		w := ts[name].ToF32()
		var s, ss float64
		for _, v := range w {
			s += float64(v)
		}
		m := s / float64(len(w))
		for _, v := range w {
			ss += (float64(v) - m) * (float64(v) - m)
		}
		sd := math.Sqrt(ss / float64(len(w)))
		if math.Abs(m-mean) > 0.05*std+0.01 || math.Abs(sd-std) > 0.05*std {
			t.Errorf("%s: mean %.4f std %.4f, want %.4f and %.4f", name, m, sd, mean, std)
		}
	}
	check("model.layers.0.mlp.down_proj.weight", 0, 1/math.Sqrt(172))
	check("model.layers.1.self_attn.q_proj.weight", 0, 1.0/8)
	check("model.embed_tokens.weight", 0, 1)
	check("model.norm.weight", 1, 0.1)
	cfg, err := LoadConfig(filepath.Join(a, "config.json"))
	if err != nil || cfg.NumLayers != 2 || cfg.TorchDType != "bfloat16" || cfg.HeadDim != 16 {
		t.Fatalf("config %+v %v", cfg, err)
	}
	for _, shape := range []string{"llama3.2-1b", "llama3-8b"} {
		c, err := SynthConfig(SynthOptions{Shape: shape})
		if err != nil {
			t.Fatal(err)
		}
		js, _ := c.ConfigJSON()
		back, err := ParseConfig(js, shape)
		if err != nil || back.RopeScaling != c.RopeScaling || back.TieWordEmbeddings != (shape == "llama3.2-1b") || back.HeadDim != 64*(1+btoi(shape == "llama3-8b")) {
			t.Fatalf("%s: %+v %v", shape, back, err)
		}
	}
	if _, err := SynthConfig(SynthOptions{Shape: "gpt2"}); err == nil {
		t.Fatal("unknown shape must fail")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSampling(t *testing.T) {
	logits := []float32{0, 3, 1, 2.5, -1}
	rng := func(s uint64) *randSource { return newRand(s) }
	if got := pick(logits, 0, 0, rng(1)); got != 1 {
		t.Fatalf("greedy picked %d", got)
	}
	// Top-p 0.5 keeps only token 1 (p≈0.54 at temperature 1).
	for s := uint64(0); s < 20; s++ {
		if got := pick(logits, 1, 0.5, rng(s)); got != 1 {
			t.Fatalf("top-p 0.5 picked %d", got)
		}
	}
	// Frequencies follow the softmax at temperature 1.
	counts := make([]int, len(logits))
	r := rng(7)
	const n = 20000
	for i := 0; i < n; i++ {
		counts[pick(logits, 1, 0, r)]++
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	for i, v := range logits {
		p := math.Exp(float64(v)) / z
		if f := float64(counts[i]) / n; math.Abs(f-p) > 4*math.Sqrt(p*(1-p)/n)+1e-3 {
			t.Errorf("token %d: frequency %.4f, softmax %.4f", i, f, p)
		}
	}
	// Same seed, same draws.
	a, b := rng(3), rng(3)
	for i := 0; i < 10; i++ {
		if pick(logits, 0.7, 0.9, a) != pick(logits, 0.7, 0.9, b) {
			t.Fatal("sampling is not reproducible")
		}
	}
}

// TestLoadConvertSlices converts a tensor larger than one conversion slice
// and finds a NaN in its last slice.
func TestLoadConvertSlices(t *testing.T) {
	dir := t.TempDir()
	const rows, cols = 1100, 4000 // 4.4M elements: two slices
	w := engine.NewF32(rows, cols)
	for i := range w.F32 {
		w.F32[i] = float32(i%1000)*0.001 - 0.5
	}
	if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), map[string]*engine.Tensor{"w": w}, nil); err != nil {
		t.Fatal(err)
	}
	ck, err := openCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ck.load("w", []int{rows, cols}, engine.BF16)
	if err != nil {
		t.Fatal(err)
	}
	want := w.Convert(engine.BF16)
	for i := range want.Half {
		if got.Half[i] != want.Half[i] {
			t.Fatalf("element %d: %x, want %x", i, got.Half[i], want.Half[i])
		}
	}
	ck.close()
	w.F32[rows*cols-3] = float32(math.Inf(-1))
	if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), map[string]*engine.Tensor{"w": w}, nil); err != nil {
		t.Fatal(err)
	}
	ck, err = openCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.close()
	_, err = ck.load("w", []int{rows, cols}, engine.BF16)
	wantErr(t, err, `"w"`, "element 4399997", "Inf")
}

// TestGenerateSampling checks seeded sampling: a tiny top-p keeps only the
// most likely token (so it decodes greedily), the same seed repeats the
// same tokens, and the stop token ends generation.
func TestGenerateSampling(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 12})
	m, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := []int{510, 40, 41, 42}
	greedy, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 10, StopTokens: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	nucleus, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 10, Temperature: 1, TopP: 1e-9, Seed: 5, StopTokens: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(greedy) != fmt.Sprint(nucleus) {
		t.Fatalf("top-p 1e-9 gave %v, greedy %v", nucleus, greedy)
	}
	a, _ := m.Generate(prompt, GenerateOptions{MaxNewTokens: 10, Temperature: 1.5, Seed: 9, StopTokens: []int{}})
	b, _ := m.Generate(prompt, GenerateOptions{MaxNewTokens: 10, Temperature: 1.5, Seed: 9, StopTokens: []int{}})
	c, _ := m.Generate(prompt, GenerateOptions{MaxNewTokens: 10, Temperature: 1.5, Seed: 10, StopTokens: []int{}})
	if fmt.Sprint(a) != fmt.Sprint(b) || fmt.Sprint(a) == fmt.Sprint(c) || len(a) != 10 {
		t.Fatalf("seeded sampling: %v %v %v", a, b, c)
	}
	stop, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 10, StopTokens: []int{greedy[3]}})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(greedy[:indexOf(greedy, greedy[3])+1]); fmt.Sprint(stop) != want {
		t.Fatalf("stop token %d: got %v, want %v", greedy[3], stop, want)
	}
	if _, err := m.Generate([]int{1, 9999}, GenerateOptions{}); err == nil {
		t.Fatal("a token outside the vocabulary must be an error")
	}
}

func indexOf(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// TestSafetensorsAligned writes U8, F16, F32 and I64 tensors of odd sizes
// in an order that would misalign them and checks that the file puts
// larger elements first, every tensor at a multiple of its element size
// from the 8-aligned data section, the given order kept within a size.
func TestSafetensorsAligned(t *testing.T) {
	bytesOf := func(n int) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(make([]byte, n)); return err }
	}
	entries := []stEntry{
		{Name: "u8a", Bytes: true, Shape: []int{3}, Write: bytesOf(3)},
		{Name: "f32a", DType: engine.F32, Shape: []int{5}, Write: bytesOf(20)},
		{Name: "f16", DType: engine.F16, Shape: []int{3}, Write: bytesOf(6)},
		{Name: "u8b", Bytes: true, Shape: []int{1}, Write: bytesOf(1)},
		{Name: "i64", Int64: true, Shape: []int{2}, Write: bytesOf(16)},
		{Name: "f32b", DType: engine.F32, Shape: []int{1}, Write: bytesOf(4)},
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := writeSafetensorsStream(path, entries, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(data)
	var hdr map[string]struct {
		DType       string   `json:"dtype"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(data[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	start := 8 + int64(n)
	if start%8 != 0 {
		t.Fatalf("the data section starts at %d", start)
	}
	size := map[string]int64{"I64": 8, "F32": 4, "F16": 2, "U8": 1}
	var order []string
	for name, h := range hdr {
		if (start+h.DataOffsets[0])%size[h.DType] != 0 {
			t.Errorf("%s (%s) at byte %d", name, h.DType, start+h.DataOffsets[0])
		}
		order = append(order, name)
	}
	slices.SortFunc(order, func(a, b string) int { return cmp.Compare(hdr[a].DataOffsets[0], hdr[b].DataOffsets[0]) })
	if want := []string{"i64", "f32a", "f32b", "f16", "u8a", "u8b"}; !slices.Equal(order, want) {
		t.Errorf("data order %v, want %v", order, want)
	}
}
