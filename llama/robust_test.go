package llama

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tli-project/tli/autograd"
	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
)

// Regression tests for hostile and careless input (issue 17): every one
// must fail with one clear error naming the field, file or tensor and the
// limit, quickly and without a large allocation.

// editConfig rewrites dir/config.json with the string replacements given.
func editConfig(t *testing.T, dir string, repl ...string) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("config.json lacks %s", repl[i])
		}
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	if err := atomicfs.WriteFile(p, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigLimits(t *testing.T) {
	base := `"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":512`
	for _, c := range []struct {
		name, json string
		want       []string
	}{
		{"layers-2^62", `{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":4611686018427387904,"num_attention_heads":4,"vocab_size":512}`,
			[]string{`"num_hidden_layers"`, "4611686018427387904", "limit 1024"}},
		{"layers-1e12", `{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":1000000000000,"num_attention_heads":4,"vocab_size":512}`,
			[]string{`"num_hidden_layers"`, "1000000000000", "limit 1024"}},
		{"head_dim-2^40", `{` + base + `,"head_dim":1099511627776}`, []string{`"head_dim"`, "1099511627776", "limit 1048576"}},
		{"hidden-huge", `{"hidden_size":4194304,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":512}`,
			[]string{`"hidden_size"`, "limit 1048576"}},
		{"ffn-huge", `{"hidden_size":64,"intermediate_size":2097152,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":512}`,
			[]string{`"intermediate_size"`, "limit 1048576"}},
		{"heads-huge", `{"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":2097152,"head_dim":2,"vocab_size":512}`,
			[]string{`"num_attention_heads"`, "limit 1048576"}},
		{"vocab-huge", `{` + strings.Replace(base, `"vocab_size":512`, `"vocab_size":33554432`, 1) + `}`, []string{`"vocab_size"`, "limit 16777216"}},
		{"positions-huge", `{` + base + `,"max_position_embeddings":1099511627776}`, []string{`"max_position_embeddings"`, "limit 16777216"}},
		{"q-width", `{` + base + `,"head_dim":524288}`, []string{"num_attention_heads 4 × head_dim 524288", "limit 1048576"}},
		{"embedding-product", `{"hidden_size":1048576,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":16777216}`,
			[]string{"vocab_size 16777216 × hidden_size 1048576", "limit 1099511627776"}},
		{"heads-not-dividing", `{"hidden_size":100,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":3,"vocab_size":512}`,
			[]string{"hidden_size 100 is not a multiple of num_attention_heads 3", "head_dim"}},
		{"odd-head_dim", `{` + base + `,"head_dim":15}`, []string{`"head_dim"`, "even", "15"}},
		{"kv-heads", `{` + strings.Replace(base, `"num_key_value_heads":2`, `"num_key_value_heads":3`, 1) + `}`, []string{"num_key_value_heads 3"}},
		{"rope-factor-nan-like", `{` + base + `,"rope_scaling":{"type":"linear","factor":-2}}`, []string{"rope_scaling", "factor", "-2"}},
		{"layers-negative", `{` + strings.Replace(base, `"num_hidden_layers":2`, `"num_hidden_layers":-1`, 1) + `}`, []string{`"num_hidden_layers"`, "positive", "-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.json), "x/config.json")
			wantErr(t, err, append([]string{"x/config.json"}, c.want...)...)
		})
	}
	// An explicit head_dim other than hidden/heads (Qwen3-like) is a valid
	// config; the tensors' shapes decide at load.
	c, err := ParseConfig([]byte(`{"hidden_size":100,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"head_dim":32,"vocab_size":512}`), "ok")
	if err != nil || c.HeadDim != 32 || c.NumKVHeads != 4 {
		t.Fatalf("explicit head_dim: %+v %v", c, err)
	}
}

func TestLoadConfigTooLarge(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 1})
	p := filepath.Join(dir, "config.json")
	big := make([]byte, maxConfigBytes+1)
	for i := range big {
		big[i] = ' '
	}
	if err := atomicfs.WriteFile(p, big); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
	wantErr(t, err, p, "exceeds the 16777216-byte limit")
}

// A config claiming more layers than the checkpoint holds fails on the
// first missing tensor, before per-layer weights are allocated.
func TestLoadConfigMoreLayersThanCheckpoint(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 1}) // 2 layers
	editConfig(t, dir, `"num_hidden_layers": 2`, `"num_hidden_layers": 1000`)
	_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
	wantErr(t, err, "model.safetensors", `missing tensor "model.layers.2.input_layernorm.weight"`, "num_hidden_layers 1000", "lacks layer 2")
	// Loading only the layers that exist still works.
	m, err := Load(dir, LoadOptions{MaxLayer: 2})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	editConfig(t, dir, `"num_hidden_layers": 1000`, `"num_hidden_layers": 1000000`)
	_, err = Load(dir, LoadOptions{MaxLayer: AllLayers})
	wantErr(t, err, "config.json", `"num_hidden_layers" is 1000000, above the limit 1024`)
}

func TestSynthConfigRefuses(t *testing.T) {
	for _, c := range []struct {
		opts SynthOptions
		want []string
	}{
		{SynthOptions{Layers: -1}, []string{"synth: Layers -1 is negative"}},
		{SynthOptions{Layers: 1 << 40}, []string{`"num_hidden_layers" is 1099511627776, above the limit 1024`}},
		{SynthOptions{Hidden: -64}, []string{"synth: Hidden -64 is negative"}},
		{SynthOptions{RopeTheta: -1}, []string{"synth: RopeTheta -1 is negative"}},
		{SynthOptions{Hidden: 100, Heads: 3}, []string{"hidden size 100 is not a multiple of 3 heads", "HeadDim"}},
		{SynthOptions{HeadDim: 1 << 40}, []string{`"head_dim" is 1099511627776, above the limit 1048576`}},
	} {
		_, err := SynthConfig(c.opts)
		wantErr(t, err, c.want...)
	}
	if c, err := SynthConfig(SynthOptions{Hidden: 100, Heads: 4, HeadDim: 32}); err != nil || c.HeadDim != 32 {
		t.Fatalf("explicit HeadDim: %+v %v", c, err)
	}
}

// headerFile returns safetensors bytes with the given header and data size.
func headerFile(h string, data int) []byte {
	b := make([]byte, 8, 8+len(h)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	return append(append(b, h...), make([]byte, data)...)
}

func TestSafetensorsMillionEntries(t *testing.T) {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := 0; i < 1_000_000; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"t%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`, i)
	}
	sb.WriteByte('}')
	b := headerFile(sb.String(), 0)
	start := time.Now()
	_, err := parseSafetensorsHeader(b, int64(len(b)), "big.safetensors")
	el := time.Since(start)
	wantErr(t, err, "big.safetensors", "more than 100000 entries")
	if el > time.Second {
		t.Fatalf("refusing a million-entry header took %v, want < 1s", el)
	}
	t.Logf("refused in %v", el)
	// The entry count includes __metadata__ keys.
	sb.Reset()
	sb.WriteString(`{"__metadata__":{`)
	for i := 0; i <= maxHeaderEntries; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"k%d":""`, i)
	}
	sb.WriteString(`}}`)
	b = headerFile(sb.String(), 0)
	_, err = parseSafetensorsHeader(b, int64(len(b)), "meta.safetensors")
	wantErr(t, err, "meta.safetensors", "more than 100000 entries")
}

func TestSafetensorsHeaderHostile(t *testing.T) {
	for _, c := range []struct {
		name, header string
		data         int
		want         []string
	}{
		// A zero-length tensor sorted between two overlapping ones used to
		// hide the overlap (only neighbours were compared).
		{"hidden-overlap", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, 16,
			[]string{"overlap", `"a" [0, 16]`, `"b" [8, 16]`}},
		// b lies inside a, c after b but still inside a: a is the one to blame.
		{"nested-overlap", `{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[1],"data_offsets":[20,24]}}`, 32,
			[]string{"overlap", `"a"`, `"b"`}},
		{"huge-dim-zero-numel", `{"a":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}}`, 0,
			[]string{`"a"`, "too large"}},
		{"rank", `{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}`, 4,
			[]string{`"a"`, `"shape"`, "more than 16"}},
		{"duplicate", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4,
			[]string{`"a"`, "appears twice"}},
		{"extra-key", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4, []string{`"a"`, `unexpected key "x"`}},
		{"missing-key", `{"a":{"dtype":"F32","shape":[1]}}`, 4, []string{`"a"`, `missing "data_offsets"`}},
		{"three-offsets", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 8, []string{`"a"`, "data_offsets"}},
		{"negative", `{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4, []string{`"a"`, "non-negative integer"}},
		{"trailing", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x`, 4, []string{"bad safetensors header"}},
		{"metadata-not-strings", `{"__metadata__":{"k":1}}`, 0, []string{`"__metadata__"`, `"k"`, "want a string"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := headerFile(c.header, c.data)
			_, err := parseSafetensorsHeader(b, int64(len(b)), "x.safetensors")
			wantErr(t, err, append([]string{"x.safetensors"}, c.want...)...)
		})
	}
	// Empty tensors anywhere in the data section, and tensors touching, are fine.
	b := headerFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"dtype":"BF16","shape":[0,3],"data_offsets":[2,2]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"__metadata__":{"format":"pt"}}`, 8)
	h, err := parseSafetensorsHeader(b, int64(len(b)), "ok")
	if err != nil || len(h.Tensors) != 3 || h.Metadata["format"] != "pt" {
		t.Fatalf("valid header: %v %v", h, err)
	}
}

// An I64 tensor where a weight is expected: the message names the file and
// says what is wrong, for a single file and for a sharded checkpoint.
func TestLoadI64Weight(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 1})
	p := filepath.Join(dir, "model.safetensors")
	ts, meta, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	norm := ts["model.norm.weight"]
	delete(ts, "model.norm.weight")
	var list []NamedTensor
	for n, x := range ts {
		list = append(list, NamedTensor{n, x})
	}
	ints := []NamedInts{{"model.norm.weight", norm.Shape, make([]int64, norm.Numel())}}
	if err := WriteSafetensorsMixed(p, list, ints, meta); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir, LoadOptions{MaxLayer: AllLayers})
	wantErr(t, err, p, `tensor "model.norm.weight" is I64; model weights must be F32, BF16 or F16`)
	if strings.Contains(err.Error(), "index") {
		t.Fatalf("single-file message mentions an index: %v", err)
	}
}

func TestIndexHostile(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 1, ShardBytes: 60000})
	idx := filepath.Join(dir, "model.safetensors.index.json")
	orig, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if err := atomicfs.WriteFile(idx, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, index string
		want        []string
	}{
		{"dotdot", `{"weight_map":{"model.embed_tokens.weight":".."}}`, []string{`".." is not a plain file name`}},
		{"escape", `{"weight_map":{"model.embed_tokens.weight":"../x.safetensors"}}`, []string{`"../x.safetensors" is not a plain file name`}},
		{"backslash", `{"weight_map":{"model.embed_tokens.weight":"..\\x.safetensors"}}`, []string{`is not a plain file name`}},
		{"absolute", `{"weight_map":{"model.embed_tokens.weight":"/etc/passwd"}}`, []string{`"/etc/passwd" is not a plain file name`}},
		{"missing-shard", `{"weight_map":{"model.embed_tokens.weight":"nope.safetensors"}}`, []string{"shard nope.safetensors", `"model.embed_tokens.weight"`, "missing"}},
		{"not-string", `{"weight_map":{"model.embed_tokens.weight":7}}`, []string{`weight_map["model.embed_tokens.weight"]`, "file name string", "7"}},
		{"not-object", `{"weight_map":[1]}`, []string{`"weight_map"`, "want an object"}},
		{"empty", `{"metadata":{"total_size":1},"weight_map":{}}`, []string{`"weight_map" is missing or empty`}},
		{"twice", `{"weight_map":{"a":"b"},"weight_map":{"a":"b"}}`, []string{`"weight_map" appears twice`}},
		{"dup-tensor", `{"weight_map":{"a":"b","a":"b"}}`, []string{`weight_map["a"] appears twice`}},
		{"not-json", `{"weight_map":`, []string{"not a safetensors index"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(c.index)
			_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
			wantErr(t, err, append([]string{idx}, c.want...)...)
		})
	}
	t.Run("tensor-not-in-shard", func(t *testing.T) {
		var ix struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(orig, &ix); err != nil {
			t.Fatal(err)
		}
		home := ix.WeightMap["model.norm.weight"]
		other := ""
		for _, f := range ix.WeightMap {
			if f != home {
				other = f
			}
		}
		if other == "" {
			t.Fatal("want two shards")
		}
		ix.WeightMap["model.norm.weight"] = other
		b, _ := json.Marshal(ix)
		write(string(b))
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, filepath.Join(dir, other), `"model.norm.weight"`, "model.safetensors.index.json lists in this shard, is not in it")
	})
	t.Run("too-large", func(t *testing.T) {
		big := make([]byte, maxIndexBytes+1)
		if err := atomicfs.WriteFile(idx, big); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
		wantErr(t, err, idx, "exceeds the 100000000-byte limit")
	})
	write(string(orig))
	m, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

func TestContextLimit(t *testing.T) {
	dir := synthTiny(t, SynthOptions{Seed: 3, MaxPositions: 16})
	m, err := Load(dir, LoadOptions{MaxLayer: AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Config.MaxContext() != 16 {
		t.Fatalf("MaxContext %d, want 16", m.Config.MaxContext())
	}
	seqs := testSeqs(m.Config.VocabSize, 5, 17, 3)
	b := NewBatch(seqs)
	err = m.Forward(b, []int{1}, func(int, []float32) error { return nil })
	wantErr(t, err, "sequence 1 has 17 tokens, more than max_position_embeddings 16")
	_, err = m.ForwardTrain(autograd.NewTape(), b, 1, nil)
	wantErr(t, err, "ForwardTrain", "sequence 1 has 17 tokens, more than max_position_embeddings 16")
	// 16 tokens fit.
	if err := m.Forward(NewBatch(testSeqs(m.Config.VocabSize, 16)), []int{1}, func(int, []float32) error { return nil }); err != nil {
		t.Fatal(err)
	}
	prompt := testSeqs(m.Config.VocabSize, 10)[0]
	_, err = m.Generate(prompt, GenerateOptions{MaxNewTokens: 100000000})
	wantErr(t, err, "prompt of 10 tokens + MaxNewTokens 100000000", "max_position_embeddings 16", "at most 6")
	_, err = m.Generate(prompt, GenerateOptions{MaxNewTokens: int(^uint(0) >> 1)}) // no overflow
	wantErr(t, err, "max_position_embeddings 16")
	out, err := m.Generate(prompt, GenerateOptions{MaxNewTokens: 6, StopTokens: []int{}})
	if err != nil || len(out) != 6 {
		t.Fatalf("6 new tokens fit: %v %v", out, err)
	}
	// The default of 32 new tokens is clamped to the room left.
	out, err = m.Generate(prompt, GenerateOptions{StopTokens: []int{}})
	if err != nil || len(out) != 6 {
		t.Fatalf("default MaxNewTokens: %v %v", out, err)
	}
	_, err = m.Generate(testSeqs(m.Config.VocabSize, 16)[0], GenerateOptions{})
	wantErr(t, err, "the prompt has 16 tokens", "no room", "max_position_embeddings 16")

	// Dynamic rope scaling runs past max_position_embeddings up to factor×.
	c := Config{MaxPositionEmbeddings: 48, RopeScaling: engine.RopeScaling{Type: "dynamic", Factor: 2}}
	if c.MaxContext() != 96 {
		t.Fatalf("dynamic MaxContext %d, want 96", c.MaxContext())
	}
	c.RopeScaling.Factor = 1e300
	if c.MaxContext() != LimitPositions {
		t.Fatalf("dynamic MaxContext %d, want the limit %d", c.MaxContext(), LimitPositions)
	}
	if err := c.checkLengths(Batch{Offsets: []int{0, 97}}); err != nil {
		t.Fatal(err)
	}
	c.RopeScaling.Factor = 2
	wantErr(t, c.checkLengths(Batch{Offsets: []int{0, 97}}), "sequence 0 has 97 tokens", "context limit 96 (max_position_embeddings 48 × dynamic rope_scaling factor 2)")
}
