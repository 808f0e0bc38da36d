package main

import (
	"encoding/json"
	"io"
)

// writeIndentedJSON writes v as json.Encoder with SetIndent("", indent)
// does, byte for byte, in about half its time: the Encoder indents
// with json.Indent's byte-at-a-time scanner into a buffer grown from
// nothing, which was most of status -o json's render of a 1001-job cluster.
func writeIndentedJSON(w io.Writer, v any, indent string) error {
	compact, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out := appendIndented(make([]byte, 0, 2*len(compact)), compact, indent)
	_, err = w.Write(append(out, '\n'))
	return err
}

// appendIndented appends src, compact JSON as json.Marshal writes it (no
// whitespace), to dst indented as json.Indent(dst, src, "", indent) would:
// a newline and the depth's indent after each opening bracket and comma and
// before each closing one, ": " after a key, and {} or [] when empty.
// Strings are copied whole, escapes included.
func appendIndented(dst, src []byte, indent string) []byte {
	depth, opened := 0, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if opened && c != '}' && c != ']' {
			opened = false
			depth++
			dst = appendNewline(dst, indent, depth)
		}
		switch c {
		case '"':
			end := stringEnd(src, i)
			dst = append(dst, src[i:end]...)
			i = end - 1
		case '{', '[':
			dst = append(dst, c)
			opened = true // the newline waits: an empty one stays {} or []
		case ',':
			dst = appendNewline(append(dst, c), indent, depth)
		case ':':
			dst = append(dst, c, ' ')
		case '}', ']':
			if opened {
				opened = false
			} else {
				depth--
				dst = appendNewline(dst, indent, depth)
			}
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func appendNewline(dst []byte, indent string, depth int) []byte {
	dst = append(dst, '\n')
	for range depth {
		dst = append(dst, indent...)
	}
	return dst
}

// stringEnd is the index just past the string that opens at src[start].
func stringEnd(src []byte, start int) int {
	for j := start + 1; j < len(src); j++ {
		switch src[j] {
		case '"':
			return j + 1
		case '\\':
			j++ // the byte it escapes
		}
	}
	return len(src)
}
