package metrics

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// TargetGroup is one entry of a Prometheus file_sd file.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// LabelEndpoint tells the two kinds of target apart in relabel_configs:
// EndpointSraybatch (the head's /metrics, which needs the scrape token) and
// EndpointRay (a Ray node's own exporter, which must never get it).
// Prometheus drops labels starting with "__" after relabelling.
const (
	LabelEndpoint     = "__sraybatch_endpoint"
	EndpointSraybatch = "sraybatch"
	EndpointRay       = "ray"
)

// Targets are the cluster's scrape targets: the head's metrics endpoint,
// then each joined job's Ray exporter, in status order, each with the
// labels cluster, slurm_job_id and role. A cluster marked down has none.
func Targets(o cluster.Observation, st cluster.Status) []TargetGroup {
	groups := []TargetGroup{}
	if o.Down != nil {
		return groups
	}
	group := func(addr, endpoint string, j cluster.JobStatus) TargetGroup {
		return TargetGroup{Targets: []string{addr}, Labels: map[string]string{
			"cluster": st.Cluster.Name, "slurm_job_id": j.JobID, "role": string(j.Role), LabelEndpoint: endpoint,
		}}
	}
	if head := st.Head(); head != nil && o.Head != nil && o.Head.Metrics != "" && InRay(*head) {
		groups = append(groups, group(o.Head.Metrics, EndpointSraybatch, *head))
	}
	for _, j := range st.Jobs {
		rec, ok := o.Records[j.JobID]
		if !InRay(j) || !ok || rec.IP == "" || rec.MetricsExportPort == 0 {
			continue
		}
		groups = append(groups, group(net.JoinHostPort(rec.IP, strconv.Itoa(rec.MetricsExportPort)), EndpointRay, j))
	}
	return groups
}

// EncodeTargets is the file_sd file's content.
func EncodeTargets(groups []TargetGroup) ([]byte, error) {
	if groups == nil {
		groups = []TargetGroup{}
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode targets: %w", err)
	}
	return append(b, '\n'), nil
}

// SDFile is the file_sd file of a cluster in --metrics-sd-dir: unique per
// user and cluster, since several share a site's directory.
func SDFile(spec cluster.Spec) string {
	return filepath.Join(spec.MetricsSDDir, "sraybatch-"+unsafeChars.ReplaceAllString(spec.User, "_")+"-"+spec.Name+".json")
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// WriteTargets replaces the cluster's file_sd files atomically: the cluster
// directory's (0600) and, with --metrics-sd-dir, the site's (0644, for a
// Prometheus running as another user; it holds no token).
func WriteTargets(dir cluster.Dir, spec cluster.Spec, content []byte) error {
	if err := cluster.WriteFileAtomic(dir.TargetsPath(), content, 0o600); err != nil {
		return err
	}
	if spec.MetricsSDDir != "" {
		return cluster.WriteFileAtomic(SDFile(spec), content, 0o644)
	}
	return nil
}

// ClearTargets empties the cluster's file_sd files ([]): once the cluster
// ends, a port it used may be another user's, who must not get the token.
func ClearTargets(dir cluster.Dir, spec cluster.Spec) error {
	empty, _ := EncodeTargets(nil)
	return WriteTargets(dir, spec, empty)
}
