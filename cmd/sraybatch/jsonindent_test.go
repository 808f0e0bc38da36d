package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/sraybatch/sraybatch/internal/cluster"
)

// encoderIndent is what writeIndentedJSON must equal: json.Encoder with
// SetIndent, as status -o json wrote before.
func encoderIndent(t testing.TB, v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWriteIndentedJSONMatchesEncoder(t *testing.T) {
	n := 3
	st := cluster.Status{Cluster: cluster.ClusterStatus{Name: "x", Reason: `a "quoted" \ reason <&>`}}
	for i := range 3 {
		st.Jobs = append(st.Jobs, cluster.JobStatus{JobID: fmt.Sprint(i), Reason: "tab\there\nnewline \u2028", LastStep: &n})
	}
	for _, v := range []any{
		st, []cluster.Status{st, {}}, []cluster.Status{}, map[string]any{}, map[string]any{"a": []any{}, "b": map[string]any{}, "c": []any{1, "}", "\\\""}},
		nil, 1.5e300, "x", []any{[]any{[]any{}}}, struct{ A, B *int }{&n, nil},
	} {
		var got bytes.Buffer
		if err := writeIndentedJSON(&got, v, "  "); err != nil {
			t.Fatal(err)
		}
		if want := encoderIndent(t, v); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("writeIndentedJSON(%#v) =\n%s\nwant\n%s", v, got.Bytes(), want)
		}
	}
}

func FuzzWriteIndentedJSON(f *testing.F) {
	f.Add(`plain`, 1, true)
	f.Add(`"\\{[,:]}`+"\x00\t\n\u2028<>&", -7, false)
	f.Fuzz(func(t *testing.T, s string, n int, b bool) {
		v := map[string]any{s: []any{s, n, b, map[string]any{}, []any{map[string]string{s: s}}}, "k": s}
		var got bytes.Buffer
		if err := writeIndentedJSON(&got, v, "  "); err != nil {
			t.Fatal(err)
		}
		if want := encoderIndent(t, v); !bytes.Equal(got.Bytes(), want) {
			t.Errorf("got\n%s\nwant\n%s", got.Bytes(), want)
		}
	})
}
