package autoscale

import "strings"

// Pending reasons that never clear on their own: a job waiting for one is
// no supply, however long it waits. (SLURM's reason codes, as squeue %r
// prints them; "ReqNodeNotAvail, UnavailableNodes:…" starts with its code.)
var stuckReasons = []string{
	"ReqNodeNotAvail", "DependencyNeverSatisfied", "JobHeldAdmin", "JobHeldUser",
	"BadConstraints", "PartitionDown", "PartitionInactive", "PartitionTimeLimit",
	"PartitionNodeLimit", "PartitionConfig", "InvalidAccount", "InvalidQOS",
	"AccountNotAllowed", "QOSNotAllowed", "FrontEndDown",
}

// Pending reasons that mean "not under the current limits": another job
// behind the same limit would wait as well.
var limitPrefixes = []string{"QOSMax", "QOSGrp", "AssocMax", "AssocGrp", "MaxSubmitJob"}

func stuck(reason string) bool {
	code := reasonCode(reason)
	for _, r := range stuckReasons {
		if code == r {
			return true
		}
	}
	return false
}

func limit(reason string) bool {
	code := reasonCode(reason)
	for _, p := range limitPrefixes {
		if strings.HasPrefix(code, p) {
			return true
		}
	}
	return false
}

// reasonCode is the code a reason starts with ("ReqNodeNotAvail, …" → "ReqNodeNotAvail").
func reasonCode(reason string) string {
	code, _, _ := strings.Cut(strings.TrimSpace(reason), ",")
	code, _, _ = strings.Cut(code, " ")
	return strings.Trim(code, "()")
}
