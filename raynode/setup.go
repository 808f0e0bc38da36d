package raynode

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sraybatch/sraybatch/internal/oneline"
)

// setup runs the user's --setup lines once in bash and returns the environment
// they leave behind, so `ray` is found where the user's setup put it.
func (s *supervisor) setup(ctx context.Context) ([]string, error) {
	env := withoutKeys(s.cfg.Environ, "RAY_ADDRESS", "RAY_AUTH_TOKEN")
	path := s.cfg.Dir.SetupPathOf(s.cfg.WorkerType)
	lines, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read setup: %w", err)
	}
	if len(bytes.TrimSpace(lines)) == 0 {
		return env, nil
	}
	s.logf("running --setup")
	var out bytes.Buffer
	tail := newTailBuffer(10)
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", `set -e; { source "$1"; } >&2; env -0`, "sraybatch-setup", path)
	cmd.Env = env
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(s.cfg.Log, tail)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("--setup failed (%v): %s", err, tail.String())
	}
	var setupEnv []string
	for _, kv := range strings.Split(out.String(), "\x00") {
		if strings.Contains(kv, "=") {
			setupEnv = append(setupEnv, kv)
		}
	}
	return withoutKeys(setupEnv, "RAY_ADDRESS", "RAY_AUTH_TOKEN"), nil
}

func (s *supervisor) checkRayVersion(ctx context.Context, ray string, env []string) error {
	cmd := exec.CommandContext(ctx, ray, "--version")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("`%s --version` failed (%v): %s", ray, err, oneline.Of(string(out)))
	}
	return s.acceptRayVersion(string(out))
}

// acceptRayVersion checks the head's Ray (`ray --version` output, or a bare
// release number) has token auth, and records it.
func (s *supervisor) acceptRayVersion(out string) error {
	v, err := ParseRayVersion(out)
	if err != nil {
		return err
	}
	if !v.AtLeast(MinAuthVersion) {
		return fmt.Errorf("ray %s found after --setup has no token auth (needs >= %s): install a newer ray, or `up --insecure` to run without auth", v, MinAuthVersion)
	}
	s.rayVersion = v.String()
	s.logf("ray %s", v)
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func withoutKeys(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// lookPath finds name in the PATH left by --setup (exec.LookPath would use
// the supervisor's own PATH).
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		if st, err := os.Stat(name); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q is not on PATH after --setup: activate Ray's environment in --setup, or give --ray", name)
}
