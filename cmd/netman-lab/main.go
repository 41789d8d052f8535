// Command netman-lab drives the local lab (scripts/lab is its front end):
//
//	netman-lab up [--cells N] [--apps N] [--db sqlite|postgres|mysql] [--backend iptables|nftables] [--ipv6] [--keep]
//	netman-lab status
//	netman-lab down
//
// `up` builds the lab from the binaries in --bin, runs the policy demo,
// prints its report and, without --keep, removes the lab again. The hidden
// subcommands are the lab's own processes, the Cloud Foundry stand-ins of
// src/standin: `app` inside each app container, `nats` (an embedded NATS
// server), `route-emitter` (registers a cell's apps' internal routes as
// route_emitter does), `dns` (a cell's DNS front end, answering
// *.apps.internal from bosh-dns-adapter, in bosh-dns's place) and `cc` (a
// Cloud Controller for policy-server-asg-syncer).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/netman-release/netman/src/lab"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/standin/app"
	"github.com/netman-release/netman/src/standin/boshdns"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/standin/natsserver"
	"github.com/netman-release/netman/src/standin/routeemitter"
)

const usage = `usage: netman-lab up [--cells N] [--apps N] [--db sqlite|postgres|mysql] [--backend iptables|nftables] [--ipv6] [--keep] [--dir DIR] [--bin DIR]
       netman-lab status [--dir DIR]
       netman-lab down [--dir DIR]`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	ctx, stop := lifecycle.SignalContext(context.Background())
	defer stop()
	fs := flag.NewFlagSet("netman-lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".lab", "the lab's directory")
	var err error
	switch args[0] {
	case "up":
		return up(ctx, labSteps, args[1:], stdout, stderr)
	case "down":
		if err = fs.Parse(args[1:]); err == nil {
			err = lab.Down(context.Background(), *dir, stderr)
		}
	case "status":
		if err = fs.Parse(args[1:]); err == nil {
			err = lab.Status(*dir, stdout)
			if errors.Is(err, lab.ErrNotRunning) {
				fmt.Fprintln(stdout, err)
				return 3
			}
		}
	case "app":
		err = app.Run(ctx, args[1:], stdout)
	case "nats":
		err = natsserver.Run(ctx, args[1:], stdout)
	case "route-emitter":
		err = routeemitter.Run(ctx, args[1:], stdout)
	case "dns":
		err = boshdns.Run(ctx, args[1:], stdout)
	case "cc":
		err = cc.Run(ctx, args[1:], stdout)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "netman-lab %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// steps are the acts of `up`: bring the lab up, run the demo, remove the
// lab. A test swaps them to check what `up` says around them without root.
type steps struct {
	up   func(context.Context, lab.Options) (*lab.State, error)
	demo func(context.Context, *lab.State, io.Writer) (lab.Report, error)
	down func(ctx context.Context, dir string, log io.Writer) error
}

var labSteps = steps{up: lab.Up, demo: lab.Demo, down: lab.Down}

// up checks every option before anything is made (a mistake is one line),
// brings the lab up, runs the demo and, without --keep, removes the lab and
// ends with one summary line on stdout.
func up(ctx context.Context, do steps, args []string, stdout, stderr io.Writer) int {
	a, err := lab.ParseUpArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "netman-lab up: %v\n", err)
		return 2
	}
	if a.Help {
		fmt.Fprintln(stdout, usage)
		return 0
	}
	o := a.Options
	o.Log = stderr
	// teardown removes the lab and ends with the one line that sums up
	// the run.
	teardown := func(demo string) {
		err := do.down(context.Background(), a.Dir, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "netman-lab down: %v\n", err)
		}
		fmt.Fprintln(stdout, lab.Summary(o.Backend, demo, err))
	}
	st, err := do.up(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "netman-lab up: %v\n", err)
		if st != nil && !a.Keep {
			fmt.Fprintln(stderr, "==> removing what was made (keep it for a look with --keep)")
			teardown("not run (the lab did not come up)")
		} else if st != nil {
			fmt.Fprintln(stderr, "==> left as it is (--keep); scripts/lab down removes it")
		}
		return 1
	}
	report, err := do.demo(ctx, st, stderr)
	fmt.Fprintf(stdout, "\n%s", report)
	code, demo := 0, report.Sequence()
	if err != nil {
		fmt.Fprintf(stderr, "netman-lab up: demo: %v\n", err)
		code, demo = 1, lab.Unfinished(demo)
	}
	if a.Keep && ctx.Err() == nil {
		fmt.Fprintf(stdout, "\n%s", st.Tour())
		return code
	}
	teardown(demo)
	return code
}
