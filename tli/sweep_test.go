package tli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSweepCells(t *testing.T) {
	spec := SweepSpec{Base: CellSettings{Train: PaperTrainOptions()}, Axes: []AxisValues{
		{Name: "layer", Values: []string{"2", "10", "31"}},
		{Name: "rank", Values: []string{"4", "64"}},
		{Name: "targets", Values: []string{"q_proj,v_proj", "q_proj,k_proj,v_proj,o_proj"}},
	}}
	cells, err := spec.Cells()
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 12 {
		t.Fatalf("%d cells, want 12", len(cells))
	}
	c := cells[7] // layer 10, rank 64, targets set 2
	if c.Index != 7 || c.Name != "layer-10_rank-64_targets-q_proj+k_proj+v_proj+o_proj" || c.Train.Layer != 10 || c.Train.LoRA.R != 64 ||
		!reflect.DeepEqual(c.Train.LoRA.TargetModules, []string{"q_proj", "k_proj", "v_proj", "o_proj"}) {
		t.Errorf("cell 7 = %+v", c)
	}
	if !reflect.DeepEqual(cells[0].Train.LoRA.TargetModules, []string{"q_proj", "v_proj"}) || spec.Base.Train.LoRA.R != 16 {
		t.Errorf("cells share or change the base options")
	}
	if got := SplitAxis("targets", "q_proj,v_proj; o_proj"); !reflect.DeepEqual(got, []string{"q_proj,v_proj", "o_proj"}) {
		t.Errorf("SplitAxis targets = %q", got)
	}
	for _, bad := range []struct {
		axes []AxisValues
		want string
	}{
		{[]AxisValues{{"rank", []string{"4"}}, {"layer", []string{"2"}}}, "out of order"},
		{[]AxisValues{{"depth", []string{"4"}}}, `"depth" is not an axis`},
		{[]AxisValues{{"rank", []string{"4", "x"}}}, `LoRA.R "x": want an integer`},
		{[]AxisValues{{"layer", make([]string, 0)}}, "Layer has no values"},
	} {
		_, err := SweepSpec{Base: CellSettings{Train: PaperTrainOptions()}, Axes: bad.axes}.Cells()
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: error %v, want %q", bad.axes, err, bad.want)
		}
	}
}

func TestShardFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		getenv func(string) string
		shards int
		want   Shard
		ok     bool
		err    string
	}{
		{env(), 0, Shard{}, false, ""},
		{env("SLURM_ARRAY_TASK_ID", "2", "SLURM_ARRAY_TASK_COUNT", "3", "SLURM_ARRAY_TASK_MIN", "0"), 0, Shard{2, 3}, true, ""},
		{env("SLURM_ARRAY_TASK_ID", "5", "SLURM_ARRAY_TASK_COUNT", "3", "SLURM_ARRAY_TASK_MIN", "4"), 0, Shard{1, 3}, true, ""},
		{env("SLURM_ARRAY_TASK_ID", "7", "SLURM_ARRAY_TASK_COUNT", "3"), 0, Shard{}, false, "want array indices 0..2"},
		{env("JOB_COMPLETION_INDEX", "4"), 9, Shard{4, 9}, true, ""},
		{env("JOB_COMPLETION_INDEX", "4"), 0, Shard{}, false, "--shards N"},
		{env("JOB_COMPLETION_INDEX", "9"), 9, Shard{}, false, "outside [0, 9)"},
	} {
		s, _, ok, err := ShardFromEnv(c.getenv, c.shards)
		if s != c.want || ok != c.ok || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("got %v %v %v, want %v %v %q", s, ok, err, c.want, c.ok, c.err)
		}
	}
	// Every cell is in exactly one shard.
	for n := 1; n <= 4; n++ {
		for i := 0; i < 10; i++ {
			k := 0
			for j := 0; j < n; j++ {
				if (Shard{j, n}).Has(i) {
					k++
				}
			}
			if k != 1 {
				t.Errorf("cell %d is in %d of %d shards", i, k, n)
			}
		}
	}
}

// Shards started together compute the base model's vectors once: with the
// lock held by a live process a shard waits for its file and runs no pass
// of its own; a lock whose holder stopped refreshing it is taken over.
func TestSweepBaseLock(t *testing.T) {
	defer func(b, s, p time.Duration) { lockBeat, lockStale, lockPoll = b, s, p }(lockBeat, lockStale, lockPoll)
	lockBeat, lockStale, lockPoll = 50*time.Millisecond, 400*time.Millisecond, 20*time.Millisecond
	m, tok := trainTestModel(t)
	pairs := DefaultTrainPairs()[:12]
	o := SweepOptions{Groups: []Group{{Name: "trained", Pairs: pairs}}, Out: t.TempDir()}
	all := LayerRange(2)
	passes := 0
	m.OnLayer = func(done, total, tokens int) {
		if done == 0 {
			passes++
		}
	}
	defer func() { m.OnLayer = nil }()

	// The vectors another shard would write.
	want, err := EmbedGroups(&ModelEmbedder{Model: m, Tok: tok}, o.Groups, all, []Pooling{PoolContent})
	if err != nil {
		t.Fatal(err)
	}
	passes = 0
	path := baseFile(o.Out, PoolContent)
	unlock, held, err := baseLock(path + ".lock")
	if err != nil || !held {
		t.Fatalf("first lock: held %v, %v", held, err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		if err := saveBase(path, want, PoolContent, o.Groups, all); err != nil {
			t.Error(err)
		}
		unlock()
	}()
	var log strings.Builder
	got, err := sweepBase(context.Background(), m, tok, o, nil, PoolContent, all, &log)
	if err != nil {
		t.Fatal(err)
	}
	if passes != 0 || !strings.Contains(log.String(), "another shard is computing them") {
		t.Errorf("with the lock held: %d forward passes (want 0), log %q", passes, log.String())
	}
	if !reflect.DeepEqual(got[PoolContent][2]["trained"], want[PoolContent][2]["trained"]) {
		t.Error("the waiting shard's vectors differ from the file's")
	}

	// A stale lock (its holder died): taken over, the vectors computed once.
	o.Out = t.TempDir()
	path = baseFile(o.Out, PoolContent)
	if err := os.WriteFile(path+".lock", []byte("gone 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path+".lock", old, old)
	passes = 0
	if _, err := sweepBase(context.Background(), m, tok, o, nil, PoolContent, all, io.Discard); err != nil {
		t.Fatal(err)
	}
	if passes != 1 {
		t.Errorf("after a stale lock: %d passes, want 1", passes)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("the lock is left behind: %v", err)
	}
	// A fresh lock left by a process of this host that no longer runs (a
	// killed sweep being rerun): taken over at once.
	lockStale = time.Hour
	o.Out = t.TempDir()
	path = baseFile(o.Out, PoolContent)
	host, _ := os.Hostname()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true command to get a finished pid:", err)
	}
	if err := os.WriteFile(path+".lock", []byte(fmt.Sprintf("%s %d\n", host, dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	passes = 0
	if _, err := sweepBase(context.Background(), m, tok, o, nil, PoolContent, all, io.Discard); err != nil {
		t.Fatal(err)
	}
	if passes != 1 {
		t.Errorf("after a dead holder's lock: %d passes, want 1", passes)
	}
	// Waiting stops when the context is cancelled.
	o.Out = t.TempDir()
	path = baseFile(o.Out, PoolContent)
	unlock, _, _ = baseLock(path + ".lock")
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := sweepBase(ctx, m, tok, o, nil, PoolContent, all, io.Discard); !errors.Is(err, ErrInterrupted) {
		t.Errorf("cancelled wait: %v, want ErrInterrupted", err)
	}
}
