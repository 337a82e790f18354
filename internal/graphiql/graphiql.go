// Package graphiql serves the GraphiQL IDE from the binary: the page, its script and styles and
// their licenses, built from pinned npm packages by clients/graphiql and embedded, so it works
// with no network. It opens on example operations (examples.graphql) that run in order against a
// fresh server; subscriptions go over graphql-ws.
package graphiql

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Built by `npm ci && npm run build` in clients/graphiql; committed, so go build needs no npm.
//
//go:embed assets/graphiql.js assets/graphiql.css assets/THIRD_PARTY_LICENSES.txt
var assets embed.FS

// Examples is the document the editor opens on: the example operations, in the order to run them.
//
//go:embed examples.graphql
var Examples string

// AssetPrefix is where the page's assets are served.
const AssetPrefix = "/graphiql/"

// Variables and Headers are the editor's initial variables and headers. The empty Authorization
// header (anonymous) is the place to put the access token, as the examples explain.
const (
	Variables = "{\n  \"email\": \"ada@example.com\",\n  \"after\": null,\n  \"id\": \"paste a task id here\"\n}"
	Headers   = "{\n  \"Authorization\": \"\"\n}"
)

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<link rel="stylesheet" href="{{.CSS}}">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql"><p style="font-family: sans-serif; padding: 1em">Loading GraphiQL…</p></div>
<script id="graphiql-config" type="application/json">{{.Config}}</script>
<script src="{{.JS}}"></script>
</body>
</html>
`))

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the page on any path it is mounted at and the assets under AssetPrefix.
type Handler struct {
	page   []byte
	assets map[string]asset
}

// New builds the handler for a GraphQL endpoint path (e.g. "/graphql").
func New(title, endpoint string) (*Handler, error) {
	h := &Handler{assets: map[string]asset{}}
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.assets[path.Base(p)] = asset{body: b, contentType: types[path.Ext(p)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("graphiql assets: %w", err)
	}
	config, err := json.Marshal(map[string]string{"endpoint": endpoint, "query": Examples, "variables": Variables, "headers": Headers})
	if err != nil {
		return nil, err
	}
	// The asset URLs name their content, so browsers may keep them as long as they like.
	version := func(name string) string { return AssetPrefix + name + "?v=" + strings.Trim(h.assets[name].etag, `"`) }
	var b bytes.Buffer
	if err := page.Execute(&b, map[string]any{
		"Title": title, "CSS": version("graphiql.css"), "JS": version("graphiql.js"),
		// Inside <script type="application/json">: html/template escapes it as JS, which keeps it JSON.
		"Config": template.JS(config),
	}); err != nil {
		return nil, err
	}
	h.page = b.Bytes()
	return h, nil
}

// ServeHTTP serves an asset for a path under AssetPrefix, the page for any other.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if name, ok := strings.CutPrefix(r.URL.Path, AssetPrefix); ok {
		a, ok := h.assets[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", a.contentType)
		w.Header().Set("ETag", a.etag)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Query().Get("v") != "" {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	// Everything comes from this origin: the page can load nothing from elsewhere, nor send
	// anything (the token it is given) anywhere else.
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
		"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	_, _ = w.Write(h.page)
}
