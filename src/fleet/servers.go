package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/netman-release/netman/src/localports"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/sqldb"
)

// The control-plane servers run as child processes of netman-fleet (the
// same executable, told by the environment which server to be), so that
// each one's CPU and memory can be read from /proc apart from the
// simulated cells', and so that a restart is a real process restart.
const (
	envServe   = "NETMAN_FLEET_SERVE"   // component to run
	envConfig  = "NETMAN_FLEET_CONFIG"  // its config file
	envControl = "NETMAN_FLEET_CONTROL" // address of its control endpoint
)

// Component names: the jobs'.
const (
	PolicyServer         = "policy-server"
	PolicyServerInternal = "policy-server-internal"
	SilkController       = "silk-controller"
)

// MaybeServe runs a server and exits when this process was started as one
// of netman-fleet's children; otherwise it returns at once. netman-fleet's
// main and the package's TestMain call it first.
func MaybeServe() {
	comp := os.Getenv(envServe)
	if comp == "" {
		return
	}
	if err := serve(comp, os.Getenv(envConfig), os.Getenv(envControl)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", comp, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serve runs one server with its config, as its binary does but logging
// errors only, and a control endpoint: GET /queries (database queries so
// far), PUT /latency?ms=N (every later query N ms slower).
func serve(comp, cfgPath, control string) error {
	ctx, stop := lifecycle.SignalContext(context.Background())
	defer stop()
	logger := lager.NewLogger(comp)
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(os.Stderr, lager.DEBUG), lager.ERROR)
	logger.RegisterSink(sink)

	var run func() error
	var db string
	switch comp {
	case PolicyServerInternal:
		cfg, err := internalapi.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		db, run = cfg.Database.DatabaseName, func() error { return internalapi.Run(ctx, logger, sink, cfg) }
	case PolicyServer:
		cfg, err := external.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		db, run = cfg.Database.DatabaseName, func() error { return external.Run(ctx, logger, sink, cfg) }
	case SilkController:
		cfg, err := controller.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		db, run = cfg.Database.DatabaseName, func() error { return controller.Run(ctx, logger, sink, cfg) }
	default:
		return fmt.Errorf("unknown component %q", comp)
	}
	probe := sqldb.ProbeDatabase(db)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queries", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, probe.Queries())
	})
	mux.HandleFunc("PUT /latency", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		probe.InjectLatency(time.Duration(ms) * time.Millisecond)
	})
	ln, err := net.Listen("tcp", control)
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, mux) }()
	return run()
}

// server is one running child.
type server struct {
	cpus    string // taskset CPU list for the child; "": unpinned
	name    string
	cfgPath string
	control string
	health  string // URL answering 200 once it serves
	logPath string
	listen  string // API port
	cmd     *exec.Cmd
	exited  chan struct{}
}

// writeConfig writes v as the server's JSON config.
func writeConfig(dir, name string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name+".json")
	return p, os.WriteFile(p, b, 0o600)
}

// start launches the child and waits until its health URL answers.
func (s *server) start(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(exe)
	if s.cpus != "" {
		// taskset pins the child before it execs, so all its threads
		// inherit the CPU list.
		cmd = exec.Command("taskset", "-c", s.cpus, exe)
	}
	cmd.Env = append(os.Environ(), envServe+"="+s.name, envConfig+"="+s.cfgPath, envControl+"="+s.control)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited at start (see %s)", s.name, s.logPath)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(s.health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after 2 minutes (see %s)", s.name, s.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 20 s).
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// queries is the child's database query count.
func (s *server) queries() (uint64, error) {
	resp, err := http.Get("http://" + s.control + "/queries")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n uint64
	_, err = fmt.Fscan(resp.Body, &n)
	return n, err
}

// setLatency makes every database query of the child d slower.
func (s *server) setLatency(d time.Duration) error {
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/latency?ms=%d", s.control, d.Milliseconds()), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("set latency: %s", resp.Status)
	}
	return nil
}

// usage is a process's CPU time so far and resident memory, from /proc.
type usage struct {
	cpu time.Duration
	rss int64 // bytes
}

func (s *server) usage() (usage, error) {
	if s.cmd == nil {
		return usage{}, errors.New(s.name + " is not running")
	}
	return procUsage(s.cmd.Process.Pid)
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

func procUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// Fields after the command (which may hold spaces) in parentheses.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 22 {
		return usage{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	return usage{
		cpu: time.Duration(utime+stime) * time.Second / clockTick,
		rss: rssPages * int64(os.Getpagesize()),
	}, nil
}

// freePort is a TCP port on 127.0.0.1 nobody listens on now, below the
// ephemeral range: a port the kernel may hand to any outgoing connection
// (thousands here: every simulated cell's) can be gone by the time the
// server child binds it. The reservation lasts as long as the process.
func freePort() (int, error) {
	p, _, err := localports.Reserve("127.0.0.1")
	return p, err
}

func removeDB(path string) {
	for _, s := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + s)
	}
}
