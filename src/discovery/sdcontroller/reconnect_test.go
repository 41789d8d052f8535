package sdcontroller

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/standin/natsserver"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// pruningRegistry records pruning pauses and resumes and the hosts added,
// safely across the NATS callback and subscriber goroutines.
type pruningRegistry struct {
	mu      sync.Mutex
	events  []string
	resumed chan struct{} // one value per ResumePruning
}

func (r *pruningRegistry) record(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}
func (r *pruningRegistry) Add(names []string, ip string) { r.record("add " + ip) }
func (r *pruningRegistry) Remove([]string, string)       {}
func (r *pruningRegistry) PausePruning()                 { r.record("pause") }
func (r *pruningRegistry) ResumePruning() {
	r.record("resume")
	r.resumed <- struct{}{}
}
func (r *pruningRegistry) SetWarm() {}

func (r *pruningRegistry) has(e string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.events {
		if x == e {
			return true
		}
	}
	return false
}

// TestReconnectWithinUpstreamBound restarts a TLS NATS server (where
// nats.go's default jitter is up to a second) on the same port: the
// controller's connection retries every ReconnectWait without jitter, so
// pruning resumes and the subscriptions work again within ReconnectWait of
// the server's return. The configured options are checked exactly; the
// live restart is checked with a generous deadline.
func TestReconnectWithinUpstreamBound(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	n, err := natsserver.New(natsserver.Config{TLS: files.ServerConfig(t, mtls.InternalServiceDefaults())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	url := "tls://" + strings.TrimPrefix(n.URL(), "nats://")
	secure := nats.Secure(files.ClientConfig(t, mtls.InternalServiceDefaults()))

	reg := &pruningRegistry{resumed: make(chan struct{}, 4)}
	s, err := Subscribe(logtest.New(t), SubscriberConfig{URL: url, ID: "0-id", Host: "10.0.0.1",
		MinimumRegisterIntervalInSeconds: 1, WarmDuration: time.Hour, Options: []nats.Option{secure}}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	opts := s.conn.Opts
	got := struct {
		MaxReconnect                                       int
		ReconnectWait, ReconnectJitter, ReconnectJitterTLS time.Duration
		CustomDelay                                        bool
	}{opts.MaxReconnect, opts.ReconnectWait, opts.ReconnectJitter, opts.ReconnectJitterTLS, opts.CustomReconnectDelayCB != nil}
	want := got
	want.MaxReconnect, want.ReconnectWait, want.ReconnectJitter, want.ReconnectJitterTLS, want.CustomDelay = -1, 2*time.Second, 0, 0, false
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("reconnect options (-want +got):\n%s", diff)
	}

	n.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !reg.has("pause") {
		if time.Now().After(deadline) {
			t.Fatal("pruning not paused after the server went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	select {
	case <-reg.resumed:
	case <-time.After(ReconnectWait + 10*time.Second):
		t.Fatalf("pruning not resumed %s after the server came back", ReconnectWait+10*time.Second)
	}
	t.Logf("pruning resumed %s after the server came back (bound %s)", time.Since(back).Round(time.Millisecond), ReconnectWait)

	// The subscriptions came back with the connection.
	pub, err := nats.Connect(url, secure)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msg, _ := json.Marshal(map[string]any{"host": "10.255.1.2", "uris": []string{"app.apps.internal"}})
	for i := 0; !reg.has("add 10.255.1.2"); i++ {
		if i == 500 {
			t.Fatal("register after the restart not received")
		}
		if err := pub.Publish(discovery.SubjectRegister, msg); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !s.conn.IsConnected() || s.conn.Reconnects != 1 {
		t.Errorf("connected %v after %d reconnects, want one", s.conn.IsConnected(), s.conn.Reconnects)
	}
}
