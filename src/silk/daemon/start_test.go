package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func TestStartAcquiresAndCreatesTheVTEP(t *testing.T) {
	cell := newTestCell(t)
	ctl := startController(t, "10.255.0.0/16", 24)
	cfg := daemonConfig(t, ctl, cell)
	ctx := context.Background()

	l, err := Start(ctx, logtest.New(t), cfg, cell.nl, ctl.client)
	if err != nil {
		t.Fatal(err)
	}
	if l.UnderlayIP != cell.underlayIP || !strings.HasSuffix(l.OverlaySubnet, ".0/24") {
		t.Fatalf("lease %+v", l)
	}
	state, err := ReadVTEP(cell.nl, "silk-vtep")
	if err != nil {
		t.Fatal(err)
	}
	if got := state.IP.String() + "/24"; got != l.OverlaySubnet || state.HardwareAddr.String() != l.OverlayHardwareAddr {
		t.Errorf("VTEP %s %s does not carry lease %+v", got, state.HardwareAddr, l)
	}

	t.Run("a restart renews the lease on the existing VTEP", func(t *testing.T) {
		again, err := Start(ctx, logtest.New(t), cfg, cell.nl, ctl.client)
		if err != nil || again != l {
			t.Fatalf("restart = %+v, %v; want %+v", again, err, l)
		}
		now, err := ReadVTEP(cell.nl, "silk-vtep")
		if err != nil || now.Index != state.Index {
			t.Errorf("VTEP was recreated (index %d → %d, %v)", state.Index, now.Index, err)
		}
	})

	t.Run("a renewal the controller refuses, with containers, stops start-up", func(t *testing.T) {
		// The VTEP's MAC no longer matches the stored lease: renew gets 409.
		cell.ns.Run(t, "ip", "link", "set", "dev", "silk-vtep", "address", "ee:ee:00:00:00:01")
		writeStore(t, cfg.Datastore, 3)
		_, err := Start(ctx, logtest.New(t), cfg, cell.nl, ctl.client)
		if err == nil || err.Error() != "renew subnet lease with containers: 3" {
			t.Fatalf("err = %v", err)
		}
		if now, err := ReadVTEP(cell.nl, "silk-vtep"); err != nil || now.Index != state.Index {
			t.Errorf("the VTEP of a cell with containers was touched (%v)", err)
		}
	})

	t.Run("the same without containers replaces the VTEP", func(t *testing.T) {
		writeStore(t, cfg.Datastore, 0)
		got, err := Start(ctx, logtest.New(t), cfg, cell.nl, ctl.client)
		if err != nil || got != l {
			t.Fatalf("Start = %+v, %v; want the stored lease %+v back", got, err, l)
		}
		now, err := ReadVTEP(cell.nl, "silk-vtep")
		if err != nil || now.Index == state.Index || now.HardwareAddr.String() != l.OverlayHardwareAddr {
			t.Errorf("VTEP not recreated with the lease's MAC: %+v, %v", now, err)
		}
	})

	t.Run("a VTEP outside the overlay, with containers, stops start-up", func(t *testing.T) {
		other := cfg
		other.OverlayNetwork = OverlayNetwork{"10.254.0.0/16"}
		writeStore(t, cfg.Datastore, 1)
		_, err := Start(ctx, logtest.New(t), other, cell.nl, ctl.client)
		if err == nil || err.Error() != "discovered lease is not in overlay network and has containers: 1" {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("an unreadable store stops start-up", func(t *testing.T) {
		cell.ns.Run(t, "ip", "link", "set", "dev", "silk-vtep", "address", "ee:ee:00:00:00:01")
		configtest.WriteFile(t, cfg.Datastore, "some-bad-contents")
		_, err := Start(ctx, logtest.New(t), cfg, cell.nl, ctl.client)
		if err == nil || !strings.HasPrefix(err.Error(), "read datastore: decoding file") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestStartReplacesAHalfCreatedVTEP(t *testing.T) {
	cell := newTestCell(t)
	ctl := startController(t, "10.255.0.0/16", 24)
	cfg := daemonConfig(t, ctl, cell)
	// A creation cut short: the device exists without its address.
	cell.ns.Run(t, "ip", "link", "add", "silk-vtep", "type", "vxlan", "id", "1", "dstport", "4789", "dev", cell.underlay)
	if _, err := Start(context.Background(), logtest.New(t), cfg, cell.nl, ctl.client); err != nil {
		t.Fatalf("Start over a half-created VTEP: %v", err)
	}
	if _, err := ReadVTEP(cell.nl, "silk-vtep"); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailsWhenTheControllerIsUnreachable(t *testing.T) {
	cell := newTestCell(t)
	ctl := startController(t, "10.255.0.0/16", 24)
	cfg := daemonConfig(t, ctl, cell)
	ctl.stop()
	_, err := Start(context.Background(), logtest.New(t), cfg, cell.nl, ctl.client)
	if err == nil || !strings.HasPrefix(err.Error(), "acquire subnet lease: http client do: ") {
		t.Fatalf("err = %v", err)
	}
	if _, err := cell.nl.LinkByName("silk-vtep"); !isLinkNotFound(err) {
		t.Errorf("a VTEP exists without a lease: %v", err)
	}
}

// runDaemon runs Run in the background and returns its result channel.
func runDaemon(t *testing.T, ctx context.Context, cfg Config, cell *testCell) (<-chan error, *lager.ReconfigurableSink) {
	t.Helper()
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, logtest.New(t), sink, cfg, Options{NetNSPath: cell.ns.Path, Sender: newTestSender(t), JitterFraction: -1})
	}()
	return done, sink
}

func getInfo(t *testing.T, port int) NetworkInfo {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/any/path", port), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info NetworkInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != 200 {
		t.Fatalf("info endpoint: %d, %v", resp.StatusCode, err)
	}
	return info
}

func TestRunServesInfoAndConvergesOtherCells(t *testing.T) {
	cell := newTestCell(t)
	ctl := startController(t, "10.255.0.0/16", 24)
	cfg := daemonConfig(t, ctl, cell)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var others []lease.Lease
	for i := 1; i <= 3; i++ {
		l, err := ctl.client.Acquire(ctx, fmt.Sprintf("10.244.0.%d", 100+i), false)
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, l)
	}
	done, _ := runDaemon(t, ctx, cfg, cell)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", cfg.HealthCheckPort), done)

	info := getInfo(t, cfg.HealthCheckPort)
	state, err := ReadVTEP(cell.nl, "silk-vtep")
	if err != nil {
		t.Fatal(err)
	}
	if info.MTU != 1450 || info.OverlaySubnet != state.IP.String()+"/24" {
		t.Errorf("info = %+v, VTEP %s", info, state.IP)
	}
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/log-level", cfg.DebugServerPort), done)

	// The first poll runs at once; routes to the other cells appear.
	deadline := time.Now().Add(10 * time.Second)
	for {
		routes := viewVTEP(t, cell).routes
		if len(routes) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("routes never converged: %q", routes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, o := range others {
		want := fmt.Sprintf("%s via %s", o.OverlaySubnet, strings.TrimSuffix(o.OverlaySubnet, "/24"))
		if !strings.Contains(strings.Join(viewVTEP(t, cell).routes, "\n"), want) {
			t.Errorf("no route %q", want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func TestRunExitsWhenTheControllerGivesTheSubnetAway(t *testing.T) {
	cell := newTestCell(t)
	// A /23 of /24s holds one block lease: whoever acquires next gets ours.
	ctl := startController(t, "10.255.0.0/23", 24)
	cfg := daemonConfig(t, ctl, cell)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _ := runDaemon(t, ctx, cfg, cell)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", cfg.HealthCheckPort), done)

	if err := ctl.client.Release(ctx, cell.underlayIP); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.client.Acquire(ctx, "10.244.0.200", false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		want := `vxlan-poller: This cell must be restarted (run "bosh restart <job>"): fatal: renew lease: non-retriable: http status 409`
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Run = %v, want %q", err, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon kept running on a lease the controller gave away")
	}
}

func TestRunToleratesAPartitionUntilTheLimit(t *testing.T) {
	cell := newTestCell(t)
	ctl := startController(t, "10.255.0.0/16", 24)
	cfg := daemonConfig(t, ctl, cell)
	cfg.PartitionToleranceSeconds = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _ := runDaemon(t, ctx, cfg, cell)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", cfg.HealthCheckPort), done)

	ctl.stop()
	stopped := time.Now()
	// Within the tolerance the cell keeps serving silk-cni.
	for time.Since(stopped) < 1500*time.Millisecond {
		select {
		case err := <-done:
			t.Fatalf("daemon exited %s into the partition: %v", time.Since(stopped), err)
		default:
		}
		getInfo(t, cfg.HealthCheckPort)
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `This cell must be restarted (run "bosh restart <job>"): fatal: renew lease: http client do: `) {
			t.Fatalf("Run = %v", err)
		}
		if d := time.Since(stopped); d < 2*time.Second {
			t.Errorf("gave up after %s, before the 3 s tolerance", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon outlived the partition tolerance")
	}
}
