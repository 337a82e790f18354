package download_test

// The download handler against the real PostgreSQL: the file streamed chunk by chunk with its
// headers, every refusal (403 for a bad or expired URL, 404 for anything that is not a live
// export file), a download cut short when a chunk vanishes, and flat memory for a large file.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/download"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

const ttl = 15 * time.Minute

type fixture struct {
	database *testsupport.Database
	signer   *userjobs.Signer
	server   *httptest.Server
	now      time.Time
	mu       sync.Mutex
	userID   uuid.UUID
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{database: testsupport.NewDatabase(t), signer: userjobs.NewSigner([]byte("test-secret"), "", ttl),
		now: time.Now(), userID: uuid.New()}
	exports := userjobs.New(reads.NewRouter(db.New(f.database.Pool, nil), nil), 0, f.signer, nil)
	h := &download.Handler{Exports: exports, Now: f.clock}
	mux := http.NewServeMux()
	mux.Handle(download.Pattern, h)
	f.server = httptest.NewServer(mux)
	t.Cleanup(f.server.Close)
	f.exec(t, `INSERT INTO users (id, name, email, password_hash) VALUES ($1, 'U', 'u@example.com', 'x')`, f.userID)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) set(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := f.database.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// export inserts a job of kind and status whose result describes chunks (inserted too) and whose
// file expires at expires.
func (f *fixture) export(t *testing.T, kind db.JobKind, status db.JobStatus, format userjobs.ExportFormat, chunks []string, expires time.Time) uuid.UUID {
	t.Helper()
	id := uuid.New()
	size := 0
	for _, c := range chunks {
		size += len(c)
	}
	res, err := json.Marshal(userjobs.ExportResult{Format: format, TaskCount: 1, ByteSize: int32(size), Chunks: int32(len(chunks)), ExpiresAt: expires})
	if err != nil {
		t.Fatal(err)
	}
	f.exec(t, `INSERT INTO jobs (id, user_id, kind, status, result, expires_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6, timestamptz '2026-03-04 23:30:00+00')`, id, f.userID, kind, status, res, expires)
	for i, c := range chunks {
		f.exec(t, `INSERT INTO export_chunks (job_id, seq, data) VALUES ($1, $2, $3)`, id, i, []byte(c))
	}
	return id
}

func (f *fixture) get(t *testing.T, method, path string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, f.server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.server.Client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res, body, err
}

func TestDownloadStreamsTheFileWithItsHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	chunks := []string{"id,title\r\n", "VGFzazox,\"a, \"\"b\"\"\"\r\n", "VGFzazoy,ü 日本\r\n"}
	expires := f.now.Add(time.Hour)
	for _, c := range []struct {
		format           userjobs.ExportFormat
		ctype, extension string
	}{{userjobs.ExportCSV, "text/csv; charset=utf-8", "csv"}, {userjobs.ExportJSON, "application/json", "json"}} {
		id := f.export(t, db.JobTaskExport, db.JobSucceeded, c.format, chunks, expires)
		u, exp := f.signer.URL(id, f.now, expires)
		if !exp.Equal(f.now.Add(ttl).Truncate(time.Second)) || !strings.HasPrefix(u, "/exports/"+id.String()+"?") {
			t.Fatalf("URL %s expiring %v", u, exp)
		}
		res, body, err := f.get(t, http.MethodGet, u)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v %s", c.format, err, res.Status, body)
		}
		if want := strings.Join(chunks, ""); string(body) != want {
			t.Errorf("%s: body %q, want %q", c.format, body, want)
		}
		want := map[string]string{
			"Content-Type": c.ctype, "Content-Disposition": `attachment; filename="tasks-2026-03-04.` + c.extension + `"`,
			"Content-Length": "51", "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
		}
		for k, v := range want {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", c.format, k, got, v)
			}
		}
		res, body, err = f.get(t, http.MethodHead, u)
		if err != nil || res.StatusCode != http.StatusOK || len(body) != 0 || res.ContentLength != 51 {
			t.Errorf("HEAD: %v %v, %d bytes, Content-Length %d", err, res.Status, len(body), res.ContentLength)
		}
	}
}

func TestDownloadRefusesBadURLsAndMissingFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	good := f.export(t, db.JobTaskExport, db.JobSucceeded, userjobs.ExportCSV, []string{"a\r\n"}, f.now.Add(time.Hour))
	u, exp := f.signer.URL(good, f.now, time.Time{})
	q := u[strings.Index(u, "?"):]
	sig := q[strings.Index(q, "signature=")+len("signature="):]
	other := userjobs.NewSigner([]byte("another secret"), "", ttl)
	otherURL, _ := other.URL(good, f.now, time.Time{})

	check := func(name, path string, status int, code, message string) {
		t.Helper()
		res, body, err := f.get(t, http.MethodGet, path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var e struct {
			Errors []struct {
				Message    string
				Extensions struct{ Code string }
			}
		}
		if res.StatusCode != status || json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Extensions.Code != code ||
			!strings.Contains(e.Errors[0].Message, message) || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s, want %d %s (%q)", name, res.StatusCode, body, status, code, message)
		}
		if res.Header.Get("Content-Disposition") != "" || res.Header.Get("Cache-Control") != "private, no-store" {
			t.Errorf("%s: headers %v", name, res.Header)
		}
	}
	tampered := "0"
	if sig[0] == '0' {
		tampered = "1"
	}
	check("tampered signature", "/exports/"+good.String()+strings.Replace(q, "signature="+sig[:1], "signature="+tampered, 1), 403, "FORBIDDEN", "not valid")
	check("signed with another key", otherURL, 403, "FORBIDDEN", "not valid")
	check("another job's id", "/exports/"+uuid.NewString()+q, 403, "FORBIDDEN", "not valid")
	check("signature not hex", "/exports/"+good.String()+"?expires=1&signature=zz", 403, "FORBIDDEN", "not valid")
	check("no parameters", "/exports/"+good.String(), 403, "FORBIDDEN", "not valid")
	check("not a uuid", "/exports/nope"+q, 404, "NOT_FOUND", "no such export")
	check("a non-canonical uuid", "/exports/"+strings.ToUpper(good.String())+q, 404, "NOT_FOUND", "no such export")

	// Valid until its expiry, refused from then on.
	start := f.clock()
	f.set(exp.Add(-time.Millisecond))
	if res, body, err := f.get(t, http.MethodGet, u); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("just before expiry: %v %s", err, body)
	}
	f.set(exp)
	check("expired URL", u, 403, "FORBIDDEN", "expired")

	// Validly signed, but no live export file behind it.
	f.set(start)
	signed := func(id uuid.UUID) string { u, _ := f.signer.URL(id, f.now, time.Time{}); return u }
	for name, id := range map[string]uuid.UUID{
		"no such job":     uuid.New(),
		"a report":        f.export(t, db.JobTaskReport, db.JobSucceeded, userjobs.ExportCSV, nil, f.now.Add(time.Hour)),
		"a running one":   f.export(t, db.JobTaskExport, db.JobRunning, userjobs.ExportCSV, []string{"partial"}, f.now.Add(time.Hour)),
		"a cancelled one": f.export(t, db.JobTaskExport, db.JobCancelled, userjobs.ExportCSV, []string{"partial"}, f.now.Add(time.Hour)),
		"an expired file": f.export(t, db.JobTaskExport, db.JobSucceeded, userjobs.ExportCSV, []string{"old"}, f.now.Add(-time.Second)),
	} {
		check(name, signed(id), 404, "NOT_FOUND", "does not exist")
	}

	// A result the handler cannot read: INTERNAL, with nothing of the cause.
	broken := uuid.New()
	f.exec(t, `INSERT INTO jobs (id, user_id, kind, status, result, expires_at) VALUES ($1, $2, 'TASK_EXPORT', 'SUCCEEDED', '{"format": 5}', now() + interval '1 hour')`,
		broken, f.userID)
	check("an unreadable result", signed(broken), 500, "INTERNAL", "internal error")
}

// A chunk that vanishes mid-download (the file expired and was swept) breaks the response: the
// client sees an error, never a shorter file that looks complete.
func TestDownloadCutShortWhenAChunkIsMissing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.export(t, db.JobTaskExport, db.JobSucceeded, userjobs.ExportCSV, []string{"one\r\n", "two\r\n", "three\r\n"}, f.now.Add(time.Hour))
	f.exec(t, `DELETE FROM export_chunks WHERE job_id = $1 AND seq = 1`, id)
	u, _ := f.signer.URL(id, f.now, time.Time{})
	// Depending on what reached the client before the break: no response at all, or a body that
	// ends early.
	if res, body, err := f.get(t, http.MethodGet, u); err == nil || (res != nil && !errors.Is(err, io.ErrUnexpectedEOF)) {
		t.Fatalf("a download with a missing chunk: %q, %v; want a failed request or an unexpected EOF", body, err)
	}
}

// Downloading a 64 MiB file holds about one chunk: the heap grows by a small fraction of the file.
func TestDownloadMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads a 64 MiB file")
	}
	f := newFixture(t)
	const chunks, chunkSize = 64, 1 << 20
	id := uuid.New()
	res, _ := json.Marshal(userjobs.ExportResult{Format: userjobs.ExportCSV, ByteSize: chunks * chunkSize, Chunks: chunks, ExpiresAt: f.now.Add(time.Hour)})
	f.exec(t, `INSERT INTO jobs (id, user_id, kind, status, result, expires_at, finished_at)
		VALUES ($1, $2, 'TASK_EXPORT', 'SUCCEEDED', $3, now() + interval '1 hour', now())`, id, f.userID, res)
	// Chunk g is chunkSize copies of one letter; pseudo-random noise would only slow PostgreSQL down.
	f.exec(t, `INSERT INTO export_chunks (job_id, seq, data)
		SELECT $1, g, convert_to(repeat(chr(97 + g % 26), $2), 'UTF8') FROM generate_series(0, $3 - 1) g`, id, chunkSize, chunks)
	u, _ := f.signer.URL(id, f.now, time.Time{})

	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	runtime.GC()
	runtime.GC() // twice: the live-heap figure is the previous cycle's
	metrics.Read(samples)
	base, peak := samples[0].Value.Uint64(), samples[0].Value.Uint64()
	baseLive, peakLive := samples[1].Value.Uint64(), samples[1].Value.Uint64()
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			metrics.Read(samples)
			peak = max(peak, samples[0].Value.Uint64())
			peakLive = max(peakLive, samples[1].Value.Uint64())
		}
	}()
	start := time.Now()
	resp, err := f.server.Client().Get(f.server.URL + u)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	close(stop)
	<-sampled
	if err != nil || n != chunks*chunkSize {
		t.Fatalf("read %d bytes (%v), want %d", n, err, chunks*chunkSize)
	}
	want := sha256.New()
	for g := range chunks {
		want.Write(bytes.Repeat([]byte{byte('a' + g%26)}, chunkSize))
	}
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatal("the downloaded file differs from its chunks")
	}
	growth, live := peak-base, peakLive-baseLive
	t.Logf("downloaded %d MiB in %s (%.0f MiB/s); heap peak growth %.1f MiB, live heap peak growth %.1f MiB",
		n>>20, took.Round(time.Millisecond), float64(n)/(1<<20)/took.Seconds(), float64(growth)/(1<<20), float64(live)/(1<<20))
	// Garbage between two collections counts in the first figure (more of it under -race, where
	// sync.Pool drops buffers on purpose); what stays reachable is the second.
	if growth > uint64(n)/2 || live > uint64(n)/4 {
		t.Errorf("the heap grew by %.1f MiB (live: %.1f MiB) while serving a %d MiB file",
			float64(growth)/(1<<20), float64(live)/(1<<20), n>>20)
	}
}

// A download that takes longer than the server's write timeout (HTTP_WRITE_TIMEOUT, meant for
// ordinary answers) still completes: each chunk gets a deadline of its own.
func TestDownloadOutlastsTheServersWriteTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: waits out the server's write timeout")
	}
	t.Parallel()
	f := newFixture(t)
	const chunks, chunkSize = 8, 1 << 20
	id := uuid.New()
	res, _ := json.Marshal(userjobs.ExportResult{Format: userjobs.ExportCSV, ByteSize: chunks * chunkSize, Chunks: chunks, ExpiresAt: f.now.Add(time.Hour)})
	f.exec(t, `INSERT INTO jobs (id, user_id, kind, status, result, expires_at, finished_at)
		VALUES ($1, $2, 'TASK_EXPORT', 'SUCCEEDED', $3, now() + interval '1 hour', now())`, id, f.userID, res)
	f.exec(t, `INSERT INTO export_chunks (job_id, seq, data)
		SELECT $1, g, convert_to(repeat('x', $2), 'UTF8') FROM generate_series(0, $3 - 1) g`, id, chunkSize, chunks)
	slow := httptest.NewUnstartedServer(f.server.Config.Handler)
	slow.Config.WriteTimeout = 300 * time.Millisecond
	slow.Start()
	t.Cleanup(slow.Close)
	u, _ := f.signer.URL(id, f.now, time.Time{})
	resp, err := slow.Client().Get(slow.URL + u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	var n int64
	buf := make([]byte, 256<<10)
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes in %s: %v", n, time.Since(start), err)
		}
		time.Sleep(40 * time.Millisecond) // about 6 MiB/s: the whole file takes over a second
	}
	if n != chunks*chunkSize || time.Since(start) < time.Second {
		t.Fatalf("read %d bytes in %s, want %d over more than a second", n, time.Since(start), chunks*chunkSize)
	}
}

// An interrupted download resumes: single byte ranges (within a chunk, across chunks, open-ended,
// suffix) answer 206 with exactly those bytes; a range past the end answers 416; a stale If-Range
// or several ranges get the whole file.
func TestDownloadServesByteRanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	chunks := []string{"0123456789", "abcdefghij", "KLMNOPQRST", "uvwxyz"}
	file := strings.Join(chunks, "")
	expires := f.now.Add(time.Hour)
	id := f.export(t, db.JobTaskExport, db.JobSucceeded, userjobs.ExportCSV, chunks, expires)
	u, _ := f.signer.URL(id, f.now, expires)
	fetch := func(rng, ifRange string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, f.server.URL+u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", "identity")
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
		res, err := f.server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(body)
	}
	full, _ := fetch("", "")
	etag := full.Header.Get("ETag")
	if full.Header.Get("Accept-Ranges") != "bytes" || etag == "" {
		t.Fatalf("whole file: Accept-Ranges %q, ETag %q", full.Header.Get("Accept-Ranges"), etag)
	}
	n := len(file)
	for _, c := range []struct {
		rng        string
		start, end int // the bytes [start, end) expected
	}{
		{"bytes=2-5", 2, 6},
		{"bytes=8-23", 8, 24},                     // across three chunks
		{"bytes=10-19", 10, 20},                   // exactly one chunk
		{"bytes=30-", 30, n},                      // open-ended, inside the last chunk
		{"bytes=-4", n - 4, n},                    // the last 4 bytes
		{"bytes=0-1000", 0, n},                    // clamped to the file
		{fmt.Sprintf("bytes=%d-", n-1), n - 1, n}, // the last byte
	} {
		res, body := fetch(c.rng, etag)
		want := file[c.start:c.end]
		if res.StatusCode != http.StatusPartialContent || body != want ||
			res.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", c.start, c.end-1, n) ||
			res.Header.Get("Content-Length") != fmt.Sprint(len(want)) {
			t.Errorf("%s: %s, %q (Content-Range %q, Content-Length %q); want 206 %q", c.rng, res.Status, body,
				res.Header.Get("Content-Range"), res.Header.Get("Content-Length"), want)
		}
	}
	if res, _ := fetch(fmt.Sprintf("bytes=%d-", n), ""); res.StatusCode != http.StatusRequestedRangeNotSatisfiable ||
		res.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", n) {
		t.Errorf("range past the end: %s, Content-Range %q; want 416", res.Status, res.Header.Get("Content-Range"))
	}
	for _, c := range []struct{ rng, ifRange string }{{"bytes=2-5", `"another-version"`}, {"bytes=0-1,4-5", ""}, {"lines=1-2", ""}} {
		if res, body := fetch(c.rng, c.ifRange); res.StatusCode != http.StatusOK || body != file {
			t.Errorf("Range %q If-Range %q: %s %q; want the whole file", c.rng, c.ifRange, res.Status, body)
		}
	}
}
