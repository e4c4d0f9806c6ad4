package engine

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestMapFileAndTensorFromBytes(t *testing.T) {
	dir := t.TempDir()
	vals := []float32{1.5, -2, 3.25, float32(math.Pi)}
	// Two-byte prefix so the f32 data starting at offset 2 is misaligned.
	raw := []byte{0xAA, 0xBB}
	for _, v := range vals {
		u := math.Float32bits(v)
		raw = append(raw, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	p := filepath.Join(dir, "x.bin")
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := MapFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.Data) != len(raw) {
		t.Fatalf("mapped %d bytes, want %d", len(m.Data), len(raw))
	}
	mis, err := TensorFromBytes(F32, []int{2, 2}, m.Data[2:])
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if mis.F32[i] != v {
			t.Fatalf("misaligned f32[%d] = %v, want %v", i, mis.F32[i], v)
		}
	}
	// An aligned view must share memory with the source bytes.
	buf := make([]float32, 4)
	copy(buf, vals)
	b := (&Tensor{DType: F32, Shape: []int{4}, F32: buf}).Bytes()
	al, err := TensorFromBytes(F32, []int{4}, b)
	if err != nil {
		t.Fatal(err)
	}
	buf[0] = 42
	if al.F32[0] != 42 {
		t.Fatalf("aligned tensor does not point into the buffer")
	}
	// Half: odd offset copies, bits preserved.
	h, err := TensorFromBytes(BF16, []int{3}, []byte{1, 0x34, 0x12, 0x80, 0x3f, 0, 0}[1:])
	if err != nil {
		t.Fatal(err)
	}
	if h.Half[0] != 0x1234 || h.Half[1] != 0x3f80 || h.At(1) != 1 {
		t.Fatalf("bf16 halves %x", h.Half)
	}
	if _, err := TensorFromBytes(F32, []int{3}, make([]byte, 8)); err == nil {
		t.Fatal("want size error")
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	me, err := MapFile(empty)
	if err != nil || len(me.Data) != 0 {
		t.Fatalf("empty file: %v %d", err, len(me.Data))
	}
	if _, err := MapFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("want error for a missing file")
	}
}

func TestFirstNonFinite(t *testing.T) {
	x := NewF32(200000)
	if i := x.FirstNonFinite(); i != -1 {
		t.Fatalf("finite tensor: %d", i)
	}
	x.F32[150001] = float32(math.Inf(-1))
	x.F32[190000] = float32(math.NaN())
	if i := x.FirstNonFinite(); i != 150001 {
		t.Fatalf("got %d, want 150001", i)
	}
	b := x.Convert(BF16)
	if i := b.FirstNonFinite(); i != 150001 {
		t.Fatalf("bf16 got %d", i)
	}
	f := x.Convert(F16)
	if i := f.FirstNonFinite(); i != 150001 {
		t.Fatalf("f16 got %d", i)
	}
}

func TestMappingRelease(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.bin")
	raw := make([]byte, 1<<20)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	os.WriteFile(p, raw, 0o644)
	m, err := MapFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Release(m.Data[100 : 1<<19])
	m.Release(make([]byte, 10)) // not part of the mapping: ignored
	// Released pages read back from the file unchanged.
	for i := range raw {
		if m.Data[i] != raw[i] {
			t.Fatalf("byte %d changed after Release", i)
		}
	}
}
