// Package natsserver stands in for the NATS cluster service discovery
// uses on a real deployment: nats-server's own package, in process, which
// can be stopped and started again on the same port to act out an outage.
// The lab runs it (`netman-lab nats`); tests reach it through discoverytest.
package natsserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an in-process NATS server.
type Config struct {
	// Host and Port to listen on; Port 0 picks a free port.
	Host string
	Port int
	// User and Password, when set, are required of clients.
	User, Password string
	// TLS, when set, makes the server TLS-only; set ClientAuth in it to
	// require client certificates.
	TLS *tls.Config
	// Monitoring, when set, serves the HTTP monitoring endpoints (/varz,
	// /connz ...) on Host and a free port (MonitorPort), kept across
	// restarts.
	Monitoring bool
	// MaxPending, when set, is the server's limit of bytes pending to one
	// client before it is cut off as a slow consumer (and caps the maximum
	// payload, which may not exceed it).
	MaxPending int64
	// WriteDeadline, when set, is how long the server waits on a write to
	// a client before it cuts the client off as a slow consumer.
	WriteDeadline time.Duration

	monitorPort int
}

// Server is an in-process NATS server that can be stopped and started
// again on the same port, to simulate an outage.
type Server struct {
	cfg Config

	mu  sync.Mutex
	srv *server.Server
}

// New starts a server and waits until it accepts connections.
func New(cfg Config) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	n := &Server{cfg: cfg}
	if err := n.Start(); err != nil {
		return nil, err
	}
	return n, nil
}

// Start (re)starts a stopped server on its port.
func (n *Server) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	port := n.cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		Host:     n.cfg.Host,
		Port:     port,
		Username: n.cfg.User,
		Password: n.cfg.Password,
		NoLog:    true,
		NoSigs:   true,
	}
	if n.cfg.Monitoring {
		opts.HTTPHost = n.cfg.Host
		opts.HTTPPort = n.cfg.monitorPort
		if opts.HTTPPort == 0 {
			opts.HTTPPort = server.RANDOM_PORT
		}
	}
	if n.cfg.WriteDeadline > 0 {
		opts.WriteDeadline = n.cfg.WriteDeadline
	}
	if n.cfg.MaxPending > 0 {
		opts.MaxPending = n.cfg.MaxPending
		if n.cfg.MaxPending < server.MAX_PAYLOAD_SIZE {
			opts.MaxPayload = int32(n.cfg.MaxPending) // the server requires max_payload <= max_pending
		}
	}
	if n.cfg.TLS != nil {
		opts.TLSConfig = n.cfg.TLS
		opts.TLS = true
		opts.TLSVerify = n.cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = 5
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("nats server on %s:%d not ready within 10s", n.cfg.Host, port)
	}
	if n.cfg.Port == 0 {
		n.cfg.Port = srv.Addr().(*net.TCPAddr).Port
	}
	if n.cfg.Monitoring && n.cfg.monitorPort == 0 {
		n.cfg.monitorPort = srv.MonitorAddr().Port
	}
	n.srv = srv
	return nil
}

// Stop shuts the server down; Start brings it back on the same port.
func (n *Server) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// Host is the address the server listens on.
func (n *Server) Host() string { return n.cfg.Host }

// Credentials are the user and password clients must present ("" when none).
func (n *Server) Credentials() (user, password string) { return n.cfg.User, n.cfg.Password }

// Port is the port the server listens on.
func (n *Server) Port() int { return n.cfg.Port }

// MonitorPort is the port of the HTTP monitoring endpoints (0 unless
// Monitoring is set).
func (n *Server) MonitorPort() int { return n.cfg.monitorPort }

// URL is nats://[user:password@]host:port.
func (n *Server) URL() string {
	u := url.URL{Scheme: "nats", Host: net.JoinHostPort(n.cfg.Host, strconv.Itoa(n.cfg.Port))}
	if n.cfg.User != "" || n.cfg.Password != "" {
		u.User = url.UserPassword(n.cfg.User, n.cfg.Password)
	}
	return u.String()
}
