package raygcs

// gRPC's unary calls, spoken over the standard library's HTTP/2 client
// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md). The
// client needs three unary calls with hand-encoded messages, and linking
// google.golang.org/grpc for them cost every start of the one binary about
// 2.5 ms of package initialisation, the CLI's included.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// code is a gRPC status code (google.golang.org/grpc/codes).
type code uint32

const (
	codeOK                code = 0
	codeCanceled          code = 1
	codeUnknown           code = 2
	codeDeadlineExceeded  code = 4
	codePermissionDenied  code = 7
	codeResourceExhausted code = 8
	codeUnimplemented     code = 12
	codeInternal          code = 13
	codeUnavailable       code = 14
	codeUnauthenticated   code = 16
)

const (
	frameHeaderSize        = 5 // compressed flag, then the length as a big-endian uint32
	compressedFlagIdentity = 0
	grpcContentType        = "application/grpc"
	maxTimeoutDigits       = 99999999 // grpc-timeout takes at most 8 digits
)

var codeNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
	"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
}

func (c code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// statusError is a call that ended with a status other than OK: the GCS's,
// with its own message, or one this side gave it (a GCS that is down is
// Unavailable, with the transport's error as the cause).
type statusError struct {
	code  code
	msg   string
	cause error
}

func (e *statusError) Error() string { return e.code.String() + ": " + e.msg }
func (e *statusError) Unwrap() error { return e.cause }

// statusCode is err's gRPC status code: OK for nil, Unknown for an error
// that carries none.
func statusCode(err error) code {
	if err == nil {
		return codeOK
	}
	var s *statusError
	if errors.As(err, &s) {
		return s.code
	}
	return codeUnknown
}

// httpStatusCodes maps a reply that is not HTTP 200 (a proxy's, or no gRPC
// server) to a status, as gRPC's clients do
// (doc/http-grpc-status-mapping.md); any other is Unknown.
var httpStatusCodes = map[int]code{
	http.StatusBadRequest:         codeInternal,
	http.StatusUnauthorized:       codeUnauthenticated,
	http.StatusForbidden:          codePermissionDenied,
	http.StatusNotFound:           codeUnimplemented,
	http.StatusTooManyRequests:    codeUnavailable,
	http.StatusBadGateway:         codeUnavailable,
	http.StatusServiceUnavailable: codeUnavailable,
	http.StatusGatewayTimeout:     codeUnavailable,
}

// newUnaryRequest frames msg as the one message of a unary call to method
// ("/package.Service/Method") at base ("http://host:port").
func newUnaryRequest(ctx context.Context, base, method, token string, msg []byte) (*http.Request, error) {
	body := make([]byte, frameHeaderSize, frameHeaderSize+len(msg))
	body[0] = compressedFlagIdentity
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	body = append(body, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+method, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header["Content-Type"] = []string{grpcContentType}
	req.Header["Te"] = []string{"trailers"} // gRPC servers refuse a call without it
	req.Header["User-Agent"] = []string{"sraybatch-raygcs"}
	if token != "" {
		req.Header["Authorization"] = []string{"Bearer " + token}
	}
	if d, ok := ctx.Deadline(); ok {
		// The server then gives up when the caller does, and Ray logs why.
		req.Header["Grpc-Timeout"] = []string{encodeTimeout(time.Until(d))}
	}
	return req, nil
}

// encodeTimeout writes d as grpc-timeout: at most 8 digits, in the finest
// unit that holds it, rounded up so the server never stops first.
func encodeTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if n := ceilDiv(d, u.unit); n <= maxTimeoutDigits {
			return strconv.FormatInt(n, 10) + u.name
		}
	}
	return strconv.FormatInt(min(ceilDiv(d, time.Hour), maxTimeoutDigits), 10) + "H"
}

// ceilDiv is d/unit rounded up, without overflow near the longest Duration.
func ceilDiv(d, unit time.Duration) int64 {
	n := d / unit
	if d%unit != 0 {
		n++
	}
	return int64(n)
}

// readUnary reads a unary call's reply: one message of at most limit bytes,
// then the status from the trailers, or from the headers of a reply that is
// trailers only (a call that failed before any message). The body must
// then be closed by the caller.
func readUnary(resp *http.Response, limit int) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		c, ok := httpStatusCodes[resp.StatusCode]
		if !ok {
			c = codeUnknown
		}
		return nil, &statusError{code: c, msg: "unexpected HTTP status " + resp.Status}
	}
	if ct := resp.Header.Get("Content-Type"); ct != grpcContentType && !strings.HasPrefix(ct, grpcContentType+"+") {
		return nil, &statusError{code: codeUnknown, msg: fmt.Sprintf("not a gRPC reply: content-type %q", ct)}
	}
	if _, ok := resp.Header["Grpc-Status"]; ok { // trailers only
		if err := statusFrom(resp.Header); err != nil {
			return nil, err
		}
		return nil, errNoReply
	}
	msg, err := readMessage(resp.Body, limit)
	if err != nil {
		return nil, err
	}
	// The trailers arrive with the end of the body.
	var more [1]byte
	if _, err := io.ReadFull(resp.Body, more[:]); err == nil {
		return nil, &statusError{code: codeInternal, msg: "more than one message in a unary reply"}
	} else if err != io.EOF {
		return nil, &statusError{code: codeInternal, msg: "read reply: " + err.Error(), cause: err}
	}
	if _, ok := resp.Trailer["Grpc-Status"]; !ok {
		return nil, &statusError{code: codeInternal, msg: "server closed the call without a status"}
	}
	if err := statusFrom(resp.Trailer); err != nil {
		return nil, err
	}
	if msg == nil {
		return nil, errNoReply
	}
	return msg, nil
}

// errNoReply is a unary call that ended OK without its one message.
var errNoReply = &statusError{code: codeInternal, msg: "status OK without a reply message"}

// readMessage reads one length-prefixed message, or nil at the end of the
// body (a call that failed, whose status follows).
func readMessage(body io.Reader, limit int) ([]byte, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(body, h[:]); err == io.EOF {
		return nil, nil
	} else if err != nil {
		return nil, &statusError{code: codeInternal, msg: "read reply frame: " + err.Error(), cause: err}
	}
	if h[0] != compressedFlagIdentity {
		// No grpc-accept-encoding was sent, so a server may not compress.
		return nil, &statusError{code: codeInternal, msg: fmt.Sprintf("compressed reply (flag %d), none asked for", h[0])}
	}
	n := binary.BigEndian.Uint32(h[1:])
	if uint64(n) > uint64(limit) {
		return nil, &statusError{code: codeResourceExhausted, msg: fmt.Sprintf("reply of %d bytes exceeds the limit of %d", n, limit)}
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(body, msg); err != nil {
		return nil, &statusError{code: codeInternal, msg: fmt.Sprintf("read reply message of %d bytes: %v", n, err), cause: err}
	}
	return msg, nil
}

// statusFrom reads grpc-status and grpc-message from h: nil for OK.
func statusFrom(h http.Header) error {
	s := h.Get("Grpc-Status")
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return &statusError{code: codeInternal, msg: fmt.Sprintf("malformed grpc-status %q", s)}
	}
	if n == uint64(codeOK) {
		return nil
	}
	return &statusError{code: code(n), msg: percentDecode(h.Get("Grpc-Message"))}
}

// percentDecode undoes grpc-message's percent-encoding. A '%' that does not
// start a valid escape stays as it is, as the protocol asks of clients.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b = append(b, byte(v))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
