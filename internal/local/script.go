package local

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// directives are the #SBATCH options of a batch script that a local node
// honours; the others (partition, time, dependency, ...) mean nothing on one
// host and are ignored.
type directives struct {
	JobName string
	Output  string
	// GPUs is per node (--gres=gpu[:type]:N).
	GPUs int
	// CPUs is --cpus-per-task; 0 when not given.
	CPUs int
	// MemMB is --mem in MiB; 0 when not given.
	MemMB int64
	// Tasks is the array size (--array=0-K gives K+1); 0 for a plain job.
	Tasks int
}

// parseScript reads the #SBATCH lines at the top of a batch script, as
// sbatch does: they end at the first line that is neither blank nor a comment.
func parseScript(script []byte) (directives, error) {
	var d directives
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			break
		}
		rest, ok := strings.CutPrefix(line, "#SBATCH")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		key, value, hasValue := strings.Cut(fields[0], "=")
		if !hasValue && len(fields) > 1 {
			value = fields[1]
		}
		var err error
		switch key {
		case "--job-name", "-J":
			d.JobName = value
		case "--output", "-o":
			d.Output = value
		case "--gres":
			d.GPUs, err = parseGres(value)
		case "--cpus-per-task", "-c":
			d.CPUs, err = strconv.Atoi(value)
		case "--mem":
			d.MemMB, err = parseMem(value)
		case "--array", "-a":
			d.Tasks, err = parseArray(value)
		}
		if err != nil {
			return d, fmt.Errorf("#SBATCH %s: %w", fields[0], err)
		}
	}
	if err := sc.Err(); err != nil {
		return d, err
	}
	if d.Output == "" {
		return d, fmt.Errorf("the script names no #SBATCH --output file")
	}
	return d, nil
}

// parseGres reads the GPU count of "gpu:2" or "gpu:a100:2".
func parseGres(v string) (int, error) {
	for _, g := range strings.Split(v, ",") {
		parts := strings.Split(g, ":")
		if parts[0] != "gpu" {
			continue
		}
		if len(parts) == 1 {
			return 1, nil
		}
		n, err := strconv.Atoi(parts[len(parts)-1])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad GPU count in %q", g)
		}
		return n, nil
	}
	return 0, nil
}

// parseMem reads sbatch's --mem: a number of MiB, or with a K, M, G or T suffix.
func parseMem(v string) (int64, error) {
	mult := map[string]float64{"K": 1.0 / 1024, "M": 1, "G": 1024, "T": 1 << 20}
	num, unit := v, "M"
	if n := len(v); n > 0 {
		if _, ok := mult[strings.ToUpper(v[n-1:])]; ok {
			num, unit = v[:n-1], strings.ToUpper(v[n-1:])
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad memory size %q", v)
	}
	return int64(f * mult[unit]), nil
}

// parseArray reads "0-K" (what sraybatch renders) as K+1 tasks.
func parseArray(v string) (int, error) {
	lo, hi, ok := strings.Cut(v, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first != 0 || last < 0 {
		return 0, fmt.Errorf("the local backend runs arrays 0-K only, not %q", v)
	}
	return last + 1, nil
}

// expandOutput fills in sbatch's filename patterns that a local job knows.
func expandOutput(pattern string, jobID, arrayJobID, taskID, name, user, host string) string {
	if arrayJobID == "" {
		arrayJobID = jobID
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '%' || i+1 == len(pattern) {
			b.WriteByte(pattern[i])
			continue
		}
		i++
		switch pattern[i] {
		case 'j':
			b.WriteString(jobID)
		case 'A':
			b.WriteString(arrayJobID)
		case 'a':
			b.WriteString(taskID)
		case 'x':
			b.WriteString(name)
		case 'u':
			b.WriteString(user)
		case 'N':
			b.WriteString(host)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(pattern[i])
		}
	}
	return b.String()
}
