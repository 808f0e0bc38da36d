package raygcs

// The protobuf wire format, as much of it as wire.go needs: tags, varints,
// fixed32/64, length-delimited fields, and skipping groups. It follows
// google.golang.org/protobuf/encoding/protowire (FuzzPBWire checks it against
// that), which the binary does not link: protowire's detrand reads the
// executable at init, about 0.2 ms of every start of the CLI.

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
)

// number is a field number.
type number int32

// wireType is how a field's value is encoded.
type wireType int8

const (
	varintType     wireType = 0
	fixed64Type    wireType = 1
	bytesType      wireType = 2
	startGroupType wireType = 3
	endGroupType   wireType = 4
	fixed32Type    wireType = 5
)

// recursionLimit bounds nested groups, as protowire's DefaultRecursionLimit.
const recursionLimit = 10000

// Consume functions return the length read, or one of these (negative)
// error codes.
const (
	_ = -iota
	errCodeTruncated
	errCodeFieldNumber
	errCodeOverflow
	errCodeReserved
	errCodeEndGroup
	errCodeRecursionDepth
)

var (
	errFieldNumber = errors.New("proto: invalid field number")
	errOverflow    = errors.New("proto: variable length integer overflow")
	errReserved    = errors.New("proto: cannot parse reserved wire type")
	errEndGroup    = errors.New("proto: mismatching end group marker")
	errParse       = errors.New("proto: parse error")
)

// parseError is the error of a negative length n.
func parseError(n int) error {
	switch n {
	case errCodeTruncated:
		return io.ErrUnexpectedEOF
	case errCodeFieldNumber:
		return errFieldNumber
	case errCodeOverflow:
		return errOverflow
	case errCodeReserved:
		return errReserved
	case errCodeEndGroup:
		return errEndGroup
	}
	return errParse
}

func consumeVarint(b []byte) (v uint64, n int) {
	for i := 0; ; i++ {
		if i >= len(b) {
			return 0, errCodeTruncated
		}
		y := b[i]
		if i == 9 && y > 1 { // a tenth byte holds bit 63 only
			return 0, errCodeOverflow
		}
		v |= uint64(y&0x7f) << (7 * i)
		if y < 0x80 {
			return v, i + 1
		}
	}
}

func consumeTag(b []byte) (number, wireType, int) {
	v, n := consumeVarint(b)
	if n < 0 {
		return 0, 0, n
	}
	if v>>3 > math.MaxInt32 || v>>3 == 0 {
		return 0, 0, errCodeFieldNumber
	}
	return number(v >> 3), wireType(v & 7), n
}

func consumeFixed32(b []byte) (uint32, int) {
	if len(b) < 4 {
		return 0, errCodeTruncated
	}
	return binary.LittleEndian.Uint32(b), 4
}

func consumeFixed64(b []byte) (uint64, int) {
	if len(b) < 8 {
		return 0, errCodeTruncated
	}
	return binary.LittleEndian.Uint64(b), 8
}

func consumeBytes(b []byte) ([]byte, int) {
	m, n := consumeVarint(b)
	if n < 0 {
		return nil, n
	}
	if m > uint64(len(b[n:])) {
		return nil, errCodeTruncated
	}
	return b[n:][:m], n + int(m)
}

// consumeFieldValue returns the length of the value of field num of type
// typ at the start of b: a group runs to its matching end marker.
func consumeFieldValue(num number, typ wireType, b []byte) int {
	return consumeFieldValueD(num, typ, b, recursionLimit)
}

func consumeFieldValueD(num number, typ wireType, b []byte, depth int) (n int) {
	switch typ {
	case varintType:
		_, n = consumeVarint(b)
	case fixed32Type:
		_, n = consumeFixed32(b)
	case fixed64Type:
		_, n = consumeFixed64(b)
	case bytesType:
		_, n = consumeBytes(b)
	case startGroupType:
		n = consumeGroup(num, b, depth)
	case endGroupType:
		n = errCodeEndGroup
	default:
		n = errCodeReserved
	}
	return n
}

// consumeGroup returns the length of the fields of group num and its end
// marker.
func consumeGroup(num number, b []byte, depth int) int {
	if depth < 0 {
		return errCodeRecursionDepth
	}
	n0 := len(b)
	for {
		num2, typ2, n := consumeTag(b)
		if n < 0 {
			return n
		}
		b = b[n:]
		if typ2 == endGroupType {
			if num != num2 {
				return errCodeEndGroup
			}
			return n0 - len(b)
		}
		if n = consumeFieldValueD(num2, typ2, b, depth-1); n < 0 {
			return n
		}
		b = b[n:]
	}
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, num number, typ wireType) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(typ&7))
}

func appendBytes(b, v []byte) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}

func appendString(b []byte, v string) []byte {
	return append(appendVarint(b, uint64(len(v))), v...)
}
