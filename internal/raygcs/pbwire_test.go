package raygcs

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzPBWire checks the hand-written wire format against protowire's: the
// same values, lengths and error codes for any bytes, and the same encoding.
func FuzzPBWire(f *testing.F) {
	for _, seed := range [][]byte{
		{}, {0x80}, {0x08, 0x96, 0x01}, {0x0a, 0x02, 'h', 'i'}, {0x0d, 1, 2, 3, 4}, {0x09, 1, 2, 3, 4, 5, 6, 7, 8},
		{0x00, 0x01}, {0x0e}, {0x3b, 0x08, 0x01, 0x3c}, {0x3b, 0x08, 0x01, 0x44}, {0x3c}, {0x3b, 0x3b, 0x3c},
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		{0xf8, 0xff, 0xff, 0xff, 0x7f}, {0xf8, 0xff, 0xff, 0xff, 0x8f, 0x01},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n := consumeVarint(b)
		wv, wn := protowire.ConsumeVarint(b)
		if v != wv || n != wn {
			t.Fatalf("consumeVarint = %d, %d; protowire %d, %d", v, n, wv, wn)
		}
		if wn >= 0 && !bytes.Equal(appendVarint(nil, v), protowire.AppendVarint(nil, wv)) {
			t.Fatalf("appendVarint(%d) = %x, protowire %x", v, appendVarint(nil, v), protowire.AppendVarint(nil, wv))
		}
		num, typ, n := consumeTag(b)
		wnum, wtyp, wn := protowire.ConsumeTag(b)
		if int32(num) != int32(wnum) || int8(typ) != int8(wtyp) || n != wn {
			t.Fatalf("consumeTag = %d, %d, %d; protowire %d, %d, %d", num, typ, n, wnum, wtyp, wn)
		}
		if n < 0 {
			// protowire's text has a space or, by detrand, a no-break space after "proto:".
			if want := strings.ReplaceAll(protowire.ParseError(wn).Error(), "\u00a0", " "); parseError(n).Error() != want {
				t.Fatalf("parseError(%d) = %v, protowire %v", n, parseError(n), protowire.ParseError(wn))
			}
			return
		}
		rest := b[n:]
		if got, want := consumeFieldValue(num, typ, rest), protowire.ConsumeFieldValue(wnum, wtyp, rest); got != want {
			t.Fatalf("consumeFieldValue(%d, %d) = %d, protowire %d", num, typ, got, want)
		}
		v32, n32 := consumeFixed32(rest)
		w32, wn32 := protowire.ConsumeFixed32(rest)
		v64, n64 := consumeFixed64(rest)
		w64, wn64 := protowire.ConsumeFixed64(rest)
		vb, nb := consumeBytes(rest)
		wb, wnb := protowire.ConsumeBytes(rest)
		if v32 != w32 || n32 != wn32 || v64 != w64 || n64 != wn64 || !bytes.Equal(vb, wb) || nb != wnb {
			t.Fatalf("fixed32 %d,%d / %d,%d; fixed64 %d,%d / %d,%d; bytes %x,%d / %x,%d",
				v32, n32, w32, wn32, v64, n64, w64, wn64, vb, nb, wb, wnb)
		}
		if got, want := appendBytes(appendTag(nil, num, typ), rest), protowire.AppendBytes(protowire.AppendTag(nil, wnum, wtyp), rest); !bytes.Equal(got, want) {
			t.Fatalf("appendTag+appendBytes = %x, protowire %x", got, want)
		}
		if got, want := appendString(nil, string(rest)), protowire.AppendString(nil, string(rest)); !bytes.Equal(got, want) {
			t.Fatalf("appendString = %x, protowire %x", got, want)
		}
	})
}
