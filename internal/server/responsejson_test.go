package server

import (
	"bytes"
	"encoding/json"
	"fmt"
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
		got, release, err := marshalResponse(resp, nil)
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
	// An escaped quote does not end its string: the markup and space after it are inside it.
	check(&graphql.Response{Data: json.RawMessage(`{"a":"x\" <b> & y","b":"\\"}`)})
	check(&graphql.Response{Data: json.RawMessage(`{"a":"\\", "b":1}`)})
	check(&graphql.Response{Data: json.RawMessage("{\"a\":\"\xe2\x80\xa8\xe2\x80\xa7\xe2\"}")})
}

// appendJSON must write what json.Marshal writes for the values extensions hold, and hand others
// (floats, slices, structs, typed maps, unsupported values) to it unchanged.
func TestAppendJSONMatchesJSONMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	strs := []string{"", "a", "requestedNodes", "Zoë", "<b>", "&", "\"", "\\", "\n", "\x01", "\x7f", "\u2028", "\xff", "日本", "~ }"}
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(14); {
		case depth > 3 || k == 0:
			return strs[rng.IntN(len(strs))] + strs[rng.IntN(len(strs))]
		case k == 1:
			return rng.IntN(1<<20) - 1<<19
		case k == 2:
			return int32(rng.IntN(1000) - 500)
		case k == 3:
			return rng.Int64() - 1<<62
		case k == 4:
			return rng.IntN(2) == 0
		case k == 5:
			return nil
		case k == 6:
			return rng.Float64() * 1e6
		case k == 7:
			return []any{value(depth + 1), value(depth + 1)}
		case k == 8:
			return map[string]int{"b": 1, "a": 2}
		case k == 9:
			return struct{ A string }{"<x>"}
		case k == 10:
			return map[string]any(nil)
		default:
			m := map[string]any{}
			for range rng.IntN(12) {
				m[strs[rng.IntN(len(strs))]+strs[rng.IntN(len(strs))]] = value(depth + 1)
			}
			return m
		}
	}
	for range 5000 {
		v := value(0)
		want, wantErr := json.Marshal(v)
		got, err := appendJSON([]byte("x"), v)
		if err != nil || wantErr != nil {
			t.Fatalf("appendJSON error %v, json.Marshal error %v for %#v", err, wantErr, v)
		}
		if string(got[1:]) != string(want) || got[0] != 'x' {
			t.Fatalf("appendJSON wrote\n%s\njson.Marshal\n%s", got[1:], want)
		}
	}
	if _, err := appendJSON(nil, map[string]any{"f": func() {}}); err == nil {
		t.Fatal("an unsupported value marshalled without error")
	}
}

// BenchmarkAppendEscapedCompact escapes a page of 20 tasks as the comparison with PostGraphile asks
// for them (every answer, cached or executed, goes through it).
func BenchmarkAppendEscapedCompact(b *testing.B) {
	var page bytes.Buffer
	page.WriteString(`{"tasks":{"edges":[`)
	for i := range 20 {
		if i > 0 {
			page.WriteByte(',')
		}
		fmt.Fprintf(&page, `{"cursor":"djEuMTc2NDk1MzYwMDAwMDAwMC4xMjM0NTY3OC0xMjM0LTEyMzQtMTIzNC0xMjM0NTY3ODkwMTI%d",`+
			`"node":{"id":"VGFzazoxMjM0NTY3OC0xMjM0LTEyMzQtMTIzNC0xMjM0NTY3ODkwMTI%d","title":"Write the quarterly report & send it",`+
			`"status":"IN_PROGRESS","priority":"HIGH","dueAt":"2026-12-%02dT10:00:00Z","tags":["work","q4"],`+
			`"owner":{"id":"VXNlcjoxMjM0NTY3OC0xMjM0LTEyMzQtMTIzNC0xMjM0NTY3ODkwMTI","name":"Bench User 1"}}}`, i, i, i+1)
	}
	page.WriteString(`],"pageInfo":{"hasNextPage":true,"hasPreviousPage":false,"endCursor":"djEuMTc2NDk1MzYwMDAwMDAwMC4xMjM0NTY3OC0xMjM0"}}}`)
	src := page.Bytes()
	dst := make([]byte, 0, 2*len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if dst, ok = appendEscapedCompact(dst[:0], src); !ok {
			b.Fatal("not compact")
		}
	}
}

// Data the response cache served already escaped is copied as it is, and only that very slice: equal
// bytes elsewhere (data an outer interceptor replaced it with, say) are escaped as usual.
func TestMarshalResponseCopiesNotedEscapedData(t *testing.T) {
	// Left unescaped on purpose, so a copy tells itself from an escape.
	data := []byte(`{"title":"<b>"}`)
	got, release, err := marshalResponse(&graphql.Response{Data: data}, data)
	if err != nil || string(got) != `{"data":{"title":"<b>"}}` {
		t.Fatalf("noted data: %s, %v; want it copied as it is", got, err)
	}
	release()
	other := bytes.Clone(data)
	got, release, err = marshalResponse(&graphql.Response{Data: other}, data)
	if err != nil || string(got) != `{"data":{"title":"\u003cb\u003e"}}` {
		t.Fatalf("other data: %s, %v; want it escaped", got, err)
	}
	release()
}
