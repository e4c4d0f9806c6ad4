package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/tli-project/tli/engine"
)

// GenerateOptions controls decoding.
type GenerateOptions struct {
	// MaxNewTokens bounds the number of generated tokens (default 32, or
	// what room the context leaves if less). The prompt plus MaxNewTokens
	// must fit in Config.MaxContext (max_position_embeddings); Generate
	// refuses more rather than run past the positions the model knows.
	MaxNewTokens int
	// Temperature 0 decodes greedily; > 0 samples from softmax(logits/T).
	Temperature float64
	// TopP in (0, 1) keeps only the most likely tokens whose probabilities
	// sum to at least TopP (nucleus sampling); 0 or 1 keeps all.
	TopP float64
	// Seed makes sampling reproducible.
	Seed uint64
	// StopTokens end generation (the stop token is included in the
	// result); nil means the config's eos_token_id list.
	StopTokens []int
}

// A Decoder computes the logits of the next token as generation goes: Next
// takes the tokens that continue the sequence so far (the prompt on the
// first call, then the token just picked) and returns the logits after
// the last of them [VocabSize]. The CPU's keeps a KV cache; a device's may
// run the whole sequence again.
type Decoder interface {
	Next(tokens []int) ([]float32, error)
}

// cacheDecoder is the CPU's Decoder: every layer's keys and values cached.
type cacheDecoder struct {
	m     *Model
	cache *engine.KVCache
}

func (d *cacheDecoder) Next(tokens []int) ([]float32, error) { return d.m.step(tokens, d.cache) }

// Generate continues prompt and returns the new tokens, ending with a stop
// token if one was produced. It runs the prompt through the model once,
// keeping every layer's keys and values in a KV cache, and then one token
// per step. The whole model (all layers, final norm, LM head) must be loaded.
func (m *Model) Generate(prompt []int, opts GenerateOptions) ([]int, error) {
	return m.GenerateWith(prompt, opts, nil)
}

// GenerateWith is Generate with the logits computed by dec (nil: the CPU
// with a KV cache): the checks, the sampling and the stop tokens are
// Generate's.
func (m *Model) GenerateWith(prompt []int, opts GenerateOptions, dec Decoder) ([]int, error) {
	c := m.Config
	if len(prompt) == 0 {
		return nil, fmt.Errorf("llama: Generate needs a non-empty prompt")
	}
	limit := c.MaxContext()
	if len(prompt) >= limit {
		return nil, fmt.Errorf("llama: Generate: the prompt has %d tokens, which leaves no room under %s", len(prompt), c.contextLimit())
	}
	if opts.MaxNewTokens <= 0 {
		opts.MaxNewTokens = min(32, limit-len(prompt))
	}
	if opts.MaxNewTokens > limit-len(prompt) {
		return nil, fmt.Errorf("llama: Generate: prompt of %d tokens + MaxNewTokens %d is more than %s (MaxNewTokens can be at most %d)",
			len(prompt), opts.MaxNewTokens, c.contextLimit(), limit-len(prompt))
	}
	if err := m.checkBatch(NewBatch([][]int{prompt})); err != nil {
		return nil, err
	}
	for i, L := range m.Layers {
		if L == nil {
			return nil, fmt.Errorf("llama: Generate needs every layer; layer %d is not loaded", i)
		}
	}
	if m.Norm == nil || (m.LMHead == nil && !c.TieWordEmbeddings) {
		return nil, fmt.Errorf("llama: Generate needs the final norm and the LM head (LoadOptions.NeedLMHead)")
	}
	if opts.Temperature < 0 || math.IsNaN(opts.Temperature) || opts.TopP < 0 || opts.TopP > 1 {
		return nil, fmt.Errorf("llama: Generate: temperature must be >= 0 and top_p in [0, 1], got %v and %v", opts.Temperature, opts.TopP)
	}
	stop := opts.StopTokens
	if stop == nil {
		stop = c.EOSTokenID
	}
	rng := newRand(opts.Seed)
	// The cache starts with room for the prompt and a few hundred new
	// tokens and grows as needed: generation usually stops at a stop token
	// long before MaxNewTokens, and a cache for the whole context of a large
	// model would take tens of gigabytes.
	if dec == nil {
		dec = &cacheDecoder{m, engine.NewKVCache(c.NumLayers, c.NumKVHeads, c.HeadDim, len(prompt)+min(opts.MaxNewTokens, 256))}
	}
	next := func(tokens []int) ([]float32, error) {
		logits, err := dec.Next(tokens)
		if err == nil && len(logits) != c.VocabSize {
			err = fmt.Errorf("llama: Generate: the decoder gave %d logits for a vocabulary of %d", len(logits), c.VocabSize)
		}
		return logits, err
	}
	logits, err := next(prompt)
	if err != nil {
		return nil, err
	}
	var out []int
	for len(out) < opts.MaxNewTokens {
		tok := pick(logits, opts.Temperature, opts.TopP, rng)
		out = append(out, tok)
		if contains(stop, tok) || len(out) == opts.MaxNewTokens {
			break
		}
		if logits, err = next([]int{tok}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// step runs tokens (the continuation of the sequence cached so far)
// through every layer, appends their keys and values to cache, and
// returns the logits of the last token.
func (m *Model) step(tokens []int, cache *engine.KVCache) ([]float32, error) {
	c := m.Config
	if err := m.verifyThrough(len(m.Layers)); err != nil {
		return nil, err
	}
	T, d, past := len(tokens), c.HiddenSize, cache.Len
	s := m.getScratch(T)
	defer putScratch(s)
	h := s.h
	m.embed(h, tokens)
	pos := make([]int, T)
	for i := range pos {
		pos[i] = past + i
	}
	cos, sin := m.ropeTables(pos, past+T)
	cached := func(layer int, q, k, v, att []float32) {
		cache.Store(layer, k, v, T)
		engine.AttentionCachedWith(att, q, T, past, cache.K[layer], cache.V[layer], c.NumHeads, c.NumKVHeads, c.HeadDim, c.attentionOptions(layer))
	}
	for i := range m.Layers {
		m.attentionBlock(i, h, T, s, cos, sin, cached)
		m.mlpBlock(i, h, T, s)
	}
	cache.Advance(T)
	last := make([]float32, d)
	m.finalNorm(last, h[(T-1)*d:], 1)
	return m.Logits(last, 1)
}

// randSource is the sampler's random number generator.
type randSource = rand.Rand

func newRand(seed uint64) *randSource { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// pick chooses the next token: the arg-max when temperature is 0, else a
// sample from softmax(logits/temperature) restricted to the top-p nucleus.
func pick(logits []float32, temperature, topP float64, rng *rand.Rand) int {
	if temperature == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	type cand struct {
		id int
		p  float64
	}
	cs := make([]cand, len(logits))
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for i, v := range logits {
		p := math.Exp((float64(v) - mx) / temperature)
		cs[i] = cand{i, p}
		sum += p
	}
	sort.Slice(cs, func(a, b int) bool { return cs[a].p > cs[b].p || (cs[a].p == cs[b].p && cs[a].id < cs[b].id) })
	n := len(cs)
	if topP > 0 && topP < 1 {
		var acc float64
		for i, cd := range cs {
			acc += cd.p / sum
			if acc >= topP {
				n = i + 1
				break
			}
		}
	}
	var kept float64
	for _, cd := range cs[:n] {
		kept += cd.p
	}
	r := rng.Float64() * kept
	for _, cd := range cs[:n] {
		r -= cd.p
		if r < 0 {
			return cd.id
		}
	}
	return cs[n-1].id
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
