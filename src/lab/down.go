package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/netman-release/netman/src/namespace"
)

// Down removes the lab in dir: it undoes the ledger newest first (app
// containers through garden-external-networker, processes by recorded PID,
// namespaces, links, databases), detaches any mount left under dir, and
// removes dir. What cannot be removed stays in the ledger, so Down can be
// run again; with no lab in dir it does nothing.
func Down(ctx context.Context, dir string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	st, err := Load(dir)
	if errors.Is(err, ErrNotRunning) {
		return removeEmpty(dir)
	}
	if err != nil {
		return err
	}
	var left []Resource
	var errs []error
	for i := len(st.Undo) - 1; i >= 0; i-- {
		r := st.Undo[i]
		if err := st.undo(ctx, r, log); err != nil {
			errs = append(errs, err)
			left = append([]Resource{r}, left...)
		}
	}
	mounts, err := MountsUnder(st.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mounts {
		fmt.Fprintf(log, "==> unmounting %s\n", m)
		if err := Unmount(m); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		st.Undo = left
		if err := st.Save(); err != nil {
			errs = append(errs, err)
		}
		return fmt.Errorf("the lab is partly down (run down again): %w", errors.Join(errs...))
	}
	if err := os.RemoveAll(st.Dir); err != nil {
		return err
	}
	fmt.Fprintf(log, "==> removed %s\n", st.Dir)
	return nil
}

// removeEmpty removes dir if it is an empty directory: an `up` that died
// before its first save. Anything else there is not the lab's.
func removeEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) > 0 {
		return nil
	}
	return os.Remove(dir)
}

func (st *State) undo(ctx context.Context, r Resource, log io.Writer) error {
	switch r.Kind {
	case KindContainer:
		if !namespace.Exists(r.NS) {
			return nil // its cell is gone; the mount sweep takes its bind mount
		}
		fmt.Fprintf(log, "==> garden-external-networker --action down --handle %s (in %s)\n", r.Name, r.NS)
		if _, err := st.garden(ctx, r.NS, r.Config, "down", r.Name, []byte("null")); err != nil {
			// Not fatal: the cell goes next, and with it the container's veth and rules.
			fmt.Fprintf(log, "!!! %v\n", err)
		}
		return nil
	case KindProc:
		if r.Proc.Exited() {
			return nil
		}
		fmt.Fprintf(log, "==> stopping %s (pid %d)\n", r.Proc.Name, r.Proc.PID)
		return r.Proc.Stop(10 * time.Second)
	case KindNetns:
		if !namespace.Exists(r.Name) {
			return nil
		}
		fmt.Fprintf(log, "==> deleting namespace %s\n", r.Name)
		return namespace.Delete(r.Name)
	case KindLink:
		if !namespace.LinkExists(r.Name) {
			return nil
		}
		fmt.Fprintf(log, "==> deleting link %s\n", r.Name)
		return namespace.DeleteLink(r.Name)
	case KindFile:
		if _, err := os.Lstat(r.Name); err != nil {
			return nil
		}
		fmt.Fprintf(log, "==> removing %s\n", r.Name)
		return removeFile(r.Name)
	case KindSysctl:
		fmt.Fprintf(log, "==> restoring %s = %s\n", strings.TrimPrefix(r.Name, "/proc/sys/"), r.Config)
		return os.WriteFile(r.Name, []byte(r.Config+"\n"), 0o644)
	case KindDatabase:
		fmt.Fprintf(log, "==> dropping database %s\n", r.Name)
		return dropDatabase(ctx, r.DB)
	}
	return fmt.Errorf("unknown resource kind %q in %s", r.Kind, filepath.Join(st.Dir, StateFile))
}

// Status writes what the lab in dir runs; ErrNotRunning when there is none.
func Status(dir string, w io.Writer) error {
	st, err := Load(dir)
	if err != nil {
		return err
	}
	p := &st.Plan
	fmt.Fprintf(w, "netman lab in %s, up since %s (%s database)\n", st.Dir, st.Started.Format(time.DateTime), st.DB)
	fmt.Fprintf(w, "  data plane    %s\n", dataPlane(p.backend()))
	fmt.Fprintf(w, "  external API  %s  (token in %s)\n", p.ExternalURL(), filepath.Join(st.Dir, "env"))
	fmt.Fprintf(w, "  underlay      %s  bridge %s, this namespace %s\n", p.Prefix+"0/24", st.Bridge, p.RootIP())
	if p.Underlay6 != "" {
		fmt.Fprintf(w, "  underlay6     %s  this namespace %s; overlay6 %s (dual stack, --ipv6)\n", p.Underlay6+"/64", p.RootIP6(), p.IPv6)
	}
	if len(p.DNSServers) > 0 {
		fmt.Fprintf(w, "  discovery     %s (mTLS), NATS %s; containers resolve *.%s through %s in their cell\n", p.DiscoveryURL(), p.NATSURL(), AppsDomain, p.DNSServers[0])
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tSTATE\tLOG")
	for _, proc := range st.Procs() {
		state := "running"
		if proc.Exited() {
			state = "EXITED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", proc.Name, proc.PID, state, rel(st.Dir, proc.Log))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CELL\tNAMESPACE\tUNDERLAY\tOVERLAY SUBNET")
	for _, c := range st.Cells {
		fmt.Fprintf(tw, "%d\t%s%s\t%s\t%s\n", c.Index, c.NS, missingNS(c.NS), c.UnderlayIP, c.Subnet)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "APP\tCELL\tNAMESPACE\tIP\tROUTE\tAPP GUID")
	for _, a := range st.Apps {
		fmt.Fprintf(tw, "%s\t%d\t%s%s\t%s:%d\t%s\t%s\n", a.Name, a.Cell, a.NS, missingNS(a.NS), a.IP, a.Port, a.Route, a.GUID)
	}
	return tw.Flush()
}

func missingNS(name string) string {
	if namespace.Exists(name) {
		return ""
	}
	return " (GONE)"
}

// rel shows path relative to the lab's parent directory when inside it.
func rel(dir, path string) string {
	if r, err := filepath.Rel(filepath.Dir(dir), path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}
