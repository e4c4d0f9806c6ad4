package llama

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/peer"
)

// These tests compare the Go forward with the plain-PyTorch reference
// internal/ref/llama_ref.py on synthetic checkpoints.

func refScript() string { return filepath.Join(peer.Root(), "internal", "ref", "llama_ref.py") }

// refForward returns the reference's hidden states: out[s][k] is the
// [len(seqs[s])×d] hidden state k of sequence s.
// With the last layer requested, out[s][-1] holds the reference's logits.
func refForward(t *testing.T, dir string, seqs [][]int, layers []int, dtype string) [][]map[int][]float32 {
	t.Helper()
	return refForwardArgs(t, dir, seqs, layers, "--dtype", dtype)
}

// refForwardArgs is refForward with the reference's options given as
// command-line arguments.
func refForwardArgs(t *testing.T, dir string, seqs [][]int, layers []int, args ...string) [][]map[int][]float32 {
	t.Helper()
	py := peer.Torch(t)
	tmp := t.TempDir()
	req, _ := json.Marshal(map[string]any{"seqs": seqs, "layers": layers, "logits": true})
	reqPath, outPath := filepath.Join(tmp, "req.json"), filepath.Join(tmp, "out.safetensors")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{refScript(), "forward", "--model", dir, "--request", reqPath, "--out", outPath}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference forward: %v\n%s", err, out)
	}
	ts, _, err := ReadSafetensors(outPath)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]map[int][]float32, 1)
	res[0] = make([]map[int][]float32, len(seqs))
	for s := range seqs {
		res[0][s] = map[int][]float32{}
		for _, k := range layers {
			tt := ts[fmt.Sprintf("s%d.h%d", s, k)]
			if tt == nil {
				t.Fatalf("reference output lacks s%d.h%d", s, k)
			}
			res[0][s][k] = tt.F32
		}
		if lg := ts[fmt.Sprintf("s%d.logits", s)]; lg != nil {
			res[0][s][-1] = lg.F32
		}
	}
	return res
}

// compareLayers checks Go hidden states (packed batch order) against the
// reference per layer: max |go-ref| <= tol·rms(ref) over every token of
// every sequence. It returns the worst relative error seen.
func compareLayers(t *testing.T, name string, b Batch, d int, layers []int, got map[int][]float32, ref []map[int][]float32, tol float64) float64 {
	t.Helper()
	worst := 0.0
	for _, k := range layers {
		var ss float64
		var n int
		for s := range ref {
			for _, v := range ref[s][k] {
				ss += float64(v) * float64(v)
				n++
			}
		}
		rms := math.Sqrt(ss / float64(n))
		var maxErr float64
		for s := range ref {
			g := got[k][b.Offsets[s]*d : b.Offsets[s+1]*d]
			r := ref[s][k]
			if len(g) != len(r) {
				t.Fatalf("%s layer %d seq %d: %d values, reference %d", name, k, s, len(g), len(r))
			}
			for i := range g {
				maxErr = math.Max(maxErr, math.Abs(float64(g[i])-float64(r[i])))
			}
		}
		rel := maxErr / rms
		worst = math.Max(worst, rel)
		if rel > tol || math.IsNaN(rel) {
			t.Errorf("%s: hidden_states[%d]: max |go-ref| = %.3g = %.3g·rms (rms %.3g), want <= %g·rms", name, k, maxErr, rel, rms, tol)
		}
	}
	t.Logf("%s: worst max|err|/rms over %d layers = %.3g", name, len(layers), worst)
	return worst
}

func allLayers(n int) []int {
	ls := make([]int, n+1)
	for i := range ls {
		ls[i] = i
	}
	return ls
}

// testSeqs returns n deterministic token sequences of the given lengths.
func testSeqs(vocab int, lens ...int) [][]int {
	var seqs [][]int
	x := uint32(12345)
	for _, L := range lens {
		s := make([]int, L)
		for i := range s {
			x = x*1664525 + 1013904223
			s[i] = int(x>>8) % vocab
		}
		seqs = append(seqs, s)
	}
	return seqs
}

type parityCase struct {
	name    string
	opts    SynthOptions
	hold    engine.DType
	tol     float64
	lens    []int
	perSeq  bool // also run each sequence alone and compare with the packed run
	maxLoad int  // LoadOptions.MaxLayer (0 means all)
	fast    bool // Model.FastBF16
}

func TestForwardParity(t *testing.T) {
	yes, no := true, false
	cases := []parityCase{
		{name: "gqa-f32-untied-single", opts: SynthOptions{Seed: 1}, hold: engine.F32, tol: 1e-4, lens: []int{7, 1, 13, 4}, perSeq: true},
		{name: "headdim24-llama3-tied-sharded-bf16", opts: SynthOptions{Seed: 2, HeadDim: 24, Tied: &yes, DType: engine.BF16, ShardBytes: 40000,
			RopeScaling: &engine.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 32}},
			hold: engine.F32, tol: 1e-3, lens: []int{9, 30, 2}},
		{name: "bf16-held-bf16", opts: SynthOptions{Seed: 3, DType: engine.BF16, Tied: &no}, hold: engine.BF16, tol: 1e-3, lens: []int{5, 11}},
		{name: "linear-mha", opts: SynthOptions{Seed: 4, KVHeads: 4, RopeTheta: 10000, RopeScaling: &engine.RopeScaling{Type: "linear", Factor: 2}}, hold: engine.F32, tol: 1e-4, lens: []int{40, 3, 33}, perSeq: true},
		{name: "dynamic-beyond-maxpos", opts: SynthOptions{Seed: 5, MaxPositions: 48, RopeTheta: 10000, RopeScaling: &engine.RopeScaling{Type: "dynamic", Factor: 2}}, hold: engine.F32, tol: 1e-4, lens: []int{70, 10}},
		{name: "long-512-llama3-mqa", opts: SynthOptions{Seed: 6, Layers: 2, KVHeads: 1,
			RopeScaling: &engine.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 128}}, hold: engine.F32, tol: 1e-4, lens: []int{520}},
		{name: "fast-bf16", opts: SynthOptions{Seed: 8, DType: engine.BF16}, hold: engine.BF16, tol: 5e-2, lens: []int{12, 5}, fast: true},
		{name: "partial-load-f16", opts: SynthOptions{Seed: 7, DType: engine.F16}, hold: engine.F32, tol: 1e-3, lens: []int{6, 8}, maxLoad: 2},
	}
	// Every other family, f32 and bf16 storage, with sequences shorter and
	// longer than the tiny shapes' sliding window (6) and longer than 32
	// (the blocked attention path).
	for i, fam := range []string{"mistral", "qwen2", "qwen3", "gemma", "gemma2", "bloom"} {
		cases = append(cases,
			parityCase{name: fam + "-f32", opts: SynthOptions{Shape: "tiny-" + fam, Seed: uint64(30 + i)}, hold: engine.F32, tol: 1e-4, lens: []int{3, 17, 9, 40}, perSeq: true},
			parityCase{name: fam + "-bf16", opts: SynthOptions{Shape: "tiny-" + fam, Seed: uint64(40 + i), DType: engine.BF16}, hold: engine.BF16, tol: 1e-3, lens: []int{12, 5, 36}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Synth(dir, tc.opts); err != nil {
				t.Fatal(err)
			}
			maxLayer := AllLayers
			if tc.maxLoad > 0 {
				maxLayer = tc.maxLoad
			}
			m, err := Load(dir, LoadOptions{DType: tc.hold, MaxLayer: maxLayer})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			m.FastBF16 = tc.fast
			layers := allLayers(m.Config.NumLayers)
			if tc.maxLoad > 0 {
				layers = allLayers(tc.maxLoad)
			}
			seqs := testSeqs(m.Config.VocabSize, tc.lens...)
			b := NewBatch(seqs)
			got, err := m.HiddenStates(b, layers)
			if err != nil {
				t.Fatal(err)
			}
			ref := refForward(t, dir, seqs, layers, "f32")
			worst := compareLayers(t, tc.name, b, m.Config.HiddenSize, layers, got, ref[0], tc.tol)
			if top := layers[len(layers)-1]; top == m.Config.NumLayers {
				// The LM head (tied or not) on the final states.
				logits, err := m.Logits(got[top], b.NumTokens())
				if err != nil {
					t.Fatal(err)
				}
				ls := []int{-1}
				lref := make([]map[int][]float32, len(seqs))
				for s := range seqs {
					lref[s] = map[int][]float32{-1: ref[0][s][-1]}
				}
				worst = math.Max(worst, compareLayers(t, tc.name+" logits", b, m.Config.VocabSize, ls, map[int][]float32{-1: logits}, lref, tc.tol))
			}
			if tc.fast && worst < 1e-4 {
				t.Errorf("fast bf16 mode matches exact widening to %.2g: activations were not rounded", worst)
			}
			if tc.perSeq {
				// Packing must not change any sequence's states.
				for s, seq := range seqs {
					one, err := m.HiddenStates(NewBatch([][]int{seq}), layers)
					if err != nil {
						t.Fatal(err)
					}
					d := m.Config.HiddenSize
					for _, k := range layers {
						g := got[k][b.Offsets[s]*d : b.Offsets[s+1]*d]
						for i := range g {
							if diff := math.Abs(float64(g[i] - one[k][i])); diff > 1e-5*(1+math.Abs(float64(g[i]))) {
								t.Fatalf("seq %d layer %d: packed %v vs alone %v", s, k, g[i], one[k][i])
							}
						}
					}
				}
			}
		})
	}
}

// TestGenerateParity checks greedy decoding with the KV cache against the
// reference's greedy decoding by full recomputation.
func TestGenerateParity(t *testing.T) {
	py := peer.Torch(t)
	for _, c := range []struct {
		shape string
		tied  bool
	}{{"tiny", true}, {"tiny", false}, {"tiny-mistral", false}, {"tiny-qwen2", true}, {"tiny-qwen3", false}, {"tiny-gemma", true}, {"tiny-gemma2", false}, {"tiny-bloom", false}} {
		shape, tied := c.shape, c.tied
		t.Run(fmt.Sprintf("%s/tied=%v", shape, tied), func(t *testing.T) {
			dir := t.TempDir()
			tt := tied
			if err := Synth(dir, SynthOptions{Shape: shape, Seed: 11, Tied: &tt, EOS: []int{2}, BOS: []int{1}}); err != nil {
				t.Fatal(err)
			}
			m, err := Load(dir, LoadOptions{DType: engine.F32, MaxLayer: AllLayers})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			// 36 prompt tokens: the prefill and the decoding steps use the
			// blocked attention (contexts of 32+ positions).
			prompt := append([]int{1}, testSeqs(m.Config.VocabSize, 35)[0]...)
			const maxNew = 12
			got, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: maxNew})
			if err != nil {
				t.Fatal(err)
			}
			ps := make([]string, len(prompt))
			for i, p := range prompt {
				ps[i] = strconv.Itoa(p)
			}
			out, err := exec.Command(py, refScript(), "generate", "--model", dir, "--prompt", strings.Join(ps, ","), "--max-new", strconv.Itoa(maxNew)).Output()
			if err != nil {
				t.Fatalf("reference generate: %v", err)
			}
			var ref struct {
				Tokens  []int
				Margins []float64
			}
			if err := json.Unmarshal(out, &ref); err != nil {
				t.Fatalf("reference output %q: %v", out, err)
			}
			t.Logf("go %v, ref %v (margins %.3g)", got, ref.Tokens, ref.Margins)
			for i := range ref.Tokens {
				if i >= len(got) {
					t.Fatalf("go stopped after %d tokens, reference produced %v", len(got), ref.Tokens)
				}
				if got[i] != ref.Tokens[i] {
					if ref.Margins[i] < 1e-3 {
						t.Logf("step %d: near-tie (margin %.2g), comparison stops", i, ref.Margins[i])
						return
					}
					t.Fatalf("step %d: go token %d, reference %d (margin %.3g)", i, got[i], ref.Tokens[i], ref.Margins[i])
				}
			}
			if len(got) != len(ref.Tokens) {
				t.Fatalf("go %d tokens, reference %d", len(got), len(ref.Tokens))
			}
		})
	}
}
