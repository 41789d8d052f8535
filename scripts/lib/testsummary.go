//go:build ignore

// testsummary reads `go test -json` on stdin and prints what plain `go test`
// prints plus every skipped test with its reason and the closing counts (see
// package src/testsupport/testsummary). It exits 1 when any test or package
// failed, 2 when the input could not be read.
//
// Usage: go test -json ./... | go run scripts/lib/testsummary.go
package main

import (
	"fmt"
	"os"

	"github.com/netman-release/netman/src/testsupport/testsummary"
)

func main() {
	failed, err := testsummary.Run(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
