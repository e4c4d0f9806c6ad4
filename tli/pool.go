package tli

import (
	"fmt"
	"math"
)

// Pooling says how the hidden states of a word's tokens become one vector.
// The choice changes the numbers a lot: a Llama model's BOS hidden state is
// huge and nearly the same for every input from layer 1 on, so a mean that
// includes BOS makes every pair of words look alike (cosine ≈ 1).
type Pooling string

const (
	// PoolMean averages every token, BOS/EOS included (the published scan
	// and training scripts).
	PoolMean Pooling = "mean"
	// PoolContent averages the word's own tokens, special tokens left out
	// (the published evaluation script).
	PoolContent Pooling = "content"
	// PoolLast takes the last token's hidden state.
	PoolLast Pooling = "last"
)

// ParsePooling checks a --pooling value.
func ParsePooling(s string) (Pooling, error) {
	switch p := Pooling(s); p {
	case PoolMean, PoolContent, PoolLast:
		return p, nil
	}
	return "", fmt.Errorf("unknown pooling %q (want mean, content or last)", s)
}

// Describe is a one-line explanation for reports.
func (p Pooling) Describe() string {
	switch p {
	case PoolMean:
		return "mean over all tokens, BOS/EOS included (as the published scan and training scripts)"
	case PoolContent:
		return "mean over the word's own tokens, BOS/EOS left out (as the published evaluation script)"
	case PoolLast:
		return "hidden state of the last token"
	}
	return string(p)
}

// PoolRows pools the rows of h [T×d] for every sequence of a packed batch
// (offsets delimit sequences; special[t] marks special tokens) and returns one
// L2-normalised vector per sequence. A sequence with nothing to pool (content
// pooling of a word made only of special tokens) is an error naming it.
func PoolRows(h []float32, d int, offsets []int, special []bool, p Pooling) ([][]float32, error) {
	out, err := PoolRaw(h, d, offsets, special, p)
	if err != nil {
		return nil, err
	}
	for _, v := range out {
		var norm float64
		for _, x := range v {
			norm += float64(x) * float64(x)
		}
		norm = math.Sqrt(norm)
		if norm < 1e-12 {
			norm = 1e-12
		}
		for i := range v {
			v[i] = float32(float64(v[i]) / norm)
		}
	}
	return out, nil
}

// PoolRaw is PoolRows without the L2 normalisation: the pooled hidden
// states themselves (means summed in float64), as tli embed writes them.
func PoolRaw(h []float32, d int, offsets []int, special []bool, p Pooling) ([][]float32, error) {
	n := len(offsets) - 1
	out := make([][]float32, n)
	acc := make([]float64, d)
	for s := 0; s < n; s++ {
		clear(acc)
		count := 0
		for t := offsets[s]; t < offsets[s+1]; t++ {
			switch p {
			case PoolContent:
				if special[t] {
					continue
				}
			case PoolLast:
				if t != offsets[s+1]-1 {
					continue
				}
			}
			for i, v := range h[t*d : (t+1)*d] {
				acc[i] += float64(v)
			}
			count++
		}
		if count == 0 {
			return nil, fmt.Errorf("sequence %d has no tokens to pool with %s pooling", s, p)
		}
		v := make([]float32, d)
		for i := range acc {
			v[i] = float32(acc[i] / float64(count))
		}
		out[s] = v
	}
	return out, nil
}
