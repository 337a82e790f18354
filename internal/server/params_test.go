package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// decodeParams answers exactly what encoding/json (with UseNumber) does for every valid JSON body:
// the same parameters, or an error both ways. The seeds are the shapes clients send and the corners
// of encoding/json's behaviour (repeated keys, null, case-insensitive names, escapes, numbers).
func FuzzDecodeParams(f *testing.F) {
	for _, seed := range []string{
		`{"query":"{ me { id } }"}`,
		`{"query":"query Task($id: ID!) {\n  task(id: $id) { id }\n}","operationName":"Task","variables":{"id":"VGFzazox"}}`,
		`{"query":"q","variables":{"n":1,"f":1.5e3,"neg":-0,"big":123456789012345678901234567890}}`,
		`{"query":"q","variables":{"a":[1,"x",null,true,false,{"b":[]},[]],"o":{}},"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`,
		`{"query":"a","query":"b","query":null}`,
		`{"variables":{"a":1},"variables":{"b":2}}`,
		`{"variables":{"a":1},"variables":null}`,
		`{"variables":{"a":1,"a":2}}`,
		`{"QUERY":"x","OperationName":"y","Variables":{"k":"v"}}`,
		`{"variableſ":{"k":"v"}}`,
		`{"query":"\u00e9\ud83d\ude00 \"quoted\" \\ \/ \b\f\n\r\t"}`,
		`{"query":"\ud800 lone surrogate"}`,
		`{"query":"\"escaped\" key","va\u0072iables":{"k\u00e9y":"v\u00e9"}}`,
		`{"query":5}`,
		`{"variables":5}`,
		`{"variables":[1]}`,
		`{"operationName":false}`,
		`{"headers":{"X":["y"]}}`,
		`{"other":1,"query":"x"}`,
		`{}`,
		` { "query" : "spaced" , "variables" : { "a" : [ 1 , 2 ] } } `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		var want graphql.RawParams
		wantErr := decodeJSON(body, &want)
		var got graphql.RawParams
		gotErr := decodeParams(body, &got)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("%s: error %v, encoding/json's %v", body, gotErr, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", body, got, want)
		}
	})
}

// The usual shape takes the fast path (the fuzz test alone would pass if everything fell back).
func TestUsualParamsSkipEncodingJSON(t *testing.T) {
	for _, body := range []string{
		`{"query":"query Task($id: ID!) { task(id: $id) { id } }","operationName":"Task","variables":{"id":"x","n":2}}`,
		`{"query":"{ me { id } }","variables":null,"extensions":{"persistedQuery":{"version":1}}}`,
	} {
		var p graphql.RawParams
		if !fastParams([]byte(body), &p) {
			t.Errorf("%s: not read by the fast path", body)
		}
	}
}

// BenchmarkDecodeParams compares the fast path with encoding/json on the task benchmark's body.
func BenchmarkDecodeParams(b *testing.B) {
	body := []byte(`{"query":"query Task($id: ID!) { task(id: $id) { id title description status priority dueAt tags createdAt updatedAt version owner { id name } } }","variables":{"id":"VGFzazowMTkzZjFmNy03YzNhLTc3NzctYjk5Ny1jZDFmOGU5YjQ2ZDE"}}`)
	for name, decode := range map[string]func([]byte, *graphql.RawParams) error{
		"fast":          decodeParams,
		"encoding-json": func(b []byte, p *graphql.RawParams) error { return decodeJSON(b, p) },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var p graphql.RawParams
				if err := decode(body, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
