// Package routeemitter stands in for Diego's route_emitter as far as
// service discovery sees it: it registers app instances' internal routes
// on NATS (service-discovery.register), greets the controllers for their
// interval, and registers everything again whenever a controller starts.
// The lab runs one per cell (`netman-lab route-emitter`); tests reach it
// through discoverytest.
package routeemitter

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery"
)

// Instance is one running app instance with an internal route.
type Instance struct {
	// Hostname is the internal route, e.g. "app.apps.internal".
	Hostname string
	// Index is the instance index: route_emitter also registers
	// "<Index>.<Hostname>" for it.
	Index int
	// IP is the instance's overlay address.
	IP string
	// App is the app's log GUID.
	App string
}

// Message is the register/unregister body route_emitter sends for i.
func (i Instance) Message() discovery.RegistryMessage {
	return discovery.RegistryMessage{
		Host:                 i.IP,
		URIs:                 []string{i.Hostname, strconv.Itoa(i.Index) + "." + i.Hostname},
		App:                  i.App,
		PrivateInstanceIndex: strconv.Itoa(i.Index),
		Tags:                 map[string]string{"component": "route-emitter"},
		EndpointUpdatedAtNs:  time.Now().UnixNano(),
	}
}

// Emitter behaves like route_emitter's internal routes emitter: it
// registers instances on service-discovery.register, unregisters them, and
// registers everything again whenever a controller announces itself on
// service-discovery.start.
type Emitter struct {
	conn *nats.Conn

	mu        sync.Mutex
	instances map[string]Instance // by IP + hostname
	starts    []discovery.StartMessage
}

// New connects to url. With reRegisterOnStart it answers every
// start message by registering all its instances again, as route_emitter
// does; without it, it only registers when told to (to simulate an emitter
// that has gone away).
func New(url string, reRegisterOnStart bool, opts ...nats.Option) (*Emitter, error) {
	conn, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		return nil, err
	}
	e := &Emitter{conn: conn, instances: map[string]Instance{}}
	_, err = conn.Subscribe(discovery.SubjectStart, func(m *nats.Msg) {
		var start discovery.StartMessage
		if json.Unmarshal(m.Data, &start) != nil {
			return
		}
		e.mu.Lock()
		e.starts = append(e.starts, start)
		e.mu.Unlock()
		if reRegisterOnStart {
			_ = e.EmitAll()
		}
	})
	if err == nil {
		err = conn.Flush()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return e, nil
}

// Close disconnects.
func (e *Emitter) Close() { e.conn.Close() }

// Register registers instances and remembers them for EmitAll.
func (e *Emitter) Register(instances ...Instance) error {
	e.mu.Lock()
	for _, i := range instances {
		e.instances[i.IP+" "+i.Hostname] = i
	}
	e.mu.Unlock()
	return e.publish(discovery.SubjectRegister, instances)
}

// Unregister unregisters instances and forgets them.
func (e *Emitter) Unregister(instances ...Instance) error {
	e.mu.Lock()
	for _, i := range instances {
		delete(e.instances, i.IP+" "+i.Hostname)
	}
	e.mu.Unlock()
	return e.publish(discovery.SubjectUnregister, instances)
}

// EmitAll registers every remembered instance again, as route_emitter does
// every sync interval.
func (e *Emitter) EmitAll() error {
	e.mu.Lock()
	all := make([]Instance, 0, len(e.instances))
	for _, i := range e.instances {
		all = append(all, i)
	}
	e.mu.Unlock()
	return e.publish(discovery.SubjectRegister, all)
}

// EmitEvery calls EmitAll every interval until ctx is done.
func (e *Emitter) EmitEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = e.EmitAll()
		}
	}
}

// Publish sends a raw message (malformed-message tests).
func (e *Emitter) Publish(subject string, data []byte) error {
	if err := e.conn.Publish(subject, data); err != nil {
		return err
	}
	return e.conn.Flush()
}

// Greet asks the controllers for their start message, as route_emitter does
// when it starts.
func (e *Emitter) Greet(timeout time.Duration) (discovery.StartMessage, error) {
	var start discovery.StartMessage
	m, err := e.conn.Request(discovery.SubjectGreet, nil, timeout)
	if err != nil {
		return start, err
	}
	if err := json.Unmarshal(m.Data, &start); err != nil {
		return start, fmt.Errorf("greet reply %q: %w", m.Data, err)
	}
	return start, nil
}

// Starts returns the start messages received so far.
func (e *Emitter) Starts() []discovery.StartMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]discovery.StartMessage(nil), e.starts...)
}

func (e *Emitter) publish(subject string, instances []Instance) error {
	for _, i := range instances {
		data, err := json.Marshal(i.Message())
		if err != nil {
			return err
		}
		if err := e.conn.Publish(subject, data); err != nil {
			return err
		}
	}
	return e.conn.Flush()
}

// ReconnectQuickly makes a NATS client retry a lost server every 50 ms
// instead of every 2 s, so outages (in tests, in the lab) are short.
func ReconnectQuickly() []nats.Option {
	return []nats.Option{nats.ReconnectWait(50 * time.Millisecond), nats.ReconnectJitter(0, 0)}
}
