package bench

import (
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tli-project/tli/internal/peer"
)

// TestGEMMTable runs bench/gemm_table.py on one small shape, one round, and
// checks both of its tables: a measured rate for every tli path, for
// PyTorch and for gonum, and ratios that are the quotients of the rates; it
// needs the PyTorch peer (mandatory in CI).
func TestGEMMTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kernels test binary and runs the PyTorch peer")
	}
	py := peer.Torch(t)
	const shape = "f32/80x4096x4096"
	out, err := exec.Command(py, filepath.Join(peer.Root(), "bench", "gemm_table.py"), "--rounds", "1", "--calls", "1", shape).CombinedOutput()
	if err != nil {
		t.Fatalf("gemm_table.py: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	// tables maps each table's first header cell to its header and the
	// cells of the row for shape.
	type table struct{ head, row []string }
	tables := map[string]table{}
	var head []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == shape {
			tables[head[0]] = table{head, cells}
		} else {
			head = cells
		}
	}
	num := func(tb table, col string) float64 {
		for i, h := range tb.head {
			if h == col {
				v, err := strconv.ParseFloat(tb.row[i], 64)
				if err != nil || v <= 0 {
					t.Fatalf("column %q of %v: %q is not a positive figure", col, tb.row, tb.row[i])
				}
				return v
			}
		}
		t.Fatalf("no column %q in %v", col, tb.head)
		return 0
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.006+0.01*want }

	main, ok := tables["benchmark (dtype/MxKxN)"]
	if !ok {
		t.Fatalf("no %s row in the main table", shape)
	}
	// tli/torch compares the first path, the one dispatch selects.
	tli, paths := 0.0, 0
	for _, h := range main.head {
		if strings.HasPrefix(h, "tli ") && h != "tli/torch" {
			if v := num(main, h); paths == 0 {
				tli = v
			}
			paths++
		}
	}
	if paths == 0 {
		t.Fatalf("no tli path column in %v", main.head)
	}
	torch := max(num(main, "torch matmul"), num(main, "torch oneDNN"))
	// Rates are printed rounded to whole GFLOP/s: each is off by up to 0.5,
	// which moves tli/torch by up to 0.5/torch + 0.5·tli/torch² (a lot when
	// a loaded machine gives torch few GFLOP/s).
	if r := num(main, "tli/torch"); math.Abs(r-tli/torch) > 0.01+0.5/torch+0.5*tli/(torch*torch) {
		t.Errorf("tli/torch = %v, rates give %v/%v = %.3f", r, tli, torch, tli/torch)
	}
	gen, ok := tables["generic vs gonum"]
	if !ok {
		t.Fatalf("no %s row in the generic-vs-gonum table", shape)
	}
	if g, o, r := num(gen, "generic"), num(gen, "gonum Sgemm"), num(gen, "generic/gonum"); !near(r, g/o) {
		t.Errorf("generic/gonum = %v, rates give %v/%v = %.3f", r, g, o, g/o)
	}
}
