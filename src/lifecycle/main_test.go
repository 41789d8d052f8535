package lifecycle_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

// The test binary doubles as a command run by lifecycle.Main (maintest),
// so exit codes, stderr and signals are those of a real process.
func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "helper", helperMain)) }

// commandEnv picks a variant of the helper command in the child.
const commandEnv = "NETMAN_HELPER_COMMAND"

// helperConfig is the helper command's config file.
type helperConfig struct {
	LogPrefix string `json:"log_prefix"`
	LogLevel  string `json:"log_level"`
	Invalid   bool   `json:"invalid"`
	// What Run does: "" waits for the context, then returns Stop's error
	// ("" for none) or, for "hang", never returns; "fail" returns an
	// error at once, "exit" lifecycle.ExitCode(7).
	Run  string `json:"run"`
	Stop string `json:"stop"`
}

func helperMain() {
	variant := os.Getenv(commandEnv)
	lifecycle.Main(lifecycle.Command[helperConfig]{
		Name:        "helper",
		ConfigFlag:  "config",
		ConfigUsage: "path to the config file",
		Load: func(path string) (helperConfig, error) {
			var c helperConfig
			if err := configfile.LoadJSON(path, &c); err != nil {
				return c, err
			}
			if c.Invalid {
				return c, errors.New("invalid config")
			}
			return c, nil
		},
		Log:         func(c helperConfig) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name} error",
		ConfigError: "load config: ",
		LogConfigError: func(logger lager.Logger, path string, err error) {
			logger.Info("config-error", lager.Data{"path": path, "error": err.Error()})
		},
		Exited:         variant == "exited",
		ConfigExitCode: 3,
		ExitCode:       4,
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, c helperConfig) error {
			logger.Debug("debug-line")
			switch c.Run {
			case "fail":
				return errors.New("boom")
			case "exit":
				return lifecycle.ExitCode(7)
			}
			logger.Info("running")
			<-ctx.Done()
			logger.Info("stopping")
			switch c.Stop {
			case "":
				return nil
			case "hang":
				select {}
			}
			return errors.New(c.Stop)
		},
	})
}

type result struct {
	stdout, stderr string
	code           int
}

// runHelper runs the helper command to its end with cfg (nil: no file).
func runHelper(t *testing.T, variant string, cfg *helperConfig) (result, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "helper.json")
	if cfg != nil {
		configtest.WriteFile(t, path, cfg)
	}
	cmd := helperCommand(variant, path)
	var stdout, stderr maintest.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r, path
}

func helperCommand(variant, path string) *exec.Cmd {
	cmd := maintest.Command("-config", path)
	cmd.Env = append(cmd.Env, commandEnv+"="+variant)
	return cmd
}

func TestMainConfigError(t *testing.T) {
	tests := []struct {
		name       string
		variant    string
		cfg        *helperConfig
		wantStderr string // with PATH for the config file's path
	}{
		{"missing file", "", nil, "cfnetworking.helper error: load config: reading config: open PATH: no such file or directory\n"},
		// The config that names another prefix is the one that failed.
		{"invalid", "", &helperConfig{LogPrefix: "cf", Invalid: true}, "cfnetworking.helper error: load config: invalid config\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, path := runHelper(t, tt.variant, tt.cfg)
			if r.code != 3 {
				t.Errorf("exit %d, want ConfigExitCode 3", r.code)
			}
			if want := strings.ReplaceAll(tt.wantStderr, "PATH", path); r.stderr != want {
				t.Errorf("stderr %q, want %q", r.stderr, want)
			}
			// LogConfigError's line, on the default logger for the zero config.
			lines := logtest.FindIn(logtest.ParseJSON(t, r.stdout), "cfnetworking.helper.config-error")
			if len(lines) != 1 || lines[0].Data["path"] != path {
				t.Errorf("config-error lines = %+v\n%s", lines, r.stdout)
			}
		})
	}
}

func TestMainLoggerFromTheConfig(t *testing.T) {
	tests := []struct {
		cfg  helperConfig
		want []string
	}{
		{helperConfig{LogPrefix: "potato", LogLevel: "debug", Run: "exit"}, []string{"potato.helper.debug-line"}},
		{helperConfig{LogLevel: "debug", Run: "exit"}, []string{"cfnetworking.helper.debug-line"}},
		{helperConfig{LogPrefix: "potato", LogLevel: "info", Run: "exit"}, nil},
	}
	for _, tt := range tests {
		r, _ := runHelper(t, "", &tt.cfg)
		if diff := cmp.Diff(tt.want, logtest.MessagesIn(logtest.ParseJSON(t, r.stdout)), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%+v: messages (-want +got):\n%s", tt.cfg, diff)
		}
	}

	r, _ := runHelper(t, "", &helperConfig{LogPrefix: "potato", LogLevel: "loud"})
	if r.code != 4 || !strings.HasPrefix(r.stderr, `potato.helper error: unknown log level "loud"`) {
		t.Errorf("bad level: exit %d, stderr %q; want 4 and the config's prefix", r.code, r.stderr)
	}
}

func TestMainFailures(t *testing.T) {
	tests := []struct {
		name       string
		variant    string
		run        string
		wantCode   int
		wantStderr string
		wantLog    string // the last line's message
	}{
		{"error", "", "fail", 4, "cfnetworking.helper error: boom\n", ""},
		{"error, reported as exited-with-failure", "exited", "fail", 4, "", "cfnetworking.helper.exited-with-failure"},
		{"reported by Run itself", "", "exit", 7, "", ""},
		{"reported by Run itself, not as exited-with-failure", "exited", "exit", 7, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := runHelper(t, tt.variant, &helperConfig{Run: tt.run})
			if r.code != tt.wantCode || r.stderr != tt.wantStderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tt.wantCode, tt.wantStderr)
			}
			var last string
			if msgs := logtest.MessagesIn(logtest.ParseJSON(t, r.stdout)); len(msgs) > 0 {
				last = msgs[len(msgs)-1]
			}
			if last != tt.wantLog {
				t.Errorf("last line %q, want %q\n%s", last, tt.wantLog, r.stdout)
			}
		})
	}
}

// startHelper starts the helper command and waits until it runs.
func startHelper(t *testing.T, variant string, cfg helperConfig) *maintest.Process {
	t.Helper()
	path := filepath.Join(t.TempDir(), "helper.json")
	configtest.WriteFile(t, path, cfg)
	p := maintest.Start(t, helperCommand(variant, path))
	p.Until(t, "running", 10*time.Second, func() bool { return strings.Contains(p.Out.String(), `.helper.running"`) })
	return p
}

func TestMainFirstSignalStopsGracefully(t *testing.T) {
	for _, variant := range []string{"", "exited"} {
		p := startHelper(t, variant, helperConfig{LogPrefix: "p"})
		p.Terminate(t, 10*time.Second)
		want := []string{"p.helper.running", "p.helper.stopping"}
		if variant == "exited" {
			want = append(want, "p.helper.exited")
		}
		if diff := cmp.Diff(want, logtest.MessagesIn(logtest.ParseJSON(t, p.Out.String()))); diff != "" {
			t.Errorf("%q: messages (-want +got):\n%s", variant, diff)
		}
	}
}

func TestMainSecondSignalEndsAStuckStop(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "helper.json")
			configtest.WriteFile(t, path, helperConfig{Stop: "hang"})
			cmd := helperCommand("", path)
			var out maintest.Buffer
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
			})
			until := func(what string) {
				t.Helper()
				for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), `.helper.`+what+`"`); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("not %s within 10s:\n%s", what, out.String())
					}
				}
			}
			until("running")
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			until("stopping")
			// The first signal's stop hangs; the second ends the process
			// as the signal's default action does.
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				done <- err // for the cleanup
				status := cmd.ProcessState.Sys().(syscall.WaitStatus)
				if !status.Signaled() || status.Signal() != sig {
					t.Errorf("process ended with %v, want killed by %v", err, sig)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the second signal did not end the process")
			}
		})
	}
}
