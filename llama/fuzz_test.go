package llama

import (
	"encoding/binary"
	"testing"
)

// FuzzSafetensorsHeader feeds arbitrary bytes to the header parser: it must
// return an error or a header whose tensors lie inside the file without
// overlapping, and never panic.
func FuzzSafetensorsHeader(f *testing.F) {
	add := func(h string, data int) {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, uint64(len(h)))
		f.Add(append(append(b, h...), make([]byte, data)...))
	}
	add(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8)
	add(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[],"data_offsets":[4,6]}}`, 6)
	add(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12)
	add(`{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}`, 8)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseSafetensorsHeader(b, int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		size := len(b) - h.DataStart
		for name, ts := range h.Tensors {
			if ts.Begin < 0 || ts.End > size || ts.End < ts.Begin {
				t.Fatalf("tensor %q range [%d, %d] outside %d bytes", name, ts.Begin, ts.End, size)
			}
			n := 1
			for _, s := range ts.Shape {
				n *= s
			}
			if n*ts.DType.Size() != ts.End-ts.Begin {
				t.Fatalf("tensor %q: shape %v does not match %d bytes", name, ts.Shape, ts.End-ts.Begin)
			}
		}
	})
}

// FuzzParseConfig feeds arbitrary text to ParseConfig: it must return an
// error or a config that passes Validate, and never panic.
func FuzzParseConfig(f *testing.F) {
	c, _ := SynthConfig(SynthOptions{Shape: "llama3-8b"})
	js, _ := c.ConfigJSON()
	f.Add(js)
	f.Add([]byte(`{"hidden_size":64,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":3,"eos_token_id":[1,2],"rope_scaling":{"type":"linear","factor":2}}`))
	f.Add([]byte(`{"hidden_size":"64"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "fuzz")
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted an invalid config: %v", err)
		}
	})
}
