package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestRolloverFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want *cluster.RolloverSpec
		err  string
	}{
		{nil, nil, ""},
		{[]string{"--rollover"}, &cluster.RolloverSpec{BeforeS: 240, HeadWaitS: 300}, ""},
		{[]string{"--rollover", "--rollover-before", "90s", "--max-generations", "3", "--head-wait", "1m"}, &cluster.RolloverSpec{BeforeS: 90, MaxGenerations: 3, HeadWaitS: 60}, ""},
		{[]string{"--max-generations", "3"}, nil, "--max-generations needs --rollover"},
		{[]string{"--rollover", "--rollover-before", "0s"}, nil, "must be positive"},
	}
	for _, tt := range tests {
		var r rolloverOptions
		fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
		r.addFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		err := r.validate(fs)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: validate = %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		got := r.spec()
		if err != nil || (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("%v: spec = %+v, %v; want %+v", tt.args, got, err, tt.want)
		}
	}
}

// Without --rollover spec.json carries no rollover key: clusters made
// without it are what they were.
func TestUpRolloverSpec(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		f := newUFixture(t)
		f.expectSbatch(cluster.RoleHead, "41", "")
		o := upOptions{Name: "exp1", Node: cluster.NodeSpec{GPUs: 1, Time: "2:00:00"}}
		o.Rollover = rolloverOptions{Enabled: on, Before: 4 * time.Minute, HeadWait: time.Minute}
		var s uStreams
		if err := runUp(context.Background(), s.io(false), f.app, o); err != nil {
			t.Fatal(err)
		}
		dir, err := f.app.store.Open("exp1")
		if err != nil {
			t.Fatal(err)
		}
		spec, err := dir.Spec()
		if err != nil || spec.RollsOver() != on {
			t.Errorf("rollover %v: spec.Rollover = %+v, %v", on, spec.Rollover, err)
		}
	}
}

func TestLocalRefusesRollover(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	o := upOptions{Name: "exp1", Backend: cluster.BackendLocal, Rollover: rolloverOptions{Enabled: true}}
	var s uStreams
	if err := runUp(context.Background(), s.io(false), f.app, o); err == nil || !strings.Contains(err.Error(), "--rollover") {
		t.Errorf("local up --rollover = %v, want it refused", err)
	}
}
