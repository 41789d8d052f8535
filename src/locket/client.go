package locket

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Upstream's locket defaults: a lock lives 15 s unless refreshed, and the
// runner refreshes (or retries acquiring) every 5 s.
const (
	DefaultSessionTTLInSeconds = 15
	RetryInterval              = 5 * time.Second
)

// Method names of the models.Locket service.
const (
	serviceName   = "models.Locket"
	methodLock    = "/" + serviceName + "/Lock"
	methodFetch   = "/" + serviceName + "/Fetch"
	methodRelease = "/" + serviceName + "/Release"
)

// Errors as locket's server returns them (status code and message).
var (
	ErrLockCollision    = status.Error(codes.AlreadyExists, "lock-collision")
	ErrResourceNotFound = status.Error(codes.NotFound, "resource-not-found")
)

// IsLockCollision reports whether err is locket refusing a lock another
// owner holds.
func IsLockCollision(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.AlreadyExists
}

// Client calls a locket server.
type Client struct {
	conn *grpc.ClientConn
}

// ClientOptions tunes the connection; zero values keep gRPC's defaults.
type ClientOptions struct {
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
}

// NewClient returns a client of the locket server at address (host:port)
// over TLS with tlsConfig (mutual TLS in every real deployment). The
// connection is made lazily, on the first call.
func NewClient(address string, tlsConfig *tls.Config, opts ClientOptions) (*Client, error) {
	if address == "" {
		return nil, errors.New("locket: empty address")
	}
	if tlsConfig == nil {
		return nil, errors.New("locket: no TLS config")
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{})),
	}
	if opts.KeepaliveTime > 0 {
		dialOpts = append(dialOpts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: opts.KeepaliveTime, Timeout: opts.KeepaliveTimeout, PermitWithoutStream: true,
		}))
	}
	conn, err := grpc.NewClient(address, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("locket client for %s: %w", address, err)
	}
	return &Client{conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Lock acquires or refreshes a lock for ttlInSeconds.
func (c *Client) Lock(ctx context.Context, r *Resource, ttlInSeconds int64) error {
	return c.conn.Invoke(ctx, methodLock, &LockRequest{Resource: r, TTLInSeconds: ttlInSeconds}, &LockResponse{})
}

// Release gives a lock up.
func (c *Client) Release(ctx context.Context, r *Resource) error {
	return c.conn.Invoke(ctx, methodRelease, &ReleaseRequest{Resource: r}, &ReleaseResponse{})
}

// Fetch returns the current holder of key.
func (c *Client) Fetch(ctx context.Context, key string) (*Resource, error) {
	var out FetchResponse
	if err := c.conn.Invoke(ctx, methodFetch, &FetchRequest{Key: key}, &out); err != nil {
		return nil, err
	}
	if out.Resource == nil {
		return nil, ErrResourceNotFound
	}
	return out.Resource, nil
}

// Lease is a lock held in locket: Acquire and Refresh are the same Lock
// call (locket extends the TTL of a lock its owner asks for again).
type Lease struct {
	client   *Client
	resource *Resource
	ttl      int64
}

// NewLease is the lock key owned by owner, as upstream's lock runners
// build it (type "lock", type code LOCK).
func NewLease(client *Client, key, owner string, ttlInSeconds int64) *Lease {
	return &Lease{
		client:   client,
		resource: &Resource{Key: key, Owner: owner, Type: LockType, TypeCode: Lock},
		ttl:      ttlInSeconds,
	}
}

// Acquire implements Lockable.
func (l *Lease) Acquire(ctx context.Context) error {
	return l.client.Lock(ctx, l.resource, l.ttl)
}

// Refresh implements Lockable.
func (l *Lease) Refresh(ctx context.Context) error {
	return l.client.Lock(ctx, l.resource, l.ttl)
}

// Release implements Lockable.
func (l *Lease) Release(ctx context.Context) error {
	return l.client.Release(ctx, l.resource)
}

// Describe implements Lockable: upstream's lock runner session and data
// (the resource as locket's models.Resource marshals it: value omitted
// when empty, type_code as a number).
func (l *Lease) Describe() (string, map[string]any) {
	return "locket-lock", map[string]any{"lock": map[string]any{"key": l.resource.Key, "owner": l.resource.Owner, "type": l.resource.Type, "type_code": int32(l.resource.TypeCode)}, "ttl_in_seconds": l.ttl}
}
