// Package gguf writes and reads GGUF files, the model format of llama.cpp
// (version 3, little-endian): a header, metadata key/value pairs, tensor
// infos, then the tensor data, each tensor aligned to general.alignment
// (32 bytes unless the metadata says otherwise).
//
// ExportLlama turns a loaded checkpoint of a Llama-like family (llama,
// mistral, qwen2, qwen3, gemma) and its tokenizer into a GGUF file
// llama.cpp runs, with the metadata, tensor names, q/k row order and
// tokenizer fields llama.cpp's convert_hf_to_gguf.py writes; ExportLoRA
// writes a LoRA adapter as a GGUF adapter llama.cpp applies to it. The
// tests compare with llama.cpp itself (npm node-llama-cpp, run by
// testdata/llamacpp.mjs).
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/tli-project/tli/internal/atomicfs"
)

// Magic is the first four bytes of a GGUF file; Version is the version
// written.
const (
	Magic   = "GGUF"
	Version = 3
	// DefaultAlignment is the data alignment when general.alignment is absent.
	DefaultAlignment = 32
)

// ValueType is the type tag of a metadata value.
type ValueType uint32

// The metadata value types of GGUF.
const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
)

// TensorType is ggml's element type of a tensor.
type TensorType uint32

// The tensor types this package writes (ggml_type values).
const (
	F32  TensorType = 0
	F16  TensorType = 1
	Q8_0 TensorType = 8
	BF16 TensorType = 30
)

// Q8_0 stores blocks of 32 elements along Dims[0]: an f16 scale d, then 32
// int8 values q, element = d·q.
const (
	q8Block     = 32
	q8BlockSize = 2 + q8Block
)

func (t TensorType) String() string {
	switch t {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	case Q8_0:
		return "Q8_0"
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// elemSize is the bytes per element of the unquantized types this
// package knows (0: unknown or quantized).
func (t TensorType) elemSize() int64 {
	switch t {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// known reports whether this package can size tensors of type t.
func (t TensorType) known() bool { return t.elemSize() > 0 || t == Q8_0 }

// dataSize is the bytes of a tensor of type t and dims, or -1 when t is
// unknown or dims[0] does not fill whole blocks of a quantized type.
func dataSize(t TensorType, dims []uint64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= int64(d)
	}
	switch {
	case t == Q8_0:
		if len(dims) == 0 || dims[0]%q8Block != 0 {
			return -1
		}
		return n / q8Block * q8BlockSize
	case t.elemSize() > 0:
		return n * t.elemSize()
	}
	return -1
}

// KV is one metadata pair. Value is one of uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64, or a slice
// of one of them ([]string, []int32, []float32, ...), which is written as a
// GGUF array.
type KV struct {
	Key   string
	Value any
}

// Tensor is one tensor to write: Dims in ggml order (Dims[0] is the
// innermost, contiguous dimension: a Hugging Face [out×in] weight has Dims
// {in, out}), and Data writes exactly Size() bytes.
type Tensor struct {
	Name string
	Dims []uint64
	Type TensorType
	Data func(w io.Writer) error
}

// Size is the tensor's data size in bytes (-1 when its type is unknown
// or its rows do not fill whole blocks of a quantized type).
func (t Tensor) Size() int64 { return dataSize(t.Type, t.Dims) }

// TensorInfo describes a tensor of a file that was read: Offset is its
// data's position from the start of the file.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   TensorType
	Offset int64
	Size   int64
}

func align(n, a int64) int64 { return (n + a - 1) / a * a }

// Write writes a GGUF file to w: the header, kvs in order, the tensor
// infos and the data of each tensor.
func Write(w io.Writer, kvs []KV, tensors []Tensor) error {
	cw := &countWriter{w: w}
	le := binary.LittleEndian
	var scratch [8]byte
	u32 := func(v uint32) { le.PutUint32(scratch[:4], v); cw.Write(scratch[:4]) }
	u64 := func(v uint64) { le.PutUint64(scratch[:], v); cw.Write(scratch[:]) }
	str := func(s string) { u64(uint64(len(s))); io.WriteString(cw, s) }

	alignment := int64(DefaultAlignment)
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] {
			return fmt.Errorf("gguf: metadata key %q given twice", kv.Key)
		}
		seen[kv.Key] = true
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a%8 != 0 {
				return fmt.Errorf("gguf: general.alignment must be a uint32 multiple of 8, got %v", kv.Value)
			}
			alignment = int64(a)
		}
	}
	names := map[string]bool{}
	for _, t := range tensors {
		if names[t.Name] {
			return fmt.Errorf("gguf: tensor %q given twice", t.Name)
		}
		names[t.Name] = true
		if !t.Type.known() {
			return fmt.Errorf("gguf: tensor %s: unsupported type %v", t.Name, t.Type)
		}
		if len(t.Dims) == 0 || len(t.Dims) > 4 {
			return fmt.Errorf("gguf: tensor %s: %d dimensions (want 1 to 4)", t.Name, len(t.Dims))
		}
		if t.Size() < 0 {
			return fmt.Errorf("gguf: tensor %s: %v needs rows of a multiple of %d elements, not %d", t.Name, t.Type, q8Block, t.Dims[0])
		}
	}

	cw.Write([]byte(Magic))
	u32(Version)
	u64(uint64(len(tensors)))
	u64(uint64(len(kvs)))
	for _, kv := range kvs {
		str(kv.Key)
		if err := writeValue(cw, kv.Value, true); err != nil {
			return fmt.Errorf("gguf: %s: %w", kv.Key, err)
		}
	}
	var off int64
	for _, t := range tensors {
		str(t.Name)
		u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			u64(d)
		}
		u32(uint32(t.Type))
		u64(uint64(off))
		off = align(off+t.Size(), alignment)
	}
	pad := func() {
		if n := align(cw.n, alignment) - cw.n; n > 0 {
			cw.Write(make([]byte, n))
		}
	}
	pad()
	if cw.err != nil {
		return cw.err
	}
	for _, t := range tensors {
		start := cw.n
		if err := t.Data(cw); err != nil {
			return fmt.Errorf("gguf: tensor %s: %w", t.Name, err)
		}
		if cw.err != nil {
			return cw.err
		}
		if got := cw.n - start; got != t.Size() {
			return fmt.Errorf("gguf: tensor %s: wrote %d bytes, want %d", t.Name, got, t.Size())
		}
		pad()
	}
	return cw.err
}

// WriteFile writes a GGUF file atomically: to a temporary file beside path,
// renamed over path once complete.
func WriteFile(path string, kvs []KV, tensors []Tensor) error {
	return atomicfs.Write(path, func(w io.Writer) error { return Write(w, kvs, tensors) })
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// writeValue writes v's type tag (when tagged) and value.
func writeValue(w io.Writer, v any, tagged bool) error {
	le := binary.LittleEndian
	tag := func(t ValueType) {
		if tagged {
			binary.Write(w, le, uint32(t))
		}
	}
	array := func(t ValueType, n int) {
		tag(TypeArray)
		binary.Write(w, le, uint32(t))
		binary.Write(w, le, uint64(n))
	}
	switch x := v.(type) {
	case uint8:
		tag(TypeUint8)
		return binary.Write(w, le, x)
	case int8:
		tag(TypeInt8)
		return binary.Write(w, le, x)
	case uint16:
		tag(TypeUint16)
		return binary.Write(w, le, x)
	case int16:
		tag(TypeInt16)
		return binary.Write(w, le, x)
	case uint32:
		tag(TypeUint32)
		return binary.Write(w, le, x)
	case int32:
		tag(TypeInt32)
		return binary.Write(w, le, x)
	case float32:
		tag(TypeFloat32)
		return binary.Write(w, le, x)
	case bool:
		tag(TypeBool)
		return binary.Write(w, le, x)
	case string:
		tag(TypeString)
		binary.Write(w, le, uint64(len(x)))
		_, err := io.WriteString(w, x)
		return err
	case uint64:
		tag(TypeUint64)
		return binary.Write(w, le, x)
	case int64:
		tag(TypeInt64)
		return binary.Write(w, le, x)
	case float64:
		tag(TypeFloat64)
		return binary.Write(w, le, x)
	case []string:
		array(TypeString, len(x))
		for _, s := range x {
			if err := writeValue(w, s, false); err != nil {
				return err
			}
		}
		return nil
	case []uint8:
		array(TypeUint8, len(x))
		return binary.Write(w, le, x)
	case []int8:
		array(TypeInt8, len(x))
		return binary.Write(w, le, x)
	case []uint16:
		array(TypeUint16, len(x))
		return binary.Write(w, le, x)
	case []int16:
		array(TypeInt16, len(x))
		return binary.Write(w, le, x)
	case []uint32:
		array(TypeUint32, len(x))
		return binary.Write(w, le, x)
	case []int32:
		array(TypeInt32, len(x))
		return binary.Write(w, le, x)
	case []float32:
		array(TypeFloat32, len(x))
		return binary.Write(w, le, x)
	case []bool:
		array(TypeBool, len(x))
		return binary.Write(w, le, x)
	case []uint64:
		array(TypeUint64, len(x))
		return binary.Write(w, le, x)
	case []int64:
		array(TypeInt64, len(x))
		return binary.Write(w, le, x)
	case []float64:
		array(TypeFloat64, len(x))
		return binary.Write(w, le, x)
	}
	return fmt.Errorf("unsupported metadata value type %T", v)
}

// File is a GGUF file's header as read by Read.
type File struct {
	Version   uint32
	KV        []KV
	Tensors   []TensorInfo
	Alignment int64
}

// Get returns the value of metadata key k.
func (f *File) Get(k string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tensor returns the info of the tensor named name.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// Limits of the reader, so that a damaged or hostile file fails with an
// error instead of exhausting memory.
const (
	maxString = 1 << 26
	maxArray  = 1 << 28
	maxCount  = 1 << 24
)

// Read reads a GGUF file's header, metadata and tensor infos from r (of
// total size size, which bounds every length read). Arrays are returned as
// slices of their element type; an array of arrays as []any.
func Read(r io.Reader, size int64) (*File, error) {
	br := &reader{r: bufio.NewReaderSize(r, 1<<16), size: size}
	var magic [4]byte
	br.read(magic[:])
	if br.err == nil && string(magic[:]) != Magic {
		return nil, fmt.Errorf("gguf: not a GGUF file (magic %q)", magic[:])
	}
	f := &File{Version: br.u32(), Alignment: DefaultAlignment}
	if br.err == nil && f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("gguf: version %d (this reader knows 2 and 3)", f.Version)
	}
	nt, nkv := br.u64(), br.u64()
	if br.err == nil && (nt > maxCount || nkv > maxCount) {
		return nil, fmt.Errorf("gguf: %d tensors and %d metadata keys: too many", nt, nkv)
	}
	for i := uint64(0); i < nkv && br.err == nil; i++ {
		k := br.str()
		v := br.value(ValueType(br.u32()), 0)
		f.KV = append(f.KV, KV{k, v})
		if k == "general.alignment" {
			a, ok := v.(uint32)
			if !ok || a == 0 {
				return nil, fmt.Errorf("gguf: bad general.alignment %v", v)
			}
			f.Alignment = int64(a)
		}
	}
	for i := uint64(0); i < nt && br.err == nil; i++ {
		t := TensorInfo{Name: br.str()}
		nd := br.u32()
		if nd > 4 {
			return nil, fmt.Errorf("gguf: tensor %q has %d dimensions", t.Name, nd)
		}
		for j := uint32(0); j < nd; j++ {
			t.Dims = append(t.Dims, br.u64())
		}
		t.Type = TensorType(br.u32())
		t.Offset = int64(br.u64())
		f.Tensors = append(f.Tensors, t)
	}
	if br.err != nil {
		return nil, fmt.Errorf("gguf: %w", br.err)
	}
	data := align(br.n, f.Alignment)
	for i := range f.Tensors {
		t := &f.Tensors[i]
		n := int64(1)
		for _, d := range t.Dims {
			if d > uint64(size)+1 {
				return nil, fmt.Errorf("gguf: tensor %s: dimension %d larger than the file", t.Name, d)
			}
			if d > 0 && n > (4*size+4)/int64(d) {
				return nil, fmt.Errorf("gguf: tensor %s: larger than the file", t.Name)
			}
			n *= int64(d)
		}
		t.Size = dataSize(t.Type, t.Dims)
		if t.Offset < 0 || t.Offset%f.Alignment != 0 || t.Offset > size {
			return nil, fmt.Errorf("gguf: tensor %s: bad offset %d", t.Name, t.Offset)
		}
		t.Offset += data
		if t.Size >= 0 && t.Offset+t.Size > size {
			return nil, fmt.Errorf("gguf: tensor %s: data runs past the end of the file", t.Name)
		}
	}
	return f, nil
}

// Open reads the header of the GGUF file at path.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	f, err := Read(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ReadTensor reads the data of tensor t of the file at path.
func ReadTensor(path string, t TensorInfo) ([]byte, error) {
	if t.Size < 0 {
		return nil, fmt.Errorf("gguf: tensor %s: type %v has no known size", t.Name, t.Type)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b := make([]byte, t.Size)
	if _, err := fh.ReadAt(b, t.Offset); err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", path, t.Name, err)
	}
	return b, nil
}

// F32s decodes little-endian float32 data.
func F32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

type reader struct {
	r    *bufio.Reader
	n    int64
	size int64
	err  error
}

func (r *reader) read(b []byte) {
	if r.err != nil {
		return
	}
	n, err := io.ReadFull(r.r, b)
	r.n += int64(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	r.err = err
}

func (r *reader) u32() uint32 {
	var b [4]byte
	r.read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (r *reader) u64() uint64 {
	var b [8]byte
	r.read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func (r *reader) str() string {
	n := r.u64()
	if r.err != nil {
		return ""
	}
	if n > maxString || int64(n) > r.size-r.n {
		r.err = fmt.Errorf("string of %d bytes at offset %d: longer than the file or the limit", n, r.n)
		return ""
	}
	b := make([]byte, n)
	r.read(b)
	return string(b)
}

// value reads one value of type t (depth bounds nested arrays).
func (r *reader) value(t ValueType, depth int) any {
	if r.err != nil {
		return nil
	}
	var b [8]byte
	le := binary.LittleEndian
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		r.read(b[:1])
		switch t {
		case TypeUint8:
			return b[0]
		case TypeInt8:
			return int8(b[0])
		}
		return b[0] != 0
	case TypeUint16, TypeInt16:
		r.read(b[:2])
		if t == TypeUint16 {
			return le.Uint16(b[:])
		}
		return int16(le.Uint16(b[:]))
	case TypeUint32, TypeInt32, TypeFloat32:
		v := r.u32()
		switch t {
		case TypeUint32:
			return v
		case TypeInt32:
			return int32(v)
		}
		return math.Float32frombits(v)
	case TypeUint64, TypeInt64, TypeFloat64:
		v := r.u64()
		switch t {
		case TypeUint64:
			return v
		case TypeInt64:
			return int64(v)
		}
		return math.Float64frombits(v)
	case TypeString:
		return r.str()
	case TypeArray:
		et := ValueType(r.u32())
		n := r.u64()
		if r.err != nil {
			return nil
		}
		if depth > 4 || n > maxArray || int64(n) > r.size-r.n {
			r.err = fmt.Errorf("array of %d elements at offset %d: longer than the file or the limit", n, r.n)
			return nil
		}
		return r.array(et, int(n), depth)
	}
	r.err = fmt.Errorf("unknown value type %d at offset %d", t, r.n)
	return nil
}

func (r *reader) array(et ValueType, n, depth int) any {
	collect := func(f func(v any)) {
		for i := 0; i < n && r.err == nil; i++ {
			f(r.value(et, depth+1))
		}
	}
	switch et {
	case TypeString:
		out := make([]string, 0, min(n, 1<<16))
		collect(func(v any) { out = append(out, v.(string)) })
		return out
	case TypeInt32:
		out := make([]int32, 0, min(n, 1<<16))
		collect(func(v any) { out = append(out, v.(int32)) })
		return out
	case TypeUint32:
		out := make([]uint32, 0, min(n, 1<<16))
		collect(func(v any) { out = append(out, v.(uint32)) })
		return out
	case TypeFloat32:
		out := make([]float32, 0, min(n, 1<<16))
		collect(func(v any) { out = append(out, v.(float32)) })
		return out
	case TypeBool:
		out := make([]bool, 0, min(n, 1<<16))
		collect(func(v any) { out = append(out, v.(bool)) })
		return out
	}
	out := make([]any, 0, min(n, 1<<16))
	collect(func(v any) { out = append(out, v) })
	return out
}
