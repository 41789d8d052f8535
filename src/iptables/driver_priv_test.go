package iptables_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// inNS runs fn with the calling thread inside ns, so the binaries the driver
// runs act on ns.
func inNS(t *testing.T, ns *netnstest.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func TestDriverPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ns := netnstest.New(t, "ipt")
			lockFile := filepath.Join(t.TempDir(), "garden-cni", "iptables.lock")
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: lockFile})
			ctx := t.Context()

			setup := iptables.NewTx(iptables.Filter).
				DeclareChain("own").
				Append("FORWARD", "-s 10.255.0.2/32 -o eth0 -j own").
				Append("own", "-m state --state RELATED,ESTABLISHED -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable")
			nat := iptables.NewTx(iptables.NAT).Append("POSTROUTING", "-s 10.255.0.2/32 ! -o silk-vtep -j MASQUERADE")
			var st, natSt *iptables.State
			inNS(t, ns, func() (err error) {
				if err = d.Apply(ctx, setup, nat); err != nil {
					return err
				}
				if st, err = d.Save(ctx, iptables.Filter); err != nil {
					return err
				}
				natSt, err = d.Save(ctx, iptables.NAT)
				return err
			})
			if got := st.Rules("own"); !cmp.Equal(got, []iptables.Rule{"-m state --state RELATED,ESTABLISHED -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable"}) {
				t.Errorf("own: %q", got)
			}
			if !natSt.Contains("POSTROUTING", "-s 10.255.0.2/32 ! -o silk-vtep -j MASQUERADE") {
				t.Errorf("nat:\n%s", natSt)
			}
			if _, err := os.Stat(lockFile); err != nil {
				t.Errorf("lock file not created: %v", err)
			}

			// A rejected transaction changes nothing and names its line.
			bad := iptables.NewTx(iptables.Filter).Append("own", "-j ACCEPT").Append("own", "-m nosuchmatch -j ACCEPT")
			var applyErr error
			inNS(t, ns, func() error { applyErr = d.Apply(ctx, bad); return nil })
			var re *iptables.RestoreError
			if !errors.As(applyErr, &re) || re.Line != 3 || !strings.Contains(applyErr.Error(), `"-A own -m nosuchmatch -j ACCEPT"`) {
				t.Errorf("error %v does not name line 3", applyErr)
			}
			inNS(t, ns, func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
			if len(st.Rules("own")) != 2 {
				t.Errorf("failed transaction left changes: %q", st.Rules("own"))
			}

			// Update plans against what is there; a plan the kernel
			// rejects is re-planned once against a fresh read.
			calls := 0
			want := []iptables.Rule{"-p tcp -j DROP", "-m state --state RELATED,ESTABLISHED -j ACCEPT", "-p udp -j DROP", "-j REJECT --reject-with icmp-port-unreachable"}
			inNS(t, ns, func() error {
				_, err := d.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
					calls++
					tx := iptables.NewTx(iptables.Filter)
					if calls == 1 {
						tx.Delete("FORWARD", "-j not-there")
					}
					iptables.SyncChain(tx, cur, "own", want)
					return tx, nil
				})
				return err
			})
			if calls != 2 {
				t.Errorf("plan called %d times, want 2", calls)
			}
			inNS(t, ns, func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
			if diff := cmp.Diff(want, st.Rules("own")); diff != "" {
				t.Errorf("own after sync (-want +got):\n%s", diff)
			}

			// Tear down: everything we own goes, the rest stays.
			inNS(t, ns, func() error {
				_, err := d.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
					tx := iptables.NewTx(iptables.Filter)
					iptables.DeleteJumps(tx, cur, "own", "FORWARD")
					iptables.RemoveChains(tx, cur, "own")
					return tx, nil
				})
				return err
			})
			inNS(t, ns, func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
			if st.Has("own") || len(st.Rules("FORWARD")) != 0 {
				t.Errorf("teardown left:\n%s", st)
			}
		})
	}
}

func TestDriverWaitsForLockHolder(t *testing.T) {
	netnstest.RequireRoot(t)
	fl := netnstest.IPTablesFlavors(t)[0]
	ns := netnstest.New(t, "lck")
	lockFile := filepath.Join(t.TempDir(), "iptables.lock")
	holder, err := os.OpenFile(lockFile, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	d := iptables.New(iptables.Config{Flavor: fl, LockFile: lockFile})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	var applyErr error
	inNS(t, ns, func() error {
		applyErr = d.Apply(ctx, iptables.NewTx(iptables.Filter).Append("INPUT", "-j ACCEPT"))
		return nil
	})
	if !errors.Is(applyErr, context.DeadlineExceeded) {
		t.Fatalf("apply while locked: %v", applyErr)
	}
	var st *iptables.State
	holder.Close()
	inNS(t, ns, func() (err error) { st, err = d.Save(t.Context(), iptables.Filter); return err })
	if len(st.Rules("INPUT")) != 0 {
		t.Error("applied without the lock")
	}
}

// TestDriverIPv6Privileged writes and reads IPv6 rules with ip6tables on
// both backends, and checks the two families are separate tables: the IPv6
// rules are invisible to iptables-save and vice versa.
func TestDriverIPv6Privileged(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ns := netnstest.New(t, "ip6t")
			lockFile := filepath.Join(t.TempDir(), "iptables.lock")
			d6 := iptables.New(iptables.Config{Flavor: fl, Family: iptables.IPv6, LockFile: lockFile})
			d4 := iptables.New(iptables.Config{Flavor: fl, LockFile: lockFile})
			ctx := t.Context()
			own := []iptables.Rule{
				"-d fd73:696c:6b::aff:2/128 -p tcp -m tcp --dport 8080 -j ACCEPT",
				"-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
				"-m iprange --dst-range 2001:db8::1-2001:db8::ff -j ACCEPT",
				"-j REJECT --reject-with icmp6-port-unreachable",
			}
			filter := iptables.NewTx(iptables.Filter).DeclareChain("own").
				Append("FORWARD", "-s fd73:696c:6b::aff:2/128 -o eth0 -j own").
				Append("own", own...)
			nat := iptables.NewTx(iptables.NAT).Append("POSTROUTING", "-s fd73:696c:6b::aff:2/128 ! -o silk-vtep -j MASQUERADE")
			var st6, nat6, st4 *iptables.State
			inNS(t, ns, func() (err error) {
				if err = d6.Apply(ctx, filter, nat); err != nil {
					return err
				}
				if st6, err = d6.Save(ctx, iptables.Filter); err != nil {
					return err
				}
				if nat6, err = d6.Save(ctx, iptables.NAT); err != nil {
					return err
				}
				st4, err = d4.Save(ctx, iptables.Filter)
				return err
			})
			if diff := cmp.Diff(own, st6.Rules("own")); diff != "" {
				t.Errorf("ip6tables own chain (-want +got):\n%s", diff)
			}
			if !nat6.Contains("POSTROUTING", "-s fd73:696c:6b::aff:2/128 ! -o silk-vtep -j MASQUERADE") {
				t.Errorf("ip6tables nat:\n%s", nat6)
			}
			if st4.Has("own") {
				t.Errorf("IPv6 chain visible to iptables-save:\n%s", st4)
			}
			// An IPv4 address is rejected by ip6tables-restore.
			bad := iptables.NewTx(iptables.Filter).Append("own", "-d 10.255.0.2/32 -j ACCEPT")
			var re *iptables.RestoreError
			inNS(t, ns, func() error {
				if err := d6.Apply(ctx, bad); !errors.As(err, &re) {
					t.Errorf("ip6tables-restore accepted an IPv4 rule: %v", err)
				}
				return nil
			})
		})
	}
}
