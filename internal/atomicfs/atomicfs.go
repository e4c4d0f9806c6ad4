// Package atomicfs writes files and folders so that a crash, a kill -9, a
// full disk or a failed step never leaves a half-written result where a
// complete one is expected, and never destroys the previous complete one.
//
// A file is written to a temporary name in its own folder, synced, and
// renamed over its final name (Write, WriteFile). A folder is built under a
// temporary name beside its final one (NewDir) and renamed into place only
// when it is complete (Dir.Commit); an existing folder it replaces is moved
// aside first and removed only after the new one is in place. Temporary
// names start with a dot and contain ".tmp-", so nothing half-written looks
// like a result.
package atomicfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrExist is returned by Dir.Commit and CreateExclusive when the final
// name exists and replacing it was not asked for.
var ErrExist = fs.ErrExist

// WriteFile writes data to path atomically with mode 0644.
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write writes the content produced by write to path atomically: write gets
// a buffered writer on a temporary file in path's folder; when it succeeds
// the file is flushed, synced, given mode 0644 and renamed over path, and
// the folder is synced so the rename survives a crash. When write fails,
// path is left as it was and the temporary file is removed.
func Write(path string, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir syncs a folder so that renames in it survive a crash; not every
// platform can sync a folder, so failure is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Dir is a folder being built under a temporary name beside its final one.
type Dir struct {
	final string
	tmp   string
	done  bool
}

// NewDir creates an empty temporary folder beside final (creating final's
// parent if needed). Write the folder's files under Path, then Commit; call
// Abort (safe after Commit) to remove it on every other path.
func NewDir(final string) (*Dir, error) {
	final = filepath.Clean(final)
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(final)+".tmp-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Dir{final: final, tmp: tmp}, nil
}

// Path is the temporary folder to write into.
func (d *Dir) Path() string { return d.tmp }

// Final is the name the folder gets on Commit.
func (d *Dir) Final() string { return d.final }

// Commit renames the temporary folder to its final name. If the final name
// exists, Commit fails with an error wrapping ErrExist unless replace is
// set; with replace, the old folder is moved aside, the new one renamed in,
// and only then the old one removed, so at every moment the final name holds
// the old complete folder or the new complete one.
func (d *Dir) Commit(replace bool) error {
	if d.done {
		return errors.New("atomicfs: Commit after Commit or Abort")
	}
	old := ""
	if _, err := os.Lstat(d.final); err == nil {
		if !replace {
			return fmt.Errorf("%s: %w", d.final, ErrExist)
		}
		old = strings.Replace(d.tmp, ".tmp-", ".old-", 1)
		if err := os.Rename(d.final, old); err != nil {
			return err
		}
	}
	if err := os.Rename(d.tmp, d.final); err != nil {
		if old != "" {
			os.Rename(old, d.final)
		}
		return err
	}
	d.done = true
	syncDir(filepath.Dir(d.final))
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// Abort removes the temporary folder unless it was committed.
func (d *Dir) Abort() {
	if !d.done {
		os.RemoveAll(d.tmp)
		d.done = true
	}
}

// resolve returns the absolute, symlink-free form of p. Only the longest
// existing prefix can have its links resolved; the rest is joined as is.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// Input is a path a command reads, with the flag (or field) that named it.
type Input struct {
	Flag, Path string
}

// CheckDisjoint refuses an output path that is, contains, or lies inside any
// of the inputs (after making both absolute and resolving symbolic links):
// writing or replacing it could destroy an input. outFlag and the inputs'
// flags name them in the error; inputs with an empty Path are skipped.
func CheckDisjoint(outFlag, out string, inputs ...Input) error {
	o, err := resolve(out)
	if err != nil {
		return err
	}
	for _, input := range inputs {
		flag, in := input.Flag, input.Path
		if in == "" {
			continue
		}
		i, err := resolve(in)
		if err != nil {
			return err
		}
		switch {
		case o == i:
			return fmt.Errorf("%s %s is the same path as %s: writing it would destroy the input", outFlag, out, flag)
		case within(i, o):
			return fmt.Errorf("%s %s contains %s %s: writing it could destroy the input", outFlag, out, flag, in)
		case within(o, i):
			return fmt.Errorf("%s %s lies inside %s %s: write the output elsewhere", outFlag, out, flag, in)
		}
	}
	return nil
}

// within reports whether p lies strictly inside dir (both clean, absolute).
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
