package autograd

import "testing"

func TestSizeClass(t *testing.T) {
	for n := 1; n < 1<<20; n += 1 + n/37 {
		c := sizeClass(n)
		if c < n || (n > 1024 && float64(c) > 1.125*float64(n)+1) {
			t.Fatalf("sizeClass(%d) = %d: want within [n, 1.125n]", n, c)
		}
		if sizeClass(c) != c {
			t.Fatalf("sizeClass(%d) = %d, but sizeClass(%d) = %d: classes must be fixed points", n, c, c, sizeClass(c))
		}
	}
}

// TestReleaseReuse checks that a released buffer is handed out again,
// zeroed, with its length and capacity limited to the request.
func TestReleaseReuse(t *testing.T) {
	t1 := NewTape()
	a := t1.alloc(5000)
	for i := range a {
		a[i] = float32(i + 1)
	}
	t1.Release()
	t2 := NewTape()
	b := t2.alloc(4999)
	if len(b) != 4999 || cap(b) != 4999 {
		t.Fatalf("len %d cap %d, want 4999 and 4999", len(b), cap(b))
	}
	if &b[0] != &a[0] {
		t.Fatalf("the released buffer was not reused")
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("reused buffer not zeroed at %d: %v", i, v)
		}
	}
	t2.Release()
	var nilTape *Tape
	if c := nilTape.alloc(3); len(c) != 3 {
		t.Fatalf("nil tape alloc: len %d", len(c))
	}
}
