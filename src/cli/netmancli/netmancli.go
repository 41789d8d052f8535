// Package netmancli is the `netman` command: container-to-container policy
// management against policy-server's external v1 API without Cloud Foundry
// (the local lab, automation). Apps are named through a names file (a JSON
// object of app name to guid) or by guid; every failure is one line on
// stderr and exit status 1.
package netmancli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/netman-release/netman/src/cli/policyapi"
	"github.com/netman-release/netman/src/policy"
)

// Usage is printed by `netman help`.
const Usage = `netman manages container-to-container network policies through
policy-server's external API (v1), without the cf CLI.

Usage:
  netman [--api URL] [--token TOKEN] [--names FILE] [--json] [--skip-ssl-validation] <command> [args]

Commands:
  list [--app NAME|GUID]                                     list policies (those of one app)
  add SOURCE DESTINATION --protocol tcp|udp --port N|N-M     allow SOURCE to reach DESTINATION
  remove SOURCE DESTINATION --protocol tcp|udp --port N|N-M  remove that policy
  trace SOURCE DESTINATION --protocol tcp|udp --port N       why SOURCE may (not) reach DESTINATION there:
                                                             the policy and tags in the internal API, what
                                                             each cell's agent enforces (--cells)
  graph [--space GUID] [--org GUID] [--app NAME|GUID]        the apps and policies between them: DOT on
        [--dot FILE] [--svg FILE]                            stdout, or written to --dot and --svg
  ui [--listen ADDR]                                         serve a read-only web page of the graph,
                                                             each app's policies, instances and traces
  help                                                       show this text

Options (anywhere on the line):
  --api URL               policy server, e.g. http://127.0.0.1:4002      env NETMAN_API
  --token TOKEN           bearer token                                   env NETMAN_TOKEN
  --names FILE            JSON object {"<app name>": "<app guid>", ...}  env NETMAN_APP_NAMES
  --json                  print policies as v1 policy JSON
  --skip-ssl-validation   do not verify the server's certificate
  --internal-api URL      policy-server-internal, e.g. https://10.0.0.5:4003  env NETMAN_INTERNAL_API
  --ca, --cert, --key F   its CA and a client pair it trusts (the agent's)
                          env NETMAN_INTERNAL_CA, NETMAN_INTERNAL_CERT, NETMAN_INTERNAL_KEY
  --server-name NAME      the name its certificate carries when --internal-api is an IP,
                          e.g. policy-server.service.cf.internal   env NETMAN_INTERNAL_SERVER_NAME
  --cells URL,...         the cells' vxlan-policy-agent debug servers     env NETMAN_CELLS
                          (debug_server_host:port, e.g. http://10.0.16.5:8721)

SOURCE and DESTINATION are app names from the names file, or app GUIDs.
trace needs the internal API; graph and ui read policies from it when set, else
from the external API (--api, --token), and apps' spaces, orgs and instances
from the cells.
`

// Environment variables read by Main.
const (
	EnvAPI   = "NETMAN_API"
	EnvToken = "NETMAN_TOKEN"
	EnvNames = "NETMAN_APP_NAMES"

	EnvInternalAPI  = "NETMAN_INTERNAL_API"
	EnvInternalCA   = "NETMAN_INTERNAL_CA"
	EnvInternalCert = "NETMAN_INTERNAL_CERT"
	EnvInternalKey  = "NETMAN_INTERNAL_KEY"
	// EnvInternalServerName is the name the internal API's certificate
	// carries, when it is dialled by another (an IP).
	EnvInternalServerName = "NETMAN_INTERNAL_SERVER_NAME"
	EnvCells              = "NETMAN_CELLS"
)

// Main runs netman with args (without the program name) and returns the
// exit status: 0, or 1 after printing one line to stderr.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if err := run(ctx, args, getenv, stdout); err != nil {
		fmt.Fprintf(stderr, "netman: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

// usageError is a malformed command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + " (see 'netman help')" }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type options struct {
	api, token, names string
	json, skipSSL     bool
	help              bool

	command  string
	args     []string
	flagSeen map[string]bool
	app      string
	protocol string
	port     string

	internalAPI, ca, cert, key, cells string
	serverName                        string
	space, org, dot, svg, listen      string
}

// Flags taking a value and boolean flags; each command accepts the global
// ones plus its own.
var (
	valueFlags = map[string]bool{
		"api": true, "token": true, "names": true, "app": true, "protocol": true, "port": true,
		"internal-api": true, "ca": true, "cert": true, "key": true, "cells": true, "server-name": true,
		"space": true, "org": true, "dot": true, "svg": true, "listen": true,
	}
	boolFlags = map[string]bool{"json": true, "skip-ssl-validation": true, "help": true, "h": true}
	cmdFlags  = map[string][]string{
		"list": {"app"}, "add": {"protocol", "port"}, "remove": {"protocol", "port"}, "trace": {"protocol", "port"},
		"graph": {"space", "org", "app", "dot", "svg"}, "ui": {"listen", "space", "org", "app"},
	}
	// commandOnly are the flags only some commands take.
	commandOnly = []string{"app", "protocol", "port", "space", "org", "dot", "svg", "listen"}
)

func parse(args []string) (*options, error) {
	o := &options{flagSeen: map[string]bool{}}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		switch {
		case valueFlags[name]:
			if !hasValue {
				if i+1 >= len(args) {
					return nil, usagef("flag --%s needs a value", name)
				}
				i++
				value = args[i]
			}
		case boolFlags[name]:
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return nil, usagef("flag --%s takes no value, got %q", name, value)
				}
				value = strconv.FormatBool(b)
			} else {
				value = "true"
			}
		default:
			return nil, usagef("unknown flag %s", a)
		}
		o.flagSeen[name] = true
		switch name {
		case "api":
			o.api = value
		case "token":
			o.token = value
		case "names":
			o.names = value
		case "app":
			o.app = value
		case "protocol":
			o.protocol = value
		case "port":
			o.port = value
		case "internal-api":
			o.internalAPI = value
		case "ca":
			o.ca = value
		case "cert":
			o.cert = value
		case "key":
			o.key = value
		case "cells":
			o.cells = value
		case "server-name":
			o.serverName = value
		case "space":
			o.space = value
		case "org":
			o.org = value
		case "dot":
			o.dot = value
		case "svg":
			o.svg = value
		case "listen":
			o.listen = value
		case "json":
			o.json = value == "true"
		case "skip-ssl-validation":
			o.skipSSL = value == "true"
		case "help", "h":
			o.help = value == "true"
		}
	}
	if len(positional) > 0 {
		o.command, o.args = positional[0], positional[1:]
	}
	if o.command == "" || o.command == "help" || o.help {
		return o, nil
	}
	own, known := cmdFlags[o.command]
	if !known {
		return nil, usagef("unknown command %q", o.command)
	}
	for _, f := range commandOnly {
		if o.flagSeen[f] && !contains(own, f) {
			return nil, usagef("%s does not take --%s", o.command, f)
		}
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	if o.command == "help" || o.help {
		_, err := io.WriteString(stdout, Usage)
		return err
	}
	if o.command == "" {
		return usagef("no command")
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if !o.flagSeen["api"] {
		o.api = getenv(EnvAPI)
	}
	if !o.flagSeen["token"] {
		o.token = getenv(EnvToken)
	}
	if !o.flagSeen["names"] {
		o.names = getenv(EnvNames)
	}
	for _, f := range []struct {
		flag, env string
		v         *string
	}{
		{"internal-api", EnvInternalAPI, &o.internalAPI}, {"ca", EnvInternalCA, &o.ca}, {"cert", EnvInternalCert, &o.cert},
		{"key", EnvInternalKey, &o.key}, {"cells", EnvCells, &o.cells}, {"server-name", EnvInternalServerName, &o.serverName},
	} {
		if !o.flagSeen[f.flag] {
			*f.v = getenv(f.env)
		}
	}
	switch o.command {
	case "trace", "graph", "ui":
		return describe(runObserve(ctx, o, stdout))
	}

	// Check the command line before touching files or the network.
	var change *policy.Policy
	switch o.command {
	case "list":
		if len(o.args) != 0 {
			return usagef("list takes no arguments, got %q", strings.Join(o.args, " "))
		}
	case "add", "remove":
		if len(o.args) != 2 {
			return usagef("%s needs SOURCE and DESTINATION, got %d argument(s)", o.command, len(o.args))
		}
		p, err := changeFlags(o)
		if err != nil {
			return err
		}
		change = &p
	}
	if o.api == "" {
		return errors.New("no policy server: set --api or " + EnvAPI)
	}
	if u, err := url.Parse(o.api); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid policy server URL %q: want http(s)://host[:port]", o.api)
	}
	if o.token == "" {
		return errors.New("no token: set --token or " + EnvToken)
	}
	apps, err := loadNames(o.names)
	if err != nil {
		return err
	}
	if change != nil {
		if change.Source.ID, err = apps.resolve(o.args[0]); err != nil {
			return err
		}
		if change.Destination.ID, err = apps.resolve(o.args[1]); err != nil {
			return err
		}
	}

	client := policyapi.New(o.api, policyapi.NewHTTPClient(o.skipSSL, nil), authorization(o.token), "netman-cli")
	c := &cli{client: client, apps: apps, json: o.json, out: stdout}
	switch o.command {
	case "list":
		err = c.list(ctx, o.app)
	case "add":
		err = c.add(ctx, *change)
	case "remove":
		err = c.remove(ctx, *change)
	}
	return describe(err)
}

// changeFlags reads --protocol and --port of add and remove into a policy
// without app ids.
func changeFlags(o *options) (policy.Policy, error) {
	if !o.flagSeen["protocol"] || !o.flagSeen["port"] {
		return policy.Policy{}, usagef("%s needs --protocol tcp|udp and --port N|N-M", o.command)
	}
	proto := strings.ToLower(o.protocol)
	if proto != policy.ProtocolTCP && proto != policy.ProtocolUDP {
		return policy.Policy{}, usagef("invalid --protocol %q: want tcp or udp", o.protocol)
	}
	start, end, err := ParsePorts(o.port)
	if err != nil {
		return policy.Policy{}, usageError{err.Error()}
	}
	return policy.NewPolicy("", "", proto, start, end), nil
}

// ParsePorts parses "N" or "N-M" with 1 ≤ N ≤ M ≤ 65535.
func ParsePorts(s string) (start, end int, err error) {
	bad := fmt.Errorf("invalid --port %q: want N or N-M with 1 <= N <= M <= 65535", s)
	a, b, isRange := strings.Cut(s, "-")
	if start, err = strconv.Atoi(a); err != nil {
		return 0, 0, bad
	}
	end = start
	if isRange {
		if end, err = strconv.Atoi(b); err != nil {
			return 0, 0, bad
		}
	}
	if start < 1 || end > policy.MaxPort || start > end {
		return 0, 0, bad
	}
	return start, end, nil
}

// authorization is the header value for token; a token copied with its
// scheme (`cf oauth-token` prints "bearer ...") is sent as is.
func authorization(token string) string {
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		return token
	}
	return "Bearer " + token
}

// describe turns client errors into the one-line messages of the CLI.
func describe(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *policyapi.Error
	if errors.As(err, &apiErr) {
		switch apiErr.StatusCode {
		case http.StatusUnauthorized:
			return errors.New("unauthorized: check --token / " + EnvToken)
		case http.StatusForbidden:
			return errors.New("forbidden: " + apiErr.Message)
		case http.StatusBadRequest:
			return errors.New("invalid request: " + apiErr.Message)
		case http.StatusNotFound:
			return fmt.Errorf("not found: %s %s (is --api a policy server?)", apiErr.Method, apiErr.URL)
		default:
			return fmt.Errorf("policy server error (http %d): %s", apiErr.StatusCode, apiErr.Message)
		}
	}
	return err // UnreachableError and the rest already say what failed
}

// oneLine keeps an error on one line (a proxy's HTML page, a wrapped
// multi-line cause).
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)), " ")
}

// names maps app names to guids, from the names file.
type names struct {
	path   string
	byName map[string]string
	byGUID map[string]string // guid → the first name (sorted) naming it
}

// loadNames reads the names file; path "" means none.
func loadNames(path string) (*names, error) {
	n := &names{path: path, byName: map[string]string{}, byGUID: map[string]string{}}
	if path == "" {
		return n, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading names file: %w", err)
	}
	if err := json.Unmarshal(data, &n.byName); err != nil {
		return nil, fmt.Errorf("names file %s: want a JSON object {\"<app name>\": \"<app guid>\", ...}: %w", path, err)
	}
	keys := make([]string, 0, len(n.byName))
	for name, guid := range n.byName {
		if name == "" || guid == "" {
			return nil, fmt.Errorf("names file %s: empty app name or guid (%q: %q)", path, name, guid)
		}
		keys = append(keys, name)
	}
	sort.Strings(keys)
	for _, name := range keys {
		if _, ok := n.byGUID[n.byName[name]]; !ok {
			n.byGUID[n.byName[name]] = name
		}
	}
	return n, nil
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolve turns a command-line app into a guid: a name of the names file,
// a guid the file names, or anything shaped like a guid. Anything else is
// an unknown app name (a typo must not become a policy for a made-up guid).
func (n *names) resolve(app string) (string, error) {
	if guid, ok := n.byName[app]; ok {
		return guid, nil
	}
	if _, ok := n.byGUID[app]; ok || guidPattern.MatchString(app) {
		return app, nil
	}
	if n.path == "" {
		return "", fmt.Errorf("unknown app %q: not a GUID, and no names file (--names or %s)", app, EnvNames)
	}
	return "", fmt.Errorf("unknown app %q: not in names file %s and not a GUID", app, n.path)
}

// display is the name of guid when the file names it, else the guid.
func (n *names) display(guid string) string {
	if name, ok := n.byGUID[guid]; ok {
		return name
	}
	return guid
}

type cli struct {
	client *policyapi.Client
	apps   *names
	json   bool
	out    io.Writer
}

func (c *cli) list(ctx context.Context, app string) error {
	var ids []string
	if app != "" {
		guid, err := c.apps.resolve(app)
		if err != nil {
			return err
		}
		ids = []string{guid}
	}
	policies, err := c.client.ListPolicies(ctx, ids...)
	if err != nil {
		return err
	}
	return c.print(policies)
}

func (c *cli) add(ctx context.Context, p policy.Policy) error {
	if err := c.client.CreatePolicies(ctx, []policy.Policy{p}); err != nil {
		return err
	}
	return c.report("added", []policy.Policy{p})
}

// remove deletes p after checking it exists, as the cf CLI's
// remove-network-policy does: a missing policy is reported, not an error.
func (c *cli) remove(ctx context.Context, p policy.Policy) error {
	existing, err := c.client.ListPolicies(ctx, p.Source.ID)
	if err != nil {
		return err
	}
	found := false
	for _, e := range existing {
		if e.Source.ID == p.Source.ID && e.Destination.ID == p.Destination.ID && e.Destination.Protocol == p.Destination.Protocol &&
			e.Destination.Ports == p.Destination.Ports {
			found = true
			break
		}
	}
	if !found {
		if c.json {
			return c.print(nil)
		}
		_, err := fmt.Fprintln(c.out, "policy does not exist:", c.describePolicy(p))
		return err
	}
	if err := c.client.DeletePolicies(ctx, []policy.Policy{p}); err != nil {
		return err
	}
	return c.report("removed", []policy.Policy{p})
}

func (c *cli) report(verb string, ps []policy.Policy) error {
	if c.json {
		return c.print(ps)
	}
	for _, p := range ps {
		if _, err := fmt.Fprintf(c.out, "%s policy: %s\n", verb, c.describePolicy(p)); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) describePolicy(p policy.Policy) string {
	return fmt.Sprintf("%s -> %s %s %s", policyapi.Printable(c.apps.display(p.Source.ID)), policyapi.Printable(c.apps.display(p.Destination.ID)),
		p.Destination.Protocol, ports(p))
}

func ports(p policy.Policy) string {
	if p.Destination.Ports.Start == p.Destination.Ports.End {
		return strconv.Itoa(p.Destination.Ports.Start)
	}
	return fmt.Sprintf("%d-%d", p.Destination.Ports.Start, p.Destination.Ports.End)
}

// print writes policies as a table, or as the v1 collection JSON.
func (c *cli) print(policies []policy.Policy) error {
	if c.json {
		_, err := c.out.Write(append(policy.MarshalV1(policies), '\n'))
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "source\tdestination\tprotocol\tports")
	for _, p := range policies {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", policyapi.Printable(c.apps.display(p.Source.ID)), policyapi.Printable(c.apps.display(p.Destination.ID)),
			p.Destination.Protocol, ports(p))
	}
	return tw.Flush()
}
