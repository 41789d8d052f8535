package netmancli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/cli/policyapi"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/policy"
)

// requestTimeout bounds each request of trace, graph and ui.
const requestTimeout = 10 * time.Second

// runObserve runs trace, graph and ui.
func runObserve(ctx context.Context, o *options, stdout io.Writer) error {
	var q observe.Query
	if o.command == "trace" {
		if len(o.args) != 2 {
			return usagef("trace needs SOURCE and DESTINATION, got %d argument(s)", len(o.args))
		}
		if !o.flagSeen["protocol"] || !o.flagSeen["port"] {
			return usagef("trace needs --protocol tcp|udp and --port N")
		}
		q.Protocol = strings.ToLower(o.protocol)
		if q.Protocol != policy.ProtocolTCP && q.Protocol != policy.ProtocolUDP {
			return usagef("invalid --protocol %q: want tcp or udp", o.protocol)
		}
		port, err := strconv.Atoi(o.port)
		if err != nil || port < 1 || port > policy.MaxPort {
			return usagef("invalid --port %q: want one port, 1 to 65535", o.port)
		}
		q.Port = port
	} else if len(o.args) != 0 {
		return usagef("%s takes no arguments, got %q", o.command, strings.Join(o.args, " "))
	}
	apps, err := loadNames(o.names)
	if err != nil {
		return err
	}
	cells, err := cellClients(o.cells)
	if err != nil {
		return err
	}
	var internal *observe.InternalAPI
	if o.internalAPI != "" {
		if internal, err = internalClient(o); err != nil {
			return err
		}
	}
	switch o.command {
	case "trace":
		if internal == nil {
			return errors.New("trace needs policy-server-internal: set --internal-api or " + EnvInternalAPI)
		}
		for i, arg := range o.args {
			guid, err := apps.resolve(arg)
			if err != nil {
				return err
			}
			app := observe.App{GUID: guid, Name: apps.byGUID[guid]}
			if i == 0 {
				q.Source = app
			} else {
				q.Destination = app
			}
		}
		r, err := observe.Trace(ctx, internal, cells, q)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(stdout, r)
		}
		return r.WriteText(stdout)
	}
	src, err := policySource(o, internal)
	if err != nil {
		return err
	}
	f := observe.Filter{Space: o.space, Org: o.org}
	if o.app != "" {
		if f.App, err = apps.resolve(o.app); err != nil {
			return err
		}
	}
	if o.command == "graph" {
		return graph(ctx, src, cells, apps.byGUID, f, o, stdout)
	}
	return serveUI(ctx, src, cells, apps.byGUID, f, o, stdout)
}

// internalClient is the internal API client of --internal-api and its
// credentials.
func internalClient(o *options) (*observe.InternalAPI, error) {
	u, err := url.Parse(o.internalAPI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid internal API URL %q: want https://host:port", o.internalAPI)
	}
	if u.Scheme == "https" && (o.ca == "" || o.cert == "" || o.key == "") {
		return nil, fmt.Errorf("the internal API needs mTLS credentials: set --ca, --cert and --key (or %s, %s, %s)", EnvInternalCA, EnvInternalCert, EnvInternalKey)
	}
	return observe.NewInternalAPI(o.internalAPI, o.ca, o.cert, o.key, o.serverName, requestTimeout)
}

// cellClients are the agents' debug servers of --cells (comma- or
// space-separated; "host:port" means http://host:port).
func cellClients(list string) ([]observe.Cell, error) {
	var cells []observe.Cell
	for _, s := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		base := s
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		u, err := url.Parse(base)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("invalid cell debug endpoint %q: want host:port or http://host:port", s)
		}
		cells = append(cells, observe.NewAgentDebug(base, requestTimeout))
	}
	return cells, nil
}

// externalPolicies reads every policy from the external API (admin
// token), for graph and ui without the internal API.
type externalPolicies struct{ c *policyapi.Client }

func (e externalPolicies) Policies(ctx context.Context, ids ...string) ([]policy.Policy, error) {
	return e.c.ListPolicies(ctx, ids...)
}

func (externalPolicies) LastUpdated(context.Context) (int64, error) { return 0, nil }

// policySource is the internal API when configured, else the external one.
func policySource(o *options, internal *observe.InternalAPI) (observe.PolicySource, error) {
	if internal != nil {
		return internal, nil
	}
	if o.api == "" {
		return nil, fmt.Errorf("%s needs policies: set --internal-api (or %s), or --api and --token (or %s, %s)", o.command, EnvInternalAPI, EnvAPI, EnvToken)
	}
	if u, err := url.Parse(o.api); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid policy server URL %q: want http(s)://host[:port]", o.api)
	}
	if o.token == "" {
		return nil, errors.New("no token: set --token or " + EnvToken)
	}
	return externalPolicies{policyapi.New(o.api, policyapi.NewHTTPClient(o.skipSSL, nil), authorization(o.token), "netman-cli")}, nil
}

// graph writes the policy graph: DOT on stdout, or DOT and SVG to the
// files of --dot and --svg.
func graph(ctx context.Context, src observe.PolicySource, cells []observe.Cell, names map[string]string, f observe.Filter, o *options, stdout io.Writer) error {
	ps, err := src.Policies(ctx)
	if err != nil {
		return err
	}
	apps, errs := observe.CollectApps(ctx, cells, names)
	if len(errs) > 0 {
		return fmt.Errorf("reading the cells: %w", errors.Join(errs...))
	}
	g := observe.BuildGraph(ps, apps, f)
	if o.dot == "" && o.svg == "" {
		if o.json {
			return printJSON(stdout, g)
		}
		return g.WriteDOT(stdout)
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{o.dot, g.WriteDOT}, {o.svg, g.WriteSVG}} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.write); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "wrote %s (%d apps, %d connections)\n", out.path, len(g.Apps), len(g.Edges)); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// defaultListen is where `netman ui` serves without --listen.
const defaultListen = "127.0.0.1:8090"

// serveUI serves the page until ctx is done (Ctrl-C).
func serveUI(ctx context.Context, src observe.PolicySource, cells []observe.Cell, names map[string]string, f observe.Filter, o *options, stdout io.Writer) error {
	addr := o.listen
	if addr == "" {
		addr = defaultListen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ui := &observe.UI{Policies: src, Cells: cells, Names: names, Filter: f, Activity: observe.ActivitySources(cells)}
	srv := &http.Server{Handler: ui.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if _, err := fmt.Fprintf(stdout, "serving http://%s/ (Ctrl-C to stop)\n", ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
