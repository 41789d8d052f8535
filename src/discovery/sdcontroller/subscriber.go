package sdcontroller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery"
)

// PruneThresholdInSeconds is what the controller tells route emitters in its
// start message; upstream hard-codes 120.
const PruneThresholdInSeconds = 120

// ReconnectWait is how long the subscriber waits between attempts to reach
// a lost NATS server: upstream's go-nats default (upstream sets no wait).
// With no jitter (upstream's go-nats had none; nats.go adds up to 100 ms,
// or 1 s over TLS, by default) a restarted server is reached at most
// ReconnectWait after it is back, so pruning resumes within upstream's
// bound: ReconnectWait plus resume_pruning_delay_seconds.
const ReconnectWait = 2 * time.Second

// reconnectOptions are the subscriber's reconnect behaviour: retry forever,
// every ReconnectWait, without jitter.
func reconnectOptions() []nats.Option {
	return []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(ReconnectWait), nats.ReconnectJitter(0, 0)}
}

// routeBuffer is how many register/unregister messages may wait for the
// table before NATS drops them as a slow consumer: nats.go's default pending
// limit for a subscription.
const routeBuffer = 65536

// Registry is what the subscriber changes in the address table.
type Registry interface {
	Add(hostnames []string, ip string)
	Remove(hostnames []string, ip string)
	PausePruning()
	ResumePruning()
	SetWarm()
}

// SubscriberConfig is what the subscriber says about itself and how long the
// table takes to warm.
type SubscriberConfig struct {
	// URL is the comma-separated list of NATS server URLs.
	URL string
	// ID (<index>-<uuid>) and Host (this VM's IP) identify the controller in
	// its start message.
	ID, Host string
	// MinimumRegisterIntervalInSeconds is resume_pruning_delay_seconds.
	MinimumRegisterIntervalInSeconds int
	// WarmDuration is how long after subscribing the table becomes warm.
	WarmDuration time.Duration
	// Options are extra nats.Options, e.g. TLS or (in tests) a short
	// reconnect wait; they override the reconnect behaviour.
	Options []nats.Option
	// Debug reports whether debug lines are wanted; the per-message debug
	// lines are skipped, not just filtered, when it returns false (lager
	// builds every line before its sink drops it). Nil means always.
	Debug func() bool
}

// Subscriber feeds route_emitter's NATS messages into the address table and
// announces the controller with service-discovery.start.
type Subscriber struct {
	logger   lager.Logger
	registry Registry
	recorder *Recorder
	start    []byte
	debug    func() bool

	conn     *nats.Conn
	routes   chan *nats.Msg
	done     chan struct{}
	wg       sync.WaitGroup
	warm     *time.Timer
	closeOne sync.Once
}

// Subscribe connects to NATS (retrying reconnects forever once connected),
// subscribes to greet, register and unregister, publishes the start message
// and starts the warm-up timer. A NATS outage pauses pruning; reconnecting
// resumes it and publishes the start message again, which makes route
// emitters re-register everything.
func Subscribe(logger lager.Logger, cfg SubscriberConfig, registry Registry, recorder *Recorder) (*Subscriber, error) {
	if recorder == nil {
		recorder = NewRecorder(nil)
	}
	if cfg.Debug == nil {
		cfg.Debug = func() bool { return true }
	}
	start, err := json.Marshal(discovery.StartMessage{
		ID:                               cfg.ID,
		Host:                             cfg.Host,
		MinimumRegisterIntervalInSeconds: cfg.MinimumRegisterIntervalInSeconds,
		PruneThresholdInSeconds:          PruneThresholdInSeconds,
	})
	if err != nil {
		return nil, err
	}
	s := &Subscriber{
		logger:   logger,
		registry: registry,
		recorder: recorder,
		start:    start,
		debug:    cfg.Debug,
		routes:   make(chan *nats.Msg, routeBuffer),
		done:     make(chan struct{}),
	}

	opts := append(reconnectOptions(),
		nats.ReconnectHandler(s.reconnected),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			logger.Info("DisconnectHandler disconnected from nats server", lager.Data{"last_error": errString(err)})
			registry.PausePruning()
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			logger.Info("ClosedHandler unexpected close of nats connection", lager.Data{"last_error": errString(c.LastError())})
		}),
	)
	opts = append(opts, cfg.Options...)
	conn, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("unable to create nats connection: %w", err)
	}
	s.conn = conn
	logger.Info("Connected to NATS server", lager.Data{"nats_host": redact(conn.ConnectedUrl())})

	// One channel for both subjects, drained by one goroutine: an
	// unregister is applied after the register the same emitter sent
	// before it (upstream's two handlers could reorder them).
	s.wg.Add(1)
	go s.apply()

	if err := s.subscribe(); err != nil {
		s.Close()
		return nil, err
	}
	// Subscribed before announcing, so re-registrations prompted by the
	// start message cannot arrive before the subscriptions exist.
	if err := s.publishStart(); err != nil {
		s.Close()
		return nil, err
	}
	s.warm = time.AfterFunc(cfg.WarmDuration, registry.SetWarm)
	return s, nil
}

func (s *Subscriber) subscribe() error {
	if _, err := s.conn.Subscribe(discovery.SubjectGreet, s.greet); err != nil {
		s.logger.Error("setupGreetMsgHandler unable to subscribe to greet messages", err)
		return err
	}
	if _, err := s.conn.ChanSubscribe(discovery.SubjectRegister, s.routes); err != nil {
		s.logger.Error("setupAddressMessageHandler unable to subscribe to service-discovery.register", err)
		return err
	}
	if _, err := s.conn.ChanSubscribe(discovery.SubjectUnregister, s.routes); err != nil {
		s.logger.Error("setupAddressMessageHandler unable to subscribe to service-discovery.unregister", err)
		return err
	}
	if err := s.conn.Flush(); err != nil {
		s.logger.Error("setupGreetMsgHandler unable to flush subscribe greet message", err)
		return err
	}
	return nil
}

// Close stops the warm-up timer, closes the NATS connection and waits for
// queued messages to be dropped. It is safe to call more than once.
func (s *Subscriber) Close() {
	s.closeOne.Do(func() {
		if s.warm != nil {
			s.warm.Stop()
		}
		s.conn.Close()
		close(s.done)
		s.wg.Wait()
	})
}

// Run blocks until ctx is done, then closes the subscriber.
func (s *Subscriber) Run(ctx context.Context) error {
	<-ctx.Done()
	s.Close()
	return nil
}

func (s *Subscriber) publishStart() error {
	if err := s.conn.Publish(discovery.SubjectStart, s.start); err != nil {
		return fmt.Errorf("unable to publish a start message: %w", err)
	}
	if err := s.conn.Flush(); err != nil {
		return fmt.Errorf("unable to publish a start message: %w", err)
	}
	s.logger.Info("service-discovery.start-message-published", lager.Data{"subscription_options": string(s.start)})
	return nil
}

func (s *Subscriber) reconnected(c *nats.Conn) {
	s.logger.Info("ReconnectHandler reconnected to nats server", lager.Data{"nats_host": redact(c.ConnectedUrl())})
	s.registry.ResumePruning()
	if err := c.Publish(discovery.SubjectStart, s.start); err != nil {
		s.logger.Error("error sending start message after reconnecting to nats server", err)
		return
	}
	s.logger.Info("service-discovery.start-message-published", lager.Data{"subscription_options": string(s.start)})
}

func (s *Subscriber) greet(m *nats.Msg) {
	if m.Reply == "" {
		s.logger.Info("GreetMsgHandler received a greet message without a reply subject")
		return
	}
	if err := s.conn.Publish(m.Reply, s.start); err != nil {
		s.logger.Error("GreetMsgHandler unable to publish response to greet messages", err)
		return
	}
	s.logger.Info("service-discovery.greet-response-published")
}

func (s *Subscriber) apply() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case m := <-s.routes:
			s.handle(m)
		}
	}
}

// routeMessage is the part of a RegistryMessage the controller reads;
// decoding only these fields keeps registration cheap.
type routeMessage struct {
	Host                string   `json:"host"`
	URIs                []string `json:"uris"`
	EndpointUpdatedAtNs int64    `json:"endpoint_updated_at_ns"`
}

func (s *Subscriber) handle(m *nats.Msg) {
	var msg routeMessage
	err := json.Unmarshal(m.Data, &msg)
	switch m.Subject {
	case discovery.SubjectRegister:
		if err != nil || msg.Host == "" || len(msg.URIs) == 0 {
			s.logger.Info("AddressMessageHandler received a malformed register message", lager.Data{"msgJson": string(m.Data)})
			return
		}
		s.recorder.RecordTransit(msg.EndpointUpdatedAtNs)
		s.recorder.RecordRegister()
		if s.debug() {
			s.logger.Debug("AddressMessageHandler register msg received", lager.Data{"msgJson": string(m.Data)})
		}
		s.registry.Add(msg.URIs, msg.Host)
	case discovery.SubjectUnregister:
		if err != nil || len(msg.URIs) == 0 {
			s.logger.Info("AddressMessageHandler received a malformed unregister message", lager.Data{"msgJson": string(m.Data)})
			return
		}
		if s.debug() {
			s.logger.Debug("AddressMessageHandler unregister msg received", lager.Data{"msgJson": string(m.Data)})
		}
		s.registry.Remove(msg.URIs, msg.Host)
	}
}

// redact keeps credentials out of the logs: scheme and host only.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
