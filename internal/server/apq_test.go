package server_test

// Automatic persisted queries, the trusted-documents allow-list and gzip.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/server"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func persisted(hash string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
}

// apqPost posts a hash, with the document when query is not "".
func apqPost(t *testing.T, env *testsupport.Env, token, query, hash string, vars map[string]any) hresp {
	t.Helper()
	return hdo(t, env, http.MethodPost, "/graphql", bearer(token), gqlBody(t, query, vars, persisted(hash)))
}

// apqGet sends a hash-only APQ request over GET, as CDN-friendly clients do.
func apqGet(t *testing.T, env *testsupport.Env, token, hash string, vars map[string]any) hresp {
	t.Helper()
	ext, _ := json.Marshal(persisted(hash))
	q := url.Values{"extensions": {string(ext)}}
	if vars != nil {
		v, _ := json.Marshal(vars)
		q.Set("variables", string(v))
	}
	return hdo(t, env, http.MethodGet, "/graphql?"+q.Encode(), bearer(token), nil)
}

func TestAPQ(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	const doc = `query APQ { me { id name } }`
	hash := sha256Hex(doc)

	wantErr(t, apqPost(t, env, u.Token, "", hash, nil), http.StatusOK, "PERSISTED_QUERY_NOT_FOUND")
	r := apqPost(t, env, u.Token, doc, hash, nil)
	wantOK(t, r)
	if !strings.Contains(string(r.Data), u.GlobalID) {
		t.Errorf("data = %s", r.Data)
	}
	for name, r := range map[string]hresp{"POST": apqPost(t, env, u.Token, "", hash, nil), "GET": apqGet(t, env, u.Token, hash, nil)} {
		wantOK(t, r)
		if !strings.Contains(string(r.Data), u.GlobalID) {
			t.Errorf("hash only over %s: data = %s", name, r.Data)
		}
	}

	before := rowCounts(t, env)
	t.Run("wrong hash", func(t *testing.T) {
		for name, h := range map[string]string{
			"hash of another document": sha256Hex(doc + " "),
			"not hex":                  hostileCanary,
			"uppercase hex":            strings.ToUpper(sha256Hex(hostileCreateTask)),
		} {
			wantErr(t, apqPost(t, env, u.Token, hostileCreateTask, h, createVars(hostileCanary)), http.StatusOK, "BAD_USER_INPUT")
			// The bad pair registered nothing.
			wantErr(t, apqPost(t, env, u.Token, "", h, createVars(hostileCanary)), http.StatusOK, "PERSISTED_QUERY_NOT_FOUND")
			_ = name
		}
	})
	t.Run("malformed extension", func(t *testing.T) {
		for name, ext := range map[string]map[string]any{
			"version 2":      {"persistedQuery": map[string]any{"version": 2, "sha256Hash": hash}},
			"not an object":  {"persistedQuery": "yes"},
			"version string": {"persistedQuery": map[string]any{"version": hostileCanary, "sha256Hash": hash}},
		} {
			r := hdo(t, env, http.MethodPost, "/graphql", bearer(u.Token), gqlBody(t, "", nil, ext))
			if r.Status != http.StatusOK || r.code() != "BAD_USER_INPUT" {
				t.Errorf("%s: %d %s", name, r.Status, r.Body)
			}
			wantNoEcho(t, r)
		}
	})
	t.Run("a refused document is not registered", func(t *testing.T) {
		deep := deepQuery(13)
		wantErr(t, apqPost(t, env, u.Token, deep, sha256Hex(deep), nil), http.StatusOK, "QUERY_TOO_COMPLEX")
		wantErr(t, apqPost(t, env, u.Token, "", sha256Hex(deep), nil), http.StatusOK, "PERSISTED_QUERY_NOT_FOUND")
		broken := `{ me { id ` + hostileCanary
		r := apqPost(t, env, u.Token, broken, sha256Hex(broken), nil)
		wantErr(t, r, http.StatusOK, "BAD_USER_INPUT")
		wantErr(t, apqPost(t, env, u.Token, "", sha256Hex(broken), nil), http.StatusOK, "PERSISTED_QUERY_NOT_FOUND")
	})
	t.Run("a registered mutation does not run over GET", func(t *testing.T) {
		mhash := sha256Hex(hostileCreateTask)
		wantOK(t, apqPost(t, env, u.Token, hostileCreateTask, mhash, createVars("registered")))
		tasks := env.CountRows(t, "tasks")
		r := apqGet(t, env, u.Token, mhash, createVars(hostileCanary))
		wantErr(t, r, http.StatusMethodNotAllowed, "BAD_USER_INPUT")
		if allow := r.Header.Get("Allow"); allow != "POST" {
			t.Errorf("Allow = %q, want POST", allow)
		}
		if n := env.CountRows(t, "tasks"); n != tasks {
			t.Errorf("tasks %d → %d: a mutation ran over GET", tasks, n)
		}
		before["tasks"] = tasks
	})
	wantRowsUnchanged(t, env, before)
}

func TestAPQSharedAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	t.Parallel()
	overrides := map[string]string{"REDIS_URL": redisDB(t, 9)}
	a := testsupport.NewEnv(t, overrides)
	b := testsupport.NewEnvOn(t, a.DB, overrides)
	u := a.Register(t, "Ada")
	const doc = `query Shared { me { id } }`
	hash := sha256Hex(doc)

	wantErr(t, apqPost(t, b, u.Token, "", hash, nil), http.StatusOK, "PERSISTED_QUERY_NOT_FOUND")
	wantOK(t, apqPost(t, a, u.Token, doc, hash, nil))
	r := apqPost(t, b, u.Token, "", hash, nil)
	wantOK(t, r)
	if !strings.Contains(string(r.Data), u.GlobalID) {
		t.Errorf("hash registered on A, answered on B: %s", r.Data)
	}
	wantOK(t, apqGet(t, b, u.Token, hash, nil))
}

// writeManifest writes a trusted-documents manifest and returns its path.
func writeManifest(t *testing.T, docs map[string]string) string {
	t.Helper()
	raw, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trusted.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTrustedDocuments(t *testing.T) {
	t.Parallel()
	const (
		meDoc     = `query Me { me { id } }`
		createDoc = `mutation Create($input: CreateTaskInput!) { createTask(input: $input) { task { title } } }`
	)
	manifest := writeManifest(t, map[string]string{sha256Hex(meDoc): meDoc, sha256Hex(createDoc): createDoc})
	env := testsupport.NewEnv(t, map[string]string{"TRUSTED_DOCUMENTS": manifest})
	// Users sign up through an instance without the allow-list on the same database.
	u := testsupport.NewEnvOn(t, env.DB, nil).Register(t, "Ada")

	t.Run("listed documents run", func(t *testing.T) {
		r := gqlPost(t, env, u.Token, meDoc, nil)
		wantOK(t, r)
		if !strings.Contains(string(r.Data), u.GlobalID) {
			t.Errorf("by text: %s", r.Data)
		}
		r = apqPost(t, env, u.Token, "", sha256Hex(meDoc), nil)
		wantOK(t, r)
		if !strings.Contains(string(r.Data), u.GlobalID) {
			t.Errorf("by hash: %s", r.Data)
		}
		wantOK(t, apqGet(t, env, u.Token, sha256Hex(meDoc), nil))
		r = apqPost(t, env, u.Token, "", sha256Hex(createDoc), createVars("trusted"))
		wantOK(t, r)
		if n := env.CountRows(t, "tasks"); n != 1 {
			t.Errorf("tasks = %d after the listed mutation, want 1", n)
		}
	})

	before := rowCounts(t, env)
	tests := []struct {
		name   string
		status int
		req    func() hresp
	}{
		{"unlisted query", http.StatusOK, func() hresp { return gqlPost(t, env, u.Token, `{ me { id email } }`, nil) }},
		{"unlisted mutation", http.StatusOK, func() hresp { return gqlPost(t, env, u.Token, hostileCreateTask, createVars(hostileCanary)) }},
		{"listed text with other whitespace", http.StatusOK, func() hresp { return gqlPost(t, env, u.Token, meDoc+" ", nil) }},
		{"unlisted document with a listed hash", http.StatusOK, func() hresp {
			return apqPost(t, env, u.Token, hostileCreateTask, sha256Hex(createDoc), createVars(hostileCanary))
		}},
		{"unknown hash", http.StatusOK, func() hresp {
			return apqPost(t, env, u.Token, "", sha256Hex(hostileCreateTask), createVars(hostileCanary))
		}},
		{"hash not a string", http.StatusOK, func() hresp {
			return hdo(t, env, http.MethodPost, "/graphql", bearer(u.Token),
				gqlBody(t, "", nil, map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": 1}}))
		}},
		{"no document at all", http.StatusOK, func() hresp {
			return hdo(t, env, http.MethodPost, "/graphql", bearer(u.Token), []byte(`{"variables": {}}`))
		}},
		{"unlisted query over GET", http.StatusOK, func() hresp {
			return hdo(t, env, http.MethodGet, "/graphql?query="+url.QueryEscape(`{ me { email } }`), bearer(u.Token), nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			wantErr(t, r, tc.status, "FORBIDDEN")
		})
	}
	t.Run("listed mutation by hash over GET", func(t *testing.T) {
		wantErr(t, apqGet(t, env, u.Token, sha256Hex(createDoc), createVars(hostileCanary)), http.StatusMethodNotAllowed, "BAD_USER_INPUT")
	})
	wantRowsUnchanged(t, env, before)
}

func TestTrustedDocumentsManifestErrors(t *testing.T) {
	t.Parallel()
	database := testsupport.NewDatabase(t)
	const doc = `{ me { id } }`
	bad := map[string]string{
		"wrong hash":    writeManifest(t, map[string]string{sha256Hex(doc + " "): doc}),
		"uppercase hex": writeManifest(t, map[string]string{strings.ToUpper(sha256Hex(doc)): doc}),
		"not JSON": func() string {
			p := filepath.Join(t.TempDir(), "broken.json")
			_ = os.WriteFile(p, []byte(`{"abc": `), 0o600)
			return p
		}(),
		"a list": func() string {
			p := filepath.Join(t.TempDir(), "list.json")
			_ = os.WriteFile(p, []byte(`["`+doc+`"]`), 0o600)
			return p
		}(),
		"missing file": filepath.Join(t.TempDir(), "absent.json"),
	}
	for name, path := range bad {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(func(k string) string {
				return map[string]string{"JWT_SECRET": "test-secret-test-secret-test-secret-0123", "TRUSTED_DOCUMENTS": path}[k]
			})
			if err != nil {
				t.Fatal(err)
			}
			app, err := server.Build(cfg, database.Pool, slog.New(slog.NewTextHandler(io.Discard, nil)), server.Observability{})
			if err == nil {
				app.Close()
				t.Fatalf("Build accepted a bad manifest")
			}
			if msg := err.Error(); !strings.Contains(msg, "trusted documents") || !strings.Contains(msg, path) && name != "missing file" {
				t.Errorf("error %q does not name the manifest", msg)
			}
			if name == "wrong hash" && !strings.Contains(err.Error(), "does not match") {
				t.Errorf("error %q does not say the hash does not match", err)
			}
		})
	}
}

func TestGzip(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	for i := range 30 {
		env.CreateTask(t, u.ID, db.NewTask{Title: "a task with a reasonably long title, number " + string(rune('A'+i%26))})
	}
	transport := env.Server.Client().Transport.(*http.Transport).Clone()
	transport.DisableCompression = true // see the raw bytes
	client := &http.Client{Transport: transport}
	const big = `{ tasks(first: 30) { edges { cursor node { id title status priority } } } }`
	post := func(query, acceptEncoding string) hresp {
		h := bearer(u.Token)
		if acceptEncoding != "" {
			h.Set("Accept-Encoding", acceptEncoding)
		}
		return hdoURL(t, client, env.Server.URL, http.MethodPost, "/graphql", h, gqlBody(t, query, nil, nil))
	}

	plain := post(big, "")
	wantOK(t, plain)
	if len(plain.Body) <= 1024 || plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("without Accept-Encoding: %d bytes, Content-Encoding %q", len(plain.Body), plain.Header.Get("Content-Encoding"))
	}

	zipped := post(big, "gzip")
	if zipped.Status != http.StatusOK || zipped.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("with Accept-Encoding: gzip: %d, Content-Encoding %q", zipped.Status, zipped.Header.Get("Content-Encoding"))
	}
	if !strings.Contains(zipped.Header.Get("Vary"), "Accept-Encoding") {
		t.Errorf("Vary = %q, want Accept-Encoding", zipped.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped.Body))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	var doc struct {
		Data struct {
			Tasks struct{ Edges []json.RawMessage }
		}
		Errors []testsupport.Error
	}
	if err := json.Unmarshal(unzipped, &doc); err != nil || len(doc.Errors) != 0 || len(doc.Data.Tasks.Edges) != 30 {
		t.Fatalf("gunzipped body is not the answer (%v): %.300s", err, unzipped)
	}
	if len(zipped.Body) >= len(unzipped) {
		t.Errorf("compressed %d bytes to %d", len(unzipped), len(zipped.Body))
	}

	for name, r := range map[string]hresp{
		"small answer":  post(`{ __typename }`, "gzip"),
		"gzip refused":  post(big, "gzip;q=0"),
		"identity only": post(big, "identity"),
	} {
		if r.Header.Get("Content-Encoding") != "" || r.Status != http.StatusOK || len(r.Errors) != 0 || !r.hasData() {
			t.Errorf("%s: %d Content-Encoding %q %.200s", name, r.Status, r.Header.Get("Content-Encoding"), r.Body)
		}
	}
}
