//go:build vulkan && (amd64 || arm64) && (linux || darwin || windows)

package vulkan

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
)

// synthModel writes a synthetic checkpoint and loads all of it.
func synthModel(t testing.TB, dir string, opts llama.SynthOptions, load llama.LoadOptions) *llama.Model {
	t.Helper()
	saved := llama.SynthTokenizer
	llama.SynthTokenizer = nil // no tokenizer needed, and faster
	defer func() { llama.SynthTokenizer = saved }()
	if err := llama.Synth(dir, opts); err != nil {
		t.Fatal(err)
	}
	m, err := llama.Load(dir, load)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// randomBatch packs sequences of the given lengths of random token ids.
func randomBatch(rng *rand.Rand, vocab int, lens ...int) llama.Batch {
	var seqs [][]int
	for _, n := range lens {
		s := make([]int, n)
		for i := range s {
			s[i] = rng.IntN(vocab)
		}
		seqs = append(seqs, s)
	}
	return llama.NewBatch(seqs)
}

// allLayers is 0 … n.
func allLayers(n int) []int {
	var ks []int
	for k := 0; k <= n; k++ {
		ks = append(ks, k)
	}
	return ks
}

// compareForward runs b through m on the CPU and through dm, and checks
// every hidden state: max |device − CPU| / RMS(CPU) ≤ 1e-3. It returns the
// worst ratio.
func compareForward(t *testing.T, m *llama.Model, dm *Model, b llama.Batch, layers []int) float64 {
	t.Helper()
	want, err := m.HiddenStates(b, layers)
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	worst := 0.0
	err = dm.Forward(b, layers, func(k int, h []float32) error {
		order = append(order, k)
		ref := want[k]
		if len(h) != len(ref) {
			return fmt.Errorf("hidden state %d: %d values, want %d", k, len(h), len(ref))
		}
		var ss, maxErr float64
		for i, r := range ref {
			ss += float64(r) * float64(r)
			e := math.Abs(float64(h[i]) - float64(r))
			if math.IsNaN(e) {
				e = math.Inf(1)
			}
			maxErr = max(maxErr, e)
		}
		rms := math.Sqrt(ss / float64(len(ref)))
		ratio := maxErr / rms
		worst = max(worst, ratio)
		if ratio > 1e-3 || rms == 0 {
			t.Errorf("hidden state %d: max abs error %.3g, RMS %.3g: ratio %.3g > 1e-3", k, maxErr, rms, ratio)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != len(want) {
		t.Fatalf("fn called for %v, want %d hidden states", order, len(want))
	}
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("fn called out of order: %v", order)
		}
	}
	return worst
}

// toF16 holds every Linear and embedding weight of m as f16 (exact for a
// checkpoint stored in f16): Load holds f16 checkpoints as f32.
func toF16(m *llama.Model) {
	m.Embed = m.Embed.Convert(engine.F16)
	if m.LMHead != nil {
		m.LMHead = m.LMHead.Convert(engine.F16)
	}
	for _, L := range m.Layers {
		for _, p := range []**engine.Tensor{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			*p = (*p).Convert(engine.F16)
		}
	}
}

// TestForwardMatchesCPU compares every hidden state of the device forward
// with llama.Model.Forward, for the tiny shape and a GQA shape of more
// layers, weights held in f32, bf16 and f16, Qwen2's biases and Qwen3's
// q/k norms (without their sliding windows), sequences of 1, 5, 33 and 70
// tokens packed together (and an empty one), and with the device's binding
// range lowered so that the MLP runs in chunks and the GEMMs and the
// embedding split their operands.
func TestForwardMatchesCPU(t *testing.T) {
	gqa := llama.SynthOptions{Shape: "tiny", Layers: 5, Hidden: 96, Heads: 6, KVHeads: 2, HeadDim: 16, FFN: 160, Vocab: 300}
	cases := []struct {
		name     string
		opts     llama.SynthOptions
		load     engine.DType
		f16      bool
		noWindow bool
		small    bool // lower the binding range
	}{
		{name: "tiny-f32", opts: llama.SynthOptions{Shape: "tiny"}},
		{name: "tiny-bf16", opts: llama.SynthOptions{Shape: "tiny", DType: engine.BF16}, load: engine.BF16},
		{name: "tiny-f16", opts: llama.SynthOptions{Shape: "tiny", DType: engine.F16}, f16: true},
		{name: "gqa-f32", opts: gqa},
		{name: "gqa-bf16", opts: withDType(gqa, engine.BF16), load: engine.BF16},
		{name: "gqa-f16", opts: withDType(gqa, engine.F16), f16: true},
		{name: "qwen2-biases", opts: llama.SynthOptions{Shape: "tiny-qwen2"}, noWindow: true},
		{name: "qwen3-qknorm", opts: llama.SynthOptions{Shape: "tiny-qwen3", DType: engine.BF16}, load: engine.BF16, noWindow: true},
		{name: "tiny-split", opts: llama.SynthOptions{Shape: "tiny"}, small: true},
	}
	c := openContext(t, Options{})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Seed = uint64(i + 1)
			m := synthModel(t, t.TempDir(), tc.opts, llama.LoadOptions{MaxLayer: llama.AllLayers, DType: tc.load})
			if tc.f16 {
				toF16(m)
			}
			if tc.noWindow {
				m.Config.SlidingWindow = 0
			}
			if tc.small {
				saved := c.rangeLimit
				c.rangeLimit = 64*4*uint64(m.Config.IntermediateSize) + 1024
				defer func() { c.rangeLimit = saved }()
			}
			dm, err := Upload(c, m)
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			b := randomBatch(rng, m.Config.VocabSize, 1, 5, 0, 33, 70)
			start := time.Now()
			if n := dm.Streamed(); n != 0 {
				t.Errorf("%d layers streamed", n)
			}
			worst := compareForward(t, m, dm, b, allLayers(m.Config.NumLayers))
			if tc.small {
				if dm.act.mlpRows != 64 {
					t.Errorf("MLP chunk of %d rows, want 64 (two chunks for %d tokens)", dm.act.mlpRows, b.NumTokens())
				}
			}
			// A second, smaller batch reuses the activation buffers; a
			// subset of the hidden states stops at the highest.
			b2 := randomBatch(rng, m.Config.VocabSize, 3, 1)
			worst = max(worst, compareForward(t, m, dm, b2, []int{2, 1}))
			t.Logf("%s: %d layers, %d tokens: worst max error / RMS %.2e (%v)", tc.name, m.Config.NumLayers, b.NumTokens(), worst, time.Since(start).Round(time.Millisecond))
		})
	}
}

func withDType(o llama.SynthOptions, d engine.DType) llama.SynthOptions {
	o.DType = d
	return o
}

// TestForwardRefuses checks that Upload refuses each model feature the
// device forward does not implement, in one line naming it.
func TestForwardRefuses(t *testing.T) {
	c := openContext(t, Options{})
	all := llama.LoadOptions{MaxLayer: llama.AllLayers}
	cases := []struct {
		name string
		opts llama.SynthOptions
		load llama.LoadOptions
		edit func(m *llama.Model)
		want string
	}{
		{"gemma", llama.SynthOptions{Shape: "tiny-gemma"}, all, nil, "RMSNorm by 1 + weight (gemma)"},
		{"gemma2", llama.SynthOptions{Shape: "tiny-gemma2"}, all, nil, "(gemma2)"},
		{"bloom", llama.SynthOptions{Shape: "tiny-bloom"}, all, nil, "LayerNorm with bias (bloom)"},
		{"mistral-window", llama.SynthOptions{Shape: "tiny-mistral"}, all, nil, "sliding window of 6 positions (mistral, layer 0)"},
		{"qwen2-window", llama.SynthOptions{Shape: "tiny-qwen2"}, all, nil, "sliding window of 6 positions (qwen2, layer 1)"},
		{"nf4", llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers, Numerics: llama.Numerics{Quant: "nf4"}}, nil, "4-bit weights"},
		{"nf4-checkpoint", llama.SynthOptions{Shape: "tiny", Quant: "nf4"}, all, nil, "4-bit weights"},
		{"bf16-activations", llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers, Numerics: llama.Numerics{Activations: engine.BF16}}, nil, "bf16 activations"},
		{"fp16-activations", llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers, Numerics: llama.Numerics{Activations: engine.F16}}, nil, "activations"},
		{"fastbf16", llama.SynthOptions{Shape: "tiny", DType: engine.BF16}, llama.LoadOptions{MaxLayer: llama.AllLayers, DType: engine.BF16}, func(m *llama.Model) { m.FastBF16 = true }, "FastBF16"},
		{"softcap", llama.SynthOptions{Shape: "tiny"}, all, func(m *llama.Model) { m.Config.AttnLogitSoftcapping = 50 }, "soft-capping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := synthModel(t, t.TempDir(), tc.opts, tc.load)
			if tc.edit != nil {
				tc.edit(m)
			}
			dm, err := Upload(c, m)
			if err == nil {
				dm.Close()
				t.Fatalf("Upload accepted %s", tc.name)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "does not implement") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line saying the forward does not implement %q", msg, tc.want)
			}
			if n := c.Live()["buffer"]; n != 0 {
				t.Errorf("%d buffers left after a refusal", n)
			}
		})
	}
}

// TestForwardOutOfMemory checks that weights past the memory limit are an
// error wrapping ErrOutOfMemory that says so, and so are activations that
// do not fit beside the weights.
func TestForwardOutOfMemory(t *testing.T) {
	dir := t.TempDir()
	m := synthModel(t, dir, llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers})
	c := openContext(t, Options{MemoryLimit: 256 << 10})
	_, err := Upload(c, m)
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "do not fit the device memory") {
		t.Fatalf("Upload under a 256 KiB limit: %v, want ErrOutOfMemory saying the weights do not fit", err)
	}
	t.Log(err)
	if n := c.Live()["buffer"]; n != 0 {
		t.Errorf("%d buffers left", n)
	}

	// Measure what the weights take, then allow a little more: the weights
	// fit but not beside the activations of StreamReserveTokens tokens, so
	// Upload streams a layer; a long batch's activations do not fit.
	saved := StreamReserveTokens
	StreamReserveTokens = 16
	defer func() { StreamReserveTokens = saved }()
	c2 := openContext(t, Options{})
	dm, err := Upload(c2, m)
	if err != nil {
		t.Fatal(err)
	}
	_, used := c2.MemoryInUse()
	dm.Close()
	c3 := openContext(t, Options{MemoryLimit: int64(used) + 8<<10})
	dm, err = Upload(c3, m)
	if err != nil {
		t.Fatalf("Upload with %d bytes of room: %v", used+8<<10, err)
	}
	defer dm.Close()
	if n := dm.Streamed(); n == 0 {
		t.Errorf("no layer streamed with %d bytes of room", used+8<<10)
	}
	b := randomBatch(rand.New(rand.NewPCG(1, 2)), m.Config.VocabSize, 500)
	err = dm.Forward(b, []int{1}, func(int, []float32) error { return nil })
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "activations") {
		t.Fatalf("Forward of 500 tokens with 8 KiB spare: %v, want ErrOutOfMemory about the activations", err)
	}
	t.Log(err)
	// A batch that fits still runs.
	b = randomBatch(rand.New(rand.NewPCG(1, 2)), m.Config.VocabSize, 2)
	if err := dm.Forward(b, []int{4}, func(int, []float32) error { return nil }); err != nil {
		t.Fatalf("Forward of 2 tokens after the failure: %v", err)
	}
}

// streamingLimit is a memory limit under which Upload streams 3 of the 4
// layers of a tiny model: room for the weights less the embedding (kept on
// the host) and one and a half layers, beside the activations of
// StreamReserveTokens tokens; the streaming slot takes one more layer.
func streamingLimit(m *llama.Model) uint64 {
	var layer uint64
	for _, w := range layerTensors(m.Layers[0]) {
		layer += tensorBytes(w)
	}
	return weightBytes(m) - tensorBytes(m.Embed) - layer*3/2 + (&Model{cfg: m.Config}).actBytes(StreamReserveTokens)
}

// TestForwardStreaming uploads a model into less memory than its weights
// take: the embedding stays on the host, some layers are streamed through
// one slot, and every hidden state still matches the CPU forward, for f32
// and bf16 weights, on repeated passes.
func TestForwardStreaming(t *testing.T) {
	saved := StreamReserveTokens
	StreamReserveTokens = 128
	defer func() { StreamReserveTokens = saved }()
	for _, dt := range []engine.DType{engine.F32, engine.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			m := synthModel(t, t.TempDir(), llama.SynthOptions{Shape: "tiny", DType: dt, Seed: 3}, llama.LoadOptions{MaxLayer: llama.AllLayers, DType: dt})
			need, limit := weightBytes(m), streamingLimit(m)
			c := openContext(t, Options{MemoryLimit: int64(limit)})
			dm, err := Upload(c, m)
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			n := dm.Streamed()
			if n != 3 {
				t.Fatalf("%d of %d layers streamed, want 3", n, m.Config.NumLayers)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			b := randomBatch(rng, m.Config.VocabSize, 1, 5, 33, 70)
			worst := 0.0
			for range 2 {
				worst = max(worst, compareForward(t, m, dm, b, allLayers(m.Config.NumLayers)))
			}
			// Only up to a resident layer: no streaming needed.
			worst = max(worst, compareForward(t, m, dm, randomBatch(rng, m.Config.VocabSize, 7), []int{1}))
			allocated, used := c.MemoryInUse()
			t.Logf("%s weights %s under a limit of %s: %d of %d layers streamed, %s allocated, %s used; worst max error / RMS %.2e",
				dt, byteSize(need), byteSize(limit), n, m.Config.NumLayers, byteSize(allocated), byteSize(used), worst)
			// A batch whose activations do not fit is an error that says so.
			err = dm.Forward(randomBatch(rng, m.Config.VocabSize, 400), []int{4}, func(int, []float32) error { return nil })
			if !errors.Is(err, ErrOutOfMemory) {
				t.Errorf("400 tokens: %v, want ErrOutOfMemory", err)
			}
		})
	}
}

// TestForwardContract checks the batch and layer checks, fn's error,
// partially loaded models and Close.
func TestForwardContract(t *testing.T) {
	c := openContext(t, Options{})
	dir := t.TempDir()
	m := synthModel(t, dir, llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers})
	dm, err := Upload(c, m)
	if err != nil {
		t.Fatal(err)
	}
	nop := func(int, []float32) error { return nil }
	V := m.Config.VocabSize
	for _, tc := range []struct {
		b      llama.Batch
		layers []int
		want   string
	}{
		{llama.Batch{Tokens: []int{1, 2, 3}, Offsets: []int{0, 2}}, []int{1}, "do not delimit"},
		{llama.Batch{Tokens: []int{1, 2, 3}, Offsets: []int{0, 2, 1, 3}}, []int{1}, "offsets decrease"},
		{llama.Batch{Tokens: []int{1, V}, Offsets: []int{0, 2}}, []int{1}, "outside the vocabulary"},
		{llama.Batch{Tokens: []int{1, -1}, Offsets: []int{0, 2}}, []int{1}, "outside the vocabulary"},
		{llama.Batch{Tokens: []int{1}, Offsets: []int{0, 1}}, []int{5}, "does not exist"},
		{llama.Batch{Tokens: []int{1}, Offsets: []int{0, 1}}, []int{-1}, "does not exist"},
		{llama.Batch{Tokens: make([]int, 2049), Offsets: []int{0, 2049}}, []int{1}, "more than the model's context"},
	} {
		err := dm.Forward(tc.b, tc.layers, nop)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Forward(%v, %v): %v, want an error saying %q", tc.b.Offsets, tc.layers, err, tc.want)
		}
		// The CPU forward refuses the same batches.
		if m.Forward(tc.b, tc.layers, nop) == nil {
			t.Errorf("the CPU forward accepts %v, %v", tc.b.Offsets, tc.layers)
		}
	}
	// No tokens, or no layers: nothing to do.
	called := false
	if err := dm.Forward(llama.Batch{Offsets: []int{0}}, []int{1}, func(int, []float32) error { called = true; return nil }); err != nil || called {
		t.Errorf("empty batch: %v, called %v", err, called)
	}
	// fn's error stops the pass.
	stop := errors.New("stop")
	var seen []int
	b := llama.NewBatch([][]int{{1, 2, 3}})
	err = dm.Forward(b, []int{0, 1, 2}, func(k int, _ []float32) error { seen = append(seen, k); return stop })
	if !errors.Is(err, stop) || len(seen) != 1 {
		t.Errorf("fn's error: %v after %v", err, seen)
	}
	// And the next pass is right.
	compareForward(t, m, dm, b, []int{4})

	if err := dm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, used := c.MemoryInUse(); used != 0 || c.Live()["buffer"] != 0 {
		t.Errorf("after Close: %d bytes used, live %v", used, c.Live())
	}
	if err := dm.Forward(b, []int{1}, nop); !errors.Is(err, ErrClosed) {
		t.Errorf("Forward after Close: %v, want ErrClosed", err)
	}

	// A model loaded up to hidden state 2 serves 0..2 and refuses 3.
	part, err := llama.Load(dir, llama.LoadOptions{MaxLayer: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	pm, err := Upload(c, part)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	compareForward(t, part, pm, b, []int{0, 2})
	if err := pm.Forward(b, []int{3}, nop); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("hidden state 3 of a model loaded to 2: %v", err)
	}
	if err := pm.Forward(b, []int{4}, nop); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("hidden state 4 of a model loaded to 2: %v", err)
	}
}

// BenchmarkForwardVulkan measures tokens/s of the device forward and of
// llama.Model.Forward on the CPU in the same run: the llama3.2-1b shape with
// 2 layers, 80 tokens in words of 4, hidden states 0..2.
func BenchmarkForwardVulkan(b *testing.B) {
	dir := b.TempDir()
	m := synthModel(b, dir, llama.SynthOptions{Shape: "llama3.2-1b", Layers: 2}, llama.LoadOptions{MaxLayer: llama.AllLayers})
	c := openContext(b, Options{})
	dm, err := Upload(c, m)
	if err != nil {
		b.Fatal(err)
	}
	defer dm.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	lens := make([]int, 20)
	for i := range lens {
		lens[i] = 4
	}
	batch := randomBatch(rng, m.Config.VocabSize, lens...)
	layers := []int{0, 1, 2}
	nop := func(int, []float32) error { return nil }
	if err := dm.Forward(batch, layers, nop); err != nil { // pipelines, activations
		b.Fatal(err)
	}
	if err := m.Forward(batch, layers, nop); err != nil {
		b.Fatal(err)
	}
	var dev, cpu time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := dm.Forward(batch, layers, nop); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Forward(batch, layers, nop); err != nil {
			b.Fatal(err)
		}
		dev += t1.Sub(t0)
		cpu += time.Since(t1)
	}
	T := float64(batch.NumTokens() * b.N)
	b.ReportMetric(T/dev.Seconds(), "device-tok/s")
	b.ReportMetric(T/cpu.Seconds(), "cpu-tok/s")
	b.Logf("%s: device %.0f tok/s, CPU %.0f tok/s", c.Info.Name, T/dev.Seconds(), T/cpu.Seconds())
}

// TestForwardOnLayer checks that the device forward reports its progress
// through the host model's OnLayer, as the CPU forward does.
func TestForwardOnLayer(t *testing.T) {
	c := openContext(t, Options{})
	m := synthModel(t, t.TempDir(), llama.SynthOptions{Shape: "tiny"}, llama.LoadOptions{MaxLayer: llama.AllLayers})
	dm, err := Upload(c, m)
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	b := llama.NewBatch([][]int{{1, 2, 3}, {4, 5}})
	var cpu, dev []string
	for _, run := range []struct {
		log *[]string
		f   func(llama.Batch, []int, func(int, []float32) error) error
	}{{&cpu, m.Forward}, {&dev, dm.Forward}} {
		m.OnLayer = func(done, total, tokens int) {
			*run.log = append(*run.log, fmt.Sprintf("%d/%d of %d", done, total, tokens))
		}
		if err := run.f(b, []int{3}, func(int, []float32) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	m.OnLayer = nil
	if fmt.Sprint(dev) != fmt.Sprint(cpu) || len(cpu) != 4 {
		t.Errorf("OnLayer calls: device %v, CPU %v", dev, cpu)
	}
}

// TestGenerateOnDevice generates on the device (Decoder: the whole
// sequence again at each step, the LM head on the host) and on the CPU
// (KV cache): the same tokens, greedy and sampled with a seed, and the
// logits within 1e-4 of their RMS.
func TestGenerateOnDevice(t *testing.T) {
	c := openContext(t, Options{})
	for _, shape := range []string{"tiny", "tiny-qwen3"} {
		t.Run(shape, func(t *testing.T) {
			m := synthModel(t, t.TempDir(), llama.SynthOptions{Shape: shape, Seed: 6}, llama.LoadOptions{MaxLayer: llama.AllLayers, NeedLMHead: true})
			m.Config.SlidingWindow = 0
			dm, err := Upload(c, m)
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			prompt := []int{1, 17, 42, 5}
			for _, o := range []llama.GenerateOptions{{MaxNewTokens: 12, StopTokens: []int{}}, {MaxNewTokens: 12, Temperature: 0.8, TopP: 0.9, Seed: 3, StopTokens: []int{}}} {
				want, err := m.Generate(prompt, o)
				if err != nil {
					t.Fatal(err)
				}
				got, err := m.GenerateWith(prompt, o, dm.Decoder(m))
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("temperature %v: %v on the device, %v on the CPU", o.Temperature, got, want)
				}
			}
			// The logits after a prompt.
			hs, err := m.HiddenStates(llama.NewBatch([][]int{prompt}), []int{m.Config.NumLayers})
			if err != nil {
				t.Fatal(err)
			}
			d := m.Config.HiddenSize
			want, err := m.Logits(hs[m.Config.NumLayers][(len(prompt)-1)*d:], 1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dm.Decoder(m).Next(prompt)
			if err != nil {
				t.Fatal(err)
			}
			var ss, worst float64
			for i, w := range want {
				ss += float64(w) * float64(w)
				worst = max(worst, math.Abs(float64(got[i]-w)))
			}
			if r := worst / math.Sqrt(ss/float64(len(want))); r > 1e-4 {
				t.Errorf("logits: max error / RMS %.3g", r)
			}
		})
	}
}
