package cniwrapper

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/nft"
)

// failingNFT is a Driver whose next Run fails.
type failingNFT struct {
	nft.Driver
	failNext error
}

func (f *failingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	if err := f.failNext; err != nil {
		f.failNext = nil
		return err
	}
	return f.Driver.Run(ctx, tx)
}

// nftHarness is the plugin harness in nftables mode, on the fake driver.
func nftHarness(t *testing.T) (*harness, *failingNFT) {
	t.Helper()
	h := newHarness(t)
	h.stdin["enforcement_backend"] = "nftables"
	d := &failingNFT{Driver: nft.NewFake()}
	h.plugin.NFT = func(*Config) (nft.Driver, error) { return d, nil }
	return h, d
}

func readNFT(t *testing.T, d nft.Driver) *nft.State {
	t.Helper()
	st, err := d.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// skeletonOnly is the table as the skeleton alone leaves it.
func skeletonOnly(t *testing.T) *nft.State {
	t.Helper()
	f := nft.NewFake()
	tx := f.NewTransaction()
	nft.AddSkeleton(tx)
	if err := f.Run(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	return readNFT(t, f)
}

func TestNFTAddWithDynamicASGs(t *testing.T) {
	h, d := nftHarness(t)
	res, err := h.plugin.Add(t.Context(), h.args(t))
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	if ip := res.Version(); ip != "1.0.0" {
		t.Errorf("result version %s", ip)
	}
	if got := h.dump(); got != emptyTables {
		t.Errorf("iptables rules written in nftables mode:\n%s", got)
	}
	if _, err := os.Stat(h.stdin["iptables_lock_file"].(string)); !os.IsNotExist(err) {
		t.Errorf("iptables lock file prepared in nftables mode: %v", err)
	}
	if diff := cmp.Diff([]string{"/force-policy-poll-cycle", "/force-asgs-for-container?container=container-1"}, h.agent.got()); diff != "" {
		t.Errorf("agent calls (-want +got):\n%s", diff)
	}
	if all, _ := h.store().ReadAll(t.Context()); all["container-1"].IP != "10.255.17.5" {
		t.Errorf("store: %v", all)
	}
	st := readNFT(t, d)
	ch := nft.ChainsFor("container-1")
	for _, c := range ch.All() {
		if st.Chains[c] == nil {
			t.Errorf("chain %s missing", c)
		}
	}
	// The agent owns the egress rules: the chain holds only the default.
	if got := st.Chains[ch.NetOut].Rules; !cmp.Equal(got, []string{nft.Reject}) {
		t.Errorf("netout: %q", got)
	}
	if got := st.Sets[nft.MapOverlay].Elements; !cmp.Equal(got, map[string]string{"10.255.17.5": nft.Jump(ch.Overlay)}) {
		t.Errorf("overlay-dispatch: %v", got)
	}
	if got := st.Sets[nft.MapPortMappings].Elements; !cmp.Equal(got, map[string]string{"10.0.16.5 . 61001": "10.255.17.5 . 8080"}) {
		t.Errorf("port-mappings: %v", got)
	}
}

func TestNFTAddWithStaticNetOutRules(t *testing.T) {
	h, d := nftHarness(t)
	h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
	if _, err := h.plugin.Add(t.Context(), h.args(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	st := readNFT(t, d)
	ch := nft.ChainsFor("container-1")
	// The destination sets are shared, named after their content.
	var ports string
	for _, r := range st.Chains[ch.NetOut].Rules {
		if set, ok := strings.CutPrefix(r, "ip daddr . meta l4proto . th dport @"+nft.SharedSetPrefix); ok && strings.HasSuffix(set, "--ports accept") {
			ports = nft.SharedSetPrefix + strings.TrimSuffix(set, " accept")
		}
	}
	if ports == "" || st.Sets[ports] == nil {
		t.Fatalf("netout rules: %q", st.Chains[ch.NetOut].Rules)
	}
	if got := slices.Collect(maps.Keys(st.Sets[ports].Elements)); !cmp.Equal(got, []string{"10.0.0.1-10.0.0.9 . tcp . 443"}) {
		t.Errorf("netout ports set: %q", got)
	}
	if got := h.dump(); got != emptyTables {
		t.Errorf("iptables rules written in nftables mode:\n%s", got)
	}
}

func TestNFTDelRemovesEverythingAddInstalled(t *testing.T) {
	h, d := nftHarness(t)
	ctx := t.Context()
	h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
	if _, err := h.plugin.Add(ctx, h.args(t)); err != nil {
		t.Fatal(err)
	}
	if err := h.plugin.Del(ctx, h.args(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	want := skeletonOnly(t)
	if diff := cmp.Diff(want, readNFT(t, d)); diff != "" {
		t.Errorf("DEL left (-skeleton +after):\n%s", diff)
	}
	if all, _ := h.store().ReadAll(ctx); len(all) != 0 {
		t.Errorf("store: %v", all)
	}
	if h.delegate.dels != 1 {
		t.Errorf("delegate DEL ran %d times", h.delegate.dels)
	}
	if calls := h.agent.got(); calls[len(calls)-1] != "/force-orphaned-asgs-cleanup?container=container-1" {
		t.Errorf("agent calls %q", calls)
	}
	// DEL again, the store entry gone: nothing to remove, no error.
	h.stderr.Reset()
	if err := h.plugin.Del(ctx, h.args(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, readNFT(t, d)); diff != "" {
		t.Errorf("second DEL changed the table:\n%s", diff)
	}
	if strings.Contains(h.stderr.String(), "net out cleanup") {
		t.Errorf("second DEL reported: %s", h.stderr)
	}
}

func TestNFTFailuresRollBackOrReport(t *testing.T) {
	t.Run("ADD's transaction fails", func(t *testing.T) {
		h, d := nftHarness(t)
		d.failNext = errors.New("nft said no")
		_, err := h.plugin.Add(t.Context(), h.args(t))
		if err == nil || err.Error() != "installing nftables rules: nft said no" {
			t.Fatalf("got %v", err)
		}
		if st := readNFT(t, d); st.Chains[nft.ChainsFor("container-1").Overlay] != nil {
			t.Error("container chains left behind")
		}
		if all, _ := h.store().ReadAll(t.Context()); len(all) != 0 || len(h.delegate.held) != 0 {
			t.Errorf("store %v, delegate holds %v", all, h.delegate.held)
		}
		if calls := h.agent.got(); calls[len(calls)-1] != "/force-orphaned-asgs-cleanup?container=container-1" {
			t.Errorf("agent calls %q", calls)
		}
	})
	t.Run("netOut transaction fails", func(t *testing.T) {
		h, d := nftHarness(t)
		h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
		h.plugin.NFT = func(*Config) (nft.Driver, error) { return d, nil }
		inner := d.Driver
		d.Driver = &failOnSecond{Driver: inner}
		_, err := h.plugin.Add(t.Context(), h.args(t))
		if err == nil || !strings.HasPrefix(err.Error(), "bulk insert: ") {
			t.Fatalf("got %v", err)
		}
		if diff := cmp.Diff(skeletonOnly(t), readNFT(t, inner)); diff != "" {
			t.Errorf("rollback left (-skeleton +after):\n%s", diff)
		}
	})
	t.Run("no nft", func(t *testing.T) {
		h, _ := nftHarness(t)
		h.plugin.NFT = func(*Config) (nft.Driver, error) { return nil, errors.New("nft: not found") }
		_, err := h.plugin.Add(t.Context(), h.args(t))
		if err == nil || err.Error() != "installing nftables rules: nft: not found" {
			t.Fatalf("got %v", err)
		}
		if len(h.delegate.held) != 0 {
			t.Error("delegate address not released")
		}
		// DEL reports it on stderr and succeeds, as for iptables.
		h.stderr.Reset()
		if err := h.plugin.Del(t.Context(), h.args(t)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(h.stderr.String(), "net out cleanup: nft: not found") {
			t.Errorf("stderr %q", h.stderr)
		}
	})
}

// failOnSecond fails the second transaction it runs.
type failOnSecond struct {
	nft.Driver
	runs int
}

func (f *failOnSecond) Run(ctx context.Context, tx *knftables.Transaction) error {
	f.runs++
	if f.runs == 2 {
		return errors.New("second transaction refused")
	}
	return f.Driver.Run(ctx, tx)
}
