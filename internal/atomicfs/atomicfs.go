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
	"strconv"
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
	removeStale(path)
	f, err := os.CreateTemp(dir, tmpPrefix(path)+"*")
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

// tmpPrefix is the start of the temporary names for final: a dot, final's
// name, ".tmp-", then the host and process that own it, so a later run can
// tell a dead process's leftovers from a live one's work.
func tmpPrefix(final string) string {
	return "." + filepath.Base(final) + ".tmp-" + owner() + "-"
}

// owner is "host-pid" (the host name cut to letters, digits, '.' and '_').
func owner() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' {
			return r
		}
		return -1
	}, host)
	return host + "-" + strconv.Itoa(os.Getpid())
}

// removeStale removes the temporary files and folders beside final that a
// process of this host left when it was killed (its pid is gone). Those of
// live processes, of other hosts (a shared file system) and of hosts whose
// processes cannot be probed are left alone.
func removeStale(final string) {
	if !canProbe {
		return
	}
	dir, base := filepath.Split(filepath.Clean(final))
	if dir == "" {
		dir = "."
	}
	host, _, _ := strings.Cut(owner(), "-")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		for _, kind := range []string{".tmp-", ".old-"} {
			rest, ok := strings.CutPrefix(e.Name(), "."+base+kind+host+"-")
			if !ok {
				continue
			}
			pidText, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidText)
			if err != nil || pid <= 0 || pid == os.Getpid() || alive(pid) {
				continue
			}
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
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
	removeStale(final)
	tmp, err := os.MkdirTemp(parent, tmpPrefix(final))
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
// set; with replace, the two are swapped in one step where the system can
// (Linux), else the old folder is moved aside, the new one renamed in, and
// only then the old one removed: the final name holds the old complete
// folder or the new complete one (elsewhere than Linux, a crash between the
// two renames leaves the old one under a hidden ".old-" name).
func (d *Dir) Commit(replace bool) error {
	if d.done {
		return errors.New("atomicfs: Commit after Commit or Abort")
	}
	old := ""
	if _, err := os.Lstat(d.final); err == nil {
		if !replace {
			return fmt.Errorf("%s: %w", d.final, ErrExist)
		}
		// Where the system can, swap the two names in one step: the
		// temporary name then holds the old folder, which is removed.
		if exchange(d.tmp, d.final) {
			d.done = true
			syncDir(filepath.Dir(d.final))
			os.RemoveAll(d.tmp)
			return nil
		}
		old = d.aside()
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

// aside is a free name beside the final folder that an existing final
// folder is moved to while it is being replaced.
func (d *Dir) aside() string {
	base := filepath.Join(filepath.Dir(d.final), "."+filepath.Base(d.final)+".old-"+owner()+"-")
	for i := 0; ; i++ {
		p := base + strconv.Itoa(i)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			return p
		}
	}
}

// CommitInto is Commit for an output folder that may already hold other
// files: when the final folder does not exist or is empty, the temporary one
// is renamed to it; otherwise each entry of the temporary folder is renamed
// over the final folder's entry of the same name (a folder entry is swapped
// as Commit(true) swaps), in name order with the names in last moved at the
// end (a report that marks the whole as complete), and files of the final
// folder that the new build does not have are left alone. Each entry is
// replaced atomically; the set of entries is not, unless the final folder
// holds only names the build replaces, which is then swapped whole.
func (d *Dir) CommitInto(last ...string) error {
	if d.done {
		return errors.New("atomicfs: Commit after Commit or Abort")
	}
	existing, err := os.ReadDir(d.final)
	if os.IsNotExist(err) || (err == nil && len(existing) == 0) {
		if err == nil {
			os.Remove(d.final)
		}
		return d.Commit(false)
	}
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return err
	}
	// A folder that holds nothing the new build does not replace (an
	// earlier output of the same command) is swapped whole, in one step.
	building := map[string]bool{}
	for _, e := range entries {
		building[e.Name()] = true
	}
	subset := true
	for _, e := range existing {
		subset = subset && building[e.Name()]
	}
	if subset {
		return d.Commit(true)
	}
	isLast := map[string]bool{}
	for _, n := range last {
		isLast[n] = true
	}
	var order []string
	for _, pass := range []bool{false, true} {
		for _, e := range entries {
			if isLast[e.Name()] == pass {
				order = append(order, e.Name())
			}
		}
	}
	for _, name := range order {
		src, dst := filepath.Join(d.tmp, name), filepath.Join(d.final, name)
		fi, err := os.Lstat(dst)
		if err == nil && fi.IsDir() {
			sub := &Dir{final: dst, tmp: src}
			if err := sub.Commit(true); err != nil {
				return err
			}
			continue
		}
		if err := os.Rename(src, dst); err != nil {
			return err
		}
	}
	syncDir(d.final)
	d.done = true
	os.RemoveAll(d.tmp)
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
