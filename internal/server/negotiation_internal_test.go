package server

import (
	"mime"
	"testing"
)

// parseMediaType answers what mime.ParseMediaType answers (type, parameters, whether it failed).
func FuzzParseMediaType(f *testing.F) {
	for _, seed := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "text/event-stream",
		"application/graphql-response+json", "multipart/mixed;deferSpec=20220824", "", "/", "a/", "/b", "a/b/c", "a b/c",
		"application/json ", "*/*", "application/*;q=0.8", "x/y.z-1+2", "é/x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		mt, params, err := parseMediaType(v)
		wantMT, wantParams, wantErr := mime.ParseMediaType(v)
		if (err != nil) != (wantErr != nil) || (err == nil && mt != wantMT) || len(params) != len(wantParams) {
			t.Fatalf("%q: %q %v %v; mime.ParseMediaType: %q %v %v", v, mt, params, err, wantMT, wantParams, wantErr)
		}
		for k, val := range wantParams {
			if params[k] != val {
				t.Fatalf("%q: parameter %s = %q, want %q", v, k, params[k], val)
			}
		}
	})
}
