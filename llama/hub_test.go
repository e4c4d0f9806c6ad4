package llama

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHubRepo lays out one repo of a Hugging Face cache under cache as
// huggingface_hub does: refs/NAME holding a commit hash, and
// snapshots/HASH/ with config.json for each commit.
func fakeHubRepo(t *testing.T, cache, repo string, refs map[string]string, commits ...string) string {
	t.Helper()
	repoDir := filepath.Join(cache, "models--"+strings.ReplaceAll(repo, "/", "--"))
	for name, hash := range refs {
		p := filepath.Join(repoDir, "refs", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(hash), 0o644); err != nil { // no newline, as huggingface_hub writes it
			t.Fatal(err)
		}
	}
	for _, c := range commits {
		snap := filepath.Join(repoDir, "snapshots", c)
		if err := os.MkdirAll(snap, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(snap, "config.json"), []byte(`{"model_type":"llama"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(repoDir, "blobs"), 0o755)
	return repoDir
}

func clearHubEnv(t *testing.T) {
	for _, k := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(k, "")
	}
}

// TestHubCache: the cache folder is found from the same variables, in the
// same order, as huggingface_hub finds it.
func TestHubCache(t *testing.T) {
	clearHubEnv(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	if got, want := HubCache(), filepath.Join(home, ".cache", "huggingface", "hub"); got != want {
		t.Errorf("default: %s, want %s", got, want)
	}
	t.Setenv("XDG_CACHE_HOME", "/x")
	if got, want := HubCache(), "/x/huggingface/hub"; got != want {
		t.Errorf("XDG_CACHE_HOME: %s, want %s", got, want)
	}
	t.Setenv("HF_HOME", "~/hf")
	if got, want := HubCache(), filepath.Join(home, "hf", "hub"); got != want {
		t.Errorf("HF_HOME: %s, want %s", got, want)
	}
	t.Setenv("HUGGINGFACE_HUB_CACHE", "/old")
	if got := HubCache(); got != "/old" {
		t.Errorf("HUGGINGFACE_HUB_CACHE: %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "/new")
	if got := HubCache(); got != "/new" {
		t.Errorf("HF_HUB_CACHE: %s", got)
	}
}

func TestResolveModel(t *testing.T) {
	clearHubEnv(t)
	const c1, c2 = "0123456789abcdef0123456789abcdef01234567", "89abcdef0123456789abcdef0123456789abcdef"
	home := t.TempDir()
	t.Setenv("HOME", home)
	hfHome := t.TempDir()
	cache := filepath.Join(hfHome, "hub")
	repoDir := fakeHubRepo(t, cache, "org/tiny-model", map[string]string{"main": c1, "v1.0": c2, "refs/pr/1": c2}, c1, c2)
	fakeHubRepo(t, cache, "gpt2", map[string]string{"main": c1}, c1)

	for _, env := range []struct{ k, v string }{{"HF_HOME", hfHome}, {"HF_HUB_CACHE", cache}} {
		clearHubEnv(t)
		t.Setenv(env.k, env.v)
		dir, repo, err := ResolveModel("org/tiny-model")
		if err != nil || dir != filepath.Join(repoDir, "snapshots", c1) || repo != "org/tiny-model" {
			t.Errorf("%s: org/tiny-model -> %q, %q, %v", env.k, dir, repo, err)
		}
	}
	// The default cache under the home folder.
	clearHubEnv(t)
	defRepo := fakeHubRepo(t, filepath.Join(home, ".cache", "huggingface", "hub"), "org/tiny-model", map[string]string{"main": c2}, c2)
	if dir, _, err := ResolveModel("org/tiny-model"); err != nil || dir != filepath.Join(defRepo, "snapshots", c2) {
		t.Errorf("default cache: %q, %v", dir, err)
	}

	t.Setenv("HF_HUB_CACHE", cache)
	for arg, want := range map[string]string{
		"org/tiny-model@main":      c1,
		"org/tiny-model@v1.0":      c2,
		"org/tiny-model@refs/pr/1": c2,
		"org/tiny-model@" + c2:     c2,
		"gpt2":                     c1,
	} {
		dir, repo, err := ResolveModel(arg)
		wantRepo := strings.SplitN(arg, "@", 2)[0]
		if err != nil || filepath.Base(dir) != want || repo != wantRepo {
			t.Errorf("%s -> %q, %q, %v; want snapshot %s", arg, dir, repo, err, want)
		}
	}

	// A path that exists is used as it is; a snapshot folder given as a
	// path, and a repo's cache folder, know their repo id.
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "config.json"), []byte(`{}`), 0o644)
	if dir, repo, err := ResolveModel(local); err != nil || dir != local || repo != "" {
		t.Errorf("local folder -> %q, %q, %v", dir, repo, err)
	}
	snap := filepath.Join(repoDir, "snapshots", c2)
	if dir, repo, err := ResolveModel(snap); err != nil || dir != snap || repo != "org/tiny-model" {
		t.Errorf("snapshot path -> %q, %q, %v", dir, repo, err)
	}
	if dir, repo, err := ResolveModel(repoDir); err != nil || dir != filepath.Join(repoDir, "snapshots", c1) || repo != "org/tiny-model" {
		t.Errorf("repo cache folder -> %q, %q, %v", dir, repo, err)
	}
	// A folder here named like a repo id wins over the cache.
	cwd := t.TempDir()
	t.Chdir(cwd)
	os.MkdirAll(filepath.Join(cwd, "org", "tiny-model"), 0o755)
	os.WriteFile(filepath.Join(cwd, "org", "tiny-model", "config.json"), []byte(`{}`), 0o644)
	if dir, repo, err := ResolveModel("org/tiny-model"); err != nil || dir != "org/tiny-model" || repo != "" {
		t.Errorf("local org/tiny-model -> %q, %q, %v", dir, repo, err)
	}
}

// TestResolveModelErrors: what is not a checkpoint gets one line saying
// what was expected.
func TestResolveModelErrors(t *testing.T) {
	clearHubEnv(t)
	const c1 = "0123456789abcdef0123456789abcdef01234567"
	cache := t.TempDir()
	t.Setenv("HF_HUB_CACHE", cache)
	fakeHubRepo(t, cache, "org/no-main", map[string]string{"v1": c1}, c1)
	partial := fakeHubRepo(t, cache, "org/partial", map[string]string{"main": c1})
	os.MkdirAll(filepath.Join(partial, "snapshots", c1), 0o755)

	tmp := t.TempDir()
	gguf := filepath.Join(tmp, "model-Q8_0.gguf")
	os.WriteFile(gguf, []byte("GGUF\x03\x00\x00\x00"), 0o644)
	noExt := filepath.Join(tmp, "weights")
	os.WriteFile(noExt, []byte("GGUF\x03\x00\x00\x00"), 0o644)
	ggufDir := filepath.Join(tmp, "gguf-folder")
	os.MkdirAll(ggufDir, 0o755)
	os.WriteFile(filepath.Join(ggufDir, "m.gguf"), []byte("GGUF"), 0o644)
	empty := filepath.Join(tmp, "empty")
	os.MkdirAll(empty, 0o755)
	adapter := filepath.Join(tmp, "adapter")
	os.MkdirAll(adapter, 0o755)
	os.WriteFile(filepath.Join(adapter, "adapter_config.json"), []byte(`{}`), 0o644)
	os.WriteFile(filepath.Join(adapter, "adapter_model.safetensors"), nil, 0o644)
	cfgFile := filepath.Join(tmp, "config.json")
	os.WriteFile(cfgFile, []byte(`{}`), 0o644)

	for _, c := range []struct{ arg, want string }{
		{gguf, "is a GGUF file"},
		{noExt, "is a GGUF file"},
		{ggufDir, "GGUF files (m.gguf"},
		{empty, "has no config.json"},
		{adapter, "PEFT adapter folder"},
		{cfgFile, "give its folder " + tmp},
		{"org/absent", "not in the Hugging Face cache " + cache},
		{"org/no-main", `no revision "main"`},
		{"org/no-main@v2", `no revision "v2"`},
		{"org/no-main@" + strings.Repeat("f", 40), "no snapshot"},
		{"org/partial", "has no config.json"},
		{"./not/here", "no such file or folder"},
		{"a/b/c", "no such file or folder"},
		{"", "no model given"},
	} {
		_, _, err := ResolveModel(c.arg)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v; want one line with %q", c.arg, err, c.want)
		}
	}
}
