package slurm

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTimeLimit reads a --time value in any form sbatch accepts: "M",
// "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S"; unlimited is true for
// "UNLIMITED"/"infinite".
func ParseTimeLimit(s string) (d time.Duration, unlimited bool, err error) {
	bad := func() (time.Duration, bool, error) {
		return 0, false, fmt.Errorf("invalid --time %q: use minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S", s)
	}
	switch strings.ToLower(s) {
	case "unlimited", "infinite":
		return 0, true, nil
	case "":
		return bad()
	}
	days := 0
	rest := s
	if dstr, r, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.Atoi(dstr)
		if err != nil || n < 0 || r == "" {
			return bad()
		}
		days, rest = n, r
	}
	var nums []int
	for _, p := range strings.Split(rest, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return bad()
		}
		nums = append(nums, n)
	}
	var h, m, sec int
	switch {
	case len(nums) > 3:
		return bad()
	case days > 0 || strings.Contains(s, "-"): // D-H, D-H:M, D-H:M:S
		h = nums[0]
		if len(nums) > 1 {
			m = nums[1]
		}
		if len(nums) > 2 {
			sec = nums[2]
		}
	case len(nums) == 1:
		m = nums[0]
	case len(nums) == 2:
		m, sec = nums[0], nums[1]
	default:
		h, m, sec = nums[0], nums[1], nums[2]
	}
	d = time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second
	if d <= 0 {
		return bad()
	}
	return d, false, nil
}

// FormatTimeLimit writes d in sbatch's D-HH:MM:SS form, rounded down to
// whole seconds.
func FormatTimeLimit(d time.Duration) string {
	s := int64(d / time.Second)
	days, s := s/86400, s%86400
	return fmt.Sprintf("%d-%02d:%02d:%02d", days, s/3600, s%3600/60, s%60)
}
