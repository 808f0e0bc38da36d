package main

import (
	"context"
	"fmt"
)

func runVersionCmd(ctx context.Context, io IOStreams, args []string) error {
	fs := newFlagSet("version", "Usage: sraybatch version\n\nPrint the sraybatch version.", io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(io.Out, "sraybatch", version)
	return nil
}
