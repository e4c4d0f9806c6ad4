package llama

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nlpodyssey/safetensors"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/internal/atomicfs"
	"github.com/tli-project/tli/quant"
)

// This file reads and writes safetensors files: an 8-byte little-endian
// header length, a JSON header naming every tensor's dtype, shape and byte
// range, then the tensor data. Reading maps the file (engine.MapFile) and
// hands out tensors that point into the mapping.

// maxHeaderBytes bounds the JSON header (the format's own limit is 100 MB).
const maxHeaderBytes = 100_000_000

// maxHeaderEntries bounds the entries of one header (tensors plus
// __metadata__ keys). The largest checkpoints have a few thousand tensors per
// file; a header of millions of empty entries would only cost time and memory.
const maxHeaderEntries = 100_000

// maxShapeRank bounds the number of dimensions of a tensor.
const maxShapeRank = 16

// maxTensorElems bounds the elements of one tensor (and each of its
// dimensions): 2^40, 2 TB of bf16.
const maxTensorElems = 1 << 40

// stTensor describes one tensor of a safetensors file.
type stTensor struct {
	Name  string
	DType engine.DType // for float tensors
	Int64 bool         // an I64 tensor (token ids, offsets), not a float one
	Bytes bool         // a U8 tensor (4-bit codes, quantisation state)
	Shape []int
	Begin int // byte offsets relative to the start of the data section
	End   int
}

// stHeader is a parsed and validated safetensors header.
type stHeader struct {
	DataStart int // file offset of the data section (8 + header length)
	Tensors   map[string]*stTensor
	Metadata  map[string]string
}

// parseSafetensorsHeader parses and validates the header at the start of
// file bytes b (which may be just the first part of a file of fileSize
// bytes). It checks that every tensor has a supported dtype, that its byte
// range matches its shape and lies inside the file, and that no two tensors
// overlap. name is used in error messages. The header is read as a stream
// of JSON tokens, so time and memory are linear in its size and bounded by
// maxHeaderBytes and maxHeaderEntries whatever it holds.
func parseSafetensorsHeader(b []byte, fileSize int64, name string) (*stHeader, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: %d bytes is too short for a safetensors file (no 8-byte header length)", name, len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > maxHeaderBytes {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit (not a safetensors file?)", name, n, maxHeaderBytes)
	}
	if 8+n > uint64(len(b)) || int64(8+n) > fileSize {
		return nil, fmt.Errorf("%s: header of %d bytes runs past the end of the file (%d bytes): truncated file?", name, n, fileSize)
	}
	h := &stHeader{DataStart: int(8 + n), Tensors: map[string]*stTensor{}}
	dataSize := fileSize - int64(h.DataStart)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: bad safetensors header: %s", name, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(b[8 : 8+n]))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, bad("%v", err)
	}
	var list []*stTensor
	entries := 0
	for dec.More() {
		tname, err := stringToken(dec)
		if err != nil {
			return nil, bad("%v", err)
		}
		if entries++; entries > maxHeaderEntries {
			return nil, fmt.Errorf("%s: header has more than %d entries (tensors and __metadata__ keys); a model file has far fewer", name, maxHeaderEntries)
		}
		if tname == "__metadata__" {
			if h.Metadata != nil {
				return nil, bad("key \"__metadata__\" appears twice")
			}
			if h.Metadata, err = readStringMap(dec, &entries); err != nil {
				if entries > maxHeaderEntries {
					return nil, fmt.Errorf("%s: header has more than %d entries (tensors and __metadata__ keys); a model file has far fewer", name, maxHeaderEntries)
				}
				return nil, bad("\"__metadata__\": %v", err)
			}
			continue
		}
		if _, dup := h.Tensors[tname]; dup {
			return nil, bad("tensor %q appears twice", tname)
		}
		info, err := readTensorInfo(dec)
		if err != nil {
			return nil, bad("tensor %q: %v", tname, err)
		}
		var dt engine.DType
		isInt := false
		size := uint64(2)
		st, err := safetensors.ParseDType(info.dtype)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: unknown dtype %q (want F32, BF16, F16, I64 or U8)", name, tname, info.dtype)
		}
		isBytes := false
		switch st {
		case safetensors.I64:
			isInt, size = true, 8
		case safetensors.U8:
			isBytes, size = true, 1
		case safetensors.F32:
			dt, size = engine.F32, 4
		case safetensors.BF16:
			dt = engine.BF16
		case safetensors.F16:
			dt = engine.F16
		default:
			return nil, fmt.Errorf("%s: tensor %q: unsupported dtype %s (want F32, BF16, F16, I64 or U8)", name, tname, st)
		}
		shape := make([]int, len(info.shape))
		numel := uint64(1)
		for i, s := range info.shape {
			if s > maxTensorElems || (s != 0 && numel > maxTensorElems/s) {
				return nil, fmt.Errorf("%s: tensor %q: shape %v is too large (more than 2^40 elements)", name, tname, info.shape)
			}
			shape[i] = int(s)
			numel *= s
		}
		beg, end := info.offsets[0], info.offsets[1]
		if end < beg || end-beg != numel*size {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] hold %d bytes, but shape %v of %s needs %d",
				name, tname, beg, end, int64(end)-int64(beg), info.shape, st, numel*size)
		}
		if end > uint64(dataSize) {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] run past the end of the data section (%d bytes): truncated file?",
				name, tname, beg, end, dataSize)
		}
		t := &stTensor{Name: tname, DType: dt, Int64: isInt, Bytes: isBytes, Shape: shape, Begin: int(beg), End: int(end)}
		h.Tensors[tname] = t
		list = append(list, t)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("data after the closing brace")
	}
	if err := checkOverlap(list); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return h, nil
}

// checkOverlap reports two non-empty tensors whose byte ranges overlap.
// Sorted by start, a tensor overlaps an earlier one exactly when it starts
// before the furthest end of the earlier non-empty tensors; empty tensors
// are skipped, so one lying between two overlapping tensors cannot hide the
// overlap.
func checkOverlap(list []*stTensor) error {
	sort.Slice(list, func(i, j int) bool {
		if list[i].Begin != list[j].Begin {
			return list[i].Begin < list[j].Begin
		}
		if list[i].End != list[j].End {
			return list[i].End < list[j].End
		}
		return list[i].Name < list[j].Name
	})
	var far *stTensor // the non-empty tensor with the furthest end so far
	for _, c := range list {
		if c.End == c.Begin {
			continue
		}
		if far != nil && c.Begin < far.End {
			return fmt.Errorf("tensors %q [%d, %d] and %q [%d, %d] overlap", far.Name, far.Begin, far.End, c.Name, c.Begin, c.End)
		}
		if far == nil || c.End > far.End {
			far = c
		}
	}
	return nil
}

// stInfo is one tensor entry of a header as written.
type stInfo struct {
	dtype   string
	shape   []uint64
	offsets []uint64
}

// readTensorInfo reads {"dtype": s, "shape": [...], "data_offsets": [b, e]}.
func readTensorInfo(dec *json.Decoder) (stInfo, error) {
	var info stInfo
	if err := expectDelim(dec, '{'); err != nil {
		return info, err
	}
	seen := map[string]bool{}
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return info, err
		}
		if seen[key] {
			return info, fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		switch key {
		case "dtype":
			if info.dtype, err = stringToken(dec); err != nil {
				return info, fmt.Errorf("\"dtype\": %v", err)
			}
		case "shape":
			if info.shape, err = readUints(dec, maxShapeRank); err != nil {
				return info, fmt.Errorf("\"shape\": %v", err)
			}
		case "data_offsets":
			if info.offsets, err = readUints(dec, 2); err != nil {
				return info, fmt.Errorf("\"data_offsets\": %v", err)
			}
			if len(info.offsets) != 2 {
				return info, fmt.Errorf("\"data_offsets\": want [begin, end], got %d numbers", len(info.offsets))
			}
		default:
			return info, fmt.Errorf("unexpected key %q (want dtype, shape and data_offsets)", key)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return info, err
	}
	for _, k := range []string{"dtype", "shape", "data_offsets"} {
		if !seen[k] {
			return info, fmt.Errorf("missing %q", k)
		}
	}
	return info, nil
}

// readUints reads a JSON array of at most max non-negative integers.
func readUints(dec *json.Decoder, max int) ([]uint64, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	var out []uint64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("want a non-negative integer, got %v", tok)
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want a non-negative integer below 2^64, got %s", num)
		}
		if len(out) == max {
			return nil, fmt.Errorf("more than %d numbers", max)
		}
		out = append(out, v)
	}
	return out, expectDelim(dec, ']')
}

// readStringMap reads a JSON object of strings, counting its keys in
// *entries and stopping once they pass maxHeaderEntries.
func readStringMap(dec *json.Decoder, entries *int) (map[string]string, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for dec.More() {
		if *entries++; *entries > maxHeaderEntries {
			return nil, fmt.Errorf("too many entries")
		}
		k, err := stringToken(dec)
		if err != nil {
			return nil, err
		}
		v, err := stringToken(dec)
		if err != nil {
			return nil, fmt.Errorf("key %q: %v", k, err)
		}
		out[k] = v
	}
	return out, expectDelim(dec, '}')
}

// expectDelim reads the next token, which must be the delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("unexpected end of JSON, want %q", d)
		}
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("want %q, got %v", d, tok)
	}
	return nil
}

// stringToken reads the next token, which must be a string.
func stringToken(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return "", fmt.Errorf("unexpected end of JSON, want a string")
		}
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %v", tok)
	}
	return s, nil
}

// stFile is an open (mapped) safetensors file.
type stFile struct {
	path string
	m    *engine.Mapping
	h    *stHeader
}

// openSafetensors maps path and validates its header.
func openSafetensors(path string) (*stFile, error) {
	m, err := engine.MapFile(path)
	if err != nil {
		return nil, fmt.Errorf("opening safetensors file: %w", err)
	}
	h, err := parseSafetensorsHeader(m.Data, int64(len(m.Data)), path)
	if err != nil {
		m.Close()
		return nil, err
	}
	return &stFile{path: path, m: m, h: h}, nil
}

// tensor returns the named tensor as stored, pointing into the mapping
// when aligned.
func (f *stFile) tensor(name string) (*engine.Tensor, error) {
	t, ok := f.h.Tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %q", f.path, name)
	}
	if t.Int64 || t.Bytes {
		return nil, fmt.Errorf("%s: tensor %q is %s, want F32, BF16 or F16", f.path, name, t.dtypeName())
	}
	b := f.m.Data[f.h.DataStart+t.Begin : f.h.DataStart+t.End]
	return engine.TensorFromBytes(t.DType, t.Shape, b)
}

// dtypeName is the safetensors name of t's dtype.
func (t *stTensor) dtypeName() string {
	switch {
	case t.Int64:
		return "I64"
	case t.Bytes:
		return "U8"
	}
	return strings.ToUpper(t.DType.String())
}

// blob returns the named tensor's dtype, shape and bytes (pointing into
// the mapping), as quant.Import reads them.
func (f *stFile) blob(name string) (quant.Blob, bool) {
	t, ok := f.h.Tensors[name]
	if !ok {
		return quant.Blob{}, false
	}
	return quant.Blob{DType: t.dtypeName(), Shape: t.Shape, Data: f.m.Data[f.h.DataStart+t.Begin : f.h.DataStart+t.End]}, true
}

// ints returns the named I64 tensor's values and shape.
func (f *stFile) ints(name string) ([]int64, []int, error) {
	t, ok := f.h.Tensors[name]
	if !ok {
		return nil, nil, fmt.Errorf("%s: missing tensor %q", f.path, name)
	}
	if !t.Int64 {
		return nil, nil, fmt.Errorf("%s: tensor %q is %s, want I64", f.path, name, t.DType)
	}
	b := f.m.Data[f.h.DataStart+t.Begin : f.h.DataStart+t.End]
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, t.Shape, nil
}

func (f *stFile) Close() error { return f.m.Close() }

// pathOr is f's path, or dir when f is nil.
func (f *stFile) pathOr(dir string) string {
	if f == nil {
		return dir
	}
	return f.path
}

// ReadSafetensors reads every float tensor of a safetensors file into
// memory (the file is closed on return) together with the header's
// __metadata__ map. Tensors keep their stored dtype (F32, BF16 or F16); I64
// tensors are left out (see ReadSafetensorsInts); other dtypes, NaN or Inf
// values and malformed headers are errors naming the file and tensor.
func ReadSafetensors(path string) (map[string]*engine.Tensor, map[string]string, error) {
	f, err := openSafetensors(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	out := make(map[string]*engine.Tensor, len(f.h.Tensors))
	for name, info := range f.h.Tensors {
		if info.Int64 || info.Bytes {
			continue // see ReadSafetensorsInts; U8 tensors are 4-bit weights' parts
		}
		t, err := f.tensor(name)
		if err != nil {
			return nil, nil, err
		}
		c := &engine.Tensor{DType: t.DType, Shape: t.Shape}
		if t.DType == engine.F32 {
			c.F32 = append([]float32(nil), t.F32...)
		} else {
			c.Half = append([]uint16(nil), t.Half...)
		}
		if i := c.FirstNonFinite(); i >= 0 {
			return nil, nil, fmt.Errorf("%s: tensor %q: element %d is %v (NaN or Inf)", path, name, i, c.At(i))
		}
		out[name] = c
	}
	return out, f.h.Metadata, nil
}

// ReadSafetensorsInts reads the I64 tensors of a safetensors file (such as
// the token_ids and offsets that tli embed writes): values and shape by name.
func ReadSafetensorsInts(path string) (map[string][]int64, map[string][]int, error) {
	f, err := openSafetensors(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	vals, shapes := map[string][]int64{}, map[string][]int{}
	for name, info := range f.h.Tensors {
		if !info.Int64 {
			continue
		}
		v, sh, err := f.ints(name)
		if err != nil {
			return nil, nil, err
		}
		vals[name], shapes[name] = v, sh
	}
	return vals, shapes, nil
}

// NamedInts is an I64 tensor to write: values and shape.
type NamedInts struct {
	Name  string
	Shape []int
	Data  []int64
}

// NamedTensor is a tensor with its safetensors name, for writing files in a
// chosen order.
type NamedTensor struct {
	Name   string
	Tensor *engine.Tensor
}

// WriteSafetensors writes tensors (in name order) and metadata to path as
// a safetensors file. It writes a temporary file beside path and renames it,
// so path is either the old file or the complete new one.
func WriteSafetensors(path string, tensors map[string]*engine.Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]NamedTensor, len(names))
	for i, n := range names {
		list[i] = NamedTensor{n, tensors[n]}
	}
	return WriteSafetensorsOrdered(path, list, metadata)
}

// WriteSafetensorsOrdered is WriteSafetensors with the tensors' order in
// the file given by the list (among tensors of one element size: larger
// elements go first, see writeSafetensorsStream).
func WriteSafetensorsOrdered(path string, tensors []NamedTensor, metadata map[string]string) error {
	return WriteSafetensorsMixed(path, tensors, nil, metadata)
}

// WriteSafetensorsMixed writes float tensors and then I64 tensors (in the
// order given) to path, via a temporary file and a rename.
func WriteSafetensorsMixed(path string, tensors []NamedTensor, ints []NamedInts, metadata map[string]string) error {
	entries := make([]stEntry, len(tensors), len(tensors)+len(ints))
	for i, nt := range tensors {
		e, err := floatEntry(path, nt)
		if err != nil {
			return err
		}
		entries[i] = e
	}
	for _, it := range ints {
		if len(it.Data) != engine.Numel(it.Shape) {
			return fmt.Errorf("%s: tensor %q: %d values for shape %v", path, it.Name, len(it.Data), it.Shape)
		}
		entries = append(entries, stEntry{Name: it.Name, Int64: true, Shape: it.Shape, Write: func(w io.Writer) error {
			b := make([]byte, 8*len(it.Data))
			for i, v := range it.Data {
				binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
			}
			_, err := w.Write(b)
			return err
		}})
	}
	return writeSafetensorsStream(path, entries, metadata)
}

// floatEntry is the entry that writes nt's data, checked to match its
// shape; path is for errors.
func floatEntry(path string, nt NamedTensor) (stEntry, error) {
	t := nt.Tensor
	if t == nil {
		return stEntry{}, fmt.Errorf("%s: tensor %q is nil", path, nt.Name)
	}
	n := t.Numel()
	if (t.DType == engine.F32 && len(t.F32) != n) || (t.DType != engine.F32 && len(t.Half) != n) {
		return stEntry{}, fmt.Errorf("%s: tensor %q: data length does not match shape %v", path, nt.Name, t.Shape)
	}
	return stEntry{Name: nt.Name, DType: t.DType, Shape: t.Shape, Write: func(w io.Writer) error {
		_, err := w.Write(t.Bytes())
		return err
	}}, nil
}

// stEntry is one tensor to be written: its data come from Write, which must
// write exactly Numel(Shape)·DType.Size() bytes. Streaming lets Synth write
// checkpoints far larger than memory.
type stEntry struct {
	Name  string
	DType engine.DType
	Int64 bool // an I64 tensor (DType ignored)
	Bytes bool // a U8 tensor (DType ignored)
	Shape []int
	Write func(w io.Writer) error
}

// dtypeName is the header spelling of an entry's dtype.
func (e stEntry) dtypeName() string {
	if e.Int64 {
		return "I64"
	}
	if e.Bytes {
		return "U8"
	}
	switch e.DType {
	case engine.BF16:
		return "BF16"
	case engine.F16:
		return "F16"
	}
	return "F32"
}

// elemSize is the size of one element of the entry's dtype.
func (e stEntry) elemSize() int64 {
	switch {
	case e.Int64:
		return 8
	case e.Bytes:
		return 1
	}
	return int64(e.DType.Size())
}

// bytes is the size of the entry's data.
func (e stEntry) bytes() int64 { return int64(engine.Numel(e.Shape)) * e.elemSize() }

// buildHeader returns the JSON header (padded with spaces to a multiple of
// 8 bytes, so the data section starts 8-byte aligned) and the data size.
func buildHeader(entries []stEntry, metadata map[string]string) ([]byte, int64, error) {
	type info struct {
		DType       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	hdr := make(map[string]any, len(entries)+1)
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, e := range entries {
		if e.Name == "__metadata__" {
			return nil, 0, fmt.Errorf("tensor name %q is reserved", e.Name)
		}
		if _, dup := hdr[e.Name]; dup {
			return nil, 0, fmt.Errorf("tensor %q appears twice", e.Name)
		}
		n := e.bytes()
		hdr[e.Name] = info{e.dtypeName(), append([]int{}, e.Shape...), [2]int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, 0, err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	return js, off, nil
}

// writeSafetensorsStream writes entries to path via a temporary file and a
// rename. The data go larger elements first (I64, then F32, then 16-bit,
// then U8), in the given order within each size, as Python's safetensors
// lays them out: the data section starts 8-byte aligned, so every tensor
// is then aligned to its element size and a reader can use it in place.
func writeSafetensorsStream(path string, entries []stEntry, metadata map[string]string) error {
	entries = slices.Clone(entries)
	slices.SortStableFunc(entries, func(a, b stEntry) int { return cmp.Compare(b.elemSize(), a.elemSize()) })
	js, _, err := buildHeader(entries, metadata)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return atomicfs.Write(path, func(w io.Writer) error {
		var lenb [8]byte
		binary.LittleEndian.PutUint64(lenb[:], uint64(len(js)))
		if _, err := w.Write(lenb[:]); err != nil {
			return err
		}
		if _, err := w.Write(js); err != nil {
			return err
		}
		for _, e := range entries {
			cw := &countWriter{w: w}
			if err := e.Write(cw); err != nil {
				return fmt.Errorf("tensor %q: %w", e.Name, err)
			}
			if want := e.bytes(); cw.n != want {
				return fmt.Errorf("tensor %q: wrote %d bytes, want %d", e.Name, cw.n, want)
			}
		}
		return nil
	})
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// nonFiniteError describes the first NaN/Inf of t, or returns nil.
func nonFiniteError(file, name string, t *engine.Tensor) error {
	if i := t.FirstNonFinite(); i >= 0 {
		v := t.At(i)
		what := "NaN"
		if math.IsInf(float64(v), 0) {
			what = "Inf"
		}
		return fmt.Errorf("%s: tensor %q: element %d is %s (weights must be finite)", file, name, i, what)
	}
	return nil
}
