// Command policy-server-backup-restore backs up and restores the policy
// server's database from the backup-and-restore SDK's config file, with the
// SDK's flags (--backup|--restore --config --artifact-file). The
// bbr-cfnetworkingdb job runs it for netman's sqlite database, which the
// SDK's database-backup-restorer does not support; for postgres and mysql it
// runs the same client programs with the same flags as the SDK.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/policyserver/bbr"
)

const usage = "Usage: policy-server-backup-restore [--backup|--restore] --config <config-file> --artifact-file <artifact-file>"

func main() {
	ctx, stop := lifecycle.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy-server-backup-restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the JSON config file")
	backup := fs.Bool("backup", false, "back the database up")
	restore := fs.Bool("restore", false, "restore the database")
	artifact := fs.String("artifact-file", "", "path of the artifact file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var problem string
	switch {
	case *backup && *restore:
		problem = "only one of --backup or --restore can be provided"
	case !*backup && !*restore:
		problem = "missing --backup or --restore flag"
	case *configPath == "":
		problem = "missing --config flag"
	case *artifact == "":
		problem = "missing --artifact-file flag"
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected arguments %q", fs.Args())
	}
	if problem != "" {
		fmt.Fprintf(stderr, "%s\n%s\n", problem, usage)
		return 2
	}
	cfg, err := bbr.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *configPath, err)
		return 1
	}
	runner := bbr.Runner{Tools: bbr.DefaultTools, Log: stderr}
	if *backup {
		err = runner.Backup(ctx, cfg, *artifact)
	} else {
		err = runner.Restore(ctx, cfg, *artifact)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	return 0
}
