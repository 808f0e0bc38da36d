package main

import (
	"strings"
	"testing"
)

// --cluster and --output (the format) read the same in every command's help:
// each is defined once (addClusterFlag, addOutputFlag). report's --output is
// another flag, the page to write.
func TestSharedFlagsReadTheSame(t *testing.T) {
	t.Parallel()
	seen := map[string]map[string][]string{} // flag: help line: commands
	for _, c := range commands() {
		var s uStreams
		if code := run(t.Context(), s.io(false), []string{c.name, "--help"}); code != exitOK {
			t.Fatalf("%s --help: exit %d", c.name, code)
		}
		for _, line := range strings.Split(s.out.String(), "\n") {
			// The flag's line, its padding (which depends on the other flags) left out.
			line = strings.Join(strings.Fields(line), " ")
			for _, flag := range []string{"-c, --cluster", "-o, --output"} {
				if strings.HasPrefix(line, flag+" ") && !(c.name == "report" && flag == "-o, --output") {
					if seen[flag] == nil {
						seen[flag] = map[string][]string{}
					}
					seen[flag][line] = append(seen[flag][line], c.name)
				}
			}
		}
	}
	for flag, lines := range seen {
		if len(lines) != 1 {
			t.Errorf("%s reads differently across commands: %q", flag, lines)
		}
	}
	if len(seen["-c, --cluster"]) == 0 || len(seen["-o, --output"]) == 0 {
		t.Errorf("no command shows --cluster or --output: %v", seen)
	}
}
