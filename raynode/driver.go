package raynode

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// startDriver runs the user's driver next to this job's Ray node, so a bare
// ray.init() finds a local raylet of the cluster.
func (s *supervisor) startDriver(env []string, head cluster.HeadInfo) (Process, error) {
	env = withoutKeys(s.generationEnv(env), "RAY_ADDRESS", "PYTHONPATH", cluster.EnvEvents, cluster.EnvClusterDir, cluster.EnvJob, cluster.EnvHeadJob,
		cluster.EnvGeneration, cluster.EnvResumed)
	pythonPath := s.cfg.Dir.PythonPath()
	if p := envValue(s.cfg.Environ, "PYTHONPATH"); p != "" && s.image == nil {
		pythonPath += ":" + p // the host's paths mean nothing inside an image
	}
	env = append(env,
		"RAY_ADDRESS="+head.Address,
		"PYTHONPATH="+pythonPath,
		"PYTHONUNBUFFERED=1",
		cluster.EnvEvents+"="+s.cfg.Dir.EventsPath(s.rec.Job),
		cluster.EnvClusterDir+"="+s.cfg.Dir.Path,
		cluster.EnvJob+"="+s.rec.Job,
		cluster.EnvHeadJob+"="+s.cfg.HeadJob,
	)
	if s.rollover.gen > 0 {
		env = append(env, cluster.EnvGeneration+"="+strconv.Itoa(s.rollover.gen))
	}
	if s.rollover.restarts > 0 {
		// Started again in a later generation: resume from the checkpoint.
		env = append(env, cluster.EnvResumed+"=1")
	}
	// Inside an image, the command is found on the image's PATH.
	path := s.cfg.DriverArgv[0]
	if s.image == nil {
		var err error
		if path, err = lookPath(path, envValue(env, "PATH")); err != nil {
			return nil, fmt.Errorf("driver command: %w", err)
		}
	}
	s.logf("driver: %s", strings.Join(s.cfg.DriverArgv, " "))
	cmd := s.command(path, s.cfg.DriverArgv[1:], env, s.rec.TempDir, false, "PYTHONPATH="+pythonPath, "PYTHONUNBUFFERED=1")
	cmd.Stdout, cmd.Stderr = s.cfg.Log, io.MultiWriter(s.cfg.Log, s.tail)
	driver, err := s.start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start driver: %w", err)
	}
	s.rollover.driverRan = true
	return driver, nil
}

// driverResult records the driver's exit status and says how it exited.
func (s *supervisor) driverResult(p Process) error {
	code := p.ExitCode()
	s.rec.ExitCode = &code
	if code == 0 {
		return fmt.Errorf("%s", cluster.ReasonDriverFinished)
	}
	return fmt.Errorf("driver failed: exit code %d: %s", code, s.tail.String())
}
