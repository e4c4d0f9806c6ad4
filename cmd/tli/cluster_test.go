package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tli-project/tli/internal/peer"
	"github.com/tli-project/tli/tli"
)

// TestKubernetesManifest: examples/sweep-k8s.yaml parses, is an Indexed
// Job whose --shards equals its completions, and JOB_COMPLETION_INDEX
// 0..completions-1 gives every cell of its grid to exactly one pod.
func TestKubernetesManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "sweep-k8s.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type job struct {
		Kind string `yaml:"kind"`
		Spec struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int    `yaml:"completions"`
			Parallelism    int    `yaml:"parallelism"`
			Template       struct {
				Spec struct {
					RestartPolicy string `yaml:"restartPolicy"`
					Containers    []struct {
						Command []string `yaml:"command"`
						Args    []string `yaml:"args"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var j *job
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc job
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.Kind == "Job" {
			j = &doc
		}
	}
	if j == nil || j.Spec.CompletionMode != "Indexed" || j.Spec.Completions < 1 || j.Spec.Template.Spec.RestartPolicy != "Never" ||
		len(j.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("not an Indexed Job with one container: %+v", j)
	}
	c := j.Spec.Template.Spec.Containers[0]
	args := append(c.Command[1:], c.Args...)
	if len(c.Command) == 0 || c.Command[0] != "tli" || args[0] != "sweep" {
		t.Fatalf("container runs %v %v, want tli sweep", c.Command, c.Args)
	}
	flags := map[string]string{}
	for _, a := range args[1:] {
		k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			t.Fatalf("argument %q: want --flag=value", a)
		}
		flags[k] = v
	}
	shards, err := strconv.Atoi(flags["shards"])
	if err != nil || shards != j.Spec.Completions {
		t.Fatalf("--shards %q, completions %d: they must agree", flags["shards"], j.Spec.Completions)
	}
	spec := tli.SweepSpec{Base: tli.CellSettings{Train: tli.PaperTrainOptions()}}
	for _, a := range tli.SweepAxes {
		if v, ok := flags[a.Name]; ok {
			if vals := tli.SplitAxis(a.Name, v); len(vals) > 1 {
				spec.Axes = append(spec.Axes, tli.AxisValues{Name: a.Name, Values: vals})
			}
		}
	}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int]int{}
	for idx := 0; idx < j.Spec.Completions; idx++ {
		getenv := func(k string) string {
			if k == "JOB_COMPLETION_INDEX" {
				return strconv.Itoa(idx)
			}
			return ""
		}
		s, source, ok, err := tli.ShardFromEnv(getenv, shards)
		if err != nil || !ok || source != "Kubernetes Indexed Job" {
			t.Fatalf("index %d: %v %v %v", idx, s, ok, err)
		}
		for _, c := range cells {
			if s.Has(c.Index) {
				if prev, dup := owner[c.Index]; dup {
					t.Errorf("cell %s runs in pods %d and %d", c.Name, prev, idx)
				}
				owner[c.Index] = idx
			}
		}
	}
	if len(owner) != len(cells) || len(cells) != j.Spec.Completions {
		t.Errorf("%d of %d cells have a pod; the example has %d completions (one cell each)", len(owner), len(cells), j.Spec.Completions)
	}
}

// TestSweepSlurmArray runs a sweep as a Slurm job array on the cluster CI
// starts (.ci/slurm-local up) and checks that the gathered tables are
// byte-identical to the sweep run in one process.
func TestSweepSlurmArray(t *testing.T) {
	if _, err := exec.LookPath("sbatch"); err != nil {
		peer.Missing(t, "Slurm is not installed (apt-get install slurm-wlm munge; .ci/slurm-local up)")
	}
	if out, err := exec.Command("sinfo", "-h", "-o", "%t").CombinedOutput(); err != nil || !strings.Contains(string(out), "idle") && !strings.Contains(string(out), "mix") {
		peer.Missing(t, fmt.Sprintf("no idle Slurm node (start one with .ci/slurm-local up): %s %v", out, err))
	}
	model := testModel(t)
	dir := t.TempDir()
	pf := writePairs(t, dir, tli.DefaultTrainPairs()[:16])
	whole := filepath.Join(dir, "whole")
	if code, out := runOut(t, nil, sweepArgs(model, pf, whole)...); code != 0 {
		t.Fatalf("whole sweep: exit %d\n%s", code, out)
	}
	slurm := filepath.Join(dir, "slurm")
	var args []string
	for _, a := range sweepArgs(model, pf, slurm, "--threads", "1") {
		args = append(args, strconv.Quote(a))
	}
	script := filepath.Join(dir, "sweep.sbatch")
	body := fmt.Sprintf("#!/bin/bash\n#SBATCH --array=0-2\n#SBATCH --cpus-per-task=1\n#SBATCH --output=%s/slurm-%%A_%%a.out\nexport TLI_TEST_AS_TLI=1\nexec %s %s\n",
		dir, strconv.Quote(os.Args[0]), strings.Join(args, " "))
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sbatch", "--wait", "--chdir", dir, script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(dir, "slurm-*.out"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatalf("sbatch --wait: %v\n%s", err, out)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "slurm-*.out"))
	shardsSeen := 0
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if strings.Contains(string(b), "(Slurm array)") {
			shardsSeen++
		}
	}
	if shardsSeen != 3 {
		t.Errorf("%d of 3 array tasks said they ran a Slurm array shard", shardsSeen)
	}
	mustRun(t, "gather", slurm)
	sameSweep(t, "sbatch --array=0-2", whole, slurm)
}
