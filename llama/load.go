package llama

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/limitread"
	"github.com/tli-project/tli/kernels"
)

// LoadOptions says how much of a checkpoint to load and how to hold it.
type LoadOptions struct {
	// DType is how Linear and embedding weights are held in memory: F32 or
	// BF16. Weights stored in another dtype are converted tensor by tensor
	// while loading, so an F32 checkpoint held as BF16 never needs the whole
	// F32 model in memory. Weights stored in DType point straight into the
	// memory-mapped file. Norm weights are always held as f32.
	DType engine.DType
	// MaxLayer is the highest hidden_states index the caller will ask for:
	// the embedding and layers 0..MaxLayer-1 are loaded (MaxLayer 0: the
	// embedding only; num_hidden_layers: every layer and the final norm).
	// -1 (AllLayers) loads everything, including the LM head.
	MaxLayer int
	// NeedLMHead loads the final norm and the LM head (lm_head.weight, or
	// the embedding when tied) even when MaxLayer >= 0.
	NeedLMHead bool
	// Numerics rounds activations and quantises decoder Linear weights
	// (see Numerics). With Activations other than F32, every weight is
	// held in that dtype, as transformers' torch_dtype does, and DType must
	// be F32 or the same dtype. 4-bit weights of a pre-quantised
	// checkpoint are loaded as they are, whatever Numerics.Quant says.
	Numerics Numerics
}

// AllLayers is LoadOptions.MaxLayer for a full load.
const AllLayers = -1

// checkpoint is the set of safetensors files of one model folder.
type checkpoint struct {
	dir    string
	where  map[string]string // tensor name -> file name (relative to dir)
	files  map[string]*stFile
	shards []string
	// index is the path of model.safetensors.index.json, "" for a
	// single-file checkpoint.
	index string
	// pinned is set once a loaded tensor points into a mapped shard, which
	// must then stay open for the model's lifetime.
	pinned bool
	// copyAll makes load copy tensors out of the mapping even when no
	// conversion is needed (for the small norm weights).
	copyAll bool
	// scratch is the f32 buffer weights are quantised from.
	scratch []float32
	// deferred collects the tensors load left in a mapped shard without
	// reading them; loadFrom hands them to the model (see Model.verify).
	deferred []pendingCheck
	// stored maps a tensor's name to the name its file gives it, where the
	// two differ (bare BLOOM names: see addPrefix).
	stored map[string]string
}

// addPrefix reads a checkpoint whose tensors lack the family's usual
// prefix (bigscience's BLOOM files name "word_embeddings.weight", "h.0.…",
// transformers "transformer.word_embeddings.weight") under the prefixed
// names, as transformers does when it loads them.
func (c *checkpoint) addPrefix(cfg Config) {
	n := cfg.arch().Names
	embed := n.Embed + ".weight"
	if n.Bare == "" || c.has(embed) || !c.has(strings.TrimPrefix(embed, n.Bare)) {
		return
	}
	where := map[string]string{}
	c.stored = map[string]string{}
	for name, file := range c.where {
		if name != "lm_head.weight" && !strings.HasPrefix(name, n.Bare) {
			c.stored[n.Bare+name] = name
			name = n.Bare + name
		}
		where[name] = file
	}
	c.where = where
}

// Limits of model.safetensors.index.json.
const (
	maxIndexBytes   = 100_000_000 // the file
	maxIndexEntries = 1_000_000   // weight_map entries
)

// parseIndex parses model.safetensors.index.json text (name is used in
// errors): the weight_map from tensor names to shard file names, checked to
// be plain file names inside the checkpoint folder. Other keys (metadata)
// are skipped. Reading is a stream of JSON tokens, so time and memory are
// linear in the text and bounded by maxIndexBytes and maxIndexEntries.
func parseIndex(data []byte, name string) (map[string]string, error) {
	if len(data) > maxIndexBytes {
		return nil, fmt.Errorf("%s: %d bytes exceeds the %d-byte limit for a safetensors index", name, len(data), maxIndexBytes)
	}
	bad := func(err error) error { return fmt.Errorf("%s: not a safetensors index: %v", name, err) }
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := expectDelim(dec, '{'); err != nil {
		return nil, bad(err)
	}
	var where map[string]string
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return nil, bad(err)
		}
		if key != "weight_map" {
			if err := skipValue(dec); err != nil {
				return nil, bad(fmt.Errorf("%q: %v", key, err))
			}
			continue
		}
		if where != nil {
			return nil, fmt.Errorf("%s: field \"weight_map\" appears twice", name)
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, bad(err)
		}
		if tok == nil {
			where = map[string]string{}
			continue
		}
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return nil, fmt.Errorf("%s: field \"weight_map\": want an object mapping tensor names to shard file names, got %v", name, tok)
		}
		where = map[string]string{}
		for dec.More() {
			tname, err := stringToken(dec)
			if err != nil {
				return nil, bad(err)
			}
			if len(where) >= maxIndexEntries {
				return nil, fmt.Errorf("%s: weight_map has more than %d entries; a model has far fewer tensors", name, maxIndexEntries)
			}
			if _, dup := where[tname]; dup {
				return nil, fmt.Errorf("%s: weight_map[%q] appears twice", name, tname)
			}
			tok, err := dec.Token()
			if err != nil {
				return nil, bad(err)
			}
			file, ok := tok.(string)
			if !ok {
				if d, isDelim := tok.(json.Delim); isDelim {
					tok = string(d) + "..."
				}
				return nil, fmt.Errorf("%s: weight_map[%q]: want a file name string, got %v", name, tname, tok)
			}
			if !plainFileName(file) {
				return nil, fmt.Errorf("%s: weight_map[%q]: %q is not a plain file name in the checkpoint folder", name, tname, file)
			}
			where[tname] = file
		}
		if err := expectDelim(dec, '}'); err != nil {
			return nil, bad(err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, bad(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad(fmt.Errorf("data after the closing brace"))
	}
	if len(where) == 0 {
		return nil, fmt.Errorf("%s: field \"weight_map\" is missing or empty", name)
	}
	return where, nil
}

// plainFileName reports whether file names a file directly inside a folder:
// not empty, not . or .., no path separator of any system, no NUL.
func plainFileName(file string) bool {
	return file != "" && file != "." && file != ".." && !strings.ContainsAny(file, "/\\\x00") &&
		!filepath.IsAbs(file) && file == filepath.Base(file)
}

// skipValue reads and discards one JSON value.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("unexpected end of JSON")
			}
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

// tooLargeError is a file refused for its size before being read.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }

// readLimited reads the file at path, refusing one larger than limit bytes
// (a *tooLargeError, without reading a regular file); what names the kind
// of file.
func readLimited(path string, limit int64, what string) ([]byte, error) {
	data, err := limitread.ReadFile(path, limit)
	var tl *limitread.TooLargeError
	switch {
	case errors.As(err, &tl) && tl.Size >= 0:
		return nil, &tooLargeError{fmt.Sprintf("%s: %d bytes exceeds the %d-byte limit for %s", path, tl.Size, limit, what)}
	case errors.As(err, &tl):
		return nil, &tooLargeError{fmt.Sprintf("%s: more than %d bytes exceeds the limit for %s", path, limit, what)}
	}
	return data, err
}

// openCheckpoint reads dir/model.safetensors.index.json when present, else
// expects dir/model.safetensors. Shards are opened lazily, but every shard
// the index names must exist.
func openCheckpoint(dir string) (*checkpoint, error) {
	c := &checkpoint{dir: dir, where: map[string]string{}, files: map[string]*stFile{}}
	idx := filepath.Join(dir, "model.safetensors.index.json")
	data, err := readLimited(idx, maxIndexBytes, "a safetensors index")
	switch {
	case err == nil:
		where, err := parseIndex(data, idx)
		if err != nil {
			return nil, err
		}
		c.where, c.index = where, idx
		first := map[string]string{} // shard -> first tensor (by name) listed in it
		for name, file := range where {
			if t, ok := first[file]; !ok || name < t {
				first[file] = name
			}
		}
		for file := range first {
			c.shards = append(c.shards, file)
		}
		sort.Strings(c.shards)
		for _, file := range c.shards {
			st, err := os.Stat(filepath.Join(dir, file))
			if err != nil || !st.Mode().IsRegular() {
				return nil, fmt.Errorf("%s: shard %s listed for tensor %q is missing (or not a regular file)", idx, file, first[file])
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		single := filepath.Join(dir, "model.safetensors")
		f, err := openSafetensors(single)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", dir)
			}
			return nil, err
		}
		c.files["model.safetensors"] = f
		c.shards = []string{"model.safetensors"}
		for name := range f.h.Tensors {
			c.where[name] = "model.safetensors"
		}
	default:
		var tl *tooLargeError
		if errors.As(err, &tl) {
			return nil, err
		}
		return nil, fmt.Errorf("reading %s: %w", idx, err)
	}
	return c, nil
}

// has reports whether the checkpoint names tensor name.
func (c *checkpoint) has(name string) bool { _, ok := c.where[name]; return ok }

// missing describes tensor name as absent from the checkpoint.
func (c *checkpoint) missing(name string) error {
	if c.index != "" {
		return fmt.Errorf("%s: missing tensor %q (not in weight_map)", c.index, name)
	}
	return fmt.Errorf("%s: missing tensor %q", filepath.Join(c.dir, "model.safetensors"), name)
}

// raw returns the named tensor as stored (pointing into its shard's mapping)
// and the shard's path.
func (c *checkpoint) raw(name string) (*engine.Tensor, string, error) {
	f, stored, err := c.open(name)
	if err != nil {
		return nil, f.pathOr(c.dir), err
	}
	if info := f.h.Tensors[stored]; info.Int64 || info.Bytes {
		return nil, f.path, fmt.Errorf("%s: tensor %q is %s; model weights must be F32, BF16 or F16 (or 4-bit with a quant_state beside them)", f.path, stored, info.dtypeName())
	}
	t, err := f.tensor(stored)
	if err != nil {
		return nil, f.path, err
	}
	return t, f.path, nil
}

// open returns the opened shard holding tensor name and the name the file
// gives it.
func (c *checkpoint) open(name string) (*stFile, string, error) {
	file, ok := c.where[name]
	if !ok {
		return nil, "", c.missing(name)
	}
	f := c.files[file]
	if f == nil {
		var err error
		f, err = openSafetensors(filepath.Join(c.dir, file))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, "", fmt.Errorf("%s: shard %s listed for tensor %q is missing", c.dir, file, name)
			}
			return nil, "", err
		}
		c.files[file] = f
	}
	stored := name
	if s, ok := c.stored[name]; ok {
		stored = s
	}
	if _, ok := f.h.Tensors[stored]; !ok {
		return f, "", fmt.Errorf("%s: tensor %q, which %s lists in this shard, is not in it", f.path, stored, c.index)
	}
	return f, stored, nil
}

// load returns tensor name checked against shape, held as dtype (converted
// into the heap when the stored dtype differs). A converted or copied tensor
// is checked for NaN/Inf on the way; one that stays in a mapped shard is
// added to c.deferred unread.
func (c *checkpoint) load(name string, shape []int, dtype engine.DType) (*engine.Tensor, error) {
	t, path, err := c.raw(name)
	if err != nil {
		return nil, err
	}
	if !sameShape(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", path, name, t.Shape, shape)
	}
	f := c.files[c.where[name]]
	if t.DType == dtype && !c.copyAll {
		if f.m.Mapped {
			// Checked at first use instead (Model.verify): reading it now
			// would read a checkpoint larger than memory one extra time.
			c.pinned = true
			c.deferred = append(c.deferred, pendingCheck{path, name, t})
			return t, nil
		}
		if err := nonFiniteError(path, name, t); err != nil {
			return nil, err
		}
		return t, nil
	}
	out := &engine.Tensor{DType: dtype, Shape: append([]int(nil), t.Shape...)}
	n := t.Numel()
	if dtype == engine.F32 {
		out.F32 = make([]float32, n)
	} else {
		out.Half = make([]uint16, n)
	}
	if err := c.convert(out, t, path, name); err != nil {
		return nil, err
	}
	return out, nil
}

// convert writes stored tensor t (named name, in the shard at path) into
// out, of the same shape, converting a slice at a time: each slice is
// checked for NaN/Inf, converted, and its mapped pages let go, so the
// resident set grows by the converted size only.
func (c *checkpoint) convert(out, t *engine.Tensor, path, name string) error {
	f := c.files[c.where[name]]
	n := t.Numel()
	const slice = 1 << 22
	for lo := 0; lo < n; lo += slice {
		hi := min(lo+slice, n)
		part := &engine.Tensor{DType: t.DType, Shape: []int{hi - lo}}
		if t.DType == engine.F32 {
			part.F32 = t.F32[lo:hi]
		} else {
			part.Half = t.Half[lo:hi]
		}
		if i := part.FirstNonFinite(); i >= 0 {
			return nonFiniteError(path, name, &engine.Tensor{DType: t.DType, Shape: t.Shape, F32: t.F32, Half: t.Half})
		}
		convertInto(out, lo, part)
		f.m.Release(part.Bytes())
	}
	return nil
}

// convertInto writes the elements of src, converted to dst's dtype, into
// dst at flat offsets off..off+len(src), in parallel blocks.
func convertInto(dst *engine.Tensor, off int, src *engine.Tensor) {
	n := src.Numel()
	d := dst.DType
	const block = 1 << 16
	engine.ParallelFor((n+block-1)/block, func(c int) {
		lo, hi := c*block, min((c+1)*block, n)
		switch {
		case d == engine.F32:
			for i := lo; i < hi; i++ {
				dst.F32[off+i] = src.At(i)
			}
		case d == engine.BF16 && src.DType == engine.F32:
			for i := lo; i < hi; i++ {
				dst.Half[off+i] = kernels.F32ToBF16(src.F32[i])
			}
		case d == src.DType:
			copy(dst.Half[off+lo:off+hi], src.Half[lo:hi])
		case d == engine.BF16:
			for i := lo; i < hi; i++ {
				dst.Half[off+i] = kernels.F32ToBF16(src.At(i))
			}
		default:
			for i := lo; i < hi; i++ {
				dst.Half[off+i] = kernels.F32ToF16(src.At(i))
			}
		}
	})
}

// loadF32 is load for norm weights, always returned as a plain []float32.
func (c *checkpoint) loadF32(name string, d int) ([]float32, error) {
	c.copyAll = true
	defer func() { c.copyAll = false }()
	t, err := c.load(name, []int{d}, engine.F32)
	if err != nil {
		return nil, err
	}
	return t.F32, nil // a copy: copyAll keeps norms off the mapping
}

// close unmaps every opened shard.
func (c *checkpoint) close() error {
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Load reads the checkpoint in dir (config.json plus model.safetensors or
// the shards named by model.safetensors.index.json), loading only what opts
// asks for. Every tensor is checked against the shapes config.json implies
// and for NaN/Inf; errors name the file and tensor. Tensors converted or
// copied while loading are checked for NaN/Inf then; weights left in a
// memory-mapped shard are checked the first time the model uses them
// (Forward, ForwardTrain, Generate, Logits, VerifyLayer), right before the
// product reads them anyway, so that a checkpoint larger than memory is not
// read one extra time at load. Verify checks everything at once. When some
// weights point into memory-mapped shards, Model.Close releases them.
func Load(dir string, opts LoadOptions) (*Model, error) {
	if opts.DType != engine.F32 && opts.DType != engine.BF16 {
		return nil, fmt.Errorf("llama.Load: weights can be held as f32 or bf16, not %v", opts.DType)
	}
	num := opts.Numerics
	if err := num.Check(); err != nil {
		return nil, fmt.Errorf("llama.Load: %v", err)
	}
	if num.Activations != engine.F32 {
		if opts.DType != engine.F32 && opts.DType != num.Activations {
			return nil, fmt.Errorf("llama.Load: weights held as %v with %v activations: the activations' dtype is the weights' dtype", opts.DType, num.Activations)
		}
		opts.DType = num.Activations
	}
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	maxLayer := opts.MaxLayer
	if maxLayer < 0 || maxLayer > cfg.NumLayers {
		maxLayer = cfg.NumLayers
	}
	needHead := opts.NeedLMHead || opts.MaxLayer < 0
	ck, err := openCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	m, err := loadFrom(ck, cfg, maxLayer, needHead, opts.DType, num)
	ck.scratch = nil // the model may keep ck (to close its shards), not this
	if err != nil {
		ck.close()
		return nil, err
	}
	m.Dir = dir
	m.Numerics = num
	// Activations rounded to bf16 enter every product as bf16 values:
	// the bf16 dot products give the same sums, faster.
	m.FastBF16 = num.Activations == engine.BF16
	if ck.pinned {
		m.closer = ck.close
	} else {
		ck.close()
	}
	return m, nil
}

func loadFrom(ck *checkpoint, cfg Config, maxLayer int, needHead bool, dt engine.DType, num Numerics) (*Model, error) {
	d, hd := cfg.HiddenSize, cfg.HeadDim
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(ck.dir, "config.json"), err)
	}
	ck.addPrefix(cfg)
	// Every tensor to be loaded must be in the checkpoint before anything
	// sized by config.json is allocated: a config claiming more layers than
	// the checkpoint holds fails here, naming the first missing tensor.
	for _, name := range neededTensors(cfg, maxLayer, needHead) {
		if !ck.has(name) {
			err := ck.missing(name)
			if l, ok := layerOf(name); ok {
				err = fmt.Errorf("%w: config.json has num_hidden_layers %d, the checkpoint lacks layer %d", err, cfg.NumLayers, l)
			}
			return nil, err
		}
	}
	if err := ck.checkConsumed(cfg); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Layers: make([]*Layer, cfg.NumLayers)}
	if !cfg.arch().ALiBi {
		rope, err := engine.NewRope(hd, cfg.RopeTheta, cfg.MaxPositionEmbeddings, cfg.RopeScaling)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(ck.dir, "config.json"), err)
		}
		m.Rope = rope
	}
	var err error
	load := func(w weight, name string, dst any) error {
		switch p := dst.(type) {
		case **engine.Tensor:
			linear := w.layer != nil // a decoder layer's Linear weight
			switch {
			case linear && ck.quantized(name):
				*p, err = ck.loadQ4(name, w.shape)
			case linear && num.Quant != "":
				*p, err = ck.quantize(name, w.shape, num, dt)
			default:
				*p, err = ck.load(name, w.shape, dt)
			}
		case *[]float32:
			*p, err = ck.loadF32(name, w.shape[0])
			if err == nil {
				engine.RoundTo(*p, num.Activations) // held in the activations' dtype
			}
		}
		return err
	}
	for _, w := range modelWeights(cfg) {
		if !w.needed(cfg, maxLayer, needHead) {
			continue
		}
		if err := load(w, w.name, w.model(m)); err != nil {
			return nil, err
		}
		switch w.name {
		case cfg.arch().Names.Embed + ".weight":
			m.deferChecks(keyEmbed, ck)
		case "lm_head.weight":
			m.deferChecks(keyHead, ck)
		}
	}
	for i := 0; i < maxLayer; i++ {
		L := &Layer{}
		for _, w := range layerWeights(cfg) {
			if err := load(w, cfg.layerPrefix(i)+w.name, w.layer(L)); err != nil {
				return nil, err
			}
		}
		m.Layers[i] = L
		m.deferChecks(i, ck)
	}
	_ = d
	return m, nil
}

// weight is one weight of a model: its name (after the layer prefix for a
// decoder layer's), its shape, and where Model (model) or Layer (layer)
// holds it: a **engine.Tensor for a Linear or embedding weight, a
// *[]float32 for a vector held in f32. part says when the loader needs a
// model weight: partEmbed always, partFinal with the last layer or the LM
// head, partHead with the LM head of an untied model.
type weight struct {
	name  string
	shape []int
	model func(*Model) any
	layer func(*Layer) any
	part  int
}

const (
	partEmbed = iota
	partFinal
	partHead
)

func (w weight) needed(cfg Config, maxLayer int, needHead bool) bool {
	switch w.part {
	case partFinal:
		return maxLayer == cfg.NumLayers || needHead
	case partHead:
		return needHead && !cfg.TieWordEmbeddings
	}
	return true
}

// modelWeights lists the weights outside the decoder layers of cfg's
// family: the embedding (and BLOOM's LayerNorm after it), the final norm,
// the LM head.
func modelWeights(cfg Config) []weight {
	d, n := cfg.HiddenSize, cfg.arch().Names
	ws := []weight{{name: n.Embed + ".weight", shape: []int{cfg.VocabSize, d}, model: func(m *Model) any { return &m.Embed }}}
	if cfg.arch().EmbedNorm {
		ws = append(ws,
			weight{name: n.EmbedNorm + ".weight", shape: []int{d}, model: func(m *Model) any { return &m.EmbedNorm }},
			weight{name: n.EmbedNorm + ".bias", shape: []int{d}, model: func(m *Model) any { return &m.EmbedNormBias }})
	}
	ws = append(ws, weight{name: n.FinalNorm + ".weight", shape: []int{d}, model: func(m *Model) any { return &m.Norm }, part: partFinal})
	if cfg.arch().LayerNorm {
		ws = append(ws, weight{name: n.FinalNorm + ".bias", shape: []int{d}, model: func(m *Model) any { return &m.NormBias }, part: partFinal})
	}
	return append(ws, weight{name: "lm_head.weight", shape: []int{cfg.VocabSize, d}, model: func(m *Model) any { return &m.LMHead }, part: partHead})
}

// NamedWeight is one weight of a loaded model under its checkpoint name.
// Module is the LoRA module name (LoRAModules) of a decoder layer's Linear
// weight, "" for every other weight; Layer is its decoder layer (-1 for the
// embedding, final norm and LM head).
type NamedWeight struct {
	Name   string
	Tensor *engine.Tensor
	Layer  int
	Module string
}

// Weights lists the loaded weights in Hugging Face order, named as the
// checkpoint names them and holding the checkpoint's values (a merge
// writes them back): the embedding, each loaded layer, the final norm and
// the LM head when loaded and untied.
func (m *Model) Weights() []NamedWeight {
	var out []NamedWeight
	add := func(name string, layer int, module string, dst any) {
		nw := NamedWeight{Name: name, Layer: layer, Module: module}
		switch p := dst.(type) {
		case **engine.Tensor:
			nw.Tensor = *p
		case *[]float32:
			if *p == nil {
				return
			}
			nw.Tensor = engine.FromF32(*p, len(*p))
		}
		if nw.Tensor != nil {
			out = append(out, nw)
		}
	}
	mw := modelWeights(m.Config)
	for _, w := range mw {
		if w.part == partEmbed {
			add(w.name, -1, "", w.model(m))
		}
	}
	for i, L := range m.Layers {
		if L == nil {
			continue
		}
		for _, w := range layerWeights(m.Config) {
			module := ""
			if _, ok := w.layer(L).(**engine.Tensor); ok {
				module = moduleOf(w.name)
			}
			add(m.Config.layerPrefix(i)+w.name, i, module, w.layer(L))
		}
	}
	for _, w := range mw {
		if w.part != partEmbed && !(w.part == partHead && m.Config.TieWordEmbeddings) {
			add(w.name, -1, "", w.model(m))
		}
	}
	return out
}

// moduleOf is the LoRA module name of a Linear weight's name after the
// layer prefix ("self_attn.q_proj.weight" -> "q_proj").
func moduleOf(name string) string {
	name = strings.TrimSuffix(name, ".weight")
	return name[strings.LastIndexByte(name, '.')+1:]
}

// layerPrefix is the name prefix of decoder layer i's weights.
func (c Config) layerPrefix(i int) string { return fmt.Sprintf(c.arch().Names.Layer, i) }

// layerWeights lists the weights of one decoder layer of cfg's family in
// Hugging Face order: the loader reads exactly these, a checkpoint holding
// others is refused, and a merge writes these back.
func layerWeights(cfg Config) []weight {
	d, hd, ffn := cfg.HiddenSize, cfg.HeadDim, cfg.IntermediateSize
	qd, kd := cfg.NumHeads*hd, cfg.NumKVHeads*hd
	a := cfg.arch()
	lin := func(name string, out, in int, f func(*Layer) **engine.Tensor) weight {
		return weight{name: name, shape: []int{out, in}, layer: func(l *Layer) any { return f(l) }}
	}
	vec := func(name string, n int, f func(*Layer) *[]float32) weight {
		return weight{name: name, shape: []int{n}, layer: func(l *Layer) any { return f(l) }}
	}
	if a.FusedQKV { // BLOOM
		return []weight{
			vec("input_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.AttnNorm }),
			vec("input_layernorm.bias", d, func(l *Layer) *[]float32 { return &l.AttnNormBias }),
			lin("self_attention.query_key_value.weight", 3*qd, d, func(l *Layer) **engine.Tensor { return &l.QKV }),
			vec("self_attention.query_key_value.bias", 3*qd, func(l *Layer) *[]float32 { return &l.QKVBias }),
			lin("self_attention.dense.weight", d, qd, func(l *Layer) **engine.Tensor { return &l.O }),
			vec("self_attention.dense.bias", d, func(l *Layer) *[]float32 { return &l.OBias }),
			vec("post_attention_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.MLPNorm }),
			vec("post_attention_layernorm.bias", d, func(l *Layer) *[]float32 { return &l.MLPNormBias }),
			lin("mlp.dense_h_to_4h.weight", ffn, d, func(l *Layer) **engine.Tensor { return &l.Up }),
			vec("mlp.dense_h_to_4h.bias", ffn, func(l *Layer) *[]float32 { return &l.UpBias }),
			lin("mlp.dense_4h_to_h.weight", d, ffn, func(l *Layer) **engine.Tensor { return &l.Down }),
			vec("mlp.dense_4h_to_h.bias", d, func(l *Layer) *[]float32 { return &l.DownBias }),
		}
	}
	ws := []weight{
		vec("input_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.AttnNorm }),
		lin("self_attn.q_proj.weight", qd, d, func(l *Layer) **engine.Tensor { return &l.Q }),
		lin("self_attn.k_proj.weight", kd, d, func(l *Layer) **engine.Tensor { return &l.K }),
		lin("self_attn.v_proj.weight", kd, d, func(l *Layer) **engine.Tensor { return &l.V }),
	}
	if a.QKVBias {
		ws = append(ws,
			vec("self_attn.q_proj.bias", qd, func(l *Layer) *[]float32 { return &l.QBias }),
			vec("self_attn.k_proj.bias", kd, func(l *Layer) *[]float32 { return &l.KBias }),
			vec("self_attn.v_proj.bias", kd, func(l *Layer) *[]float32 { return &l.VBias }))
	}
	if a.QKNorm {
		ws = append(ws,
			vec("self_attn.q_norm.weight", hd, func(l *Layer) *[]float32 { return &l.QNorm }),
			vec("self_attn.k_norm.weight", hd, func(l *Layer) *[]float32 { return &l.KNorm }))
	}
	ws = append(ws, lin("self_attn.o_proj.weight", d, qd, func(l *Layer) **engine.Tensor { return &l.O }))
	if a.SandwichNorms {
		ws = append(ws,
			vec("post_attention_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.PostAttnNorm }),
			vec("pre_feedforward_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.MLPNorm }),
			vec("post_feedforward_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.PostFFNorm }))
	} else {
		ws = append(ws, vec("post_attention_layernorm.weight", d, func(l *Layer) *[]float32 { return &l.MLPNorm }))
	}
	return append(ws,
		lin("mlp.gate_proj.weight", ffn, d, func(l *Layer) **engine.Tensor { return &l.Gate }),
		lin("mlp.up_proj.weight", ffn, d, func(l *Layer) **engine.Tensor { return &l.Up }),
		lin("mlp.down_proj.weight", d, ffn, func(l *Layer) **engine.Tensor { return &l.Down }))
}

// neededTensors lists the tensors loadFrom reads for layers 0..maxLayer-1
// and, when asked, the final norm and the LM head.
func neededTensors(cfg Config, maxLayer int, needHead bool) []string {
	var names []string
	for _, w := range modelWeights(cfg) {
		if w.needed(cfg, maxLayer, needHead) {
			names = append(names, w.name)
		}
	}
	for i := 0; i < maxLayer; i++ {
		for _, w := range layerWeights(cfg) {
			names = append(names, cfg.layerPrefix(i)+w.name)
		}
	}
	return names
}

// checkConsumed refuses a checkpoint holding a tensor that cfg's
// architecture does not read (a bias, a norm, another family's layer): the
// forward would silently leave it out and every hidden state would be
// wrong. Rotary inv_freq buffers, which older transformers saved and which
// are recomputed from the config, and an LM head beside tied embeddings
// (transformers ties it to the embedding) are tolerated.
func (c *checkpoint) checkConsumed(cfg Config) error {
	used := map[string]bool{"lm_head.weight": true}
	for _, n := range neededTensors(cfg, cfg.NumLayers, true) {
		used[n] = true
	}
	var extra []string
	for name := range c.where {
		if base, ok := quantPart(name); ok && used[base] && c.quantized(base) {
			continue // a 4-bit weight's scales, code table and state
		}
		if !used[name] && !strings.HasSuffix(name, ".rotary_emb.inv_freq") {
			extra = append(extra, name)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	where := c.index
	if where == "" {
		where = filepath.Join(c.dir, "model.safetensors")
	}
	more := ""
	if len(extra) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(extra)-1)
	}
	a := cfg.arch()
	return fmt.Errorf("%s: tensor %q%s is not part of a %s checkpoint (config.json model_type %q): tli does not know what it computes, and leaving it out would give wrong hidden states", where, extra[0], more, a.Class, a.ModelType)
}

// layerOf returns i for a tensor named "model.layers.{i}.…".
func layerOf(name string) (int, bool) {
	var i int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &i); err != nil {
		return 0, false
	}
	return i, true
}
