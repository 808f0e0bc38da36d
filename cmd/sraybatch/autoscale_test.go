package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// autoscale changes only the settings whose flags were given; with none
// but --cluster it shows them.
func TestAutoscaleChangesWhatIsGiven(t *testing.T) {
	t.Parallel()
	f := newUFixture(t)
	dir, _ := f.createCluster(t, "exp1", "41")
	start := cluster.AutoscaleSpec{MaxWorkers: 4, PollIntervalS: 2}
	if err := dir.WriteAutoscaleSettings(start); err != nil {
		t.Fatal(err)
	}
	// MinWorkers is set in the options but not given: it must not change.
	o := autoscaleCmdOptions{Cluster: "exp1", autoscaleOptions: autoscaleOptions{MinWorkers: 3, MaxWorkers: 6, Interval: 2 * time.Second}}
	o.Given = map[string]bool{"cluster": true}
	var s uStreams
	if err := runAutoscale(s.io(false), f.app, o); err != nil {
		t.Fatal(err)
	}
	if spec, err := dir.Spec(); err != nil || spec.Autoscale != start {
		t.Fatalf("--cluster alone changed the settings: %+v, %v", spec.Autoscale, err)
	}
	o.On, o.Given = true, map[string]bool{"cluster": true, "on": true, "max-workers": true}
	if err := runAutoscale(s.io(false), f.app, o); err != nil {
		t.Fatal(err)
	}
	want := cluster.AutoscaleSpec{Enabled: true, MaxWorkers: 6, PollIntervalS: 2}
	if spec, err := dir.Spec(); err != nil || spec.Autoscale != want {
		t.Errorf("after --on --max-workers 6: %+v, %v; want %+v", spec.Autoscale, err, want)
	}
	if !strings.Contains(s.out.String(), "autoscaling on, workers 0–6") {
		t.Errorf("stdout = %q, want the new settings", s.out.String())
	}
	o.Off = true
	var ue usageError
	if err := runAutoscale(s.io(false), f.app, o); !errors.As(err, &ue) {
		t.Errorf("--on --off: %v, want a usage error", err)
	}
}
