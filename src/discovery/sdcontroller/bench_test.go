package sdcontroller_test

import (
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/addresstable"
	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
)

// counting passes registrations to the real table and counts them.
type counting struct {
	*addresstable.Table
	adds atomic.Int64
}

func (c *counting) Add(names []string, ip string) {
	c.Table.Add(names, ip)
	c.adds.Add(1)
}

// BenchmarkRegistrations measures how many route_emitter register messages
// per second the controller absorbs: published to a real NATS server,
// delivered to the subscriber, decoded and applied to the address table.
// The messages cycle over 10,000 routes of two instances each (each message
// carries the route and its instance name, as route_emitter's do). At most
// 20,000 messages are in flight, well under the subscriber's buffer.
func BenchmarkRegistrations(b *testing.B) {
	n := discoverytest.StartNATS(b, discoverytest.NATSConfig{})
	// Info level, as in production: debug lines are filtered.
	logger, sink := discovery.NewLogger(sdcontroller.Origin, io.Discard)
	table := &counting{Table: addresstable.New(logger, time.Minute, 0)}
	table.SetWarm()
	sub, err := sdcontroller.Subscribe(logger, sdcontroller.SubscriberConfig{
		URL: n.URL(), ID: "0-bench", Host: "127.0.0.1",
		Debug: func() bool { return sink.GetMinLevel() <= lager.DEBUG },
	}, table, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	pub, err := nats.Connect(n.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()

	const routes = 10000
	msgs := make([][]byte, 2*routes)
	for i := range msgs {
		r, idx := i/2, i%2
		m := discoverytest.Instance{Hostname: fmt.Sprintf("app-%d.apps.internal", r), Index: idx, IP: fmt.Sprintf("10.%d.%d.%d", 100+r/256, r%256, 2+idx), App: "guid"}.Message()
		if msgs[i], err = json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := pub.Publish(discovery.SubjectRegister, msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		if i%5000 == 4999 {
			for int64(i)-table.adds.Load() > 20000 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	if err := pub.Flush(); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); table.adds.Load() < int64(b.N); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d registrations absorbed", table.adds.Load(), b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
}
