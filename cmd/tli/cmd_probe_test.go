package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tli-project/tli/engine"
	"github.com/tli-project/tli/llama"
	"github.com/tli-project/tli/llama/tokenizer"
	"github.com/tli-project/tli/lora"
)

// TestProbeAdapter checks that tli probe --adapter generates what the
// merged model generates, and something else than the base model.
func TestProbeAdapter(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	if err := llama.Synth(ck, llama.SynthOptions{Layers: 2, Seed: 8}); err != nil {
		t.Fatal(err)
	}
	cfg, err := llama.LoadConfig(filepath.Join(ck, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.New(lora.PaperConfig(), cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Params() { // a trained-looking adapter: B non-zero
		if strings.Contains(p.Name, "lora_B") {
			for i := range p.Data {
				p.Data[i] = float32((i%7)-3) * 0.05
			}
		}
	}
	ad := filepath.Join(dir, "adapter")
	if err := a.Save(ad); err != nil {
		t.Fatal(err)
	}
	probe := func(extra ...string) string {
		var buf, stderr bytes.Buffer
		probeOut = &buf
		defer func() { probeOut = os.Stdout }()
		args := append([]string{"probe", "--model", ck, "--prompt", "mama na mtoto", "--max-new-tokens", "8", "--dtype", "f32", "--ids"}, extra...)
		if rc := runMain(args, &stderr); rc != 0 {
			t.Fatalf("probe %v: rc %d: %s", extra, rc, stderr.String())
		}
		return buf.String()
	}
	base, adapted := probe(), probe("--adapter", ad)

	m, err := llama.Load(ck, llama.LoadOptions{DType: engine.F32, MaxLayer: llama.AllLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, _ := tokenizer.LoadDir(ck)
	la, err := lora.Load(ad, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Merge(m); err != nil {
		t.Fatal(err)
	}
	gen, err := m.Generate(tok.Encode("mama na mtoto", true), llama.GenerateOptions{MaxNewTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	if want := tok.Decode(gen, true) + "\n" + fmt.Sprint(gen) + "\n"; adapted != want {
		t.Fatalf("probe --adapter printed %q, merged model generates %q", adapted, want)
	}
	if base == adapted {
		t.Fatalf("the adapter did not change the continuation %q", base)
	}
	// --json: the ids scripts compare.
	var js struct {
		Prompt       string `json:"prompt"`
		PromptIDs    []int  `json:"prompt_ids"`
		GeneratedIDs []int  `json:"generated_ids"`
		Text         string `json:"text"`
	}
	out := probe("--adapter", ad, "--json")
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if js.Prompt != "mama na mtoto" || fmt.Sprint(js.PromptIDs) != fmt.Sprint(tok.Encode("mama na mtoto", true)) ||
		fmt.Sprint(js.GeneratedIDs) != fmt.Sprint(gen) || js.Text != tok.Decode(gen, true) {
		t.Errorf("--json = %+v, want ids %v and text %q", js, gen, tok.Decode(gen, true))
	}
}
