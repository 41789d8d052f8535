package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/lab"
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
			if code := up(context.Background(), labSteps, tc.args, &stdout, &stderr); code != 2 || stdout.Len() > 0 || stderr.String() != "netman-lab up: "+tc.want+"\n" {
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

// fakeLab stands in for lab.Up, lab.Demo and lab.Down: it makes nothing,
// so `up`'s words around them are checked without root.
type fakeLab struct {
	upErr, demoErr, downErr error
	noState                 bool // Up fails before it made anything
	steps                   []lab.Step
	downs                   []string // the directories Down was asked to remove
}

func (f *fakeLab) acts() steps {
	return steps{
		up: func(_ context.Context, o lab.Options) (*lab.State, error) {
			if f.noState {
				return nil, f.upErr
			}
			p := lab.Plan{Backend: o.Backend}
			if o.IPv6 {
				p.IPv6 = "fd73:696c:6b::/96"
			}
			return &lab.State{Dir: o.Dir, Bins: o.Bins, Plan: p,
				Cells: []lab.CellState{{Index: 1, NS: "c1"}, {Index: 2, NS: "c2"}},
				Apps:  []lab.AppState{{Name: "frontend", NS: "fe", Cell: 1}, {Name: "backend", NS: "be", Cell: 2, IP: "10.255.2.2", Port: 8080}},
			}, f.upErr
		},
		demo: func(_ context.Context, st *lab.State, _ io.Writer) (lab.Report, error) {
			r := lab.Report{Steps: f.steps}
			if st.Plan.IPv6 != "" { // Demo plays the acts again over IPv6
				r.IPv6 = &lab.Report{Steps: f.steps, Family: "IPv6"}
			}
			return r, f.demoErr
		},
		down: func(_ context.Context, dir string, _ io.Writer) error {
			f.downs = append(f.downs, dir)
			return f.downErr
		},
	}
}

// TestUpEndsWithSummary: after the lab is removed, `up` ends with exactly
// one line saying what the demo showed and that the lab is gone (also when
// the demo or the lab failed); with --keep there is no removal and no such
// line. README quotes the line of a full run.
func TestUpEndsWithSummary(t *testing.T) {
	c2c := []lab.Step{{Allowed: false}, {Allowed: true}, {Allowed: false}}
	asg := []lab.Step{{From: "frontend"}, {From: "frontend", Allowed: true}, {From: "frontend"}}
	full := "demo on iptables: c2c denied → allowed → denied, asg denied → allowed → denied; lab removed"
	for _, tc := range []struct {
		name string
		args []string
		fake fakeLab
		code int
		want string // the last line; "" for none
	}{
		{"c2c and asg", nil, fakeLab{steps: append(slices.Clone(c2c), asg...)}, 0, full},
		{"dual stack", []string{"--ipv6"}, fakeLab{steps: append(slices.Clone(c2c), asg...)}, 0, "demo on iptables: c2c denied → allowed → denied, asg denied → allowed → denied; over IPv6: c2c denied → allowed → denied, asg denied → allowed → denied; lab removed"},
		{"nftables, c2c only", []string{"--backend", "nftables"}, fakeLab{steps: c2c}, 0, "demo on nftables: denied → allowed → denied; lab removed"},
		{"the demo failed", nil, fakeLab{steps: c2c[:2], demoErr: errors.New("policy removed: the frontend was not denied")}, 1, "demo on iptables: denied → allowed, then failed; lab removed"},
		{"the lab did not come up", nil, fakeLab{upErr: errors.New("silk-daemon on cell 2 exited")}, 1, "demo on iptables: not run (the lab did not come up); lab removed"},
		{"removal failed", nil, fakeLab{steps: c2c, downErr: errors.New("device busy")}, 0, "demo on iptables: denied → allowed → denied; lab not fully removed (scripts/lab down removes the rest)"},
		{"nothing was made", nil, fakeLab{noState: true, upErr: errors.New("no root")}, 1, ""},
		{"--keep", []string{"--keep"}, fakeLab{steps: c2c}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			dir := t.TempDir()
			code := up(context.Background(), tc.fake.acts(), append([]string{"--dir", dir}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
			var summaries []string
			for _, l := range append(lines, strings.Split(stderr.String(), "\n")...) {
				if strings.HasPrefix(l, "demo ") {
					summaries = append(summaries, l)
				}
			}
			if tc.want == "" {
				if len(summaries) > 0 || len(tc.fake.downs) > 0 {
					t.Errorf("summary lines %q, lab removed %d times; want neither:\n%s", summaries, len(tc.fake.downs), stdout.String())
				}
				return
			}
			if !slices.Equal(summaries, []string{tc.want}) || lines[len(lines)-1] != tc.want {
				t.Errorf("summary lines %q; want exactly one, last: %q\nstdout:\n%s", summaries, tc.want, stdout.String())
			}
			if !slices.Equal(tc.fake.downs, []string{dir}) {
				t.Errorf("down removed %q, want %q once", tc.fake.downs, dir)
			}
		})
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(strings.Split(string(readme), "\n"), func(l string) bool { return strings.TrimSpace(l) == full }) {
		t.Errorf("README does not quote the summary of a full run on a line of its own: %s", full)
	}
}
