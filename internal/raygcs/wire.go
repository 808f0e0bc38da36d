package raygcs

// The messages this client exchanges with the GCS, decoded and encoded by
// hand (pbwire.go): a generated Ray protobuf package would pull Ray's whole
// proto tree into the build for a dozen fields. Field numbers are Ray 2.60's
// (src/ray/protobuf/autoscaler.proto and gcs_service.proto; the ray wheel
// ships them as ray/core/generated/*_pb2.py), named in fields.go, where
// testdata/gen_fixtures.py checks them against those descriptors.
//
// Decoding follows protobuf's rules for a reader older than the writer:
// unknown fields, and known fields with an unexpected wire type, are skipped;
// unknown enum values read as "unknown". Only bytes that are not protobuf at
// all (truncated, overlong varints, stray end-group, field number 0) are an
// error, and never a panic.

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"
)

// field is one decoded field of a message.
type field struct {
	num number
	typ wireType
	u   uint64 // varint, fixed32 and fixed64 payloads
	b   []byte // length-delimited payload (aliases the input)
}

// varint returns the field's varint payload; ok is false for another type.
func (f field) varint() (uint64, bool) { return f.u, f.typ == varintType }

// bytes returns the field's length-delimited payload; ok is false for
// another type.
func (f field) bytes() ([]byte, bool) { return f.b, f.typ == bytesType }

// double returns the field's payload as a double; ok is false for another type.
func (f field) double() (float64, bool) {
	return math.Float64frombits(f.u), f.typ == fixed64Type
}

// walk calls fn for each field of the message b in order.
func walk(b []byte, fn func(field) error) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return parseError(n)
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case varintType:
			f.u, n = consumeVarint(b)
		case fixed64Type:
			f.u, n = consumeFixed64(b)
		case fixed32Type:
			var v uint32
			v, n = consumeFixed32(b)
			f.u = uint64(v)
		case bytesType:
			f.b, n = consumeBytes(b)
		default: // groups (skipped whole) and stray end-groups (an error)
			n = consumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, parseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// decodeClusterStateReply reads a GetClusterResourceStateReply.
func decodeClusterStateReply(b []byte) (ClusterState, error) {
	var s ClusterState
	err := walk(b, func(f field) error {
		if v, ok := f.bytes(); ok && f.num == getStateReplyState {
			var err error
			s, err = decodeClusterState(v)
			return err
		}
		return nil
	})
	return s, err
}

// decodeClusterState reads a ClusterResourceState.
func decodeClusterState(b []byte) (ClusterState, error) {
	var s ClusterState
	err := walk(b, func(f field) error {
		switch f.num {
		case clusterStateVersion:
			if v, ok := f.varint(); ok {
				s.Version = int64(v)
			}
		case clusterStateNodes:
			if v, ok := f.bytes(); ok {
				n, err := decodeNode(v)
				if err != nil {
					return fmt.Errorf("node state: %w", err)
				}
				s.Nodes = append(s.Nodes, n)
			}
		case clusterStatePending:
			if v, ok := f.bytes(); ok {
				rc, err := decodeRequestCount(v)
				if err != nil {
					return fmt.Errorf("pending resource request: %w", err)
				}
				s.Pending = append(s.Pending, rc)
			}
		case clusterStateGangs:
			if v, ok := f.bytes(); ok {
				g, err := decodeGang(v)
				if err != nil {
					return fmt.Errorf("pending gang resource request: %w", err)
				}
				// Ray 2.60 adds an empty entry for a group in its load that
				// is neither PENDING nor RESCHEDULING: it asks for nothing.
				if len(g.Bundles) > 0 {
					s.Gangs = append(s.Gangs, g)
				}
			}
		case clusterStateConstraints:
			if v, ok := f.bytes(); ok {
				err := walk(v, func(f field) error {
					if v, ok := f.bytes(); ok && f.num == constraintRequests {
						rc, err := decodeRequestCount(v)
						if err != nil {
							return err
						}
						s.Constraints = append(s.Constraints, rc)
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("cluster resource constraint: %w", err)
				}
			}
		}
		return nil
	})
	return s, err
}

// nodeStatuses maps Ray's NodeStatus numbers; 0 (UNSPECIFIED) and numbers
// newer than this client read as NodeUnknown.
var nodeStatuses = map[uint64]NodeStatus{
	nodeStatusRunning: NodeRunning, nodeStatusDead: NodeDead, nodeStatusIdle: NodeIdle, nodeStatusDraining: NodeDraining,
}

// decodeNode reads a NodeState.
func decodeNode(b []byte) (Node, error) {
	n := Node{
		Status:    NodeUnknown,
		Total:     map[string]float64{},
		Available: map[string]float64{},
		Labels:    map[string]string{},
	}
	dynamic := map[string]string{}
	err := walk(b, func(f field) error {
		switch f.num {
		case nodeStateID:
			if v, ok := f.bytes(); ok {
				n.ID = hex.EncodeToString(v)
			}
		case nodeStateAvailable:
			if v, ok := f.bytes(); ok {
				return decodeDoubleEntry(v, n.Available)
			}
		case nodeStateTotal:
			if v, ok := f.bytes(); ok {
				return decodeDoubleEntry(v, n.Total)
			}
		case nodeStateDynamicLabels:
			if v, ok := f.bytes(); ok {
				return decodeStringEntry(v, dynamic)
			}
		case nodeStateStatus:
			if v, ok := f.varint(); ok {
				if s, known := nodeStatuses[v]; known {
					n.Status = s
				} else {
					n.Status = NodeUnknown
				}
			}
		case nodeStateIdleMs:
			if v, ok := f.varint(); ok {
				n.IdleFor = time.Duration(int64(v)) * time.Millisecond
			}
		case nodeStateIP:
			if v, ok := f.bytes(); ok {
				n.IP = string(v)
			}
		case nodeStateActivity:
			if v, ok := f.bytes(); ok {
				n.Activity = append(n.Activity, string(v))
			}
		case nodeStateLabels:
			if v, ok := f.bytes(); ok {
				return decodeStringEntry(v, n.Labels)
			}
		}
		return nil
	})
	for k, v := range dynamic {
		n.Labels[k] = v
	}
	return n, err
}

// decodeRequestCount reads a ResourceRequestByCount.
func decodeRequestCount(b []byte) (RequestCount, error) {
	rc := RequestCount{Request: Request{Resources: map[string]float64{}}}
	err := walk(b, func(f field) error {
		switch f.num {
		case byCountRequest:
			if v, ok := f.bytes(); ok {
				r, err := decodeRequest(v)
				if err != nil {
					return err
				}
				rc.Request = r
			}
		case byCountCount:
			if v, ok := f.varint(); ok {
				rc.Count = int(int64(v))
			}
		}
		return nil
	})
	return rc, err
}

// decodeRequest reads a ResourceRequest.
func decodeRequest(b []byte) (Request, error) {
	r := Request{Resources: map[string]float64{}}
	err := walk(b, func(f field) error {
		v, ok := f.bytes()
		if !ok {
			return nil
		}
		switch f.num {
		case requestResources:
			return decodeDoubleEntry(v, r.Resources)
		case requestSelectors:
			sel, err := decodeLabelSelector(v)
			r.Selectors = append(r.Selectors, sel)
			return err
		case requestPlacement:
			return walk(v, func(f field) error {
				v, ok := f.bytes()
				if !ok || (f.num != placementAntiAffinity && f.num != placementAffinity) {
					return nil
				}
				l, err := decodeLabel(v)
				if err != nil {
					return err
				}
				if f.num == placementAntiAffinity {
					r.AntiAffinity = append(r.AntiAffinity, l)
				} else {
					r.Affinity = append(r.Affinity, l)
				}
				return nil
			})
		}
		return nil
	})
	return r, err
}

// decodeLabelSelector reads a ray.rpc.LabelSelector.
func decodeLabelSelector(b []byte) (LabelSelector, error) {
	var s LabelSelector
	err := walk(b, func(f field) error {
		v, ok := f.bytes()
		if !ok || f.num != labelSelectorConstraints {
			return nil
		}
		var c LabelConstraint
		s.Constraints = append(s.Constraints, c)
		return walk(v, func(f field) error {
			c := &s.Constraints[len(s.Constraints)-1]
			switch b, _ := f.bytes(); {
			case f.num == labelConstraintKey && f.typ == bytesType:
				c.Key = string(b)
			case f.num == labelConstraintValues && f.typ == bytesType:
				c.Values = append(c.Values, string(b))
			case f.num == labelConstraintOperator && f.typ == varintType:
				c.Op = LabelOp(int32(f.u))
			}
			return nil
		})
	})
	return s, err
}

// decodeLabel reads an AntiAffinityConstraint or AffinityConstraint.
func decodeLabel(b []byte) (Label, error) {
	var l Label
	err := walk(b, func(f field) error {
		if v, ok := f.bytes(); ok {
			switch f.num {
			case affinityLabelName:
				l.Name = string(v)
			case affinityLabelValue:
				l.Value = string(v)
			}
		}
		return nil
	})
	return l, err
}

// decodeGang reads a GangResourceRequest. Ray 2.60 sends the bundles twice:
// in requests (field 1, "will be removed") and in the first bundle selector
// (field 3). Like Ray's own autoscaler, the first selector wins when it
// holds any.
func decodeGang(b []byte) (Gang, error) {
	var g Gang
	var legacy, selected []Request
	seenSelector := false
	err := walk(b, func(f field) error {
		v, ok := f.bytes()
		if !ok {
			return nil
		}
		switch f.num {
		case gangRequests:
			r, err := decodeRequest(v)
			if err != nil {
				return err
			}
			legacy = append(legacy, r)
		case gangDetails:
			g.Details = string(v)
		case gangSelectors:
			first := !seenSelector
			seenSelector = true
			return walk(v, func(f field) error {
				v, ok := f.bytes()
				if !ok || f.num != selectorRequests {
					return nil
				}
				r, err := decodeRequest(v)
				if err == nil && first {
					selected = append(selected, r)
				}
				return err
			})
		}
		return nil
	})
	g.Bundles = selected
	if len(selected) == 0 {
		g.Bundles = legacy
	}
	g.ID, g.Strategy, g.State = parseGangDetails(g.Details)
	if g.Strategy == StrategyUnknown {
		g.Strategy = strategyFromConstraints(g.Bundles)
	}
	return g, err
}

var strategies = map[string]Strategy{
	"PACK": StrategyPack, "SPREAD": StrategySpread,
	"STRICT_PACK": StrategyStrictPack, "STRICT_SPREAD": StrategyStrictSpread,
}

// parseGangDetails reads Ray's "<group id>:<STRATEGY>|<STATE>" (the GCS's
// FormatPlacementGroupDetails; Ray's Python autoscaler parses it the same
// way). Anything else yields zero values.
func parseGangDetails(details string) (id string, s Strategy, state string) {
	id, rest, ok := strings.Cut(details, ":")
	if !ok {
		return "", StrategyUnknown, ""
	}
	name, state, ok := strings.Cut(rest, "|")
	if !ok {
		return "", StrategyUnknown, ""
	}
	return id, strategies[name], state
}

// strategyFromConstraints recovers a strict strategy from the constraints
// the GCS derives from it: every bundle of a STRICT_SPREAD group is
// anti-affine, and of a STRICT_PACK group affine, to the group's own label.
// PACK and SPREAD carry no constraint, so they stay unknown.
func strategyFromConstraints(bundles []Request) Strategy {
	for _, r := range bundles {
		switch {
		case len(r.AntiAffinity) > 0:
			return StrategyStrictSpread
		case len(r.Affinity) > 0:
			return StrategyStrictPack
		}
	}
	return StrategyUnknown
}

// decodeDoubleEntry reads one map<string, double> entry into m.
func decodeDoubleEntry(b []byte, m map[string]float64) error {
	var k string
	var val float64
	err := walk(b, func(f field) error {
		switch f.num {
		case mapEntryKey:
			if v, ok := f.bytes(); ok {
				k = string(v)
			}
		case mapEntryValue:
			if v, ok := f.double(); ok {
				val = v
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("map entry: %w", err)
	}
	m[k] = val
	return nil
}

// decodeStringEntry reads one map<string, string> entry into m.
func decodeStringEntry(b []byte, m map[string]string) error {
	var k, val string
	err := walk(b, func(f field) error {
		if v, ok := f.bytes(); ok {
			switch f.num {
			case mapEntryKey:
				k = string(v)
			case mapEntryValue:
				val = string(v)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("map entry: %w", err)
	}
	m[k] = val
	return nil
}

// encodeDrainRequest writes a DrainNodeRequest the way protobuf does:
// fields in number order, proto3 zero values left out.
func encodeDrainRequest(nodeID []byte, reason DrainReason, message string, deadlineMs int64) []byte {
	var b []byte
	b = appendTag(b, drainRequestNodeID, bytesType)
	b = appendBytes(b, nodeID)
	if reason != 0 {
		b = appendTag(b, drainRequestReason, varintType)
		b = appendVarint(b, uint64(int64(reason)))
	}
	if message != "" {
		b = appendTag(b, drainRequestMessage, bytesType)
		b = appendString(b, message)
	}
	if deadlineMs != 0 {
		b = appendTag(b, drainRequestDeadlineMs, varintType)
		b = appendVarint(b, uint64(deadlineMs))
	}
	return b
}

// decodeDrainReply reads a DrainNodeReply.
func decodeDrainReply(b []byte) (accepted bool, rejection string, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case drainReplyAccepted:
			if v, ok := f.varint(); ok {
				accepted = v != 0
			}
		case drainReplyRejection:
			if v, ok := f.bytes(); ok {
				rejection = string(v)
			}
		}
		return nil
	})
	return accepted, rejection, err
}

// encodeKVGetRequest writes an InternalKVGetRequest.
func encodeKVGetRequest(key, namespace string) []byte {
	var b []byte
	if key != "" {
		b = appendTag(b, kvGetRequestKey, bytesType)
		b = appendString(b, key)
	}
	if namespace != "" {
		b = appendTag(b, kvGetRequestNamespace, bytesType)
		b = appendString(b, namespace)
	}
	return b
}

// gcsNotFound is the GcsStatus code of a missing key (Ray's StatusCode::NotFound).
const gcsNotFound = 17

// decodeKVGetReply reads an InternalKVGetReply. found is false for a
// missing key; another failure GCS reports in its status is an error.
func decodeKVGetReply(b []byte) (value []byte, found bool, err error) {
	var code int64
	var message string
	err = walk(b, func(f field) error {
		switch f.num {
		case kvGetReplyStatus:
			if v, ok := f.bytes(); ok {
				return walk(v, func(f field) error {
					switch f.num {
					case gcsStatusCode:
						if v, ok := f.varint(); ok {
							code = int64(int32(v))
						}
					case gcsStatusMessage:
						if v, ok := f.bytes(); ok {
							message = string(v)
						}
					}
					return nil
				})
			}
		case kvGetReplyValue:
			if v, ok := f.bytes(); ok {
				value = v
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, false, err
	case code == gcsNotFound:
		return nil, false, nil
	case code != 0:
		return nil, false, fmt.Errorf("gcs status %d: %s", code, message)
	}
	return value, true, nil
}

// decodeResourceRequestKV reads what request_resources stores in the GCS's
// key-value store on a cluster without autoscaler v2: a JSON list with one
// resource dict per requested bundle. Equal shapes are counted together, in
// order of first appearance, as the GCS does for v2 clusters.
func decodeResourceRequestKV(b []byte) ([]RequestCount, error) {
	var bundles []map[string]float64
	if err := json.Unmarshal(b, &bundles); err != nil {
		return nil, err
	}
	var out []RequestCount
outer:
	for _, bundle := range bundles {
		if bundle == nil {
			bundle = map[string]float64{}
		}
		for i := range out {
			if maps.Equal(out[i].Request.Resources, bundle) {
				out[i].Count++
				continue outer
			}
		}
		out = append(out, RequestCount{Request: Request{Resources: bundle}, Count: 1})
	}
	return out, nil
}
