package raynode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

func TestNewImageNeedsTheRuntimeOnTheNode(t *testing.T) {
	spec := cluster.ContainerSpec{Image: "/s/ray.sqfs", Runtime: "charliecloud"}
	_, err := newImage(spec, cluster.Dir{Path: "/home/u/.sraybatch/clusters/c"}, "ray", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "ch-run is not on this node's PATH after --setup") {
		t.Errorf("newImage without ch-run = %v", err)
	}
}

// TestImageCommand: `ray start` through ch-run gets only what Ray needs of
// the node's environment, HOME in the node's private dir, the image's PATH
// led by --ray's directory; the host's TMPDIR stays out of ch-run's own
// environment (it would become /tmp inside).
func TestImageCommand(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "ch-run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := cluster.ContainerSpec{Image: "/s/ray", Runtime: "charliecloud", Mounts: []string{"/scratch/data:/data"}}
	im, err := newImage(spec, cluster.Dir{Path: "/home/u/.sraybatch/clusters/c"}, "/opt/venv/bin/ray", bin)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + bin, "USER=u", "TMPDIR=/local", "LD_LIBRARY_PATH=/opt/x", "RAY_AUTH_MODE=token", "CUDA_VISIBLE_DEVICES=0"}
	cmd := im.command("/opt/venv/bin/ray", []string{"start", "--block"}, env, "/tmp/srb-7-1", true)
	got := strings.Join(cmd.Args, " ")
	for _, want := range []string{
		"--unset-env=* --env-no-expand", "--set-env=HOME=/tmp/srb-7-1/home", "--set-env=PATH=/opt/venv/bin:/usr/local/sbin:",
		"--set-env=RAY_AUTH_MODE=token", "--set-env=CUDA_VISIBLE_DEVICES=0", "--set-env=USER=u",
		"--bind=/home:/home --bind=/scratch/data:/data", "/s/ray -- /opt/venv/bin/ray start --block",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("argv lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "LD_LIBRARY_PATH") || strings.Contains(strings.Join(cmd.Env, " "), "TMPDIR") {
		t.Errorf("the host's variables leak: argv %s, env %v", got, cmd.Env)
	}
	if cmd.Path != filepath.Join(bin, "ch-run") {
		t.Errorf("runs %s, want ch-run from the PATH --setup left", cmd.Path)
	}
}
