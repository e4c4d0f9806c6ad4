package tli

import (
	"reflect"
	"strings"
	"testing"
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
