package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeImage makes a directory image with the given top-level directories.
func fakeImage(t *testing.T, dirs ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// fakeHost has ch-run on PATH and answers the probe with probeOut.
func fakeHost(probeOut string, probeErr error) (containerHost, *[][]string) {
	var ran [][]string
	return containerHost{
		environ: []string{"USER=u", "PATH=/usr/bin", "TMPDIR=/local"},
		lookPath: func(name string) (string, error) {
			if name == "ch-run" {
				return "/usr/bin/ch-run", nil
			}
			return "", errors.New("not found")
		},
		run: func(_ context.Context, argv, env []string) ([]byte, error) {
			ran = append(ran, argv)
			return []byte(probeOut), probeErr
		},
		readFile: func(string) ([]byte, error) { return []byte("15000\n"), nil },
		writable: func(string) bool { return true },
	}, &ran
}

func TestContainerCheck(t *testing.T) {
	full := []string{"dev", "proc", "sys", "tmp", "home"}
	ok := "sraybatch-probe 2.60.0 3.11.2\n"
	for _, tc := range []struct {
		name     string
		opts     containerOptions
		probe    string
		probeErr error
		userns   string
		want     string // in the error; "" for success
	}{
		{name: "runtime without image", opts: containerOptions{Runtime: "charliecloud"}, want: "need --container IMAGE"},
		{name: "no such image", opts: containerOptions{Image: "/nonexistent/img"}, want: "no such image"},
		{name: "mount point missing", opts: containerOptions{Image: fakeImage(t, "dev", "proc", "sys")}, want: "lacks the mount points /tmp /home"},
		{name: "user mount target missing", opts: containerOptions{Image: fakeImage(t, full...), Mounts: []string{"/:/data"}}, want: "lacks the mount points /data"},
		{name: "bad env name", opts: containerOptions{Image: fakeImage(t, full...), Env: []string{"A-B"}}, want: "give a variable's name"},
		{name: "env sraybatch sets", opts: containerOptions{Image: fakeImage(t, full...), Env: []string{"HOME"}}, want: "sets HOME inside the image itself"},
		{name: "bad mount", opts: containerOptions{Image: fakeImage(t, full...), Mounts: []string{"data:/data"}}, want: "must be absolute paths"},
		{name: "runtime not here", opts: containerOptions{Image: fakeImage(t, full...), Runtime: "apptainer"}, want: "apptainer is not on PATH here"},
		{name: "unknown runtime", opts: containerOptions{Image: fakeImage(t, full...), Runtime: "docker"}, want: "unknown container runtime"},
		{name: "no user namespaces", opts: containerOptions{Image: fakeImage(t, full...)}, userns: "0", want: "does not allow unprivileged user namespaces"},
		{name: "no ray", opts: containerOptions{Image: fakeImage(t, full...)}, probe: "Traceback\nModuleNotFoundError: No module named 'ray'\n", probeErr: errors.New("exit status 1"), want: "No module named 'ray'"},
		{name: "old ray", opts: containerOptions{Image: fakeImage(t, full...)}, probe: "sraybatch-probe 2.40.0 3.11.2\n", want: "has ray 2.40.0, without token auth"},
		{name: "good", opts: containerOptions{Image: fakeImage(t, full...)}, probe: ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ran := fakeHost(tc.probe, tc.probeErr)
			if tc.userns != "" {
				h.readFile = func(string) ([]byte, error) { return []byte(tc.userns), nil }
			}
			c := containerCheck{opts: tc.opts, h: h, clusterDir: "/home/u/.sraybatch/clusters/c", ray: "/opt/venv/bin/ray"}
			spec, err := c.resolve(context.Background(), io.Discard)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("resolve = %v, want one line with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.Runtime != "charliecloud" || spec.RayVersion != "2.60.0" || spec.PythonVersion != "3.11.2" || !filepath.IsAbs(spec.Image) {
				t.Errorf("spec = %+v", spec)
			}
			probe := strings.Join((*ran)[0], " ")
			if !strings.HasPrefix(probe, "/usr/bin/ch-run --unset-env=* ") || !strings.Contains(probe, " -- /opt/venv/bin/python3 -c ") || !strings.Contains(probe, "--bind=/home:/home") {
				t.Errorf("probe ran %s", probe)
			}
		})
	}
}

func TestPickRuntimeFirstOnPath(t *testing.T) {
	look := func(name string) (string, error) {
		if name == "podman-hpc" || name == "srun" {
			return "/usr/bin/" + name, nil
		}
		return "", errors.New("not found")
	}
	if rt, err := pickRuntime("", "/s/img.sqsh", false, look); err != nil || rt != "podman-hpc" {
		t.Errorf("pickRuntime = %v, %v; want podman-hpc (pyxis only when asked)", rt, err)
	}
	if rt, err := pickRuntime("", "/s/img.sif", false, look); err == nil {
		t.Errorf("a .sif wants apptainer, which is missing; got %v", rt)
	}
}
