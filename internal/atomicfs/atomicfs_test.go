package atomicfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func readAll(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// names lists dir's entries, so tests can check no temporary is left.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteReplacesOrKeeps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.txt")
	if err := WriteFile(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, p); got != "two" {
		t.Fatalf("got %q, want two", got)
	}
	// A failing writer leaves the old content and no temporary.
	boom := errors.New("boom")
	err := Write(p, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if got := readAll(t, p); got != "two" {
		t.Fatalf("after a failed write got %q, want two", got)
	}
	if n := names(t, dir); len(n) != 1 || n[0] != "f.txt" {
		t.Fatalf("folder holds %v, want only f.txt", n)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestDirCommit(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "out")
	build := func(content string) *Dir {
		d, err := NewDir(final)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(filepath.Base(d.Path()), ".out.tmp-") {
			t.Fatalf("temporary folder %s does not start with .out.tmp-", d.Path())
		}
		if err := WriteFile(filepath.Join(d.Path(), "a"), []byte(content)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := build("one")
	if _, err := os.Stat(final); !os.IsNotExist(err) {
		t.Fatal("final folder exists before Commit")
	}
	if err := d.Commit(false); err != nil {
		t.Fatal(err)
	}
	d.Abort() // no-op after Commit
	if got := readAll(t, filepath.Join(final, "a")); got != "one" {
		t.Fatalf("got %q", got)
	}
	// Without replace, an existing folder is kept and the error says so.
	d = build("two")
	if err := d.Commit(false); !errors.Is(err, ErrExist) {
		t.Fatalf("Commit(false) over an existing folder: %v, want ErrExist", err)
	}
	d.Abort()
	if got := readAll(t, filepath.Join(final, "a")); got != "one" {
		t.Fatalf("refused commit changed the folder: %q", got)
	}
	// An aborted build leaves the old folder and nothing else.
	d = build("three")
	d.Abort()
	if n := names(t, parent); len(n) != 1 || n[0] != "out" {
		t.Fatalf("parent holds %v after Abort, want only out", n)
	}
	// With replace, the new one takes the name and the old one is gone.
	d = build("four")
	if err := d.Commit(true); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, filepath.Join(final, "a")); got != "four" {
		t.Fatalf("got %q, want four", got)
	}
	if n := names(t, parent); len(n) != 1 || n[0] != "out" {
		t.Fatalf("parent holds %v after a replacing Commit, want only out", n)
	}
}

func TestCheckDisjoint(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "model")
	os.MkdirAll(filepath.Join(model, "sub"), 0o755)
	link := filepath.Join(root, "link")
	if err := os.Symlink(model, link); err != nil {
		t.Fatal(err)
	}
	in := Input{Flag: "--model", Path: model}
	for _, c := range []struct {
		out, want string
	}{
		{model, "is the same path as --model"},
		{model + "/", "is the same path as --model"},
		{link, "is the same path as --model"},
		{root, "contains --model"},
		{filepath.Join(model, "merged"), "lies inside --model"},
		{filepath.Join(link, "sub", "new", "x"), "lies inside --model"},
		{filepath.Join(root, "model2"), ""},
		{filepath.Join(root, "other", "model"), ""},
	} {
		err := CheckDisjoint("--out", c.out, in, Input{Flag: "--adapter"})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("out %s: unexpected error %v", c.out, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("out %s: error %v, want one containing %q", c.out, err, c.want)
		}
	}
}

func TestCommitInto(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "run")
	os.MkdirAll(filepath.Join(final, "scan"), 0o755)
	WriteFile(filepath.Join(final, "scan", "old.csv"), []byte("old"))
	WriteFile(filepath.Join(final, "notes.txt"), []byte("mine"))
	WriteFile(filepath.Join(final, "report.md"), []byte("old report"))
	d, err := NewDir(final)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(d.Path(), "scan"), 0o755)
	WriteFile(filepath.Join(d.Path(), "scan", "scan.csv"), []byte("new"))
	WriteFile(filepath.Join(d.Path(), "report.md"), []byte("new report"))
	if err := d.CommitInto("report.md"); err != nil {
		t.Fatal(err)
	}
	// The scan folder is the new one whole; the user's own file stays.
	if n := names(t, filepath.Join(final, "scan")); len(n) != 1 || n[0] != "scan.csv" {
		t.Fatalf("scan holds %v, want only scan.csv", n)
	}
	if got := readAll(t, filepath.Join(final, "report.md")); got != "new report" {
		t.Fatalf("report.md = %q", got)
	}
	if got := readAll(t, filepath.Join(final, "notes.txt")); got != "mine" {
		t.Fatalf("notes.txt = %q", got)
	}
	if n := names(t, parent); len(n) != 1 || n[0] != "run" {
		t.Fatalf("parent holds %v, want only run", n)
	}
	// Into an empty existing folder, the build takes its place.
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	d, _ = NewDir(empty)
	WriteFile(filepath.Join(d.Path(), "a"), []byte("x"))
	if err := d.CommitInto(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, filepath.Join(empty, "a")); got != "x" {
		t.Fatalf("a = %q", got)
	}
}

// A folder whose path has ".tmp-" in a parent's name (a build nested in a
// build) still swaps.
func TestNestedDirs(t *testing.T) {
	outer, err := NewDir(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Abort()
	for i, content := range []string{"one", "two"} {
		inner, err := NewDir(filepath.Join(outer.Path(), "train"))
		if err != nil {
			t.Fatal(err)
		}
		WriteFile(filepath.Join(inner.Path(), "a"), []byte(content))
		if err := inner.Commit(i > 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := readAll(t, filepath.Join(outer.Path(), "train", "a")); got != "two" {
		t.Fatalf("a = %q", got)
	}
	if n := names(t, outer.Path()); len(n) != 1 {
		t.Fatalf("outer holds %v, want only train", n)
	}
}

// Leftovers of a killed process of this host are removed by the next build
// of the same name; those of live processes and other hosts stay.
func TestRemoveStale(t *testing.T) {
	if !canProbe {
		t.Skip("no process probe on this system")
	}
	parent := t.TempDir()
	final := filepath.Join(parent, "out")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot start a process to get a dead pid:", err)
	}
	dead := cmd.Process.Pid
	host, _, _ := strings.Cut(owner(), "-")
	mk := func(name string) string {
		p := filepath.Join(parent, name)
		os.MkdirAll(filepath.Join(p, "sub"), 0o755)
		return p
	}
	stale := mk(fmt.Sprintf(".out.tmp-%s-%d-123", host, dead))
	staleOld := mk(fmt.Sprintf(".out.old-%s-%d-0", host, dead))
	live := mk(fmt.Sprintf(".out.tmp-%s-%d-456", host, os.Getppid()))
	other := mk(fmt.Sprintf(".out.tmp-otherhost-%d-789", dead))
	otherName := mk(fmt.Sprintf(".outx.tmp-%s-%d-1", host, dead))
	d, err := NewDir(final)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Abort()
	for _, c := range []struct {
		path string
		kept bool
	}{{stale, false}, {staleOld, false}, {live, true}, {other, true}, {otherName, true}} {
		_, err := os.Stat(c.path)
		if kept := err == nil; kept != c.kept {
			t.Errorf("%s: kept %v, want %v", filepath.Base(c.path), kept, c.kept)
		}
	}
}
