package metrics

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/cloudfoundry/sonde-go/events"
	"google.golang.org/protobuf/proto"
)

// errorLogInterval bounds how often failed sends are logged: metron being
// down must not turn every metric into a log line.
const errorLogInterval = time.Minute

// packetWriter is the part of a UDP socket the Sender needs.
type packetWriter interface {
	Write(b []byte) (int, error)
	Close() error
}

// Sender is what components call to report metrics. Every send is recorded
// in the Registry and, when a metron port is configured, emitted as a
// dropsonde envelope exactly as upstream's dropsonde library would.
//
// A nil *Sender is valid and discards everything, so components can treat
// metrics as optional.
type Sender struct {
	logger lager.Logger
	origin string
	reg    *Registry
	conn   packetWriter // nil: registry only
	now    func() time.Time

	closeOnce  sync.Once
	closed     atomic.Bool
	sendErrors atomic.Uint64
	lastErrLog atomic.Int64 // unix nanos of the last logged send error
}

// NewSender returns a Sender for origin (e.g. "silk-daemon"). With
// metronPort <= 0 metrics only go to the Registry.
func NewSender(logger lager.Logger, origin string, metronPort int) (*Sender, error) {
	if origin == "" {
		// Metron drops envelopes without an origin, as dropsonde refuses them.
		return nil, errors.New("metrics: origin is empty")
	}
	if metronPort > 65535 {
		return nil, fmt.Errorf("metrics: invalid metron port %d", metronPort)
	}
	if logger == nil {
		logger = lager.NewLogger("metrics") // no sinks: discards
	}
	s := &Sender{
		logger: logger.Session("metrics-sender"),
		origin: origin,
		reg:    NewRegistry(),
		now:    time.Now,
	}
	if metronPort > 0 {
		conn, err := dialMetron(metronPort)
		if err != nil {
			return nil, err
		}
		s.conn = conn
	}
	return s, nil
}

// udpWriter sends every datagram to one address from an unconnected socket,
// like dropsonde. A connected socket would surface ICMP port-unreachable from
// an absent metron as an error on the next send and drop that datagram.
type udpWriter struct {
	conn *net.UDPConn
	addr *net.UDPAddr
}

func (u *udpWriter) Write(b []byte) (int, error) { return u.conn.WriteToUDP(b, u.addr) }
func (u *udpWriter) Close() error                { return u.conn.Close() }

func dialMetron(port int) (*udpWriter, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("metrics: open udp socket: %w", err)
	}
	return &udpWriter{conn: conn, addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}, nil
}

// Registry returns the registry every send is recorded in.
func (s *Sender) Registry() *Registry {
	if s == nil {
		return nil
	}
	return s.reg
}

// SendValue reports the current value of a value metric.
func (s *Sender) SendValue(name string, value float64, unit string) {
	if s == nil {
		return
	}
	s.reg.SetValue(name, value, unit)
	if s.conn == nil {
		return
	}
	s.emit(&events.Envelope{
		EventType: events.Envelope_ValueMetric.Enum(),
		ValueMetric: &events.ValueMetric{
			Name:  proto.String(name),
			Value: proto.Float64(value),
			Unit:  proto.String(unit),
		},
	})
}

// SendDuration reports d as a value metric in milliseconds, unit "ms", as
// upstream does for *RequestTime and the iptables timings.
func (s *Sender) SendDuration(name string, d time.Duration) {
	s.SendValue(name, float64(d)/float64(time.Millisecond), "ms")
}

// IncrementCounter adds one to a counter.
func (s *Sender) IncrementCounter(name string) { s.AddCounter(name, 1) }

// AddCounter adds delta to a counter. The envelope carries both the delta and
// the running total kept by this Sender.
func (s *Sender) AddCounter(name string, delta uint64) {
	if s == nil {
		return
	}
	total := s.reg.AddCounter(name, delta)
	if s.conn == nil {
		return
	}
	s.emit(&events.Envelope{
		EventType: events.Envelope_CounterEvent.Enum(),
		CounterEvent: &events.CounterEvent{
			Name:  proto.String(name),
			Delta: proto.Uint64(delta),
			Total: proto.Uint64(total),
		},
	})
}

// SendTaggedCounter emits a counter event carrying its own total and
// tags (an app's metric: tags source_id and instance_id make loggregator
// file it under the app). Nothing is recorded in the Registry: such
// counters have labels, which its series do not.
func (s *Sender) SendTaggedCounter(name string, delta, total uint64, tags map[string]string) {
	if s == nil || s.conn == nil {
		return
	}
	s.emit(&events.Envelope{
		EventType: events.Envelope_CounterEvent.Enum(),
		Tags:      tags,
		CounterEvent: &events.CounterEvent{
			Name:  proto.String(name),
			Delta: proto.Uint64(delta),
			Total: proto.Uint64(total),
		},
	})
}

// SendErrors returns how many envelopes could not be sent.
func (s *Sender) SendErrors() uint64 {
	if s == nil {
		return 0
	}
	return s.sendErrors.Load()
}

// Close releases the UDP socket. Later sends still reach the Registry.
func (s *Sender) Close() error {
	if s == nil || s.conn == nil {
		return nil
	}
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err = s.conn.Close()
	})
	return err
}

func (s *Sender) emit(env *events.Envelope) {
	if s.closed.Load() {
		return
	}
	env.Origin = proto.String(s.origin)
	env.Timestamp = proto.Int64(s.now().UnixNano())
	b, err := proto.Marshal(env)
	if err == nil {
		_, err = s.conn.Write(b)
	}
	if err != nil && !s.closed.Load() {
		s.sendFailed(err)
	}
}

func (s *Sender) sendFailed(err error) {
	n := s.sendErrors.Add(1)
	now := s.now().UnixNano()
	last := s.lastErrLog.Load()
	if last != 0 && now-last < int64(errorLogInterval) {
		return
	}
	if !s.lastErrLog.CompareAndSwap(last, now) {
		return // another goroutine is logging this window
	}
	s.logger.Debug("send-failed", lager.Data{"error": err.Error(), "total-failures": n})
}

// AppLog is an application log line (loggregator v1 LogMessage): what an
// app's `cf logs` shows.
type AppLog struct {
	AppID          string // the app (log_config.guid)
	SourceType     string // log_config.source_name, e.g. "CELL"
	SourceInstance string // the instance index
	Message        string
	Tags           map[string]string
}

// SendAppLog emits an application log line to the metron agent. Nothing is
// recorded in the Registry.
func (s *Sender) SendAppLog(l AppLog) {
	if s == nil || s.conn == nil {
		return
	}
	s.emit(&events.Envelope{
		EventType: events.Envelope_LogMessage.Enum(),
		Tags:      l.Tags,
		LogMessage: &events.LogMessage{
			Message:        []byte(l.Message),
			MessageType:    events.LogMessage_OUT.Enum(),
			Timestamp:      proto.Int64(s.now().UnixNano()),
			AppId:          proto.String(l.AppID),
			SourceType:     proto.String(l.SourceType),
			SourceInstance: proto.String(l.SourceInstance),
		},
	})
}
