// Package testtier decides what a test does when something its tier needs
// is missing (root, a database server, ruby, an iptables backend, a tool):
// on a developer's machine it skips with the reason; under CI (CI=true, as
// CI runs .ci/run) or with the tier's NETMAN_REQUIRE_* variable set to 1 it
// fails, so a green CI run means every tier ran.
package testtier

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// EnvCI is set by CI systems (CI=true); netman's CI runs .ci/run with it.
const EnvCI = "CI"

// Required reports whether a missing prerequisite must fail the test: under
// CI, or when any of the given NETMAN_REQUIRE_* variables is "1".
func Required(envs ...string) bool {
	if ci := strings.ToLower(strings.TrimSpace(os.Getenv(EnvCI))); ci != "" && ci != "false" && ci != "0" {
		return true
	}
	for _, e := range envs {
		if os.Getenv(e) == "1" {
			return true
		}
	}
	return false
}

// Unavailable ends a test whose tier cannot run here: it skips with the
// reason, or fails with it where Required(envs...) holds. The reason says
// what is missing and how to get it.
func Unavailable(tb testing.TB, reason string, envs ...string) {
	tb.Helper()
	if Required(envs...) {
		tb.Fatalf("%s (fails rather than skips: %s)", reason, why(envs))
		return
	}
	tb.Skip(reason)
}

// Unavailablef is Unavailable with a formatted reason, for tiers without a
// variable of their own.
func Unavailablef(tb testing.TB, format string, args ...any) {
	tb.Helper()
	Unavailable(tb, fmt.Sprintf(format, args...))
}

func why(envs []string) string {
	if Required() {
		return EnvCI + "=" + os.Getenv(EnvCI)
	}
	for _, e := range envs {
		if os.Getenv(e) == "1" {
			return e + "=1"
		}
	}
	return "required"
}

// Long ends a long test under `go test -short`, which asks for the quick
// tests only: it skips with the reason, or fails under CI, where every
// test must run. Without -short it does nothing.
func Long(tb testing.TB, reason string) {
	tb.Helper()
	if testing.Short() {
		Unavailable(tb, reason+" (a long test: go test -short leaves it out)")
	}
}
