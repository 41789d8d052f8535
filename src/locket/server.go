package locket

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Server is an in-memory locket: locks with owners and TTLs, as Diego's
// locket keeps them in SQL. It serves Lock, Fetch and Release over gRPC, so
// a lab or a test needs no Diego; an outage is simulated with Stop.
type Server struct {
	mu    sync.Mutex
	locks map[string]heldLock
	now   func() time.Time

	grpc *grpc.Server
	lis  net.Listener
}

type heldLock struct {
	resource Resource
	ttl      int64 // seconds, as the holder last asked
	expires  time.Time
}

// NewServer returns an empty locket.
func NewServer() *Server {
	return &Server{locks: map[string]heldLock{}, now: time.Now}
}

// Start serves on addr ("127.0.0.1:0" for any port) with tlsConfig (a
// mutual TLS server config); Addr tells where.
func (s *Server) Start(addr string, tlsConfig *tls.Config) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.lis = lis
	s.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)), grpc.ForceServerCodec(codec{}))
	s.grpc.RegisterService(&serviceDesc, s)
	go func() { _ = s.grpc.Serve(lis) }()
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Stop closes the listener and every connection at once.
func (s *Server) Stop() {
	if s.grpc != nil {
		s.grpc.Stop()
	}
}

// Holder returns the owner currently holding key ("" when none).
func (s *Server) Holder(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[key]
	if !ok || !s.now().Before(l.expires) {
		return ""
	}
	return l.resource.Owner
}

// Held is the lock on key as its holder last asked for it: the resource
// and the TTL in seconds; ok is false when key is free.
func (s *Server) Held(key string) (r Resource, ttlInSeconds int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[key]
	if !ok || !s.now().Before(l.expires) {
		return Resource{}, 0, false
	}
	return l.resource, l.ttl, true
}

// Reassign gives key to owner for ttl at once, whoever held it: what the
// holder sees when its lock expired unnoticed and another owner took it.
func (s *Server) Reassign(key, owner string, ttl time.Duration) {
	s.mu.Lock()
	s.locks[key] = heldLock{resource: Resource{Key: key, Owner: owner, Type: LockType, TypeCode: Lock}, ttl: int64(ttl / time.Second), expires: s.now().Add(ttl)}
	s.mu.Unlock()
}

// Lock grants key to the owner when it is free, expired, or already the
// owner's (which extends it); otherwise lock-collision.
func (s *Server) Lock(_ context.Context, req *LockRequest) (*LockResponse, error) {
	if req.Resource == nil || req.Resource.Key == "" || req.Resource.Owner == "" {
		return nil, status.Error(codes.InvalidArgument, errNoResource.Error())
	}
	if req.TTLInSeconds <= 0 {
		return nil, status.Error(codes.InvalidArgument, "invalid-ttl")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if l, ok := s.locks[req.Resource.Key]; ok && now.Before(l.expires) && l.resource.Owner != req.Resource.Owner {
		return nil, ErrLockCollision
	}
	s.locks[req.Resource.Key] = heldLock{resource: *req.Resource, ttl: req.TTLInSeconds, expires: now.Add(time.Duration(req.TTLInSeconds) * time.Second)}
	return &LockResponse{}, nil
}

// Release frees key if the owner holds it.
func (s *Server) Release(_ context.Context, req *ReleaseRequest) (*ReleaseResponse, error) {
	if req.Resource == nil {
		return nil, status.Error(codes.InvalidArgument, errNoResource.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[req.Resource.Key]
	if !ok {
		return nil, ErrResourceNotFound
	}
	if l.resource.Owner != req.Resource.Owner {
		return nil, ErrLockCollision
	}
	delete(s.locks, req.Resource.Key)
	return &ReleaseResponse{}, nil
}

// Fetch returns key's holder.
func (s *Server) Fetch(_ context.Context, req *FetchRequest) (*FetchResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[req.Key]
	if !ok || !s.now().Before(l.expires) {
		return nil, ErrResourceNotFound
	}
	r := l.resource
	return &FetchResponse{Resource: &r}, nil
}

type locketServer interface {
	Lock(context.Context, *LockRequest) (*LockResponse, error)
	Release(context.Context, *ReleaseRequest) (*ReleaseResponse, error)
	Fetch(context.Context, *FetchRequest) (*FetchResponse, error)
}

func unary[Req any, PReq interface {
	*Req
	message
}, Resp any](call func(locketServer, context.Context, PReq) (Resp, error), method string) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := PReq(new(Req))
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) { return call(srv.(locketServer), ctx, req.(PReq)) }
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/" + method}, h)
		},
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*locketServer)(nil),
	Methods: []grpc.MethodDesc{
		unary(locketServer.Lock, "Lock"),
		unary(locketServer.Fetch, "Fetch"),
		unary(locketServer.Release, "Release"),
	},
	Metadata: "locket.proto",
}
