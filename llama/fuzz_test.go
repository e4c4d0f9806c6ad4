package llama

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/atomicfs"
)

// Fuzz targets for everything Load reads from a checkpoint folder. Their
// seed corpora live in testdata/fuzz/FuzzXxx; TestWriteFuzzCorpus rewrites
// them from the seeds below (TLI_WRITE_FUZZ_CORPUS=1 go test -run
// TestWriteFuzzCorpus ./llama/).

// stBytes returns a safetensors file with the given header and data size.
func stBytes(h string, data int) []byte {
	b := make([]byte, 8, 8+len(h)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	return append(append(b, h...), make([]byte, data)...)
}

func headerSeeds() [][]byte {
	return [][]byte{
		stBytes(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8),
		stBytes(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[],"data_offsets":[4,6]}}`, 6),
		stBytes(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12),
		stBytes(`{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}`, 8),
		// An empty tensor between two overlapping ones (hid the overlap).
		stBytes(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, 16),
		// Many empty entries (the million-entry header, in small).
		stBytes(`{"t0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"t1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"t2":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, 0),
		stBytes(`{"a":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}}`, 0),
		stBytes(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8),
		{0, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}, // header length 100 000 000: over the limit
		{1, 2, 3},
	}
}

// FuzzSafetensorsHeader feeds arbitrary bytes to the header parser: it must
// return an error or a header whose tensors lie inside the file without
// overlapping, and never panic.
func FuzzSafetensorsHeader(f *testing.F) {
	for _, b := range headerSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseSafetensorsHeader(b, int64(len(b)), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(h.Tensors)+len(h.Metadata) > maxHeaderEntries {
			t.Fatalf("%d entries accepted", len(h.Tensors)+len(h.Metadata))
		}
		size := len(b) - h.DataStart
		var list []*stTensor
		for name, ts := range h.Tensors {
			if ts.Begin < 0 || ts.End > size || ts.End < ts.Begin {
				t.Fatalf("tensor %q range [%d, %d] outside %d bytes", name, ts.Begin, ts.End, size)
			}
			n := 1
			for _, s := range ts.Shape {
				if s < 0 {
					t.Fatalf("tensor %q: negative dimension in %v", name, ts.Shape)
				}
				n *= s
			}
			es := ts.DType.Size()
			if ts.Int64 {
				es = 8
			}
			if n*es != ts.End-ts.Begin {
				t.Fatalf("tensor %q: shape %v does not match %d bytes", name, ts.Shape, ts.End-ts.Begin)
			}
			if ts.End > ts.Begin {
				list = append(list, ts)
			}
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Begin < list[j].Begin })
		for i := 1; i < len(list); i++ {
			if list[i].Begin < list[i-1].End {
				t.Fatalf("tensors %q and %q overlap", list[i-1].Name, list[i].Name)
			}
		}
	})
}

func configSeeds() [][]byte {
	c, _ := SynthConfig(SynthOptions{Shape: "llama3-8b"})
	js, _ := c.ConfigJSON()
	return [][]byte{
		js,
		[]byte(`{"hidden_size":64,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":3,"eos_token_id":[1,2],"rope_scaling":{"type":"linear","factor":2}}`),
		[]byte(`{"hidden_size":"64"}`),
		[]byte(`[]`),
		[]byte(`{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":4611686018427387904,"num_attention_heads":4,"vocab_size":512}`),
		[]byte(`{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":1000000000000,"num_attention_heads":4,"vocab_size":512}`),
		[]byte(`{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":1099511627776,"vocab_size":512}`),
		[]byte(`{"hidden_size":100,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":3,"vocab_size":512}`),
		[]byte(`{"hidden_size":100,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":32,"vocab_size":512}`),
		[]byte(`{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":512,"max_position_embeddings":-5,"rope_scaling":{"type":"dynamic","factor":1e308}}`),
	}
}

// FuzzParseConfig feeds arbitrary text to ParseConfig: it must return an
// error or a config that passes Validate (and so lies within the limits),
// and never panic.
func FuzzParseConfig(f *testing.F) {
	for _, b := range configSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted an invalid config: %v", err)
		}
		if c.NumLayers > LimitLayers || c.HiddenSize > LimitDim || c.NumHeads*c.HeadDim > LimitDim ||
			c.VocabSize > LimitVocab || c.MaxContext() > LimitPositions || c.MaxContext() < c.MaxPositionEmbeddings {
			t.Fatalf("config past the limits accepted: %+v (context %d)", c, c.MaxContext())
		}
	})
}

func indexSeeds() [][]byte {
	return [][]byte{
		[]byte(`{"metadata":{"total_size":16},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`),
		[]byte(`{"weight_map":{"a":".."}}`),
		[]byte(`{"weight_map":{"a":"../../etc/passwd"}}`),
		[]byte(`{"weight_map":{"a":"/abs.safetensors"}}`),
		[]byte(`{"weight_map":{"a":"sub\\x.safetensors"}}`),
		[]byte(`{"weight_map":{"a":"x\u0000y"}}`),
		[]byte(`{"weight_map":{"a":1}}`),
		[]byte(`{"weight_map":{}}`),
		[]byte(`{"weight_map":{"a":"x","a":"y"}}`),
		[]byte(`{"metadata":[[[{}]]],"weight_map":{"a":"x"},"z":null}`),
		[]byte(`{"weight_map":null}`),
	}
}

// FuzzParseIndex feeds arbitrary text to the model.safetensors.index.json
// parser: it must return an error naming the file or a non-empty map whose
// shard names are plain file names inside the folder, and never panic.
func FuzzParseIndex(f *testing.F) {
	for _, b := range indexSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		where, err := parseIndex(b, "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(where) == 0 || len(where) > maxIndexEntries {
			t.Fatalf("%d entries accepted", len(where))
		}
		for name, file := range where {
			if file == "" || file == "." || file == ".." || strings.ContainsAny(file, "/\\\x00") || filepath.Join("dir", file) != "dir/"+file {
				t.Fatalf("weight_map[%q] = %q escapes the folder", name, file)
			}
		}
	})
}

// tinyCheckpoint returns the config.json and model.safetensors bytes of a
// one-layer checkpoint of a few kilobytes.
func tinyCheckpoint(tb testing.TB, tied bool) (cfg, st []byte) {
	dir := tb.TempDir()
	if err := Synth(dir, SynthOptions{Seed: 1, Layers: 1, Hidden: 8, Heads: 2, KVHeads: 1, FFN: 12, Vocab: 16, MaxPositions: 8,
		Tied: &tied, TokenizerJSON: []byte(`{}`), BOS: []int{1}, EOS: []int{2}}); err != nil {
		tb.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	st, err = os.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg, st
}

func loadSeeds(tb testing.TB) [][2][]byte {
	cfg, st := tinyCheckpoint(tb, false)
	tcfg, tst := tinyCheckpoint(tb, true)
	c := string(cfg)
	layers := func(n string) []byte {
		return []byte(strings.Replace(c, `"num_hidden_layers": 1`, `"num_hidden_layers": `+n, 1))
	}
	// model.norm.weight stored as I64: four of them fill the bytes of eight F32.
	i64 := []byte(strings.Replace(string(st), `"model.norm.weight":{"dtype":"F32","shape":[8]`, `"model.norm.weight":{"dtype":"I64","shape":[4]`, 1))
	return [][2][]byte{
		{cfg, st},
		{tcfg, tst},
		{layers("1000"), st},
		{layers("1000000"), st},
		{layers("4611686018427387904"), st},
		{[]byte(strings.Replace(c, `"head_dim": 4`, `"head_dim": 1099511627776`, 1)), st},
		{[]byte(strings.Replace(c, `"hidden_size": 8`, `"hidden_size": 9`, 1)), st},
		{cfg, i64},
		{cfg, st[:len(st)-3]},
		{[]byte(`{}`), []byte{}},
	}
}

// FuzzLoad builds a checkpoint folder from a config.json and a
// model.safetensors and loads it: Load must return an error naming a file
// or a model, never panic; a model it returns must run a short forward and
// generation (or refuse with an error). Memory stays bounded because every
// size Load allocates from is within the config limits and checked against
// the tensors the (small) file holds.
func FuzzLoad(f *testing.F) {
	for _, s := range loadSeeds(f) {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, cfg, st []byte) {
		dir := t.TempDir()
		if err := atomicfs.WriteFile(filepath.Join(dir, "config.json"), cfg); err != nil {
			t.Fatal(err)
		}
		if err := atomicfs.WriteFile(filepath.Join(dir, "model.safetensors"), st); err != nil {
			t.Fatal(err)
		}
		for _, opts := range []LoadOptions{{MaxLayer: AllLayers}, {MaxLayer: 1}} {
			m, err := Load(dir, opts)
			if err != nil {
				if !strings.Contains(err.Error(), dir) {
					t.Fatalf("error does not name the file: %v", err)
				}
				continue
			}
			c := m.Config
			if c.NumLayers > LimitLayers || len(m.Layers) != c.NumLayers {
				t.Fatalf("loaded %d layers of %d", len(m.Layers), c.NumLayers)
			}
			toks := []int{0, 1 % c.VocabSize, 2 % c.VocabSize}[:min(3, c.MaxContext())]
			top := min(c.NumLayers, max(opts.MaxLayer, 0))
			if opts.MaxLayer == AllLayers {
				top = c.NumLayers
			}
			_ = m.Forward(NewBatch([][]int{toks}), []int{top}, func(int, []float32) error { return nil })
			if opts.MaxLayer == AllLayers && len(toks) < c.MaxContext() {
				_, _ = m.Generate(toks, GenerateOptions{MaxNewTokens: min(2, c.MaxContext()-len(toks))})
			}
			m.Close()
		}
	})
}

// TestWriteFuzzCorpus writes the seeds above as corpus files under
// testdata/fuzz when TLI_WRITE_FUZZ_CORPUS is set, so that the hostile
// examples stay in the corpus the fuzzers start from.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("TLI_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set TLI_WRITE_FUZZ_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, i int, vals ...[]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		sb.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			fmt.Fprintf(&sb, "[]byte(%q)\n", v)
		}
		if err := atomicfs.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(sb.String())); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range headerSeeds() {
		write("FuzzSafetensorsHeader", i, b)
	}
	for i, b := range configSeeds() {
		write("FuzzParseConfig", i, b)
	}
	for i, b := range indexSeeds() {
		write("FuzzParseIndex", i, b)
	}
	for i, s := range loadSeeds(t) {
		write("FuzzLoad", i, s[0], s[1])
	}
}
