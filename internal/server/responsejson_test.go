package server

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// randomData writes a random JSON value the way gqlgen's executor writes data: compact, strings
// through graphql.MarshalString (which leaves <, >, & and U+2028 as they are).
func randomData(rng *rand.Rand, buf *bytes.Buffer, depth int) {
	pieces := []string{"a", "Zoë", "<b>", "&amp;", "x > y", "\u2028", "\u2029", "\u2027", "\"", "\\", "\n\t", "\x01",
		"日本", "\xe2\x80", "\xff", " space ", "{}[],:"}
	str := func() string {
		s := ""
		for range rng.IntN(4) {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	switch k := rng.IntN(6); {
	case depth > 3 || k == 0:
		graphql.MarshalString(str()).MarshalGQL(buf)
	case k == 1:
		buf.WriteString(strconv.Itoa(rng.IntN(2000) - 1000))
	case k == 2:
		buf.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
	case k == 3:
		buf.WriteByte('[')
		for i := range rng.IntN(4) {
			if i > 0 {
				buf.WriteByte(',')
			}
			randomData(rng, buf, depth+1)
		}
		buf.WriteByte(']')
	default:
		buf.WriteByte('{')
		for i := range rng.IntN(5) {
			if i > 0 {
				buf.WriteByte(',')
			}
			graphql.MarshalString(str()).MarshalGQL(buf)
			buf.WriteByte(':')
			randomData(rng, buf, depth+1)
		}
		buf.WriteByte('}')
	}
}

// marshalResponse must write exactly what json.Marshal writes, for generated answers with and
// without errors and extensions, and for the ones it hands to json.Marshal (data with whitespace,
// incremental payloads).
func TestMarshalResponseMatchesJSONMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	check := func(resp *graphql.Response) {
		t.Helper()
		want, wantErr := json.Marshal(resp)
		got, release, err := marshalResponse(resp)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("marshalResponse error %v, json.Marshal error %v, data %q", err, wantErr, resp.Data)
		}
		if err == nil {
			if !bytes.Equal(got, want) {
				t.Fatalf("marshalResponse wrote\n%s\njson.Marshal\n%s", got, want)
			}
			release()
		}
	}
	for i := range 3000 {
		var buf bytes.Buffer
		randomData(rng, &buf, 0)
		resp := &graphql.Response{Data: buf.Bytes()}
		if i%3 == 1 {
			resp.Errors = gqlerror.List{{Message: "no <such> & task \u2028", Path: ast.Path{ast.PathName("task")},
				Extensions: map[string]any{"code": "NOT_FOUND"}}}
		}
		if i%4 == 2 {
			resp.Extensions = map[string]any{"cost": map[string]any{"requested": i, "note": "<&>"}, "a": []int{1}}
		}
		check(resp)
		switch i % 10 {
		case 3:
			resp.Data = append([]byte(" "), resp.Data...) // not compact: json.Marshal compacts it
			check(resp)
		case 5:
			hasNext := true
			resp.Path, resp.Label, resp.HasNext = ast.Path{ast.PathName("tasks")}, "later", &hasNext
			check(resp)
		}
	}
	check(&graphql.Response{Errors: gqlerror.List{{Message: "refused"}}}) // no data: "data":null
	check(&graphql.Response{Data: json.RawMessage(`{"a": 1}`)})
	check(&graphql.Response{Data: json.RawMessage(`{"a":"\u003c"}`)})
}
