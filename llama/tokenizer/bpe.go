package tokenizer

import "unicode/utf8"

// bpeModel is the BPE model of tokenizers: a word starts as one symbol per
// character (per byte for byte-level vocabularies) and the adjacent pair
// with the lowest merge rank is merged, leftmost first, until no pair has a
// merge.
type bpeModel struct {
	// vocab maps a token to its id. For byte-level vocabularies the keys are
	// the raw bytes the token stands for, not its byte-level spelling, so
	// that words never need to be translated.
	vocab map[string]int32
	// merges maps the pair (left<<32 | right) to rank<<32 | merged id.
	merges   map[uint64]uint64
	byteMode bool
	// byteIDs holds the id of each single byte in byte mode (-1: none).
	byteIDs [256]int32
	// fallbackIDs holds the id of each <0xXX> token (-1: none).
	fallbackIDs  [256]int32
	unkID        int32 // -1: no unk token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
}

// symbol is one node of the doubly linked list a word is merged in.
type symbol struct {
	id         int32
	prev, next int32
	dead       bool
}

// bpeScratch holds the buffers of one Encode call.
type bpeScratch struct {
	syms []symbol
	heap []uint64 // rank<<32 | position, a min-heap
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// encodeWord appends the ids of word to dst.
func (m *bpeModel) encodeWord(dst []int32, word string, sc *bpeScratch) []int32 {
	if len(word) == 0 {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, id)
		}
	}
	syms := sc.syms[:0]
	add := func(id int32) {
		syms = append(syms, symbol{id: id, prev: int32(len(syms)) - 1, next: int32(len(syms)) + 1})
	}
	// Pending unknown symbol: Rust's merge_word fuses runs of unknown
	// characters when fuse_unk is set.
	pendingUnk := false
	flushUnk := func() {
		if pendingUnk {
			add(m.unkID)
			pendingUnk = false
		}
	}
	unknown := func() {
		if m.unkID < 0 {
			return // tokenizers drops the character when there is no unk token
		}
		if pendingUnk && !m.fuseUnk {
			add(m.unkID)
		}
		pendingUnk = true
	}
	if m.byteMode {
		for i := 0; i < len(word); i++ {
			if id := m.byteIDs[word[i]]; id >= 0 {
				flushUnk()
				add(id)
			} else {
				unknown()
			}
		}
	} else {
		for i := 0; i < len(word); {
			_, n := utf8.DecodeRuneInString(word[i:])
			if id, ok := m.vocab[word[i:i+n]]; ok {
				flushUnk()
				add(id)
			} else if m.byteFallback && m.hasFallback(word[i:i+n]) {
				flushUnk()
				for k := i; k < i+n; k++ {
					add(m.fallbackIDs[word[k]])
				}
			} else {
				unknown()
			}
			i += n
		}
	}
	flushUnk()
	if len(syms) == 0 {
		sc.syms = syms
		return dst
	}
	syms[len(syms)-1].next = -1
	m.mergeAll(syms, sc)
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	sc.syms = syms
	return dst
}

func (m *bpeModel) hasFallback(ch string) bool {
	for k := 0; k < len(ch); k++ {
		if m.fallbackIDs[ch[k]] < 0 {
			return false
		}
	}
	return true
}

// mergeAll applies the merges to the linked list syms (which starts at 0),
// lowest rank first and, among equal ranks, leftmost first, with a binary
// heap: O(n log n) in the word length.
func (m *bpeModel) mergeAll(syms []symbol, sc *bpeScratch) {
	if len(syms) < 2 {
		return
	}
	h := sc.heap[:0]
	push := func(v uint64) {
		h = append(h, v)
		i := len(h) - 1
		for i > 0 {
			p := (i - 1) / 2
			if h[p] <= h[i] {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
	}
	pop := func() uint64 {
		top := h[0]
		last := len(h) - 1
		h[0] = h[last]
		h = h[:last]
		i := 0
		for {
			l := 2*i + 1
			if l >= len(h) {
				break
			}
			c := l
			if r := l + 1; r < len(h) && h[r] < h[l] {
				c = r
			}
			if h[i] <= h[c] {
				break
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
		return top
	}
	tryPush := func(pos int32) {
		nx := syms[pos].next
		if nx < 0 {
			return
		}
		if v, ok := m.merges[pairKey(syms[pos].id, syms[nx].id)]; ok {
			push(v&0xFFFFFFFF00000000 | uint64(pos))
		}
	}
	for i := 0; i+1 < len(syms); i++ {
		tryPush(int32(i))
	}
	for len(h) > 0 {
		top := pop()
		pos := int32(uint32(top))
		rank := top >> 32
		s := &syms[pos]
		if s.dead || s.next < 0 {
			continue
		}
		nx := s.next
		v, ok := m.merges[pairKey(s.id, syms[nx].id)]
		if !ok || v>>32 != rank {
			continue // a stale entry: one of the two symbols has changed
		}
		s.id = int32(uint32(v))
		syms[nx].dead = true
		s.next = syms[nx].next
		if s.next >= 0 {
			syms[s.next].prev = pos
		}
		if s.prev >= 0 {
			tryPush(s.prev)
		}
		tryPush(pos)
	}
	sc.heap = h
}
