package tli

import (
	"strings"
	"testing"
)

// FuzzTrainerState feeds arbitrary bytes to the trainer_state.json parser:
// it must return an error or a state whose numbers a resume can use
// (0 <= step <= total, batch_next within the epoch), and never panic.
func FuzzTrainerState(f *testing.F) {
	f.Add([]byte(`{"epoch":1,"batch_next":0,"step":78,"total_steps":390,"seed":42,"pairs":623,"batch":8,"layer":2,"pooling":"content"}`))
	f.Add([]byte(`{"epoch":0,"batch_next":-5,"step":3,"total_steps":10,"pairs":10,"batch":2,"layer":2}`))
	f.Add([]byte(`{"epoch":0,"batch_next":99,"step":3,"total_steps":10,"pairs":10,"batch":2,"layer":2}`))
	f.Add([]byte(`{"step":11,"total_steps":10}`))
	f.Add([]byte(`{"step":1,"total_steps":10,"pooling":"max"} trailing`))
	f.Add([]byte(`{"epoch":9223372036854775807,"pairs":9223372036854775807,"batch":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseTrainerState(b, "trainer_state.json")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "trainer_state.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if st.Step < 0 || st.Step > st.Total || st.BatchNext < 0 || st.Epoch < 0 || st.Epoch > MaxEpochs {
			t.Fatalf("accepted an unusable state %+v", st)
		}
		if st.Batch > 0 && st.BatchNext > (st.Pairs+st.Batch-1)/st.Batch {
			t.Fatalf("batch_next %d beyond the epoch of %d pairs in batches of %d", st.BatchNext, st.Pairs, st.Batch)
		}
	})
}

func TestTrainerStateMessages(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"batch_next":-5,"step":3,"total_steps":10,"pairs":10,"batch":2}`, "batch_next -5 must be in [0, 5] (10 pairs in batches of 2)"},
		{`{"step":11,"total_steps":10}`, "step 11 must be in [0, total_steps 10]"},
		{`{"step":1,"total_steps":10} x`, "unexpected data after the JSON object"},
		{`{"step":"1"}`, "not a trainer state"},
		{`{"pooling":"max"}`, `unknown pooling "max"`},
	} {
		_, err := parseTrainerState([]byte(c.in), "s.json")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.in, err, c.want)
		}
	}
}
