// Command netman-certs writes a CA and the certificates upstream deploys for every netman job:
// <dir>/ca.{crt,key} and <dir>/<job>/{ca.crt,server.crt,server.key} or {ca.crt,client.crt,client.key}.
// Rerunning it keeps the CA and every certificate that is still good.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/netman-release/netman/src/mtls"
)

func main() {
	err := run(os.Args[1:], os.Stdout)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "netman-certs: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "netman-certs: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// hostList collects repeated -host flags.
type hostList []string

func (h *hostList) String() string     { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error { *h = append(*h, v); return nil }

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-certs", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("dir", "", "output directory (required)")
	force := fs.Bool("force", false, "replace the CA and every certificate even if they are still good")
	var hosts hostList
	fs.Var(&hosts, "host", "extra DNS name or IP for every server certificate (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *dir == "" || fs.NArg() > 0 {
		return usageError{errors.New("usage: netman-certs -dir <out> [-host <name-or-ip>]... [-force]")}
	}
	res, err := mtls.WriteTree(*dir, mtls.TreeOptions{ExtraHosts: hosts, Force: *force})
	if err != nil {
		return err
	}
	if res.CACreated {
		fmt.Fprintf(out, "created CA in %s\n", *dir)
	} else {
		fmt.Fprintf(out, "reused CA in %s\n", *dir)
	}
	for _, name := range res.Issued {
		fmt.Fprintf(out, "issued %s\n", name)
	}
	for _, name := range res.Kept {
		fmt.Fprintf(out, "kept %s\n", name)
	}
	return nil
}
