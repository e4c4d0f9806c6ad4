package quant

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// TestExportImport round-trips tensors of both kinds, with and without
// double quantisation, through the transformers layout, and checks the
// names, dtypes, shapes and the quant_state JSON text.
func TestExportImport(t *testing.T) {
	for _, c := range []struct {
		kind   Kind
		dt     DType
		double bool
		rows   int
		cols   int
	}{{NF4, BF16, false, 3, 7}, {FP4, F16, false, 16, 64}, {NF4, BF16, true, 300, 64}, {FP4, F32, true, 5, 129}} {
		w := normalW(3, c.rows*c.cols, 0.1)
		tt, err := NewTensor(c.kind, w, c.rows, c.cols, 64, c.dt, c.double)
		if err != nil {
			t.Fatal(err)
		}
		blobs, err := Export("model.layers.0.mlp.up_proj", tt)
		if err != nil {
			t.Fatal(err)
		}
		p := "model.layers.0.mlp.up_proj.weight"
		n := c.rows * c.cols
		want := map[string][]int{
			p:                {PackedLen(n), 1},
			p + ".absmax":    {Blocks(n, 64)},
			p + ".quant_map": {16},
			p + ".quant_state.bitsandbytes__" + c.kind.String(): nil,
		}
		if c.double {
			want[p+".nested_absmax"] = []int{Blocks(Blocks(n, 64), 256)}
			want[p+".nested_quant_map"] = []int{256}
		}
		if len(blobs) != len(want) {
			t.Errorf("%d tensors, want %d: %v", len(blobs), len(want), keys(blobs))
		}
		for k, s := range want {
			b, ok := blobs[k]
			if !ok {
				t.Fatalf("missing %s", k)
			}
			if s != nil && !reflect.DeepEqual(b.Shape, s) {
				t.Errorf("%s shape %v, want %v", k, b.Shape, s)
			}
		}
		if c.double != (blobs[p+".absmax"].DType == "U8") {
			t.Errorf("absmax dtype %s with double=%v", blobs[p+".absmax"].DType, c.double)
		}
		js := string(blobs[p+".quant_state.bitsandbytes__"+c.kind.String()].Data)
		prefix := `{"quant_type": "` + c.kind.String() + `", "blocksize": 64, "dtype": "` + c.dt.String() + `", "shape": [` +
			itoa(c.rows) + ", " + itoa(c.cols) + "]"
		if !strings.HasPrefix(js, prefix) || (c.double != strings.Contains(js, `, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": `)) {
			t.Errorf("quant_state %s", js)
		}
		back, err := Import("model.layers.0.mlp.up_proj", blobs)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, tt) {
			t.Errorf("%s double=%v: round trip differs", c.kind, c.double)
		}
	}
	// FP4's stored quant_map has +0 for code 8, as torch.tensor makes it
	tt, _ := NewTensor(FP4, normalW(1, 64, 1), 1, 64, 64, BF16, false)
	blobs, _ := Export("l", tt)
	if u := binary.LittleEndian.Uint32(blobs["l.weight.quant_map"].Data[32:]); u != 0 {
		t.Errorf("FP4 quant_map[8] bits %08x, want +0", u)
	}
}

func keys(m map[string]Blob) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

func setJSON(b map[string]Blob, key, js string) {
	b[key] = Blob{DType: "U8", Shape: []int{len(js)}, Data: []byte(js)}
}

// TestImportRefuses feeds Import broken layouts and checks each is refused
// with an error naming the tensor and the field at fault.
func TestImportRefuses(t *testing.T) {
	mk := func(kind Kind, double bool) map[string]Blob {
		tt, err := NewTensor(kind, normalW(9, 300*64, 0.1), 300, 64, 64, BF16, double)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Export("L", tt)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const W, S = "L.weight", "L.weight.quant_state.bitsandbytes__nf4"
	for _, c := range []struct {
		name   string
		double bool
		edit   func(b map[string]Blob)
		want   []string
	}{
		{"no quant_state", false, func(b map[string]Blob) { delete(b, S) }, []string{W, "quant_state"}},
		{"both kinds", false, func(b map[string]Blob) { b[W+".quant_state.bitsandbytes__fp4"] = b[S] }, []string{"both"}},
		{"not JSON", false, func(b map[string]Blob) { setJSON(b, S, "{oops") }, []string{S, "not JSON"}},
		{"not an object", false, func(b map[string]Blob) { setJSON(b, S, "[1, 2]") }, []string{S, "not an object"}},
		{"unknown field", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64], "scale": 2}`)
		}, []string{S, `"scale"`}},
		{"unknown quant_type", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "int4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64]}`)
		}, []string{S, "quant_type", "int4"}},
		{"kind mismatch", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64]}`)
		}, []string{S, "quant_type"}},
		{"blocksize 48", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 48, "dtype": "bfloat16", "shape": [300, 64]}`)
		}, []string{S, "blocksize", "48"}},
		{"blocksize 8192", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 8192, "dtype": "bfloat16", "shape": [300, 64]}`)
		}, []string{S, "blocksize"}},
		{"missing blocksize", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "dtype": "bfloat16", "shape": [300, 64]}`)
		}, []string{S, "blocksize", "missing"}},
		{"dtype float64", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "float64", "shape": [300, 64]}`)
		}, []string{S, "dtype", "float64"}},
		{"1-D shape", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [19200]}`)
		}, []string{S, "shape"}},
		{"zero shape", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [0, 64]}`)
		}, []string{S, "shape"}},
		{"huge shape", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2147483647, 2147483647]}`)
		}, []string{W, "bytes"}},
		{"fractional shape", false, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300.5, 64]}`)
		}, []string{S, "shape"}},
		{"state not U8", false, func(b map[string]Blob) { s := b[S]; s.DType = "F32"; b[S] = s }, []string{S, "dtype"}},
		{"no weight", false, func(b map[string]Blob) { delete(b, W) }, []string{W, "missing"}},
		{"short weight", false, func(b map[string]Blob) {
			w := b[W]
			w.Data = w.Data[:len(w.Data)-1]
			b[W] = w
		}, []string{W, "bytes"}},
		{"weight shape", false, func(b map[string]Blob) { w := b[W]; w.Shape = []int{4800, 2}; b[W] = w }, []string{W, "shape"}},
		{"weight dtype", false, func(b map[string]Blob) { w := b[W]; w.DType = "Q4"; b[W] = w }, []string{W, "Q4"}},
		{"absmax length", false, func(b map[string]Blob) {
			a := b[W+".absmax"]
			a.Shape = []int{299}
			a.Data = a.Data[:4*299]
			b[W+".absmax"] = a
		}, []string{W + ".absmax", "bytes"}},
		{"absmax dtype", false, func(b map[string]Blob) { a := b[W+".absmax"]; a.DType = "F16"; b[W+".absmax"] = a }, []string{W + ".absmax", "F16"}},
		{"no absmax", false, func(b map[string]Blob) { delete(b, W+".absmax") }, []string{W + ".absmax", "missing"}},
		{"quant_map values", false, func(b map[string]Blob) {
			m := b[W+".quant_map"]
			m.Data = append([]byte(nil), m.Data...)
			binary.LittleEndian.PutUint32(m.Data[4:], math.Float32bits(0.5))
			b[W+".quant_map"] = m
		}, []string{W + ".quant_map", "value 1"}},
		{"no quant_map", false, func(b map[string]Blob) { delete(b, W+".quant_map") }, []string{W + ".quant_map", "missing"}},
		{"nested tensors without fields", false, func(b map[string]Blob) {
			b[W+".nested_absmax"] = f32Blob([]float32{1})
		}, []string{W + ".nested_absmax"}},
		{"no nested_absmax", true, func(b map[string]Blob) { delete(b, W+".nested_absmax") }, []string{W + ".nested_absmax", "missing"}},
		{"nested_absmax length", true, func(b map[string]Blob) { b[W+".nested_absmax"] = f32Blob([]float32{1}) }, []string{W + ".nested_absmax", "bytes"}},
		{"nested_quant_map length", true, func(b map[string]Blob) { b[W+".nested_quant_map"] = f32Blob(make([]float32, 255)) }, []string{W + ".nested_quant_map", "bytes"}},
		{"nested absmax F32", true, func(b map[string]Blob) { b[W+".absmax"] = f32Blob(make([]float32, 300)) }, []string{W + ".absmax", "U8"}},
		{"nested_dtype", true, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64], "nested_blocksize": 256, "nested_dtype": "float16", "nested_offset": 0.1}`)
		}, []string{S, "nested_dtype"}},
		{"nested_offset string", true, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": "0.1"}`)
		}, []string{S, "nested_offset"}},
		{"missing nested_offset", true, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64], "nested_blocksize": 256, "nested_dtype": "float32"}`)
		}, []string{S, "nested_offset", "missing"}},
		{"nested_blocksize 0", true, func(b map[string]Blob) {
			setJSON(b, S, `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [300, 64], "nested_blocksize": 0, "nested_dtype": "float32", "nested_offset": 0.1}`)
		}, []string{S, "nested_blocksize"}},
	} {
		b := mk(NF4, c.double)
		c.edit(b)
		_, err := Import("L", b)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
}

// TestDouble checks the double quantisation without the Python peer: the
// dynamic map is sorted, symmetric, holds 0 and 1; the dequantised absmax
// stays within the map's resolution of the true one.
func TestDouble(t *testing.T) {
	dm := DynamicMap()
	if dm[0] != -dm[254] || dm[255] != 1 || dm[127] != 0 {
		t.Errorf("dynamic map ends %g %g %g %g", dm[0], dm[127], dm[254], dm[255])
	}
	for i := 1; i < 256; i++ {
		if dm[i] < dm[i-1] {
			t.Fatalf("dynamic map not sorted at %d", i)
		}
	}
	_, absmax := Quantize(NF4, normalW(5, 64*1000, 0.05), 64)
	d := QuantizeAbsmax(absmax)
	if len(d.Q) != 1000 || len(d.Absmax) != 4 || d.Blocksize != 256 {
		t.Fatalf("double: %d codes, %d nested absmax, blocksize %d", len(d.Q), len(d.Absmax), d.Blocksize)
	}
	a, err := d.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		// the widest step of the dynamic map near ±1 is about 0.03
		if e := math.Abs(float64(a[i] - absmax[i])); e > 0.02*float64(d.Absmax[i/256])+1e-7 {
			t.Errorf("absmax %d: %g double-quantised to %g", i, absmax[i], a[i])
		}
	}
	d.Absmax = d.Absmax[:3]
	if _, err := d.Dequantize(); err == nil {
		t.Error("nested absmax of the wrong length accepted")
	}
}

// FuzzImport feeds Import arbitrary quant_state JSON and packed sizes; it
// must refuse or accept without panicking, and what it accepts must be
// consistent enough to dequantise.
func FuzzImport(f *testing.F) {
	f.Add(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [3, 7]}`, 11, 1)
	f.Add(`{"quant_type": "nf4", "blocksize": 32, "dtype": "float16", "shape": [1, 1]}`, 1, 1)
	f.Add(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [-3, -7]}`, 11, 1)
	f.Add(`null`, 0, 0)
	f.Fuzz(func(t *testing.T, js string, packed, blocks int) {
		if packed < 0 || packed > 1<<16 || blocks < 0 || blocks > 1<<12 {
			return
		}
		cb := Codebook(NF4)
		b := map[string]Blob{
			"x.weight":                               {DType: "U8", Shape: []int{packed, 1}, Data: make([]byte, packed)},
			"x.weight.absmax":                        f32Blob(make([]float32, blocks)),
			"x.weight.quant_map":                     f32Blob(cb[:]),
			"x.weight.quant_state.bitsandbytes__nf4": {DType: "U8", Shape: []int{len(js)}, Data: []byte(js)},
		}
		tt, err := Import("x", b)
		if err != nil {
			return
		}
		tt.Dequantize(make([]float32, tt.Len()))
	})
}

// TestImportAbsmaxInPlace checks that Import uses 4-aligned F32 block
// scales in place (a mapped checkpoint's stay in the page cache) and copies
// unaligned ones, with the same values either way.
func TestImportAbsmaxInPlace(t *testing.T) {
	w := normalW(5, 8*128, 0.1)
	tt, err := NewTensor(NF4, w, 8, 128, 64, BF16, false)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := Export("m", tt)
	if err != nil {
		t.Fatal(err)
	}
	key := "m.weight.absmax"
	data := blobs[key].Data
	for _, shift := range []int{0, 1} {
		buf := make([]byte, len(data)+8)
		off := 4 - int(uintptr(unsafe.Pointer(&buf[0]))%4) + shift // aligned, then not
		b := blobs[key]
		b.Data = buf[off : off+len(data)]
		copy(b.Data, data)
		blobs[key] = b
		got, err := Import("m", blobs)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Absmax, tt.Absmax) {
			t.Fatalf("shift %d: absmax %v, want %v", shift, got.Absmax, tt.Absmax)
		}
		inPlace := unsafe.Pointer(&got.Absmax[0]) == unsafe.Pointer(&b.Data[0])
		if inPlace != (shift == 0 && littleEndian) {
			t.Errorf("shift %d: absmax in place %v", shift, inPlace)
		}
	}
}
