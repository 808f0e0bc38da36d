// Package raygcs reads the live state of a Ray cluster's GCS and asks it to
// drain nodes, for an autoscaler that runs beside the head: nodes with their
// resources and idle times, and the demand that does not fit (pending tasks
// and actors, placement groups, request_resources floors).
//
// It speaks the GCS's own gRPC API (ray.rpc.autoscaler.AutoscalerStateService,
// the one Ray's autoscaler v2 uses) in plain HTTP/2 to the GCS address, the
// head's `ray start --head --port`. Messages are encoded by hand (see
// wire.go) and the calls framed by hand over net/http (unary.go), so the
// client costs little and no Python: polling every few seconds from the head
// job is cheap, and the binary that links it starts without gRPC's init.
package raygcs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

const (
	methodClusterState = "/ray.rpc.autoscaler.AutoscalerStateService/GetClusterResourceState"
	methodDrain        = "/ray.rpc.autoscaler.AutoscalerStateService/DrainNode"
	methodKVGet        = "/ray.rpc.InternalKVGcsService/InternalKVGet"

	// resourceRequestKey is where request_resources stores its bundles on
	// a cluster without autoscaler v2 (ray_constants.AUTOSCALER_RESOURCE_REQUEST_CHANNEL),
	// in the default (empty) namespace.
	resourceRequestKey = "autoscaler_resource_request"

	// nodeIDSize is the length of a Ray NodeID in bytes.
	nodeIDSize = 28

	// maxReply bounds one reply. The cluster state of a large cluster
	// (dead nodes included) passes gRPC's usual 4 MB default.
	maxReply = 64 << 20
)

// DefaultTimeout bounds a call whose context has no deadline, so a GCS that
// accepts connections but never answers cannot hang the caller.
const DefaultTimeout = 10 * time.Second

// ErrUnauthenticated is wrapped by every error of a call the GCS refused for
// its token: none given to a cluster with RAY_AUTH_MODE=token, or a wrong one.
// The error text keeps the GCS's own words.
var ErrUnauthenticated = errors.New("ray gcs refused the auth token")

// Client talks to one cluster's GCS. It is safe for concurrent use.
type Client struct {
	base      string // "http://host:port"
	token     string
	transport *http.Transport
	closed    atomic.Bool
}

// errClosed fails a call made after Close.
var errClosed = errors.New("gcs client is closed")

// Dial makes a client for the GCS at addr ("host:port"). token is the
// cluster's auth token (RAY_AUTH_MODE=token), sent with every call as
// "authorization: Bearer <token>" as Ray's own clients do; "" sends none, for
// clusters without auth. Surrounding whitespace, as token files have, is
// dropped. Dial does not connect: the first call does, and a GCS that is down
// fails that call (Unavailable, with the dial's error), not Dial.
func Dial(addr, token string) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("gcs address %q: %w", addr, err)
	}
	// The GCS serves plain HTTP/2 (h2c) with no TLS and no HTTP/1: prior
	// knowledge, one connection that the transport keeps for the next
	// calls. No proxy: the GCS is on the cluster's own network.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	t := &http.Transport{
		Protocols:   &protocols,
		DialContext: (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
	}
	return &Client{base: "http://" + addr, token: strings.TrimSpace(token), transport: t}, nil
}

// Close releases the connection. Calls after Close fail.
func (c *Client) Close() error {
	c.closed.Store(true)
	c.transport.CloseIdleConnections()
	return nil
}

// ClusterState returns what the GCS knows now. Constraints come from the GCS
// on a cluster with autoscaler v2 (RAY_enable_autoscaler_v2=1 on the head)
// and from the GCS key-value store otherwise, where request_resources writes
// them then; so they are read whichever way the head was started. That is
// two calls, so the floors may be a moment newer than the rest; a stored
// floor that is not Ray's JSON is an error.
func (c *Client) ClusterState(ctx context.Context) (ClusterState, error) {
	b, err := c.call(ctx, methodClusterState, nil)
	if err != nil {
		return ClusterState{}, fmt.Errorf("gcs cluster state: %w", err)
	}
	s, err := decodeClusterStateReply(b)
	if err != nil {
		return ClusterState{}, fmt.Errorf("gcs cluster state: decode reply: %w", err)
	}
	floors, err := c.resourceRequests(ctx)
	if err != nil {
		return ClusterState{}, fmt.Errorf("gcs cluster state: %w", err)
	}
	s.Constraints = append(s.Constraints, floors...)
	return s, nil
}

// Ping asks the GCS for its cluster state and returns nil when it answers:
// an application-level probe. A TCP connect is none: it succeeds against a
// SIGSTOPped GCS, whose kernel still accepts connections.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.call(ctx, methodClusterState, nil); err != nil {
		return fmt.Errorf("gcs ping: %w", err)
	}
	return nil
}

// resourceRequests reads request_resources' bundles from the key-value
// store (clusters without autoscaler v2).
func (c *Client) resourceRequests(ctx context.Context) ([]RequestCount, error) {
	b, err := c.call(ctx, methodKVGet, encodeKVGetRequest(resourceRequestKey, ""))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", resourceRequestKey, err)
	}
	v, found, err := decodeKVGetReply(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", resourceRequestKey, err)
	}
	if !found {
		return nil, nil
	}
	floors, err := decodeResourceRequestKV(v)
	if err != nil {
		return nil, fmt.Errorf("read %s %q: %w", resourceRequestKey, v, err)
	}
	return floors, nil
}

// Drain asks the GCS to drain the node nodeID (hex, as Node.ID): Ray stops
// placing work there, tells its libraries (Train, Data, Serve) the node is
// leaving, and once the node is idle its raylet exits by itself and the node
// turns DEAD (with an idle node, within a fraction of a second). deadline is
// when the node will be gone whatever runs on it (zero: no deadline); message
// is recorded as the node's death reason.
//
// The node's `ray start --block` does not end with its raylet: Ray 2.60's
// --block exits only when a child dies with an unexpected code, and a
// drained raylet exits 0. Whoever runs it must stop it once the node is DEAD.
//
// accepted is false, with Ray's rejection message, when the node refuses:
// Ray 2.60 refuses DrainIdleTermination on a node that is not idle ("The node
// to be idle terminated is no longer idle."), and never refuses
// DrainPreemption. The GCS accepts a drain of a node it does not know or
// knows dead: it counts it as drained. Nothing refuses a drain of the head:
// see Node.IsHead.
//
// Drain checks nodeID and reason itself, because the GCS and raylet of Ray
// 2.60 abort (the whole cluster with them) on a node id that is not 28 bytes
// or a reason that is neither of the two.
func (c *Client) Drain(ctx context.Context, nodeID string, reason DrainReason, message string, deadline time.Time) (accepted bool, rejection string, err error) {
	id, err := hex.DecodeString(nodeID)
	if err != nil || len(id) != nodeIDSize {
		return false, "", fmt.Errorf("drain node %q: not a Ray node id (%d hex digits)", nodeID, 2*nodeIDSize)
	}
	if reason != DrainIdleTermination && reason != DrainPreemption {
		return false, "", fmt.Errorf("drain node %s: unsupported reason %v", nodeID, reason)
	}
	var deadlineMs int64
	if !deadline.IsZero() {
		if deadlineMs = deadline.UnixMilli(); deadlineMs <= 0 {
			return false, "", fmt.Errorf("drain node %s: deadline %v is before 1970", nodeID, deadline)
		}
	}
	b, err := c.call(ctx, methodDrain, encodeDrainRequest(id, reason, message, deadlineMs))
	if err != nil {
		return false, "", fmt.Errorf("drain node %s: %w", nodeID, err)
	}
	accepted, rejection, err = decodeDrainReply(b)
	if err != nil {
		return false, "", fmt.Errorf("drain node %s: decode reply: %w", nodeID, err)
	}
	return accepted, rejection, nil
}

// call makes one unary call with an encoded request and returns the encoded
// reply.
func (c *Client) call(ctx context.Context, method string, req []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, errClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	reply, err := c.roundTrip(ctx, method, req)
	if c.closed.Load() {
		// Close came during the call: the connection it left idle goes too.
		c.transport.CloseIdleConnections()
	}
	switch {
	case err == nil:
		return reply, nil
	case ctx.Err() != nil:
		// Whatever broke the call then, it was the caller giving up.
		st := codeCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			st = codeDeadlineExceeded
		}
		return nil, &statusError{code: st, msg: ctx.Err().Error(), cause: ctx.Err()}
	case statusCode(err) == codeUnauthenticated:
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return nil, err
}

// roundTrip sends one call and reads its reply.
func (c *Client) roundTrip(ctx context.Context, method string, req []byte) ([]byte, error) {
	hreq, err := newUnaryRequest(ctx, c.base, method, c.token, req)
	if err != nil {
		return nil, err
	}
	resp, err := c.transport.RoundTrip(hreq)
	if err != nil {
		return nil, &statusError{code: codeUnavailable, msg: err.Error(), cause: err}
	}
	// Closing before the end of the body resets the stream, not the
	// connection, which stays for the next call.
	defer resp.Body.Close()
	return readUnary(resp, maxReply)
}
