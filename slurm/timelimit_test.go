package slurm

import (
	"testing"
	"time"
)

func TestParseTimeLimit(t *testing.T) {
	cases := map[string]time.Duration{
		"30":         30 * time.Minute,
		"30:15":      30*time.Minute + 15*time.Second,
		"2:00:00":    2 * time.Hour,
		"1-0":        24 * time.Hour,
		"1-2:30":     26*time.Hour + 30*time.Minute,
		"2-01:02:03": 49*time.Hour + 2*time.Minute + 3*time.Second,
	}
	for in, want := range cases {
		got, unlimited, err := ParseTimeLimit(in)
		if err != nil || unlimited || got != want {
			t.Errorf("ParseTimeLimit(%q) = %v, %v, %v; want %v", in, got, unlimited, err, want)
		}
		if back, _, err := ParseTimeLimit(FormatTimeLimit(got)); err != nil || back != got {
			t.Errorf("FormatTimeLimit(%v) = %q does not read back (%v, %v)", got, FormatTimeLimit(got), back, err)
		}
	}
	if _, unlimited, err := ParseTimeLimit("UNLIMITED"); err != nil || !unlimited {
		t.Errorf("UNLIMITED: %v %v", unlimited, err)
	}
	for _, bad := range []string{"", "abc", "1:2:3:4", "-5", "1-", "0", "1:-2", "$(x)"} {
		if _, _, err := ParseTimeLimit(bad); err == nil {
			t.Errorf("ParseTimeLimit(%q) accepted", bad)
		}
	}
}
