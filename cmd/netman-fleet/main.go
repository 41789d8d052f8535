// Command netman-fleet simulates a fleet of cells on one machine against
// real silk-controller, policy-server and policy-server-internal
// processes, runs the scenarios of docs/benchmarks.md "Fleet" and prints
// a report (and writes it as JSON with -json).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/fleet"
	"github.com/netman-release/netman/src/lifecycle"
)

func main() {
	fleet.MaybeServe()
	var opts fleet.Options
	flag.IntVar(&opts.Cells, "cells", 1000, "simulated cells")
	flag.IntVar(&opts.Policies, "policies", 0, "policies seeded (default 2 per app)")
	flag.IntVar(&opts.Apps, "apps", 0, "apps, one container each (default 30 per cell)")
	flag.StringVar(&opts.Mode, "mode", fleet.ModeLongPoll, "agents' policy cycle: long-poll or poll (upstream's plain 5 s polling)")
	flag.IntVar(&opts.Changes, "changes", 10, "policy changes measured in scenario 2 (each created, then deleted)")
	flag.IntVar(&opts.Restart, "restart", 50, "cells restarted together in scenario 3")
	flag.IntVar(&opts.Leases, "leases", 2047, "cells (leases) of scenario 5")
	flag.IntVar(&opts.LeasePollSeconds, "lease-poll-seconds", 30, "silk-daemon lease_poll_interval_seconds")
	flag.DurationVar(&opts.Idle, "idle", 0, "steady-state window (default 30s)")
	flag.DurationVar(&opts.SlowDB, "slow-db", 0, "latency added to every policy database query in scenario 6 (default 300ms)")
	flag.StringVar(&opts.ServerCPUs, "server-cpus", "", "pin the server children to these CPUs (taskset list, e.g. 1); run netman-fleet under taskset on the others")
	scenarios := flag.String("scenario", "1,2,3,4,5,6", "scenarios to run, comma-separated")
	dir := flag.String("dir", "", "working directory (default a new temporary one)")
	jsonOut := flag.String("json", "", "write the report as JSON to this file")
	cpuProfile := flag.String("cpuprofile", "", "write the simulation process's CPU profile (not the servers') to this file")
	flag.Parse()

	var list []int
	for _, s := range strings.Split(*scenarios, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 6 {
			fmt.Fprintf(os.Stderr, "netman-fleet: bad scenario %q (1-6)\n", s)
			os.Exit(2)
		}
		list = append(list, n)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "netman-fleet-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "netman-fleet:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	opts.Dir, opts.Log = *dir, os.Stderr
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(pf)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "netman-fleet:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := lifecycle.SignalContext(context.Background())
	defer stop()
	r, err := fleet.Run(ctx, opts, list)
	if r != nil {
		r.Print(os.Stdout)
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(r, "", "  ")
			if werr := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netman-fleet:", err)
		os.Exit(1)
	}
}
