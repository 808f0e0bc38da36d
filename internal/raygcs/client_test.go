package raygcs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGCS serves the three methods the client calls with fixture bytes
// (real Ray replies where there are some) and records what it was sent. It
// speaks gRPC over h2c the way Ray's GCS does (a reply frame, then the status
// in trailers; a failure as trailers only) and checks the token the way
// Ray's server interceptor does: the whole "authorization" value must be
// "Bearer <token>".
type fakeGCS struct {
	token   string
	replies map[string][]byte // by full method name

	mu    sync.Mutex
	calls []fakeCall
}

type fakeCall struct {
	method string
	auth   []string
	header http.Header
	remote string // the client's address: one per connection
	req    []byte
}

func (f *fakeGCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if r.ProtoMajor != 2 || r.Method != http.MethodPost || err != nil || len(body) < frameHeaderSize ||
		body[0] != 0 || int(binary.BigEndian.Uint32(body[1:])) != len(body)-frameHeaderSize {
		http.Error(w, "not a gRPC unary call", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{method: r.URL.Path, auth: r.Header.Values("Authorization"), header: r.Header.Clone(), remote: r.RemoteAddr, req: body[frameHeaderSize:]})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/grpc")
	if auth := r.Header.Values("Authorization"); f.token != "" && (len(auth) != 1 || auth[0] != "Bearer "+f.token) {
		grpcFail(w, codeUnauthenticated, "InvalidAuthToken: Authentication token is missing or incorrect")
		return
	}
	reply, ok := f.replies[r.URL.Path]
	if !ok {
		grpcFail(w, codeUnimplemented, "unknown method "+r.URL.Path)
		return
	}
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(reply)))
	w.Write(append(frame, reply...))
	w.Header().Set("Grpc-Status", "0")
}

// grpcFail answers trailers only, as gRPC servers fail a call before any
// message.
func grpcFail(w http.ResponseWriter, c code, msg string) {
	w.Header().Set("Grpc-Status", strconv.Itoa(int(c)))
	w.Header().Set("Grpc-Message", url.PathEscape(msg))
	w.WriteHeader(http.StatusOK)
}

func (f *fakeGCS) recorded() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// startFakeGCS serves h over h2c (HTTP/2 with prior knowledge, no TLS) on
// a free local port and returns its address.
func startFakeGCS(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
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
		if ct, te := call.header.Get("Content-Type"), call.header.Get("Te"); ct != "application/grpc" || te != "trailers" {
			t.Errorf("%s sent content-type %q, te %q", call.method, ct, te)
		}
		// The default timeout travels as grpc-timeout, so the GCS stops when the client does.
		tm := call.header.Get("Grpc-Timeout")
		if us, err := strconv.Atoi(strings.TrimSuffix(tm, "u")); err != nil || us <= 9e6 || us > 1e7 {
			t.Errorf("%s sent grpc-timeout %q, want about 10 s in microseconds", call.method, tm)
		}
	}
	if calls[0].remote != calls[1].remote {
		t.Errorf("two calls, two connections (%s, %s): want the first one kept", calls[0].remote, calls[1].remote)
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
		if !errors.Is(err, ErrUnauthenticated) || statusCode(err) != codeUnauthenticated ||
			!strings.Contains(err.Error(), "InvalidAuthToken") {
			t.Errorf("%s: err = %v; want ErrUnauthenticated, Unauthenticated and Ray's words", name, err)
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
	if _, err := c.ClusterState(ctx); statusCode(err) != codeUnavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want Unavailable with the dial's error", err)
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
	if err := frozen.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) || statusCode(err) != codeDeadlineExceeded {
		t.Errorf("Ping of a GCS that accepts but never answers = %v, want the caller's deadline", err)
	}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Ping(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a canceled context = %v", err)
	}
	c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, errClosed) {
		t.Errorf("Ping after Close = %v, want errClosed", err)
	}
}
