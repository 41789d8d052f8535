// Command netman-lab drives the local lab (scripts/lab is its front end):
//
//	netman-lab up [--cells N] [--apps N] [--db sqlite|postgres|mysql] [--keep]
//	netman-lab status
//	netman-lab down
//
// `up` builds the lab from the binaries in --bin, runs the policy demo,
// prints its report and, without --keep, removes the lab again. The hidden
// subcommands are the lab's own processes: `app` inside each app container,
// `nats` (an embedded NATS server), `route-emitter` (registers a cell's apps'
// internal routes as route_emitter does) and `dns` (a cell's DNS front end,
// answering *.apps.internal from bosh-dns-adapter, in bosh-dns's place) and
// `cc` (a fake Cloud Controller for policy-server-asg-syncer).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/lab"
)

const usage = `usage: netman-lab up [--cells N] [--apps N] [--db sqlite|postgres|mysql] [--keep] [--dir DIR] [--bin DIR]
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("netman-lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".lab", "the lab's directory")
	var err error
	switch args[0] {
	case "up":
		return up(ctx, fs, dir, args[1:], stdout, stderr)
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
		err = lab.RunApp(ctx, args[1:], stdout)
	case "nats":
		err = lab.RunNATS(ctx, args[1:], stdout)
	case "route-emitter":
		err = lab.RunRouteEmitter(ctx, args[1:], stdout)
	case "dns":
		err = lab.RunDNS(ctx, args[1:], stdout)
	case "cc":
		err = lab.RunCC(ctx, args[1:], stdout)
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

func up(ctx context.Context, fs *flag.FlagSet, dir *string, args []string, stdout, stderr io.Writer) int {
	o := lab.Options{Log: stderr}
	fs.StringVar(&o.Bins, "bin", "bin", "the built binaries")
	fs.IntVar(&o.Cells, "cells", 2, "number of cells")
	fs.IntVar(&o.Apps, "apps", 2, "number of app containers (frontend, backend, then app-3...)")
	fs.StringVar(&o.DB, "db", "sqlite", "database: sqlite, postgres (127.0.0.1:5432) or mysql (127.0.0.1:3306)")
	fs.StringVar(&o.Underlay, "underlay", "10.244.0.", "the underlay /24, as its first three octets and a dot")
	keep := fs.Bool("keep", false, "leave the lab running after the demo")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.Dir = *dir
	teardown := func() {
		if err := lab.Down(context.Background(), *dir, stderr); err != nil {
			fmt.Fprintf(stderr, "netman-lab down: %v\n", err)
		}
	}
	st, err := lab.Up(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "netman-lab up: %v\n", err)
		if st != nil && !*keep {
			fmt.Fprintln(stderr, "==> removing what was made (keep it for a look with --keep)")
			teardown()
		} else if st != nil {
			fmt.Fprintln(stderr, "==> left as it is (--keep); scripts/lab down removes it")
		}
		return 1
	}
	report, err := lab.Demo(ctx, st, stderr)
	fmt.Fprintf(stdout, "\n%s", report)
	code := 0
	if err != nil {
		fmt.Fprintf(stderr, "netman-lab up: demo: %v\n", err)
		code = 1
	}
	if *keep && ctx.Err() == nil {
		fmt.Fprintf(stdout, "\n%s", st.Tour())
		return code
	}
	teardown()
	return code
}
