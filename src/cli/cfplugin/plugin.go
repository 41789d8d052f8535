// Package cfplugin is the cf CLI plugin "network-policy" (binary
// network-policy-plugin), as cf-networking-release shipped it before the
// cf CLI grew built-in network policy commands: allow-access, remove-access
// (alias deny-access) and list-access. Apps are resolved to guids through
// Cloud Controller in the targeted space; policies go to the policy server
// behind the CLI's API endpoint with the CLI's access token.
package cfplugin

//lint:file-ignore ST1005 the errors are printed as they are: upstream's and the cf CLI's capitalised, punctuated messages

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"

	"code.cloudfoundry.org/cli/plugin"

	"github.com/netman-release/netman/src/cli/policyapi"
	"github.com/netman-release/netman/src/policy"
)

// Command names, as upstream.
const (
	AllowCommand  = "allow-access"
	RemoveCommand = "remove-access"
	DenyAlias     = "deny-access" // remove-access's name until Nov 2016
	ListCommand   = "list-access"
)

// UninstallMessage is what the cf CLI runs the plugin with before removing
// it (`cf uninstall-plugin`); a plugin that fails it cannot be uninstalled.
const UninstallMessage = "CLI-MESSAGE-UNINSTALL"

// Port bounds of --port.
const (
	MinPort = 1
	MaxPort = 65535
)

// Upstream validated the whole command line with these before parsing flags:
// exactly two apps, then two flags with values. Flag values are \S+ (upstream
// had \w+, which a port range "8080-8090" does not match).
var (
	listUsage   = regexp.MustCompile(`\A` + ListCommand + `\s*(--app(\s+|=)\S+\z|\z)`)
	changeUsage = regexp.MustCompile(`\A(` + AllowCommand + `|` + RemoveCommand + `|` + DenyAlias + `)\s+\S+\s+\S+\s+(--|-)\w+(\s+|=)\S+\s+(--|-)\w+(\s+|=)\S+\z`)
)

// Plugin implements plugin.Plugin.
type Plugin struct {
	// Out receives everything the plugin prints (upstream wrote to stdout).
	Out io.Writer
	// Getenv reads CF_TRACE and CF_COLOR.
	Getenv func(string) string
	// Exit ends the process after a failure (os.Exit; upstream log.Fatalf).
	Exit func(code int)
	// Color forces colours on or off; nil decides as the cf CLI does
	// (CF_COLOR, else whether Out is a terminal).
	Color *bool
}

// New returns the plugin writing to stdout.
func New() *Plugin {
	return &Plugin{Out: os.Stdout, Getenv: os.Getenv, Exit: os.Exit}
}

// Version is the plugin's version in `cf plugins`.
var Version = plugin.VersionType{Major: 1, Minor: 0, Build: 0}

// GetMetadata describes the plugin's commands to the cf CLI.
func (p *Plugin) GetMetadata() plugin.PluginMetadata {
	const changeUsageText = "cf %s SOURCE_APP DESTINATION_APP --protocol <tcp|udp> --port <%d-%d>[-<%d-%d>]"
	changeOptions := map[string]string{
		"-protocol": "Protocol to connect apps with. (required)",
		"-port":     "Port or range of ports to connect to destination app with. (required)",
	}
	return plugin.PluginMetadata{
		Name:          "network-policy",
		Version:       Version,
		MinCliVersion: plugin.VersionType{Major: 6, Minor: 15},
		Commands: []plugin.Command{
			{
				Name:     AllowCommand,
				HelpText: "Allow direct network traffic from one app to another",
				UsageDetails: plugin.Usage{
					Usage:   fmt.Sprintf(changeUsageText, AllowCommand, MinPort, MaxPort, MinPort, MaxPort),
					Options: changeOptions,
				},
			},
			{
				Name:     ListCommand,
				HelpText: "List policy for direct network traffic from one app to another",
				UsageDetails: plugin.Usage{
					Usage:   "cf " + ListCommand + " [--app appName]",
					Options: map[string]string{"-app": "Application to filter results by. (optional)"},
				},
			},
			{
				Name:     RemoveCommand,
				Alias:    DenyAlias,
				HelpText: "Remove policy and deny direct network traffic from one app to another",
				UsageDetails: plugin.Usage{
					Usage:   fmt.Sprintf(changeUsageText, RemoveCommand, MinPort, MaxPort, MinPort, MaxPort),
					Options: changeOptions,
				},
			},
		},
	}
}

// Run runs one command and prints OK and its output, or FAILED and the
// error (then exits 1), as upstream. The uninstall message succeeds silently.
func (p *Plugin) Run(conn plugin.CliConnection, args []string) {
	if len(args) > 0 && args[0] == UninstallMessage {
		return // nothing to clean up, nothing to print
	}
	st := p.styler()
	output, err := p.RunWithErrors(context.Background(), conn, args)
	if err != nil {
		fmt.Fprintln(p.Out, st.red("FAILED"))
		fmt.Fprintln(p.Out, err)
		p.exit(1)
		return
	}
	fmt.Fprintln(p.Out, st.green("OK"))
	fmt.Fprintln(p.Out)
	fmt.Fprint(p.Out, output)
}

func (p *Plugin) exit(code int) {
	if p.Exit != nil {
		p.Exit(code)
	}
}

func (p *Plugin) getenv(k string) string {
	if p.Getenv == nil {
		return ""
	}
	return p.Getenv(k)
}

// RunWithErrors runs one command; progress lines go to Out, the table (for
// list-access) is returned.
func (p *Plugin) RunWithErrors(ctx context.Context, conn plugin.CliConnection, args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("Invalid command")
	}
	switch args[0] {
	case AllowCommand, RemoveCommand, DenyAlias:
		return p.change(ctx, conn, args)
	case ListCommand:
		return p.list(ctx, conn, args)
	}
	return "", errors.New("Invalid command")
}

// Args are a validated allow-access or remove-access command line.
type Args struct {
	SourceAppName string
	DestAppName   string
	Protocol      string
	StartPort     int
	EndPort       int // == StartPort for a single port
}

// ValidateArgs checks a whole allow-access / remove-access command line as
// upstream did: the shape (regex), then the flags, the port and the
// protocol. Failures are "Incorrect usage. <why>" followed by `cf help
// <command>`.
func ValidateArgs(conn plugin.CliConnection, args []string) (Args, error) {
	if !changeUsage.MatchString(strings.Join(args, " ")) {
		return Args{}, errorWithUsage("", args[0], conn)
	}
	flags := flag.NewFlagSet("cf "+args[0]+" <src> <dest>", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	protocol := flags.String("protocol", "", "the protocol allowed")
	portString := flags.String("port", "", "the destination port or port range")
	if err := flags.Parse(args[3:]); err != nil {
		return Args{}, errorWithUsage(err.Error(), args[0], conn)
	}
	start, end, msg := ParsePorts(*portString)
	if msg != "" {
		return Args{}, errorWithUsage(msg, args[0], conn)
	}
	if *protocol != policy.ProtocolTCP && *protocol != policy.ProtocolUDP {
		return Args{}, errorWithUsage("Protocol is not valid. Must be tcp or udp.", args[0], conn)
	}
	return Args{SourceAppName: args[1], DestAppName: args[2], Protocol: *protocol, StartPort: start, EndPort: end}, nil
}

// ParsePorts parses "N" or "N-M" (1 ≤ N ≤ M ≤ 65535); msg says what is
// wrong, in upstream's words where upstream had some.
func ParsePorts(s string) (start, end int, msg string) {
	a, b, isRange := strings.Cut(s, "-")
	start, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, "Port is not valid: " + s
	}
	end = start
	if isRange {
		if end, err = strconv.Atoi(b); err != nil {
			return 0, 0, "Port is not valid: " + s
		}
	}
	if start < MinPort || start > MaxPort || end < MinPort || end > MaxPort {
		return 0, 0, fmt.Sprintf("Port is not valid. Must be in range <%d-%d>.", MinPort, MaxPort)
	}
	if start > end {
		return 0, 0, "Port range is not valid: " + s + ". The start port must not be greater than the end port."
	}
	return start, end, ""
}

func errorWithUsage(why, cmd string, conn plugin.CliConnection) error {
	output, err := conn.CliCommandWithoutTerminalOutput("help", cmd)
	if err != nil {
		return fmt.Errorf("cf cli error: %w", err)
	}
	return fmt.Errorf("Incorrect usage. %s\n\n%s", why, strings.Join(output, "\n"))
}

func (p *Plugin) change(ctx context.Context, conn plugin.CliConnection, args []string) (string, error) {
	a, err := ValidateArgs(conn, args)
	if err != nil {
		return "", err
	}
	remove := args[0] != AllowCommand
	username, err := p.username(conn)
	if err != nil {
		return "", err
	}
	st := p.styler()
	verb := "Allowing"
	if remove {
		verb = "Denying"
	}
	fmt.Fprintf(p.Out, "%s traffic from %s to %s as %s...\n", verb,
		st.cyan(policyapi.Printable(a.SourceAppName)), st.cyan(policyapi.Printable(a.DestAppName)), st.cyan(policyapi.Printable(username)))

	s, err := p.newSession(conn)
	if err != nil {
		return "", err
	}
	srcGUID, err := s.cc.appGUID(ctx, a.SourceAppName, s.spaceGUID)
	if err != nil {
		return "", fmt.Errorf("resolving source app: %w", err)
	}
	if srcGUID == "" {
		return "", fmt.Errorf("resolving source app: %s not found", a.SourceAppName)
	}
	dstGUID, err := s.cc.appGUID(ctx, a.DestAppName, s.spaceGUID)
	if err != nil {
		return "", fmt.Errorf("resolving destination app: %w", err)
	}
	if dstGUID == "" {
		return "", fmt.Errorf("resolving destination app: %s not found", a.DestAppName)
	}

	// A single port goes to the v0 API (which every policy server has), a
	// range to v1, as upstream.
	ps := []policy.Policy{policy.NewPolicy(srcGUID, dstGUID, a.Protocol, a.StartPort, a.EndPort)}
	single := a.StartPort == a.EndPort
	switch {
	case !remove && single:
		err = s.policies.CreatePoliciesV0(ctx, ps)
	case !remove:
		err = s.policies.CreatePolicies(ctx, ps)
	case single:
		err = s.policies.DeletePoliciesV0(ctx, ps)
	default:
		err = s.policies.DeletePolicies(ctx, ps)
	}
	if err != nil {
		if remove {
			return "", fmt.Errorf("deleting policies: %w", err)
		}
		return "", fmt.Errorf("adding policies: %w", err)
	}
	return "", nil
}

func (p *Plugin) list(ctx context.Context, conn plugin.CliConnection, args []string) (string, error) {
	if !listUsage.MatchString(strings.Join(args, " ")) {
		return "", errorWithUsage("", args[0], conn)
	}
	flags := flag.NewFlagSet("cf "+ListCommand, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	appName := flags.String("app", "", "app name to filter results")
	if err := flags.Parse(args[1:]); err != nil {
		return "", errorWithUsage(err.Error(), args[0], conn)
	}
	username, err := p.username(conn)
	if err != nil {
		return "", err
	}
	st := p.styler()
	fmt.Fprintf(p.Out, "Listing policies as %s...\n", st.cyan(policyapi.Printable(username)))

	s, err := p.newSession(conn)
	if err != nil {
		return "", err
	}
	var policies []policy.Policy
	if *appName != "" {
		guid, err := s.cc.appGUID(ctx, *appName, s.spaceGUID)
		if err != nil {
			return "", fmt.Errorf("getting app: %w", err)
		}
		if guid == "" {
			return "", fmt.Errorf("getting app: %s not found", *appName)
		}
		if policies, err = s.policies.ListPolicies(ctx, guid); err != nil {
			return "", fmt.Errorf("getting policies by id: %w", err)
		}
	} else if policies, err = s.policies.ListPolicies(ctx); err != nil {
		return "", fmt.Errorf("getting policies: %w", err)
	}
	apps, err := s.cc.spaceApps(ctx, s.spaceGUID)
	if err != nil {
		return "", fmt.Errorf("getting apps: %w", err)
	}

	rows := [][]string{{"Source", "Destination", "Protocol", "Ports"}}
	for _, pol := range policies {
		src, srcOK := apps[pol.Source.ID]
		dst, dstOK := apps[pol.Destination.ID]
		if !srcOK || !dstOK {
			continue // only policies between apps of the targeted space
		}
		rows = append(rows, []string{src, dst, pol.Destination.Protocol,
			fmt.Sprintf("%d-%d", pol.Destination.Ports.Start, pol.Destination.Ports.End)})
	}
	return renderTable(rows, st), nil
}

func (p *Plugin) username(conn plugin.CliConnection) (string, error) {
	loggedIn, err := conn.IsLoggedIn()
	if err != nil {
		return "", fmt.Errorf("checking login: %w", err)
	}
	if !loggedIn {
		return "", errors.New("Not logged in. Use 'cf login' or 'cf login --sso' to log in.")
	}
	username, err := conn.Username()
	if err != nil {
		return "", fmt.Errorf("could not resolve username: %w", err)
	}
	return username, nil
}

// session is what one command needs from the CLI: who, where, and clients.
type session struct {
	spaceGUID string
	cc        *cloudController
	policies  *policyapi.Client
}

func (p *Plugin) newSession(conn plugin.CliConnection) (*session, error) {
	apiEndpoint, err := conn.ApiEndpoint()
	if err != nil {
		return nil, fmt.Errorf("getting api endpoint: %w", err)
	}
	if apiEndpoint == "" {
		return nil, errors.New("No API endpoint set. Use 'cf login' or 'cf api' to target an endpoint.")
	}
	skipSSL, err := conn.IsSSLDisabled()
	if err != nil {
		return nil, fmt.Errorf("checking if ssl disabled: %w", err)
	}
	space, err := conn.GetCurrentSpace()
	if err != nil {
		return nil, fmt.Errorf("getting current space: %w", err)
	}
	if space.Guid == "" {
		return nil, errors.New("No space targeted, use 'cf target -s SPACE' to target a space.")
	}
	token, err := conn.AccessToken()
	if err != nil {
		return nil, fmt.Errorf("getting access token: %w", err)
	}
	var wrap func(http.RoundTripper) http.RoundTripper
	if p.getenv("CF_TRACE") == "true" {
		wrap = func(rt http.RoundTripper) http.RoundTripper { return &tracer{next: rt, out: p.Out} }
	}
	httpClient := policyapi.NewHTTPClient(skipSSL, wrap)
	return &session{
		spaceGUID: space.Guid,
		cc:        newCloudController(apiEndpoint, httpClient, token),
		policies:  policyapi.New(apiEndpoint, httpClient, token, userAgent),
	}, nil
}

const userAgent = "network-policy-plugin (netman)"
