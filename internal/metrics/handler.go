package metrics

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync/atomic"
)

// Handler serves /metrics from the latest published snapshot, to requests
// that carry the scrape token as a bearer token. Publishing renders both
// formats once, so a scrape copies bytes and never asks SLURM or Ray.
type Handler struct {
	tokenSum [sha256.Size]byte
	current  atomic.Pointer[rendered]
}

type rendered struct{ openMetrics, text []byte }

// NewHandler serves scrapes that present token (the cluster's
// metrics-token, never its Ray token).
func NewHandler(token string) *Handler {
	return &Handler{tokenSum: sha256.Sum256([]byte(token))}
}

// Publish makes s what the next scrape sees.
func (h *Handler) Publish(s Snapshot) {
	fams := families(s)
	var om, text bytes.Buffer
	encode(&om, fams, true)
	encode(&text, fams, false)
	h.current.Store(&rendered{openMetrics: om.Bytes(), text: text.Bytes()})
}

// Write renders s in OpenMetrics (or the Prometheus text format) to a
// buffer: what a scrape of a handler that published s receives.
func Write(buf *bytes.Buffer, s Snapshot, openMetrics bool) error {
	return encode(buf, families(s), openMetrics)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !h.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sraybatch metrics"`)
		http.Error(w, "a bearer token (the cluster's metrics-token) is required", http.StatusUnauthorized)
		return
	}
	cur := h.current.Load()
	if cur == nil {
		http.Error(w, "no observation yet", http.StatusServiceUnavailable)
		return
	}
	body, ctype := cur.openMetrics, ContentTypeOpenMetrics
	if wantsText(r.Header.Get("Accept")) {
		body, ctype = cur.text, ContentTypeText
	}
	w.Header().Set("Content-Type", ctype)
	w.Write(body)
}

// authorized compares the presented token with the scrape token in
// constant time (over their hashes, so not even the length leaks).
func (h *Handler) authorized(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

// wantsText reports whether Accept asks for the Prometheus text format and
// not for OpenMetrics, the default.
func wantsText(accept string) bool {
	return !strings.Contains(accept, "application/openmetrics-text") && strings.Contains(accept, "text/plain")
}
