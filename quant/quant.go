// Package quant holds 4-bit weights with the numerics of bitsandbytes'
// blockwise NF4 and FP4 quantisation, as the QLoRA-era transformers stack
// computes and stores them, so that a CPU can reproduce results obtained
// with load_in_4bit models and load pre-quantised checkpoints.
//
// Semantics (bitsandbytes csrc/kernels.cu kQuantizeBlockwise with the
// dQuantizeNF4 and dQuantizeFP4 decision trees, unchanged since 2023):
//
//   - The weight is taken flat, row-major, in blocks of blocksize values
//     (64 by default; any power of two from 32 to 4096). The last block may
//     be shorter.
//   - absmax of a block is max |x| in float32; the block is scaled by the
//     float32 reciprocal, scaled = x·(1/absmax), one float32 multiply.
//   - scaled is mapped to a 4-bit code by a fixed binary decision tree whose
//     pivots are the midpoints of neighbouring code values written as
//     float32 literals. A value exactly on a pivot takes the lower branch
//     (the comparisons are strict x > pivot), so it gets the code of smaller
//     value (NF4) or of smaller magnitude (FP4). For FP4 the sign bit (8) is
//     set when scaled < 0, so a tiny negative value gets code 8 (negative
//     zero); and two FP4 pivots are short literals (0.583333, 0.00260417)
//     that differ from the true midpoints 7/12 and 1/384, so values in the
//     sliver between a literal and its midpoint go to the farther code
//     (float32(7/12) to 2/3 rather than 1/2; values just above 1/384 to 0
//     rather than 1/192). This is not plain nearest-value rounding, and
//     Quantize reproduces it bit for bit.
//   - A block whose absmax is 0 scales by +Inf, 0·Inf is NaN, every pivot
//     comparison is false and the tree returns code 0 (NF4 -1.0, FP4 +0);
//     dequantised, that is still 0 because absmax is 0.
//   - Two codes per byte, the earlier element in the high nibble. An odd
//     count pads the last low nibble with the code of 0·(1/absmax).
//   - Dequantised value = code value · absmax in float32, then rounded to
//     the storage dtype of the original weight (bf16, fp16 or f32).
//
// bitsandbytes' pure-PyTorch backend (used for CPU quantisation in recent
// releases) differs in corner cases: it clamps absmax to 1e-38 (a zero
// block gets the NF4 code of 0, 7), uses torch.bucketize on midpoints of the
// float32 table (ties also go to the lower code, but the midpoints are
// computed in float32 rather than written as literals) and picks between
// FP4's two zero codes by torch.argsort's order rather than by sign. This
// package follows the CUDA kernels, which produced the published results
// and most checkpoints on the Hub.
package quant

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Kind is a 4-bit code: NF4 (NormalFloat, quantiles of a normal
// distribution) or FP4 (1 sign, 2 exponent, 1 mantissa bit).
type Kind int

const (
	// NF4 is bitsandbytes' NormalFloat4, codes sorted by value.
	NF4 Kind = iota
	// FP4 is bitsandbytes' 4-bit float, bit 8 the sign; the default
	// quant_type of transformers' BitsAndBytesConfig.
	FP4
)

// String returns the quant_type name bitsandbytes uses, "nf4" or "fp4".
func (k Kind) String() string {
	switch k {
	case NF4:
		return "nf4"
	case FP4:
		return "fp4"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind reads a quant_type name ("nf4" or "fp4").
func ParseKind(s string) (Kind, error) {
	switch s {
	case "nf4":
		return NF4, nil
	case "fp4":
		return FP4, nil
	}
	return 0, fmt.Errorf("quant: unknown quant_type %q (want nf4 or fp4)", s)
}

// nf4Code is bitsandbytes' NF4 table (get_4bit_type("nf4")), as float32.
var nf4Code = [16]float32{
	-1.0,
	-0.6961928009986877,
	-0.5250730514526367,
	-0.39491748809814453,
	-0.28444138169288635,
	-0.18477343022823334,
	-0.09105003625154495,
	0.0,
	0.07958029955625534,
	0.16093020141124725,
	0.24611230194568634,
	0.33791524171829224,
	0.44070982933044434,
	0.5626170039176941,
	0.7229568362236023,
	1.0,
}

// fp4Code is bitsandbytes' FP4 table: get_4bit_type("fp4") is
// {0, 0.0625, 8, 12, 4, 6, 2, 3} and negatives, divided by 12 in float32.
// The CUDA dequantiser multiplies by a sign of -1, so code 8 is -0.
var fp4Code = func() (c [16]float32) {
	mag := [8]float32{0, 0.0625, 8, 12, 4, 6, 2, 3}
	for i, m := range mag {
		c[i] = m / 12
		c[i+8] = -c[i]
	}
	return c
}()

// Codebook returns the 16 values of kind's codes, indexed by code. It is
// what the quant_map tensor of a checkpoint holds (except that FP4's code 8
// is -0 here and +0 in the stored quant_map).
func Codebook(kind Kind) [16]float32 {
	if kind == FP4 {
		return fp4Code
	}
	return nf4Code
}

// ValidBlocksize reports whether bitsandbytes accepts blocksize for 4-bit
// quantisation: a power of two from 32 to 4096.
func ValidBlocksize(blocksize int) bool {
	return blocksize >= 32 && blocksize <= 4096 && blocksize&(blocksize-1) == 0
}

// Blocks returns the number of absmax values of n elements in blocks of
// blocksize (the last block may be shorter).
func Blocks(n, blocksize int) int { return (n + blocksize - 1) / blocksize }

// PackedLen returns the number of bytes of n packed 4-bit codes.
func PackedLen(n int) int { return (n + 1) / 2 }

// quantizeNF4 is the dQuantizeNF4 decision tree of bitsandbytes' CUDA
// kernel: strict comparisons against float32 midpoints. Go converts each
// decimal constant to the nearest float32, as a C compiler reads a float
// literal; rounding through float64 first would move one pivot
// (0.8614784181118011) by one ulp.
func quantizeNF4(x float32) byte {
	if x > 0.03979014977812767 {
		if x > 0.3893125355243683 {
			if x > 0.6427869200706482 {
				if x > 0.8614784181118011 {
					return 15
				}
				return 14
			}
			if x > 0.5016634166240692 {
				return 13
			}
			return 12
		}
		if x > 0.2035212516784668 {
			if x > 0.2920137718319893 {
				return 11
			}
			return 10
		}
		if x > 0.1202552504837513 {
			return 9
		}
		return 8
	}
	if x > -0.33967943489551544 {
		if x > -0.13791173323988914 {
			if x > -0.045525018125772476 {
				return 7
			}
			return 6
		}
		if x > -0.23460740596055984 {
			return 5
		}
		return 4
	}
	if x > -0.6106329262256622 {
		if x > -0.4599952697753906 {
			return 3
		}
		return 2
	}
	if x > -0.8480964004993439 {
		return 1
	}
	return 0
}

// Pivots of the FP4 tree, float32 as the CUDA literals are.
const (
	fp4P1 float32 = 0.29166667
	fp4P2 float32 = 0.583333
	fp4P3 float32 = 0.8333333
	fp4P4 float32 = 0.4166667
	fp4P5 float32 = 0.0859375
	fp4P6 float32 = 0.20833333
	fp4P7 float32 = 0.00260417
)

// quantizeFP4 is the dQuantizeFP4 decision tree: sign bit from x < 0, then
// strict comparisons of |x| against float32 pivots. NaN gives code 0.
func quantizeFP4(x float32) byte {
	var sign byte
	if x < 0 {
		sign = 8
	}
	x = float32(math.Abs(float64(x)))
	switch {
	case x > fp4P1:
		if x > fp4P2 {
			if x > fp4P3 {
				return 3 | sign
			}
			return 2 | sign
		}
		if x > fp4P4 {
			return 5 | sign
		}
		return 4 | sign
	case x > fp4P5:
		if x > fp4P6 {
			return 7 | sign
		}
		return 6 | sign
	case x > fp4P7:
		return 1 | sign
	}
	return sign
}

func code(kind Kind, x float32) byte {
	if kind == FP4 {
		return quantizeFP4(x)
	}
	return quantizeNF4(x)
}

func checkKind(kind Kind) {
	if kind != NF4 && kind != FP4 {
		panic(fmt.Sprintf("quant: unknown kind %d", int(kind)))
	}
}

func checkBlocksize(blocksize int) {
	if !ValidBlocksize(blocksize) {
		panic(fmt.Sprintf("quant: blocksize %d not allowed (a power of two from 32 to 4096)", blocksize))
	}
}

// Quantize quantises w (row-major, flat) to kind in blocks of blocksize,
// returning the packed codes (PackedLen(len(w)) bytes, high nibble first)
// and one float32 absmax per block. It panics on an unknown kind or a
// blocksize bitsandbytes does not allow.
func Quantize(kind Kind, w []float32, blocksize int) (packed []byte, absmax []float32) {
	packed = make([]byte, PackedLen(len(w)))
	absmax = make([]float32, Blocks(len(w), blocksize))
	QuantizeInto(kind, packed, absmax, w, blocksize)
	return packed, absmax
}

// QuantizeInto is Quantize writing into packed and absmax, which must have
// at least PackedLen(len(w)) and Blocks(len(w), blocksize) elements.
func QuantizeInto(kind Kind, packed []byte, absmax []float32, w []float32, blocksize int) {
	checkKind(kind)
	checkBlocksize(blocksize)
	n := len(w)
	if len(packed) < PackedLen(n) || len(absmax) < Blocks(n, blocksize) {
		panic(fmt.Sprintf("quant: QuantizeInto of %d values needs %d bytes and %d absmax, have %d and %d",
			n, PackedLen(n), Blocks(n, blocksize), len(packed), len(absmax)))
	}
	// Blocks are independent: share them among up to GOMAXPROCS
	// goroutines when there are many (an 8B model has 10⁸ of them).
	blocks := Blocks(n, blocksize)
	if workers := min(runtime.GOMAXPROCS(0), blocks/4096); workers > 1 {
		var wg sync.WaitGroup
		per := (blocks + workers - 1) / workers
		for b0 := 0; b0 < blocks; b0 += per {
			b1 := min(b0+per, blocks)
			wg.Add(1)
			go func() {
				defer wg.Done()
				quantizeBlocks(kind, packed, absmax, w, blocksize, b0, b1)
			}()
		}
		wg.Wait()
		return
	}
	quantizeBlocks(kind, packed, absmax, w, blocksize, 0, blocks)
}

// quantizeBlocks quantises blocks [b0, b1) of w.
func quantizeBlocks(kind Kind, packed []byte, absmax []float32, w []float32, blocksize, b0, b1 int) {
	n := len(w)
	for b := b0; b < b1; b++ {
		lo := b * blocksize
		hi := min(lo+blocksize, n)
		var m float32
		for _, v := range w[lo:hi] {
			// fmaxf(m, fabsf(v)): a NaN element is ignored.
			if a := float32(math.Abs(float64(v))); a > m {
				m = a
			}
		}
		absmax[b] = m
		inv := 1 / m
		// Blocks start at even offsets (blocksize is even), so pairs never
		// straddle two blocks; an odd tail pads with 0·inv.
		for i := lo; i < hi; i += 2 {
			hiNib := code(kind, float32(w[i]*inv))
			var x1 float32
			if i+1 < hi {
				x1 = w[i+1]
			}
			loNib := code(kind, float32(x1*inv))
			packed[i/2] = hiNib<<4 | loNib
		}
	}
}

// DType is the floating type dequantised weights are rounded to: the dtype
// of the weight before quantisation (the "dtype" of a quant_state).
type DType int

const (
	// F32 keeps the float32 product code·absmax.
	F32 DType = iota
	// BF16 rounds to bfloat16, nearest even.
	BF16
	// F16 rounds to IEEE half precision, nearest even, overflowing to Inf.
	F16
)

// String returns the torch dtype name ("float32", "bfloat16", "float16"),
// as quant_state JSON spells it.
func (d DType) String() string {
	switch d {
	case F32:
		return "float32"
	case BF16:
		return "bfloat16"
	case F16:
		return "float16"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// ParseDType reads a torch dtype name as quant_state JSON writes it.
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32":
		return F32, nil
	case "bfloat16":
		return BF16, nil
	case "float16":
		return F16, nil
	}
	return 0, fmt.Errorf("quant: dtype %q not supported (want float32, bfloat16 or float16)", s)
}

// Round rounds x to d, returned as the float32 of the same value.
func (d DType) Round(x float32) float32 {
	switch d {
	case BF16:
		return roundBF16(x)
	case F16:
		return roundF16(x)
	}
	return x
}

func roundBF16(x float32) float32 {
	u := math.Float32bits(x)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep it quiet
		return math.Float32frombits((u | 0x00400000) & 0xffff0000)
	}
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u & 0xffff0000)
}

func roundF16(x float32) float32 {
	f := float64(x)
	if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return x
	}
	a := math.Abs(f)
	if a >= 65520 { // halfway between 65504 and 2^16 rounds to Inf
		return float32(math.Copysign(math.Inf(1), f))
	}
	_, e := math.Frexp(a) // a = frac·2^e, frac in [0.5, 1)
	exp := max(e-1, -14)
	q := math.Ldexp(1, exp-10)
	r := math.RoundToEven(f/q) * q
	if r == 0 {
		return float32(math.Copysign(0, f))
	}
	return float32(r)
}

// Dequantize writes the n values of packed codes of kind, scaled by their
// block's absmax, into dst[:n], in float32 (see DequantizeTo for rounding
// to a storage dtype).
func Dequantize(kind Kind, packed []byte, absmax []float32, n, blocksize int, dst []float32) {
	DequantizeTo(kind, packed, absmax, n, blocksize, F32, dst)
}

// DequantizeTo is Dequantize with each value code·absmax (float32) rounded
// to dt, as bitsandbytes' dequantize_4bit returns it in the quant_state
// dtype. It panics when a slice is shorter than n needs.
func DequantizeTo(kind Kind, packed []byte, absmax []float32, n, blocksize int, dt DType, dst []float32) {
	dequantRange(kind, packed, absmax, 0, n, blocksize, dt, dst[:n])
}

// dequantRange dequantises elements [start, start+len(dst)) into dst.
func dequantRange(kind Kind, packed []byte, absmax []float32, start, n, blocksize int, dt DType, dst []float32) {
	checkKind(kind)
	checkBlocksize(blocksize)
	end := start + len(dst)
	if start < 0 || end > n || len(packed) < PackedLen(n) || len(absmax) < Blocks(n, blocksize) {
		panic(fmt.Sprintf("quant: dequantise [%d, %d) of %d values from %d bytes and %d absmax",
			start, end, n, len(packed), len(absmax)))
	}
	cb := Codebook(kind)
	var table [16]float32
	for i := start; i < end; {
		b := i / blocksize
		hi := min((b+1)*blocksize, end)
		// The 16 values this block's codes can take, each code·absmax in
		// float32 rounded to dt: a lookup per element afterwards.
		s := absmax[b]
		for c := range table {
			table[c] = dt.Round(float32(cb[c] * s))
		}
		out := dst[i-start : hi-start]
		j := 0
		if i&1 == 1 { // start on a low nibble
			out[0] = table[packed[i>>1]&15]
			j = 1
		}
		src := packed[(i+j)>>1:]
		for ; j+1 < len(out); j += 2 {
			c := src[0]
			src = src[1:]
			out[j] = table[c>>4]
			out[j+1] = table[c&15]
		}
		if j < len(out) {
			out[j] = table[src[0]>>4]
		}
		i = hi
	}
}
