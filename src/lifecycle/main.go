package lifecycle

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/logging"
)

// Command is one binary's process edge, each part as upstream shaped it for
// that binary: the flag naming its config file, the logger, the stderr line
// and exit code of a failure, and the run that does the work. Main runs it;
// a main is then a Command literal.
type Command[C any] struct {
	// Name is the job name: the component of the default logger
	// ("<prefix>.<Name>") and {name} in Stderr.
	Name string
	// ConfigFlag is upstream's flag for the config file's path
	// ("config-file", "config", "c"), ConfigUsage its help. Binaries
	// configured by flags alone leave it empty and register their flags on
	// flag.CommandLine before calling Main.
	ConfigFlag, ConfigUsage string
	// Load reads the configuration once every flag is parsed; path is
	// ConfigFlag's value.
	Load func(path string) (C, error)
	// Log picks the log prefix and level from the config; nil means the
	// default prefix at info. An empty prefix is the default one. The
	// prefix is also {prefix} in Stderr.
	Log func(C) (prefix, level string)
	// Logger replaces the default logger, logging.New("<prefix>.<Name>"),
	// for the binaries whose upstream names its logger otherwise.
	Logger func(C) (lager.Logger, *lager.ReconfigurableSink, error)

	// Stderr is how the binary's own stderr lines begin, before ": ": a
	// pattern in which {prefix} and {name} stand for the log prefix and
	// Name, e.g. "{prefix}.{name} error". Empty means "{name}".
	Stderr string
	// ConfigError is upstream's wording in front of a config error on that
	// line, e.g. "could not read config file: ".
	ConfigError string
	// LogConfigError, when set, also logs a config error (upstream's
	// discovery daemons do, on stdout) on the logger Logger builds for the
	// zero config.
	LogConfigError func(logger lager.Logger, path string, err error)
	// ConfigExitCode is the exit code of a config error and ExitCode that
	// of any other failure; 0 means 1, and a zero ConfigExitCode means
	// ExitCode.
	ConfigExitCode, ExitCode int
	// Exited reports the end as upstream's cf-networking daemons do: an
	// info line "exited" after a clean stop, an error line
	// "exited-with-failure" instead of a stderr line after a failure.
	Exited bool

	// Run does the work until ctx is cancelled by the first SIGINT or
	// SIGTERM. Its error is reported as the fields above say; an ExitCode
	// error only sets the exit code, for failures Run reported itself.
	Run func(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg C) error
}

// ExitCode is an error Run returns once it has reported a failure itself, in
// upstream's own way: Main then writes nothing more and exits with the code.
type ExitCode int

func (c ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// Main parses the command line, loads the config, builds the logger, runs
// c.Run under SignalContext and exits as c says. It returns only after a
// clean stop.
func Main[C any](c Command[C]) {
	if code := c.run(); code != 0 {
		os.Exit(code)
	}
}

func (c Command[C]) run() int {
	var path string
	if c.ConfigFlag != "" {
		flag.StringVar(&path, c.ConfigFlag, "", c.ConfigUsage)
	}
	flag.Parse()
	exitCode := max(c.ExitCode, 1)

	cfg, err := c.Load(path)
	if err != nil {
		if c.LogConfigError != nil {
			var zero C
			if logger, _, lerr := c.logger(zero); lerr == nil {
				c.LogConfigError(logger, path, err)
			}
		}
		// Always the default prefix, as upstream: the config naming
		// another is the one that failed.
		c.stderr(logging.DefaultPrefix, c.ConfigError+err.Error())
		if c.ConfigExitCode != 0 {
			return c.ConfigExitCode
		}
		return exitCode
	}
	logger, sink, err := c.logger(cfg)
	if err != nil {
		c.stderr(c.prefix(cfg), err.Error())
		return exitCode
	}

	ctx, stop := SignalContext(context.Background())
	defer stop()
	err = c.Run(ctx, logger, sink, cfg)
	var code ExitCode
	switch {
	case err == nil:
		if c.Exited {
			logger.Info("exited")
		}
		return 0
	case errors.As(err, &code):
		return int(code)
	case c.Exited:
		logger.Error("exited-with-failure", err)
	default:
		c.stderr(c.prefix(cfg), err.Error())
	}
	return exitCode
}

func (c Command[C]) prefix(cfg C) string {
	if c.Log != nil {
		if prefix, _ := c.Log(cfg); prefix != "" {
			return prefix
		}
	}
	return logging.DefaultPrefix
}

func (c Command[C]) logger(cfg C) (lager.Logger, *lager.ReconfigurableSink, error) {
	if c.Logger != nil {
		return c.Logger(cfg)
	}
	level := ""
	if c.Log != nil {
		_, level = c.Log(cfg)
	}
	return logging.New(c.prefix(cfg), c.Name, level, os.Stdout)
}

func (c Command[C]) stderr(prefix, msg string) {
	head := c.Stderr
	if head == "" {
		head = "{name}"
	}
	head = strings.NewReplacer("{prefix}", prefix, "{name}", c.Name).Replace(head)
	fmt.Fprintf(os.Stderr, "%s: %s\n", head, msg)
}

// stopSignals ask a process to stop gracefully.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// SignalContext returns a context cancelled by the first SIGINT or SIGTERM,
// for a graceful stop. By the time the context is done the signals' default
// action is back, so a second one ends the process at once: a shutdown that
// hangs does not need SIGKILL. stop releases the signals and cancels the
// context.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2) // room for a second signal before the first is read
	signal.Notify(sigs, stopSignals...)
	released := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-released:
			return
		}
		signal.Stop(sigs)
		cancel()
		// A second signal that came before Stop was caught, not acted on:
		// act on it now that the default action is back.
		select {
		case sig := <-sigs:
			_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		default:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(released)
		})
		cancel()
	}
}
