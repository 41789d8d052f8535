package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/netman-release/netman/src/namespace"
)

// Proc is a process the lab started, known by its PID and its start time
// (/proc/<pid>/stat field 22), so that a later `down`, in another process,
// never signals a process that merely reuses the PID.
type Proc struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	Log   string `json:"log"`

	// Set when this process started it (and reaps it).
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Spec says how to start a process.
type Spec struct {
	Log string // stdout and stderr, appended
	// Stderr, when set, takes stderr instead, as a BOSH job's
	// <job>.stderr.log does: for a daemon that logs its errors to stdout
	// and again to stderr (bosh-dns-adapter), which one file would show twice.
	Stderr string
	NS     *namespace.NS // run inside it (through `ip netns exec`, which execs bin: the PID is bin's); nil: here
	Bin    string
	Args   []string
	// Detach puts the process in a session of its own: it outlives the
	// starter and a Ctrl-C on the starter's terminal.
	Detach bool
}

// Spawn starts a process; the caller arranges for it to be stopped.
func Spawn(s Spec) (*Proc, error) {
	f, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if s.NS != nil {
		cmd = s.NS.Command(s.Bin, s.Args...)
	} else {
		cmd = exec.Command(s.Bin, s.Args...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	var errLog *os.File
	if s.Stderr != "" {
		if errLog, err = os.OpenFile(s.Stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			f.Close()
			return nil, err
		}
		cmd.Stderr = errLog
	}
	closeLogs := func() {
		f.Close()
		if errLog != nil {
			errLog.Close()
		}
	}
	if s.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		closeLogs()
		return nil, fmt.Errorf("starting %s: %w", s.Bin, err)
	}
	p := &Proc{Name: filepath.Base(s.Bin), PID: cmd.Process.Pid, Log: s.Log, done: make(chan struct{})}
	p.Start, _, _ = procStat(p.PID)
	go func() {
		err := cmd.Wait()
		closeLogs()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// procStat reads a process's start time and state from /proc/<pid>/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// comm (field 2) may hold spaces and parentheses: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64) // field 22
	return start, f[0][0], err
}

// Exited reports whether the process has ended (or is no longer the one
// the lab started).
func (p *Proc) Exited() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	start, state, err := procStat(p.PID)
	return err != nil || start != p.Start || state == 'Z'
}

// Signal sends sig to the process, unless it has ended.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return syscall.Kill(p.PID, sig)
}

// WaitTimeout waits up to d for the process to end; ok is false on timeout.
// err is the exit error when this process started it.
func (p *Proc) WaitTimeout(d time.Duration) (err error, ok bool) {
	if p.done != nil {
		select {
		case <-p.done:
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.err, true
		case <-time.After(d):
			return nil, false
		}
	}
	deadline := time.Now().Add(d)
	for !p.Exited() {
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, true
}

// Stop ends the process by its PID: SIGTERM, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
	}
	if _, ok := p.WaitTimeout(grace); ok {
		return nil
	}
	_ = p.Signal(syscall.SIGKILL)
	if _, ok := p.WaitTimeout(5 * time.Second); !ok {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

// Output is what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Tail is the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return tail(p.Output(), n) }

func tail(s string, n int) string {
	b := []byte(s)
	b = bytes.TrimRight(b, "\n")
	i := len(b)
	for ; n > 0 && i > 0; n-- {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			i = 0
			break
		}
	}
	return string(bytes.TrimLeft(b[i:], "\n"))
}
