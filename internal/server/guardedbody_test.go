package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// readParams reuses the parameters guardGraphQL decoded from a POST body; they must be what
// decoding the body again gives, and a body read or replaced after the guard is decoded afresh.
func TestReadParamsReusesTheGuardsDecoding(t *testing.T) {
	bodies := []string{
		`{"query":"{ me { id } }"}`,
		`{"query":"query T($id: ID!) { task(id: $id) { id } }","operationName":"T","variables":{"id":"VGFzazox","n":1.50,"big":12345678901234567890,"nested":{"a":[1,"x",null,true]}},"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`,
		` {"query":"{ a }","variables":null,"query":"{ b }"} `,
		`{"query":"\u003c\u2028 Zoë \ud83d\ude00"}`,
	}
	for _, body := range bodies {
		for _, meddle := range []string{"", "read", "replace"} {
			var got *graphql.RawParams
			h := guardGraphQL(1<<20, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch meddle {
				case "read":
					b, _ := io.ReadAll(r.Body)
					r.Body = io.NopCloser(bytes.NewReader(b))
				case "replace":
					r.Body = io.NopCloser(bytes.NewReader([]byte(`{"query":"{ replaced }"}`)))
				}
				var err error
				if got, err = readParams(r); err != nil {
					t.Fatalf("%s (%s): %v", body, meddle, err)
				}
			}))
			req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(httptest.NewRecorder(), req)
			if got == nil {
				t.Fatalf("%s (%s): the guard refused the body", body, meddle)
			}
			want := &graphql.RawParams{}
			src := body
			if meddle == "replace" {
				src = `{"query":"{ replaced }"}`
			}
			if err := decodeJSON([]byte(src), want); err != nil {
				t.Fatal(err)
			}
			want.Headers, got.ReadTime = req.Header, graphql.TraceTiming{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s (%s): readParams gave\n%#v\ndecoding gives\n%#v", body, meddle, got, want)
			}
		}
	}
}
