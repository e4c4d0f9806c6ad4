package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/tli-project/tli/kernels"
)

func TestEnv(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", "/data/hf-cache")
	var buf bytes.Buffer
	envOut = &buf
	defer func() { envOut = os.Stdout }()
	mustRun(t, "env")
	out := buf.String()
	l2, _ := kernels.CacheSizes()
	for _, want := range []string{
		"go       " + runtime.Version(),
		"kernels  " + kernels.Path() + " (",
		"this CPU supports " + strings.Join(kernels.Paths(), ", "),
		fmt.Sprintf("L2 %d KiB per core", l2>>10),
		fmt.Sprintf("threads  %d ", runtime.GOMAXPROCS(0)),
		"hf cache /data/hf-cache ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tli env output lacks %q:\n%s", want, out)
		}
	}
	if code, stderr := tliRun(t, "env", "extra"); code != 2 || !strings.Contains(stderr, "unexpected argument") {
		t.Errorf("tli env extra: exit %d, %q", code, stderr)
	}
}
