package raygcs

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeGCS serves the three methods the client calls with fixture bytes
// (real Ray replies where there are some) and records what it was sent. It
// checks the token the way Ray's server interceptor does: the whole
// "authorization" value must be "Bearer <token>".
type fakeGCS struct {
	token   string
	replies map[string][]byte // by full method name

	mu    sync.Mutex
	calls []fakeCall
}

type fakeCall struct {
	method string
	auth   []string
	req    []byte
}

func (f *fakeGCS) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(stream.Context())
	var req []byte
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{method: method, auth: md.Get("authorization"), req: req})
	f.mu.Unlock()
	if auth := md.Get("authorization"); f.token != "" && (len(auth) != 1 || auth[0] != "Bearer "+f.token) {
		return status.Error(codes.Unauthenticated, "InvalidAuthToken: Authentication token is missing or incorrect")
	}
	reply, ok := f.replies[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	return stream.SendMsg(reply)
}

func (f *fakeGCS) recorded() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// startFakeGCS serves f on a free local port and returns its address.
func startFakeGCS(t *testing.T, f *fakeGCS) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(f.handle))
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func fixtureBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newFake(t *testing.T, token string) *fakeGCS {
	return &fakeGCS{token: token, replies: map[string][]byte{
		methodClusterState: fixtureBytes(t, "state_captured_ray260"),
		methodKVGet:        fixtureBytes(t, "kvreply_found"),
		methodDrain:        fixtureBytes(t, "drainreply_captured_ray260_busy"),
	}}
}

func TestClientClusterState(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	f := newFake(t, token)
	addr := startFakeGCS(t, f)
	c, err := Dial(addr, token+"\n") // as read from a token file
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	s, err := c.ClusterState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeClusterStateReply(fixtureBytes(t, "state_captured_ray260"))
	if err != nil {
		t.Fatal(err)
	}
	floors, err := decodeResourceRequestKV([]byte(`[{"GPU": 1}, {"CPU": 2, "GPU": 1}, {"GPU": 1}, {"GPU": 1.0}, {"CPU": 1}]`))
	if err != nil {
		t.Fatal(err)
	}
	want.Constraints = append(want.Constraints, floors...)
	sameJSON(t, "ClusterState", s, want)
	if len(s.Constraints) != 4 || s.Constraints[1].Count != 3 {
		t.Errorf("constraints (GCS's, then the key-value store's) = %+v", s.Constraints)
	}

	calls := f.recorded()
	if len(calls) != 2 || calls[0].method != methodClusterState || calls[1].method != methodKVGet {
		t.Fatalf("calls = %+v", calls)
	}
	for _, call := range calls {
		if len(call.auth) != 1 || call.auth[0] != "Bearer "+token {
			t.Errorf("%s sent authorization %q, want [\"Bearer <token>\"]", call.method, call.auth)
		}
	}
	if len(calls[0].req) != 0 {
		t.Errorf("GetClusterResourceState request = %x, want empty", calls[0].req)
	}
	if !bytes.Equal(calls[1].req, fixtureBytes(t, "kvrequest_resource_request")) {
		t.Errorf("InternalKVGet request = %x", calls[1].req)
	}
}

func TestClientKeyValueVariants(t *testing.T) {
	for _, tc := range []struct {
		reply   string
		floors  int
		wantErr bool
	}{
		{"kvreply_notfound", 0, false},
		{"kvreply_cleared", 0, false},
		{"kvreply_error", 0, true},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			f := newFake(t, "")
			f.replies[methodKVGet] = fixtureBytes(t, tc.reply)
			c, err := Dial(startFakeGCS(t, f), "")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.ClusterState(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "gcs cluster state: ") {
					t.Errorf("error without context: %v", err)
				}
				return
			}
			if got := len(s.Constraints) - 1; got != tc.floors { // 1: the GCS's own
				t.Errorf("%d floors from the key-value store, want %d", got, tc.floors)
			}
		})
	}
}

func TestClientAuthErrors(t *testing.T) {
	f := newFake(t, "right")
	addr := startFakeGCS(t, f)
	for name, token := range map[string]string{"none": "", "wrong": "wrong"} {
		c, err := Dial(addr, token)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ClusterState(context.Background())
		if !errors.Is(err, ErrUnauthenticated) || status.Code(err) != codes.Unauthenticated ||
			!strings.Contains(err.Error(), "InvalidAuthToken") {
			t.Errorf("%s: err = %v; want ErrUnauthenticated, codes.Unauthenticated and Ray's words", name, err)
		}
		_, _, err = c.Drain(context.Background(), strings.Repeat("ab", nodeIDSize), DrainPreemption, "", time.Time{})
		if !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: Drain err = %v, want ErrUnauthenticated", name, err)
		}
		c.Close()
	}
	for _, call := range f.recorded() {
		if len(call.auth) > 1 {
			t.Errorf("%s sent authorization %d times", call.method, len(call.auth))
		}
	}
}

func TestClientDrain(t *testing.T) {
	f := newFake(t, "")
	c, err := Dial(startFakeGCS(t, f), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := "696b5fc5c32a06b1a40ff3f81340b66d2d869067ed76e0ad96b1f652"
	deadline := time.UnixMilli(1795981665233)
	accepted, rejection, err := c.Drain(context.Background(), strings.ToUpper(id), DrainPreemption,
		"SLURM job 2181 ends at 12:00 — préemption", deadline)
	if err != nil || accepted || rejection != "The node to be idle terminated is no longer idle." {
		t.Errorf("Drain = %v, %q, %v", accepted, rejection, err)
	}
	calls := f.recorded()
	if len(calls) != 1 || calls[0].method != methodDrain {
		t.Fatalf("calls = %+v", calls)
	}
	if want := fixtureBytes(t, "drainrequest_preempt"); !bytes.Equal(calls[0].req, want) {
		t.Errorf("DrainNode request %x\nwant              %x", calls[0].req, want)
	}
	if len(calls[0].auth) != 0 {
		t.Errorf("sent authorization %q without a token", calls[0].auth)
	}

	// Requests the GCS or raylet of Ray 2.60 abort on never leave the client.
	for name, call := range map[string]func() error{
		"empty id": func() error {
			_, _, err := c.Drain(context.Background(), "", DrainPreemption, "", time.Time{})
			return err
		},
		"short id": func() error {
			_, _, err := c.Drain(context.Background(), id[:54], DrainPreemption, "", time.Time{})
			return err
		},
		"long id": func() error {
			_, _, err := c.Drain(context.Background(), id+"00", DrainPreemption, "", time.Time{})
			return err
		},
		"not hex": func() error {
			_, _, err := c.Drain(context.Background(), "zz"+id[2:], DrainPreemption, "", time.Time{})
			return err
		},
		"reason 0": func() error { _, _, err := c.Drain(context.Background(), id, 0, "", time.Time{}); return err },
		"reason 3": func() error { _, _, err := c.Drain(context.Background(), id, 3, "", time.Time{}); return err },
		"deadline 1960": func() error {
			_, _, err := c.Drain(context.Background(), id, DrainPreemption, "", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(f.recorded()); n != 1 {
		t.Errorf("%d calls reached the GCS, want 1", n)
	}
}

func TestClientUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := Dial(addr, "")
	if err != nil {
		t.Fatalf("Dial connects lazily, so it must not fail: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.ClusterState(ctx); status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want codes.Unavailable", err)
	}
	if _, err := Dial("no-port", ""); err == nil {
		t.Error("Dial of an address without a port succeeded")
	}
}

func TestDrainReasonString(t *testing.T) {
	for r, want := range map[DrainReason]string{DrainIdleTermination: "IDLE_TERMINATION", DrainPreemption: "PREEMPTION", 7: "DrainReason(7)"} {
		if r.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(r), r.String(), want)
		}
	}
}

// Ping is an application-level probe: a listener that accepts connections
// but never answers (a SIGSTOPped GCS) fails it within the caller's bound.
func TestClientPing(t *testing.T) {
	t.Parallel()
	f := newFake(t, "tok")
	c, err := Dial(startFakeGCS(t, f), "tok")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping of a live GCS = %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0") // accepts in the kernel, never speaks
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frozen, err := Dial(l.Addr().String(), "tok")
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := frozen.Ping(ctx); err == nil {
		t.Error("Ping of a GCS that accepts but never answers succeeded")
	}
}
