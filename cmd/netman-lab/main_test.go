package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpRejectsBadArguments: scripts/lab (before it builds anything) and
// netman-lab each answer a bad value with one line, the same in both,
// instead of running the default lab, Go's flag usage or bash's noise.
func TestUpRejectsBadArguments(t *testing.T) {
	// Should the script get past its checks, it finds this go and
	// apt-get, which only say so.
	fake := t.TempDir()
	for _, tool := range []string{"go", "apt-get"} {
		if err := os.WriteFile(filepath.Join(fake, tool), []byte("#!/bin/sh\necho \"$0 REACHED\" >&2\nexit 97\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("../../scripts/lab")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cells", "0"}, "--cells 0: want a number from 1 to 200"},
		{[]string{"--apps", "0"}, "--apps 0: want a number from 2 to 200"},
		{[]string{"--apps=1"}, "--apps 1: want a number from 2 to 200"},
		{[]string{"--cells", "201"}, "--cells 201: want a number from 1 to 200"},
		{[]string{"--cells", "abc"}, "--cells abc: want a number from 1 to 200"},
		{[]string{"--cells", "-1"}, "--cells -1: want a number from 1 to 200"},
		{[]string{"--cells", "+3"}, "--cells +3: want a number from 1 to 200"},
		{[]string{"--keep", "--cells"}, "--cells needs a number from 1 to 200"},
		{[]string{"--cells=", "--keep"}, "--cells needs a number from 1 to 200"},
		{[]string{"--cells", "3", "--apps"}, "--apps needs a number from 2 to 200"},
		{[]string{"--db"}, "--db needs sqlite, postgres or mysql"},
		{[]string{"--db", "oracle"}, "--db oracle: want sqlite, postgres or mysql"},
		{[]string{"--cells", "3", "--db=sqlite3"}, "--db sqlite3: want sqlite, postgres or mysql"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := up(context.Background(), tc.args, &stdout, &stderr); code != 2 || stdout.Len() > 0 || stderr.String() != "netman-lab up: "+tc.want+"\n" {
				t.Errorf("netman-lab up: exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout.String(), stderr.String(), tc.want)
			}

			cmd := exec.Command("bash", append([]string{script, "up"}, tc.args...)...)
			cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
			stdout.Reset()
			stderr.Reset()
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || stdout.Len() > 0 || stderr.String() != "!!! error: "+tc.want+"\n" {
				t.Errorf("scripts/lab up: %v, stdout %q, stderr %q; want exit 1 and %q", err, stdout.String(), stderr.String(), tc.want)
			}
		})
	}
}
