package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
)

// TestSynthEmbedProbe runs tli synth, tli embed and tli probe on a tiny
// checkpoint and checks their outputs against the llama package directly.
func TestSynthEmbedProbe(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	var stderr bytes.Buffer
	if rc := runMain([]string{"synth", "--out", ck, "--layers", "2", "--seed", "4"}, &stderr); rc != 0 {
		t.Fatalf("synth: rc %d: %s", rc, stderr.String())
	}
	words := []string{"mtoto", "the language", "watoto wa shule"}
	wpath := filepath.Join(dir, "words.json")
	os.WriteFile(wpath, []byte(`["mtoto", "the language", "watoto wa shule"]`), 0o644)
	run := func(pooling string) (map[string]*engine.Tensor, map[string][]int64) {
		out := filepath.Join(dir, pooling+".safetensors")
		if rc := runMain([]string{"embed", "--model", ck, "--words", wpath, "--layers", "all", "--pooling", pooling, "--out", out, "--batch-tokens", "5"}, &stderr); rc != 0 {
			t.Fatalf("embed %s: rc %d: %s", pooling, rc, stderr.String())
		}
		fl, _, err := llama.ReadSafetensors(out)
		if err != nil {
			t.Fatal(err)
		}
		ints, _, err := llama.ReadSafetensorsInts(out)
		if err != nil {
			t.Fatal(err)
		}
		return fl, ints
	}
	none, ints := run("none")
	tok, err := tokenizer.LoadDir(ck)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.Load(ck, llama.LoadOptions{MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := m.Config.HiddenSize
	off := ints["offsets"]
	if len(off) != len(words)+1 {
		t.Fatalf("offsets %v", off)
	}
	// Per-token states equal a forward of each word alone.
	for w, s := range words {
		ids := tok.Encode(s, true)
		for i, id := range ids {
			if ints["token_ids"][int(off[w])+i] != int64(id) {
				t.Fatalf("word %d token ids %v, want %v", w, ints["token_ids"][off[w]:off[w+1]], ids)
			}
		}
		hs, err := m.HiddenStates(llama.NewBatch([][]int{ids}), []int{0, 1, 2})
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k <= 2; k++ {
			got := none["layer."+string(rune('0'+k))].F32[int(off[w])*d : int(off[w+1])*d]
			for i := range got {
				if math.Abs(float64(got[i]-hs[k][i])) > 1e-5*(1+math.Abs(float64(hs[k][i]))) {
					t.Fatalf("word %d layer %d element %d: %v, forward alone %v", w, k, i, got[i], hs[k][i])
				}
			}
		}
	}
	// Pooled outputs are means (or the last row) of the per-token ones.
	for _, pooling := range []string{"mean", "content", "last"} {
		pooled, _ := run(pooling)
		for k := 0; k <= 2; k++ {
			name := "layer." + string(rune('0'+k))
			if sh := pooled[name].Shape; sh[0] != len(words) || sh[1] != d {
				t.Fatalf("%s %s shape %v", pooling, name, sh)
			}
			for w := range words {
				var want [64]float64
				n := 0
				for tkn := int(off[w]); tkn < int(off[w+1]); tkn++ {
					if (pooling == "content" && tok.IsSpecial(int(ints["token_ids"][tkn]))) || (pooling == "last" && tkn != int(off[w+1])-1) {
						continue
					}
					for i := 0; i < d; i++ {
						want[i] += float64(none[name].F32[tkn*d+i])
					}
					n++
				}
				for i := 0; i < d; i++ {
					if g := float64(pooled[name].F32[w*d+i]); math.Abs(g-want[i]/float64(n)) > 1e-5*(1+math.Abs(g)) {
						t.Fatalf("%s %s word %d element %d: %v, want %v", pooling, name, w, i, g, want[i]/float64(n))
					}
				}
			}
		}
	}
	// probe prints the decoded greedy continuation and its ids.
	var buf bytes.Buffer
	probeOut = &buf
	defer func() { probeOut = os.Stdout }()
	if rc := runMain([]string{"probe", "--model", ck, "--prompt", "mama na mtoto", "--max-new-tokens", "6", "--dtype", "f32", "--ids"}, &stderr); rc != 0 {
		t.Fatalf("probe: rc %d: %s", rc, stderr.String())
	}
	gen, err := m.Generate(tok.Encode("mama na mtoto", true), llama.GenerateOptions{MaxNewTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 2 || lines[0] != tok.Decode(gen, true) || lines[1] != fmt.Sprint(gen) {
		t.Fatalf("probe printed %q, want %q and %v", buf.String(), tok.Decode(gen, true), gen)
	}
	// Usage errors exit with status 2.
	if rc := runMain([]string{"embed", "--model", ck, "--words", wpath, "--pooling", "max", "--out", filepath.Join(dir, "x")}, &stderr); rc != 2 {
		t.Fatalf("bad --pooling: rc %d", rc)
	}
	if rc := runMain([]string{"embed", "--model", ck, "--words", wpath, "--layers", "9", "--out", filepath.Join(dir, "x")}, &stderr); rc != 2 {
		t.Fatalf("bad --layers: rc %d", rc)
	}
}

// tli embed reads words from standard input (one per line), normalises on
// request, keeps the words in the file, and writes the same vectors as
// JSON and as NumPy .npy.
func TestEmbedFormats(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	var stderr bytes.Buffer
	if rc := runMain([]string{"synth", "--out", ck, "--layers", "2", "--seed", "4"}, &stderr); rc != 0 {
		t.Fatalf("synth: rc %d: %s", rc, stderr.String())
	}
	embed := func(out string, extra ...string) {
		t.Helper()
		embedIn = strings.NewReader("maji\nwater\n\nnyumba\n")
		defer func() { embedIn = os.Stdin }()
		var stderr bytes.Buffer
		args := append([]string{"embed", "--model", ck, "--words", "-", "--layers", "1,2", "--out", out}, extra...)
		if rc := runMain(args, &stderr); rc != 0 {
			t.Fatalf("embed %v: rc %d: %s", args, rc, stderr.String())
		}
	}
	st := filepath.Join(dir, "e.safetensors")
	embed(st, "--normalize")
	ts, meta, err := llama.ReadSafetensors(st)
	if err != nil {
		t.Fatal(err)
	}
	if meta["word_list"] != `["maji","water","nyumba"]` || meta["normalized"] != "true" {
		t.Errorf("metadata %v", meta)
	}
	l2 := ts["layer.2"]
	d := l2.Shape[1]
	for r := 0; r < 3; r++ {
		var ss float64
		for _, v := range l2.F32[r*d : (r+1)*d] {
			ss += float64(v) * float64(v)
		}
		if math.Abs(ss-1) > 1e-5 {
			t.Errorf("row %d: squared norm %v, want 1", r, ss)
		}
	}
	js := filepath.Join(dir, "e.json")
	embed(js, "--normalize")
	var doc struct {
		Words   []string
		Layers  []int
		Vectors map[string][][]float32
	}
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(doc.Words) != "[maji water nyumba]" || fmt.Sprint(doc.Layers) != "[1 2]" || doc.Vectors["2"][2][5] != l2.F32[2*d+5] {
		t.Errorf("json: words %v layers %v", doc.Words, doc.Layers)
	}
	np := filepath.Join(dir, "e.npy")
	embed(np, "--normalize")
	b, _ = os.ReadFile(np)
	hl := int(b[8]) | int(b[9])<<8
	header := string(b[10 : 10+hl])
	if !strings.HasPrefix(string(b), "\x93NUMPY\x01\x00") || (10+hl)%64 != 0 || !strings.Contains(header, fmt.Sprintf("'shape': (2, 3, %d)", d)) || !strings.Contains(header, "'<f4'") {
		t.Fatalf("npy header %q", header)
	}
	data := b[10+hl:]
	if len(data) != 2*3*d*4 {
		t.Fatalf("npy holds %d bytes, want %d", len(data), 2*3*d*4)
	}
	off := (3*d + 2*d + 5) * 4 // layer 2 (second), row 2, element 5
	if got := math.Float32frombits(binary.LittleEndian.Uint32(data[off:])); got != l2.F32[2*d+5] {
		t.Errorf("npy element %v, safetensors %v", got, l2.F32[2*d+5])
	}
	if rc := runMain([]string{"embed", "--model", ck, "--words", "-", "--out", filepath.Join(dir, "e.txt")}, &stderr); rc != 2 {
		t.Errorf("--out e.txt: rc %d", rc)
	}
}
