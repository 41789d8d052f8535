package natsserver

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Run is `netman-lab nats`: a server on --listen, until ctx is done.
func Run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab nats", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:4222", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	srv, err := New(Config{Host: host, Port: n})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s nats listening on %s\n", time.Now().Format(time.RFC3339Nano), srv.URL())
	<-ctx.Done()
	srv.Stop()
	fmt.Fprintf(out, "%s nats stopped\n", time.Now().Format(time.RFC3339Nano))
	return nil
}
