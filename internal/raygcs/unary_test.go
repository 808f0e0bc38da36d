package raygcs

import (
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// frame is one length-prefixed gRPC message with the given compressed flag.
func frame(flag byte, msg string) string {
	return string(binary.BigEndian.AppendUint32([]byte{flag}, uint32(len(msg)))) + msg
}

func TestReadUnary(t *testing.T) {
	grpc := http.Header{"Content-Type": {"application/grpc"}}
	ok := http.Header{"Grpc-Status": {"0"}}
	for _, tc := range []struct {
		name    string
		status  int
		header  http.Header
		body    string
		trailer http.Header
		max     int
		want    string // the reply, or the error's text
		code    code
	}{
		{name: "reply", header: grpc, body: frame(0, "hello"), trailer: ok, want: "hello"},
		{name: "empty reply", header: grpc, body: frame(0, ""), trailer: ok, want: ""},
		{name: "grpc+proto", header: http.Header{"Content-Type": {"application/grpc+proto"}}, body: frame(0, "x"), trailer: ok, want: "x"},
		{name: "reply of max bytes", header: grpc, body: frame(0, "12345"), trailer: ok, max: 5, want: "12345"},
		{name: "trailers only", header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"16"},
			"Grpc-Message": {"InvalidAuthToken: token is missing"}},
			want: "Unauthenticated: InvalidAuthToken: token is missing", code: codeUnauthenticated},
		{name: "status in trailers", header: grpc, trailer: http.Header{"Grpc-Status": {"14"}, "Grpc-Message": {"GCS is shutting down"}},
			want: "Unavailable: GCS is shutting down", code: codeUnavailable},
		{name: "status after a reply", header: grpc, body: frame(0, "partial"), trailer: http.Header{"Grpc-Status": {"13"}},
			want: "Internal: ", code: codeInternal},
		{name: "message percent-decoded", header: grpc, trailer: http.Header{"Grpc-Status": {"5"},
			"Grpc-Message": {"node %E2%80%94 100%25 gone%2"}}, want: "NotFound: node — 100% gone%2", code: 5},
		{name: "message with a bad escape", header: grpc, trailer: http.Header{"Grpc-Status": {"2"},
			"Grpc-Message": {"50%zz %4"}}, want: "Unknown: 50%zz %4", code: codeUnknown},
		{name: "unknown code", header: grpc, trailer: http.Header{"Grpc-Status": {"42"}}, want: "Code(42): ", code: 42},
		{name: "no status", header: grpc, body: frame(0, "x"), want: "without a status", code: codeInternal},
		{name: "trailers only, OK", header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"0"}},
			want: "without a reply message", code: codeInternal},
		{name: "OK without a reply", header: grpc, trailer: ok, want: "without a reply message", code: codeInternal},
		{name: "malformed status", header: grpc, trailer: http.Header{"Grpc-Status": {"OK"}}, want: `malformed grpc-status "OK"`, code: codeInternal},
		{name: "compressed", header: grpc, body: frame(1, "x"), trailer: ok, want: "compressed reply (flag 1)", code: codeInternal},
		{name: "oversized", header: grpc, body: frame(0, "123456"), trailer: ok, max: 5,
			want: "reply of 6 bytes exceeds the limit of 5", code: codeResourceExhausted},
		{name: "short frame header", header: grpc, body: "\x00\x00\x00", trailer: ok, want: "read reply frame: unexpected EOF", code: codeInternal},
		{name: "short message", header: grpc, body: frame(0, "hello")[:7], trailer: ok,
			want: "read reply message of 5 bytes: unexpected EOF", code: codeInternal},
		{name: "two messages", header: grpc, body: frame(0, "a") + frame(0, "b"), trailer: ok, want: "more than one message", code: codeInternal},
		{name: "not gRPC", header: http.Header{"Content-Type": {"text/html"}}, body: "<html>", want: `content-type "text/html"`, code: codeUnknown},
		{name: "HTTP 404", status: 404, want: "unexpected HTTP status 404 Not Found", code: codeUnimplemented},
		{name: "HTTP 401", status: 401, want: "HTTP status 401", code: codeUnauthenticated},
		{name: "HTTP 503", status: 503, header: http.Header{"Grpc-Status": {"0"}}, want: "HTTP status 503", code: codeUnavailable},
		{name: "HTTP 400", status: 400, want: "HTTP status 400", code: codeInternal},
		{name: "HTTP 500", status: 500, want: "HTTP status 500", code: codeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 0 {
				tc.status = http.StatusOK
			}
			if tc.max == 0 {
				tc.max = maxReply
			}
			resp := &http.Response{StatusCode: tc.status, Status: statusLine(tc.status), Header: tc.header,
				Body: io.NopCloser(strings.NewReader(tc.body)), Trailer: tc.trailer}
			reply, err := readUnary(resp, tc.max)
			if got := statusCode(err); got != tc.code {
				t.Errorf("code %v (%v), want %v", got, err, tc.code)
			}
			if tc.code == codeOK {
				if string(reply) != tc.want || reply == nil {
					t.Errorf("reply %q, want %q", reply, tc.want)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q in it", err, tc.want)
			}
		})
	}
}

// statusLine is Response.Status as net/http sets it.
func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

func TestEncodeTimeout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                       "0n",
		0:                                  "0n",
		1:                                  "1n",
		99999999:                           "99999999n",
		100000000:                          "100000u",
		100000001:                          "100001u", // rounded up: the server must not stop first
		10 * time.Second:                   "10000000u",
		100 * time.Second:                  "100000m",
		30 * 24 * time.Hour:                "2592000S",
		99999999*time.Second + 1:           "1666667M",
		time.Duration(1<<63 - 1):           "2562048H",
		99999999*time.Minute + time.Second: "1666667H",
	} {
		if got := encodeTimeout(d); got != want {
			t.Errorf("encodeTimeout(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestStatusCode(t *testing.T) {
	wrapped := errors.Join(errors.New("context"), &statusError{code: codeUnavailable, msg: "down"})
	for err, want := range map[error]code{nil: codeOK, errors.New("plain"): codeUnknown, wrapped: codeUnavailable} {
		if got := statusCode(err); got != want {
			t.Errorf("statusCode(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestStandardLibraryOnly keeps the package off gRPC and protobuf: linked
// into the one binary, their package initialisation cost every start of
// the CLI about 1 ms (README, Speed).
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	if deps := strings.Fields(string(out)); len(deps) != 1 || !strings.HasSuffix(deps[0], "/internal/raygcs") {
		t.Errorf("raygcs links %v beyond the standard library", deps)
	}
}
