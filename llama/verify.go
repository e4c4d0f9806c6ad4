package llama

import (
	"sync"

	"github.com/tli-project/tli/engine"
)

// Lazy NaN/Inf checks of weights that stay in a memory-mapped shard (see
// Load). A pass over a checkpoint larger than memory streams every weight
// from disk; checking them all at load would stream the file once more.
// Instead each layer's weights are checked the first time a pass uses that
// layer, just before its products read them (so they come from the page
// cache), and a check that passed is not repeated.

// pendingCheck is a weight not yet checked for NaN/Inf.
type pendingCheck struct {
	file, name string
	t          *engine.Tensor
}

// Keys of Model.unchecked besides layer indices.
const (
	keyEmbed = -1 // model.embed_tokens.weight
	keyHead  = -2 // lm_head.weight
)

// checks holds a model's unchecked weights by layer (or keyEmbed, keyHead).
type checks struct {
	mu        sync.Mutex
	unchecked map[int][]pendingCheck
}

// deferChecks moves the tensors ck left unread to key.
func (m *Model) deferChecks(key int, ck *checkpoint) {
	if len(ck.deferred) == 0 {
		return
	}
	m.checks.mu.Lock()
	defer m.checks.mu.Unlock()
	if m.checks.unchecked == nil {
		m.checks.unchecked = map[int][]pendingCheck{}
	}
	m.checks.unchecked[key] = append(m.checks.unchecked[key], ck.deferred...)
	ck.deferred = nil
}

// verify checks the weights under key that are not checked yet. A weight
// with NaN or Inf stays pending, so every later use fails the same way.
func (m *Model) verify(key int) error {
	m.checks.mu.Lock()
	defer m.checks.mu.Unlock()
	pend := m.checks.unchecked[key]
	for len(pend) > 0 {
		p := pend[0]
		if err := nonFiniteError(p.file, p.name, p.t); err != nil {
			m.checks.unchecked[key] = pend
			return err
		}
		pend = pend[1:]
	}
	delete(m.checks.unchecked, key)
	return nil
}

// VerifyLayer checks decoder layer i's weights for NaN/Inf if that has not
// been done yet (Forward and ForwardTrain do it before they use a layer;
// code that reads a layer's weights otherwise, such as an adapter merge,
// calls it first). The error names the file, the tensor and the element.
func (m *Model) VerifyLayer(i int) error { return m.verify(i) }

// Verify checks every loaded weight not checked yet for NaN/Inf (reading the
// whole checkpoint): for callers that copy the weights elsewhere, such as a
// merged checkpoint's writer.
func (m *Model) Verify() error {
	if err := m.verify(keyHead); err != nil {
		return err
	}
	return m.verifyThrough(len(m.Layers))
}

// verifyThrough checks the embedding and decoder layers 0 … n-1: what a
// pass up to hidden state n reads.
func (m *Model) verifyThrough(n int) error {
	if err := m.verify(keyEmbed); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := m.verify(i); err != nil {
			return err
		}
	}
	return nil
}
