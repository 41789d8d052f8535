package routeemitter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultInterval is how often Run registers everything again when no
// controller answers its greeting: upstream's
// route_emitter_interval_seconds (60), shortened for the lab.
const DefaultInterval = 5 * time.Second

// Run is `netman-lab route-emitter`: what route_emitter does for internal
// routes on a cell. It greets the controllers for their interval
// (minimumRegisterIntervalInSeconds), registers every --instance on
// service-discovery.register, registers them again every interval and
// whenever a controller sends service-discovery.start, until ctx is done.
func Run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("netman-lab route-emitter", flag.ContinueOnError)
	url := fs.String("nats", "nats://127.0.0.1:4222", "NATS server")
	fallback := fs.Duration("interval", DefaultInterval, "interval when no controller answers the greeting")
	var instances []Instance
	fs.Func("instance", "an app instance, hostname,index,ip,app-guid (repeat)", func(s string) error {
		f := strings.Split(s, ",")
		if len(f) != 4 {
			return errors.New("want hostname,index,ip,app-guid")
		}
		index, err := strconv.Atoi(f[1])
		if err != nil || net.ParseIP(f[2]) == nil {
			return errors.New("want hostname,index,ip,app-guid")
		}
		instances = append(instances, Instance{Hostname: f[0], Index: index, IP: f[2], App: f[3]})
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	stamp := func() string { return time.Now().Format(time.RFC3339Nano) }
	e, err := New(*url, true)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", *url, err)
	}
	defer e.Close()
	interval := *fallback
	if start, err := e.Greet(5 * time.Second); err != nil {
		fmt.Fprintf(out, "%s greet: %v; registering every %v\n", stamp(), err, interval)
	} else {
		if start.MinimumRegisterIntervalInSeconds > 0 {
			interval = time.Duration(start.MinimumRegisterIntervalInSeconds) * time.Second
		}
		fmt.Fprintf(out, "%s greeted controller %s: registering every %v\n", stamp(), start.ID, interval)
	}
	if err := e.Register(instances...); err != nil {
		return err
	}
	for _, i := range instances {
		m := i.Message()
		fmt.Fprintf(out, "%s registered %s → %s\n", stamp(), strings.Join(m.URIs, ", "), m.Host)
	}
	seen := len(e.Starts())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := e.EmitAll(); err != nil {
			fmt.Fprintf(out, "%s register: %v\n", stamp(), err)
		}
		if starts := e.Starts(); len(starts) > seen {
			fmt.Fprintf(out, "%s controller %s started: registered everything again\n", stamp(), starts[len(starts)-1].ID)
			seen = len(starts)
		}
	}
}
