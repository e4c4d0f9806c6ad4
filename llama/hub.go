package llama

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// checkpointWant says what a model argument must name; it ends the errors
// of ResolveModel.
const checkpointWant = "want a Hugging Face checkpoint folder (config.json + *.safetensors, with tokenizer.json) or a repo id org/name in the local Hugging Face cache"

// HubCache is the Hugging Face hub cache folder, found as huggingface_hub
// finds it: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE (its older name), else
// HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub. A leading ~ is the home folder. Empty variables
// count as unset.
func HubCache() string {
	for _, k := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if v := os.Getenv(k); v != "" {
			return expandHome(v)
		}
	}
	if v := os.Getenv("HF_HOME"); v != "" {
		return filepath.Join(expandHome(v), "hub")
	}
	if v := os.Getenv("XDG_CACHE_HOME"); v != "" {
		return filepath.Join(expandHome(v), "huggingface", "hub")
	}
	return filepath.Join(expandHome("~/.cache"), "huggingface", "hub")
}

// expandHome replaces a leading ~ (alone or before a separator) with the
// home folder, as Python's os.path.expanduser does.
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[1:])
}

// repoIDPattern is huggingface_hub's validate_repo_id (ASCII): an optional
// namespace and a name of letters, digits, '-', '_' and '.', neither starting
// nor ending with '-' or '.'.
var repoIDPattern = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?/)?[A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$`)

// commitPattern is a full commit hash.
var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// parseRepoID splits "org/name[@revision]" into the repo id and revision
// ("main" when none is given); ok is false when arg is not of that form.
func parseRepoID(arg string) (repo, rev string, ok bool) {
	repo, rev = arg, "main"
	if i := strings.LastIndexByte(arg, '@'); i >= 0 {
		repo, rev = arg[:i], arg[i+1:]
	}
	if !repoIDPattern.MatchString(repo) || strings.Contains(repo, "--") || strings.Contains(repo, "..") || rev == "" {
		return "", "", false
	}
	for _, part := range strings.Split(rev, "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, '\\') {
			return "", "", false
		}
	}
	return repo, rev, true
}

// hubRepoFolder is the cache folder name of a model repo:
// models--org--name.
func hubRepoFolder(repo string) string { return "models--" + strings.ReplaceAll(repo, "/", "--") }

// ResolveModel turns a --model argument into a checkpoint folder, as
// transformers' from_pretrained does offline. A path that exists is used as
// it is (dir is arg unchanged) when it is a folder with config.json; a
// Hugging Face cache folder of one repo (models--org--name) means its
// snapshot of refs/main. Otherwise arg is a repo id, org/name or
// org/name@revision (a branch or tag name under refs/, or a full commit
// hash), looked up in HubCache(): models--org--name/refs/REVISION holds a
// commit hash, and snapshots/HASH/ is the checkpoint folder. repoID is the
// repo id (without revision) when arg was one or a path inside the cache,
// "" for any other folder.
//
// A GGUF file, any other file, a folder without config.json, and a repo id
// that is not in the cache are errors of one line that say what was
// expected.
func ResolveModel(arg string) (dir, repoID string, err error) {
	if arg == "" {
		return "", "", errors.New("no model given: " + checkpointWant)
	}
	fi, statErr := os.Stat(arg)
	switch {
	case statErr == nil && !fi.IsDir():
		return "", "", fileModelError(arg)
	case statErr == nil:
		if _, err := os.Stat(filepath.Join(arg, "config.json")); err == nil {
			return arg, repoOfSnapshot(arg), nil
		}
		if isHubRepoFolder(arg) {
			repo := strings.ReplaceAll(strings.TrimPrefix(filepath.Base(filepath.Clean(arg)), "models--"), "--", "/")
			dir, err := hubSnapshot(arg, repo, "main")
			return dir, repo, err
		}
		return "", "", folderModelError(arg)
	case !errors.Is(statErr, fs.ErrNotExist):
		return "", "", statErr
	}
	repo, rev, ok := parseRepoID(arg)
	if !ok {
		return "", "", fmt.Errorf("%s: no such file or folder; %s", arg, checkpointWant)
	}
	cache := HubCache()
	repoDir := filepath.Join(cache, hubRepoFolder(repo))
	if fi, err := os.Stat(repoDir); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("%s: not a folder here, and not in the Hugging Face cache %s (no %s; set HF_HUB_CACHE or HF_HOME, or download it first: huggingface-cli download %s)",
			arg, cache, hubRepoFolder(repo), repo)
	}
	dir, err = hubSnapshot(repoDir, repo, rev)
	return dir, repo, err
}

// hubSnapshot returns the snapshot folder of revision rev (a name under
// refs/ or a full commit hash) in the cache folder repoDir of repo.
func hubSnapshot(repoDir, repo, rev string) (string, error) {
	hash := rev
	ref := filepath.Join(repoDir, "refs", filepath.FromSlash(rev))
	b, err := os.ReadFile(ref)
	switch {
	case err == nil:
		hash = strings.TrimSpace(string(b))
		if hash == "" || strings.ContainsAny(hash, `/\`) || hash == "." || hash == ".." {
			return "", fmt.Errorf("%s: %s does not hold a commit hash", repo, ref)
		}
	case !commitPattern.MatchString(rev):
		return "", fmt.Errorf("%s: the Hugging Face cache %s has no revision %q (no %s; snapshots here: %s); give org/name@<commit> or the snapshot folder",
			repo, repoDir, rev, ref, listSnapshots(repoDir))
	}
	dir := filepath.Join(repoDir, "snapshots", hash)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s@%s: the Hugging Face cache has no snapshot %s (snapshots here: %s)", repo, rev, dir, listSnapshots(repoDir))
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return "", fmt.Errorf("%s@%s: snapshot %s has no config.json (an incomplete download, or not a transformers model); %s", repo, rev, dir, checkpointWant)
	}
	return dir, nil
}

// listSnapshots names the snapshot folders of a cached repo, for errors.
func listSnapshots(repoDir string) string {
	entries, _ := os.ReadDir(filepath.Join(repoDir, "snapshots"))
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// isHubRepoFolder reports whether dir is one repo's folder of a Hugging
// Face cache (models--org--name with refs/ and snapshots/).
func isHubRepoFolder(dir string) bool {
	if !strings.HasPrefix(filepath.Base(filepath.Clean(dir)), "models--") {
		return false
	}
	for _, sub := range []string{"refs", "snapshots"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// repoOfSnapshot returns the repo id of a snapshot folder of a Hugging
// Face cache (…/models--org--name/snapshots/HASH), "" for another folder.
func repoOfSnapshot(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	snaps := filepath.Dir(abs)
	repoDir := filepath.Base(filepath.Dir(snaps))
	if filepath.Base(snaps) != "snapshots" || !strings.HasPrefix(repoDir, "models--") {
		return ""
	}
	repo := strings.ReplaceAll(strings.TrimPrefix(repoDir, "models--"), "--", "/")
	if !repoIDPattern.MatchString(repo) {
		return ""
	}
	return repo
}

// fileModelError says why the file path is not a checkpoint.
func fileModelError(path string) error {
	base := filepath.Base(path)
	lower := strings.ToLower(base)
	switch {
	case strings.HasSuffix(lower, ".gguf") || hasGGUFMagic(path):
		return fmt.Errorf("%s is a GGUF file (llama.cpp's format), which tli does not read; %s", path, checkpointWant)
	case base == "config.json" || strings.HasSuffix(lower, ".safetensors") || base == "model.safetensors.index.json":
		return fmt.Errorf("%s is a file of a checkpoint; give its folder %s (%s)", path, filepath.Dir(path), checkpointWant)
	}
	return fmt.Errorf("%s is a file; %s", path, checkpointWant)
}

// hasGGUFMagic reports whether the file starts with GGUF's magic bytes.
func hasGGUFMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	n, _ := f.Read(b[:])
	return n == 4 && string(b[:]) == "GGUF"
}

// folderModelError says why the folder (which has no config.json) is not a
// checkpoint, naming the GGUF or safetensors files it holds.
func folderModelError(dir string) error {
	entries, _ := os.ReadDir(dir)
	var gguf []string
	safetensors, adapter := false, false
	for _, e := range entries {
		lower := strings.ToLower(e.Name())
		switch {
		case e.Name() == "adapter_config.json":
			adapter = true
		case strings.HasSuffix(lower, ".gguf"):
			gguf = append(gguf, e.Name())
		case strings.HasSuffix(lower, ".safetensors"):
			safetensors = true
		}
	}
	switch {
	case adapter:
		return fmt.Errorf("%s is a PEFT adapter folder (adapter_config.json), not a model: give it as --adapter and its base model as --model; %s", dir, checkpointWant)
	case len(gguf) > 0:
		return fmt.Errorf("%s has no config.json but GGUF files (%s, llama.cpp's format), which tli does not read; %s", dir, strings.Join(gguf, ", "), checkpointWant)
	case safetensors:
		return fmt.Errorf("%s has safetensors files but no config.json (an adapter folder, or an incomplete checkpoint?); %s", dir, checkpointWant)
	}
	return fmt.Errorf("%s has no config.json; %s", dir, checkpointWant)
}
