package quant

import (
	"fmt"
	"math"
	"sort"
)

// NestedBlocksize is the block size bitsandbytes uses to quantise the
// absmax values themselves (compress_statistics=True).
const NestedBlocksize = 256

// DynamicMap returns bitsandbytes' signed 8-bit dynamic code
// (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)),
// sorted ascending: for e = 0..6, the midpoints of 2^e+1 float32 points
// spaced evenly over [0.1, 1] (torch.linspace), times 10^(e-6), with both
// signs, then 0 and 1. It is the nested_quant_map of a double-quantised
// checkpoint; a loaded checkpoint's own map is used as stored.
func DynamicMap() [256]float32 {
	var data []float32
	for e := 0; e < 7; e++ {
		steps := 1<<e + 1
		bounds := linspaceF32(0.1, 1, steps)
		scale := float32(math.Pow(10, float64(e-6)))
		for j := 0; j+1 < steps; j++ {
			mean := float32(float32(bounds[j]+bounds[j+1]) / 2)
			v := float32(scale * mean)
			data = append(data, v, -v)
		}
	}
	data = append(data, 0, 1)
	sort.Slice(data, func(i, j int) bool { return data[i] < data[j] })
	var out [256]float32
	copy(out[:], data)
	return out
}

// linspaceF32 follows torch.linspace for float32 on an x86 CPU with AVX2
// (torch's RangeFactoriesKernel, as built in the torch releases
// bitsandbytes runs on): a float32 step; element i of the first half is
// start + step·i and of the second half end − step·(steps−1−i), each one
// fused multiply-add; but in runs of 16 elements from the front, which torch
// computes as two vectors of 8, only each vector's first element is computed
// so and lane j adds j·step to it in float32. Other CPUs' torch builds (AVX-512,
// NEON) can differ in the last bit of some entries.
func linspaceF32(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 1 {
		out[0] = start
		return out
	}
	step := float32((end - start) / float32(steps-1))
	half := steps / 2
	scalar := func(i int) float32 {
		if i < half {
			return fma32(step, float32(i), start)
		}
		return fma32(-step, float32(steps-i-1), end)
	}
	const vec = 8
	i := 0
	for ; i+2*vec <= steps; i += vec {
		base := scalar(i)
		for j := range vec {
			out[i+j] = float32(base + float32(float32(j)*step))
		}
		i += vec
		base = scalar(i)
		for j := range vec {
			out[i+j] = float32(base + float32(float32(j)*step))
		}
	}
	for ; i < steps; i++ {
		out[i] = scalar(i)
	}
	return out
}

// fma32 is a·b+c rounded once to float32 (the product of two float32 is
// exact in float64; the sum is rounded to float64 and then to float32,
// which agrees with a single rounding for the small values used here).
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// quantize8 is bitsandbytes' dQuantize<0>: a binary search over a sorted
// 256-entry code from index 127, then the nearer of the two neighbours by
// float32 midpoints (a tie keeps the searched pivot).
func quantize8(code *[256]float32, x float32) byte {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(-1), float32(1)
	val := code[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot = pivot
			lower = val
			pivot += i
		} else {
			upperPivot = pivot
			upper = val
			pivot -= i
		}
		val = code[pivot]
	}
	if upperPivot == 255 {
		upper = code[upperPivot]
	}
	if lowerPivot == 0 {
		lower = code[lowerPivot]
	}
	if x > val {
		if mid := float32(float32(upper+val) * 0.5); x > mid {
			return byte(upperPivot)
		}
		return byte(pivot)
	}
	if mid := float32(float32(lower+val) * 0.5); x < mid {
		return byte(lowerPivot)
	}
	return byte(pivot)
}

// Double is absmax quantised a second time (bitsandbytes' double
// quantisation, compress_statistics=True): Offset is the mean absmax,
// absmax−Offset is quantised in blocks of Blocksize (256) to the 8-bit
// Code with one float32 scale per block in Absmax.
type Double struct {
	Q         []byte       // one 8-bit code per 4-bit block (the checkpoint's "absmax", U8)
	Absmax    []float32    // nested_absmax: one scale per Blocksize codes
	Code      [256]float32 // nested_quant_map
	Blocksize int          // nested_blocksize, 256
	Offset    float32      // nested_offset
}

// QuantizeAbsmax double-quantises absmax as bitsandbytes' quantize_4bit
// does with compress_statistics=True: Offset = mean(absmax) (summed in
// float64 and rounded to float32; torch's float32 mean may differ in the
// last bit), then blockwise 8-bit quantisation of absmax−Offset with the
// dynamic map, blocksize 256.
func QuantizeAbsmax(absmax []float32) *Double {
	var sum float64
	for _, a := range absmax {
		sum += float64(a)
	}
	d := &Double{Code: DynamicMap(), Blocksize: NestedBlocksize}
	if len(absmax) > 0 {
		d.Offset = float32(sum / float64(len(absmax)))
	}
	n := len(absmax)
	d.Q = make([]byte, n)
	d.Absmax = make([]float32, Blocks(n, d.Blocksize))
	for b := range d.Absmax {
		lo, hi := b*d.Blocksize, min((b+1)*d.Blocksize, n)
		var m float32
		for _, a := range absmax[lo:hi] {
			if v := float32(math.Abs(float64(float32(a - d.Offset)))); v > m {
				m = v
			}
		}
		d.Absmax[b] = m
		inv := 1 / m
		for i := lo; i < hi; i++ {
			d.Q[i] = quantize8(&d.Code, float32(float32(absmax[i]-d.Offset)*inv))
		}
	}
	return d
}

// Dequantize returns the absmax the 4-bit codes are scaled by:
// Code[Q[i]]·Absmax[i/Blocksize] + Offset, each step in float32, as
// bitsandbytes' dequantize_4bit computes it before the 4-bit kernel.
func (d *Double) Dequantize() ([]float32, error) {
	if d.Blocksize <= 0 || Blocks(len(d.Q), d.Blocksize) != len(d.Absmax) {
		return nil, fmt.Errorf("quant: %d nested codes in blocks of %d need %d nested absmax, have %d",
			len(d.Q), d.Blocksize, Blocks(len(d.Q), max(d.Blocksize, 1)), len(d.Absmax))
	}
	out := make([]float32, len(d.Q))
	for i, q := range d.Q {
		out[i] = float32(float32(d.Code[q]*d.Absmax[i/d.Blocksize]) + d.Offset)
	}
	return out, nil
}
