package cfplugin_test

// These tests install and run the built network-policy-plugin binary
// against the cf CLI's own plugin RPC server (code.cloudfoundry.org/cli
// v6.53.0 plugin/rpc), set up as the cf CLI's plugin tests do: a test
// config, a fake authentication repository handing out the access token,
// and a fake command runner standing in for core commands (`cf help`).

import (
	"bytes"
	"errors"
	"fmt"
	"go/build"
	"io"
	netrpc "net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"code.cloudfoundry.org/cli/cf/api"
	"code.cloudfoundry.org/cli/cf/api/authentication/authenticationfakes"
	"code.cloudfoundry.org/cli/cf/commandregistry"
	"code.cloudfoundry.org/cli/cf/configuration/coreconfig"
	"code.cloudfoundry.org/cli/cf/flags"
	"code.cloudfoundry.org/cli/cf/requirements"
	"code.cloudfoundry.org/cli/cf/terminal"
	"code.cloudfoundry.org/cli/cf/trace"
	testconfig "code.cloudfoundry.org/cli/cf/util/testhelpers/configuration"
	"code.cloudfoundry.org/cli/plugin"
	"code.cloudfoundry.org/cli/plugin/rpc"
	"code.cloudfoundry.org/cli/plugin/rpc/rpcfakes"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	_ "github.com/netman-release/netman/src/testsupport/protoconflict" // before plugin/rpc's protobuf registrations
)

// helpCommand makes `help` a core command of the registry, as the cf CLI
// has it; the fake command runner does the printing.
type helpCommand struct{}

func (helpCommand) MetaData() commandregistry.CommandMetadata {
	return commandregistry.CommandMetadata{Name: "help", ShortName: "h", Usage: []string{"CF_NAME help [COMMAND]"}}
}
func (c helpCommand) SetDependency(commandregistry.Dependency, bool) commandregistry.Command {
	return c
}
func (helpCommand) Requirements(requirements.Factory, flags.FlagContext) ([]requirements.Requirement, error) {
	return nil, nil
}
func (helpCommand) Execute(flags.FlagContext) error { return nil }

func init() {
	if !commandregistry.Commands.CommandExists("help") {
		commandregistry.Register(helpCommand{})
	}
}

var pluginBinary struct {
	once sync.Once
	path string
	err  error
}

// buildPlugin builds cmd/network-policy-plugin once per test binary.
func buildPlugin(t *testing.T) string {
	t.Helper()
	pluginBinary.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(build.Default.GOROOT, "bin", "go")
		}
		dir, err := os.MkdirTemp("", "network-policy-plugin-")
		if err != nil {
			pluginBinary.err = err
			return
		}
		pluginBinary.path = filepath.Join(dir, "network-policy-plugin")
		out, err := exec.Command(goTool, "build", "-o", pluginBinary.path,
			"github.com/netman-release/netman/cmd/network-policy-plugin").CombinedOutput()
		if err != nil {
			pluginBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if pluginBinary.err != nil {
		t.Fatal(pluginBinary.err)
	}
	return pluginBinary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginBinary.path != "" {
		_ = os.RemoveAll(filepath.Dir(pluginBinary.path))
	}
	os.Exit(code)
}

// cfCLI is the cf CLI's side of a plugin call.
type cfCLI struct {
	t      *testing.T
	binary string
	svc    *rpc.CliRpcService
	config coreconfig.Repository
	auth   *authenticationfakes.FakeRepository
	runner *rpcfakes.FakeCommandRunner

	mu       sync.Mutex
	metadata plugin.PluginMetadata // from the install handshake
}

const rpcToken = "bearer rpc-token"

func newCFCLI(t *testing.T, apiEndpoint string) *cfCLI {
	t.Helper()
	// Core commands build their dependencies from the CLI's home.
	t.Setenv("CF_HOME", t.TempDir())
	t.Setenv("CF_PLUGIN_HOME", t.TempDir())

	c := &cfCLI{t: t, binary: buildPlugin(t)}
	c.config = testconfig.NewRepositoryWithDefaults() // user my-user, space my-space-guid
	c.config.SetAPIEndpoint(apiEndpoint)
	c.config.SetSSLDisabled(true)
	c.auth = new(authenticationfakes.FakeRepository)
	c.auth.RefreshAuthTokenReturns(rpcToken, nil)
	c.runner = new(rpcfakes.FakeCommandRunner)
	c.runner.CommandStub = c.coreCommand

	tee := terminal.NewTeePrinter(io.Discard)
	locator := api.RepositoryLocator{}.SetAuthenticationRepository(c.auth)
	svc, err := rpc.NewRpcService(tee, tee, c.config, locator, c.runner, trace.NewLogger(io.Discard, false), io.Discard, netrpc.NewServer())
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	c.svc = svc
	return c
}

// coreCommand stands in for the cf CLI's core commands; only `cf help
// <plugin command>` is expected, answered from the installed metadata.
func (c *cfCLI) coreCommand(args []string, deps commandregistry.Dependency, _ bool) error {
	if len(args) != 2 || args[0] != "help" {
		return fmt.Errorf("unexpected core command %q", args)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range c.metadata.Commands {
		if cmd.Name == args[1] || cmd.Alias == args[1] {
			deps.UI.Say("NAME:\n   %s - %s\n\nUSAGE:\n   %s", cmd.Name, cmd.HelpText, cmd.UsageDetails.Usage)
			return nil
		}
	}
	return errors.New("'" + args[1] + "' is not a registered command. See 'cf help -a'")
}

// run execs the plugin as the cf CLI does: `<binary> <rpc port> args...`.
func (c *cfCLI) run(args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(c.binary, append([]string{c.svc.Port()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "CF_COLOR=false", "CF_TRACE=")
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return out.String(), exitErr.ExitCode()
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), 0
}

// install is `cf install-plugin`: the plugin sends its metadata.
func (c *cfCLI) install() plugin.PluginMetadata {
	c.t.Helper()
	if out, code := c.run("SendMetadata"); code != 0 {
		c.t.Fatalf("SendMetadata: exit %d: %s", code, out)
	}
	c.svc.RpcCmd.MetadataMutex.RLock()
	md := *c.svc.RpcCmd.PluginMetadata
	c.svc.RpcCmd.MetadataMutex.RUnlock()
	c.mu.Lock()
	c.metadata = md
	c.mu.Unlock()
	return md
}

func TestThroughCFPluginRPC(t *testing.T) {
	cloud := newFakeCloud(t, rpcToken)
	cloud.addApp("g-front", "frontend", "my-space-guid")
	cloud.addApp("g-back", "backend", "my-space-guid")
	cloud.addApp("g-elsewhere", "elsewhere", "another-space")
	cli := newCFCLI(t, cloud.URL())

	md := cli.install()
	if md.Name != "network-policy" || len(md.Commands) != 3 || md.Commands[2].Alias != "deny-access" {
		t.Fatalf("installed metadata %+v", md)
	}

	out, code := cli.run("allow-access", "frontend", "backend", "--protocol", "tcp", "--port", "8080")
	if code != 0 || out != "Allowing traffic from frontend to backend as my-user...\nOK\n\n" {
		t.Fatalf("allow-access: exit %d:\n%s", code, out)
	}
	out, code = cli.run("allow-access", "backend", "frontend", "--protocol", "udp", "--port", "5000-5010")
	if code != 0 || out != "Allowing traffic from backend to frontend as my-user...\nOK\n\n" {
		t.Fatalf("allow-access range: exit %d:\n%s", code, out)
	}
	want := []policy.Policy{policy.NewPolicy("g-front", "g-back", "tcp", 8080, 8080), policy.NewPolicy("g-back", "g-front", "udp", 5000, 5010)}
	if diff := cmp.Diff(want, cloud.stored()); diff != "" {
		t.Fatalf("stored (-want +got):\n%s", diff)
	}
	cloud.addPolicy(policy.NewPolicy("g-front", "g-elsewhere", "tcp", 443, 443)) // not shown: another space

	out, code = cli.run("list-access")
	if code != 0 || out != "Listing policies as my-user...\nOK\n\n"+
		"Source\t\tDestination\tProtocol\tPorts\n"+
		"frontend\tbackend\t\ttcp\t\t8080-8080\n"+
		"backend\t\tfrontend\tudp\t\t5000-5010\n" {
		t.Fatalf("list-access: exit %d:\n%q", code, out)
	}

	out, code = cli.run("remove-access", "backend", "frontend", "--protocol", "udp", "--port", "5000-5010")
	if code != 0 || out != "Denying traffic from backend to frontend as my-user...\nOK\n\n" {
		t.Fatalf("remove-access: exit %d:\n%s", code, out)
	}

	// What crossed the wire: names resolved in the targeted space, v0 for
	// a single port, v1 for ranges and lists, always with the CLI's token.
	var got []string
	for _, r := range cloud.recorded() {
		if r.Authorization != rpcToken {
			t.Errorf("%s %s sent Authorization %q", r.Method, r.Path, r.Authorization)
		}
		line := r.Method + " " + r.Path
		if r.Query != "" {
			line += "?" + r.Query
		}
		if r.Body != "" {
			line += " " + r.Body
		}
		got = append(got, line)
	}
	wantRequests := []string{
		"GET /v3/apps?names=frontend&space_guids=my-space-guid",
		"GET /v3/apps?names=backend&space_guids=my-space-guid",
		`POST /networking/v0/external/policies {"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"tcp","port":8080}}]}`,
		"GET /v3/apps?names=backend&space_guids=my-space-guid",
		"GET /v3/apps?names=frontend&space_guids=my-space-guid",
		`POST /networking/v1/external/policies {"policies":[{"source":{"id":"g-back"},"destination":{"id":"g-front","protocol":"udp","ports":{"start":5000,"end":5010}}}]}`,
		"GET /networking/v1/external/policies",
		"GET /v3/apps?per_page=5000&space_guids=my-space-guid",
		"GET /v3/apps?names=backend&space_guids=my-space-guid",
		"GET /v3/apps?names=frontend&space_guids=my-space-guid",
		`POST /networking/v1/external/policies/delete {"policies":[{"source":{"id":"g-back"},"destination":{"id":"g-front","protocol":"udp","ports":{"start":5000,"end":5010}}}]}`,
	}
	if diff := cmp.Diff(wantRequests, got); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
	if cli.auth.RefreshAuthTokenCallCount() != 4 {
		t.Errorf("access token fetched %d times, want once per command (4)", cli.auth.RefreshAuthTokenCallCount())
	}

	// Incorrect usage shows `cf help <command>`, obtained through the RPC
	// server's core-command call.
	out, code = cli.run("allow-access", "frontend", "--protocol", "tcp", "backend", "--port", "8080")
	wantUsage := "FAILED\nIncorrect usage. \n\nNAME:\n   allow-access - Allow direct network traffic from one app to another\n\n" +
		"USAGE:\n   cf allow-access SOURCE_APP DESTINATION_APP --protocol <tcp|udp> --port <1-65535>[-<1-65535>]\n"
	if code != 1 || out != wantUsage {
		t.Fatalf("bad usage: exit %d:\n%q\nwant:\n%q", code, out, wantUsage)
	}
	out, code = cli.run("deny-access", "frontend", "backend", "--protocol", "sctp", "--port", "80")
	if code != 1 || !strings.HasPrefix(out, "FAILED\nIncorrect usage. Protocol is not valid. Must be tcp or udp.\n\nNAME:\n   remove-access - ") {
		t.Fatalf("bad protocol: exit %d:\n%s", code, out)
	}
	last := cli.runner.CommandCallCount() - 1
	if args, _, _ := cli.runner.CommandArgsForCall(last); !cmp.Equal(args, []string{"help", "deny-access"}) {
		t.Fatalf("last core command %q", args)
	}

	out, code = cli.run("allow-access", "frontend", "elsewhere", "--protocol", "tcp", "--port", "443")
	if code != 1 || out != "Allowing traffic from frontend to elsewhere as my-user...\nFAILED\nresolving destination app: elsewhere not found\n" {
		t.Fatalf("app of another space: exit %d:\n%s", code, out)
	}
}

func TestThroughCFPluginRPCVerifiesCertificates(t *testing.T) {
	cloud := newFakeCloud(t, rpcToken)
	cloud.addApp("g-front", "frontend", "my-space-guid")
	cli := newCFCLI(t, cloud.URL())
	cli.config.SetSSLDisabled(false) // logged in without --skip-ssl-validation
	cli.install()

	out, code := cli.run("list-access")
	if code != 1 || !strings.Contains(out, "FAILED\ngetting policies: cannot reach policy server at "+cloud.URL()) ||
		!strings.Contains(out, "certificate") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if n := len(cloud.recorded()); n != 0 {
		t.Fatalf("%d requests got through an unverified TLS connection", n)
	}
}

func TestPluginAloneRefusesToRun(t *testing.T) {
	out, err := exec.Command(buildPlugin(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "This cf CLI plugin is not intended to be run on its own") {
		t.Fatalf("err %v, output %q", err, out)
	}
}

// `cf uninstall-plugin network-policy` runs the plugin with the uninstall
// message and refuses to remove it unless that run succeeds (cf CLI v8:
// "FAILED / Invalid command" otherwise). The plugin answers it silently,
// without asking the CLI or the cloud anything.
func TestUninstallMessageThroughCFPluginRPC(t *testing.T) {
	cloud := newFakeCloud(t, rpcToken)
	cli := newCFCLI(t, cloud.URL())
	cli.install()

	out, code := cli.run("CLI-MESSAGE-UNINSTALL")
	if code != 0 || out != "" {
		t.Fatalf("uninstall message: exit %d, output %q; want exit 0 and no output", code, out)
	}
	if n := len(cloud.recorded()); n != 0 {
		t.Errorf("uninstall sent %d requests", n)
	}
	if n := cli.runner.CommandCallCount(); n != 0 {
		t.Errorf("uninstall ran %d core commands", n)
	}
	if n := cli.auth.RefreshAuthTokenCallCount(); n != 0 {
		t.Errorf("uninstall fetched the access token %d times", n)
	}

	// Anything else unknown is still refused.
	out, code = cli.run("CLI-MESSAGE-SOMETHING-ELSE")
	if code != 1 || out != "FAILED\nInvalid command\n" {
		t.Fatalf("unknown command: exit %d, output %q", code, out)
	}
}
