package quant

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// refCase is one input of testdata/bnb_ref.py.
type refCase struct {
	File      string `json:"file"`
	Kind      string `json:"kind"`
	Blocksize int    `json:"blocksize"`
	DType     string `json:"dtype"`
	Double    bool   `json:"double"`
	w         []float32
}

type refOut struct {
	NF4     []uint32 `json:"nf4"`
	FP4     []uint32 `json:"fp4"`
	Dynamic []uint32 `json:"dynamic"`
	Cases   []struct {
		Packed []int    `json:"packed"`
		Absmax []uint32 `json:"absmax"`
		Deq    []uint32 `json:"deq"`
		Double *struct {
			Offset    uint32   `json:"offset"`
			TorchMean uint32   `json:"torch_mean"`
			Q         []int    `json:"q"`
			Nested    []uint32 `json:"nested"`
			Absmax    []uint32 `json:"absmax"`
		} `json:"double"`
	} `json:"cases"`
	Dumps []string `json:"dumps"`
}

// edgeBlock returns values of a block whose absmax is exactly 1, so that
// scaled values equal the inputs: every pivot of both trees, the float32
// values either side, exact midpoints of neighbouring codes, signed zeros,
// ±1, tiny values.
func edgeBlock() []float32 {
	v := []float32{1, -1, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, -1e-3, 1e-3, 0.5, -0.5}
	add := func(p float32) {
		v = append(v, p, math.Nextafter32(p, 2), math.Nextafter32(p, -2))
	}
	for _, p := range []float32{0.03979014977812767, 0.3893125355243683, 0.6427869200706482, 0.8614784181118011,
		0.5016634166240692, 0.2035212516784668, 0.2920137718319893, 0.1202552504837513,
		-0.33967943489551544, -0.13791173323988914, -0.045525018125772476, -0.23460740596055984,
		-0.6106329262256622, -0.4599952697753906, -0.8480964004993439} {
		add(p)
	}
	for _, p := range []float32{fp4P1, fp4P2, fp4P3, fp4P4, fp4P5, fp4P6, fp4P7} {
		add(p)
		add(-p)
	}
	for _, k := range []Kind{NF4, FP4} {
		cb := Codebook(k)
		for i := range cb {
			for j := range cb {
				if cb[i] < cb[j] {
					add(float32((float64(cb[i]) + float64(cb[j])) / 2))
					add(float32(cb[i]+cb[j]) * 0.5)
				}
			}
		}
	}
	// the true FP4 midpoints next to the short literals 0.583333, 0.00260417
	add(float32(7.0 / 12))
	add(float32(1.0 / 384))
	return v
}

// refCases builds the inputs: random normal weights of several shapes,
// the edge values in blocks of absmax 1, a block of zeros, short tails.
func refCases(t *testing.T, dir string) []refCase {
	rng := rand.New(rand.NewPCG(1, 2))
	normal := func(n int, scale float64) []float32 {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * scale)
		}
		return w
	}
	edge := edgeBlock()
	var cases []refCase
	for _, kind := range []string{"nf4", "fp4"} {
		// edge values, padded with zeros and ±1 to whole blocks of 32 with absmax 1
		var e []float32
		for i := 0; i < len(edge); i += 30 {
			blk := append([]float32{1, -1}, edge[i:min(i+30, len(edge))]...)
			for len(blk) < 32 {
				blk = append(blk, 0)
			}
			e = append(e, blk...)
		}
		e = append(e, make([]float32, 32)...) // a block of zeros
		e = append(e, 0.25, -0.75, 3)         // a short odd tail
		cases = append(cases, refCase{Kind: kind, Blocksize: 32, DType: "float32", w: e})
		zeros := make([]float32, 64+7) // zero block and zero odd tail
		cases = append(cases, refCase{Kind: kind, Blocksize: 64, DType: "bfloat16", w: zeros})
		for _, c := range []struct {
			bs, n int
			dt    string
		}{{64, 64*20 + 1, "bfloat16"}, {64, 2048, "float16"}, {128, 128*9 + 30, "float32"}, {256, 256 * 5, "bfloat16"}, {4096, 4096 + 906, "float16"}} {
			cases = append(cases, refCase{Kind: kind, Blocksize: c.bs, DType: c.dt, w: normal(c.n, 0.02)})
		}
		// mixed scales, including subnormal-sized blocks and large values
		m := normal(64*20, 1)
		for i := range m {
			m[i] *= float32(math.Pow(10, float64(i/64%8)*5-20))
		}
		cases = append(cases, refCase{Kind: kind, Blocksize: 64, DType: "float16", w: m})
		// double quantisation: more than 256 blocks
		cases = append(cases, refCase{Kind: kind, Blocksize: 32, DType: "bfloat16", Double: true, w: normal(32*270+10, 0.05)})
	}
	for i := range cases {
		cases[i].File = filepath.Join(dir, "w"+string(rune('a'+i))+".f32")
		b := make([]byte, 4*len(cases[i].w))
		for j, x := range cases[i].w {
			u := math.Float32bits(x)
			b[4*j], b[4*j+1], b[4*j+2], b[4*j+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		if err := os.WriteFile(cases[i].File, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cases
}

// sameBits compares a with the float32 bit pattern b the reference wrote.
func sameBits(a float32, b uint32) bool { return math.Float32bits(a) == b }

// TestBitsandbytesReference checks codes, absmax, dequantised values (in
// the storage dtype), the dynamic map and double quantisation bit for bit
// against testdata/bnb_ref.py, an independent restatement of bitsandbytes'
// CUDA kernels in float64 with explicit float32 rounding (and torch for
// the bf16/fp16 casts and the dynamic map's linspace).
func TestBitsandbytesReference(t *testing.T) {
	py := peer.Torch(t)
	dir := t.TempDir()
	cases := refCases(t, dir)
	// quant_state JSON texts, to check they read back through Python's
	// json.loads and json.dumps unchanged
	var states []string
	for _, c := range []struct {
		k      Kind
		dt     DType
		double bool
	}{{NF4, BF16, false}, {FP4, F16, true}, {NF4, F32, true}} {
		tt, err := NewTensor(c.k, cases[len(cases)-1].w[:32*270], 270, 32, 32, c.dt, c.double)
		if err != nil {
			t.Fatal(err)
		}
		blobs, err := Export("m", tt)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, string(blobs["m.weight.quant_state.bitsandbytes__"+c.k.String()].Data))
	}
	for _, x := range []float64{0.1, 1e-5, 1e16, 123456789, 1e-4, 9.999e-5, float64(float32(0.0123)), 2.5e-300, 1e300, 0, 7} {
		states = append(states, `{"nested_offset": `+pyFloat(x)+`}`)
	}
	man, _ := json.Marshal(map[string]any{"cases": cases, "states": states})
	manPath, outPath := filepath.Join(dir, "man.json"), filepath.Join(dir, "out.json")
	if err := os.WriteFile(manPath, man, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "bnb_ref.py"), manPath, outPath)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bnb_ref.py: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var ref refOut
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[Kind][]uint32{NF4: ref.NF4, FP4: ref.FP4} {
		cb := Codebook(k)
		for i := range cb {
			if !sameBits(cb[i], want[i]) {
				t.Errorf("%s code %d = %g, bitsandbytes %g", k, i, cb[i], math.Float32frombits(want[i]))
			}
		}
	}
	dm := DynamicMap()
	for i := range dm {
		if !sameBits(dm[i], ref.Dynamic[i]) {
			t.Errorf("dynamic map %d = %g (%08x), torch %g (%08x)", i, dm[i], math.Float32bits(dm[i]), math.Float32frombits(ref.Dynamic[i]), ref.Dynamic[i])
		}
	}
	for ci, c := range cases {
		kind, _ := ParseKind(c.Kind)
		dt, _ := ParseDType(c.DType)
		r := ref.Cases[ci]
		packed, absmax := Quantize(kind, c.w, c.Blocksize)
		bad := 0
		for i := range packed {
			if int(packed[i]) != r.Packed[i] && bad < 5 {
				bad++
				t.Errorf("case %d (%s bs %d): byte %d = %02x, bitsandbytes %02x (inputs %g %g)",
					ci, kind, c.Blocksize, i, packed[i], r.Packed[i], c.w[2*i], c.w[min(2*i+1, len(c.w)-1)])
			}
		}
		for i := range absmax {
			if !sameBits(absmax[i], r.Absmax[i]) {
				t.Errorf("case %d: absmax %d = %g, bitsandbytes %08x", ci, i, absmax[i], r.Absmax[i])
			}
		}
		deq := make([]float32, len(c.w))
		DequantizeTo(kind, packed, absmax, len(c.w), c.Blocksize, dt, deq)
		bad = 0
		for i := range deq {
			if !sameBits(deq[i], r.Deq[i]) && bad < 5 {
				bad++
				t.Errorf("case %d (%s, %s): dequantised %d = %g, bitsandbytes %08x", ci, kind, dt, i, deq[i], r.Deq[i])
			}
		}
		if c.Double {
			d := QuantizeAbsmax(absmax)
			rd := r.Double
			if !sameBits(d.Offset, rd.Offset) {
				t.Errorf("case %d: offset %g, reference %08x", ci, d.Offset, rd.Offset)
			}
			if !sameBits(d.Offset, rd.TorchMean) {
				t.Logf("case %d: offset %g (float64 mean) differs from torch's float32 mean %08x", ci, d.Offset, rd.TorchMean)
			}
			for i := range d.Q {
				if int(d.Q[i]) != rd.Q[i] {
					t.Errorf("case %d: nested code %d = %d, bitsandbytes %d", ci, i, d.Q[i], rd.Q[i])
					break
				}
			}
			for i := range d.Absmax {
				if !sameBits(d.Absmax[i], rd.Nested[i]) {
					t.Errorf("case %d: nested absmax %d = %g, bitsandbytes %08x", ci, i, d.Absmax[i], rd.Nested[i])
				}
			}
			a, err := d.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			for i := range a {
				if !sameBits(a[i], rd.Absmax[i]) {
					t.Errorf("case %d: double-dequantised absmax %d = %g, bitsandbytes %08x", ci, i, a[i], rd.Absmax[i])
					break
				}
			}
		}
	}
	for i, s := range states {
		if ref.Dumps[i] != s {
			t.Errorf("JSON %q reads back through Python as %q", s, ref.Dumps[i])
		}
	}
}

// TestQuantizeParallel checks that a weight large enough to be split among
// goroutines quantises exactly as block-by-block in one.
func TestQuantizeParallel(t *testing.T) {
	w := make([]float32, 64*20000+6)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)*0.731)) * float32(1+i%7)
	}
	for _, kind := range []Kind{NF4, FP4} {
		packed, absmax := Quantize(kind, w, 64)
		p2, a2 := make([]byte, len(packed)), make([]float32, len(absmax))
		quantizeBlocks(kind, p2, a2, w, 64, 0, len(a2))
		for i := range packed {
			if packed[i] != p2[i] {
				t.Fatalf("%v: byte %d: %#x split, %#x serial", kind, i, packed[i], p2[i])
			}
		}
		for i := range absmax {
			if absmax[i] != a2[i] {
				t.Fatalf("%v: absmax %d differs", kind, i)
			}
		}
	}
}
