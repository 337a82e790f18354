// Package download is the HTTP route of export files: it answers GET /exports/{id} with the file
// a signed URL opens (internal/userjobs checks the URL and finds the file), streamed chunk by chunk,
// with single byte ranges for resuming.
package download

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

// chunkWriteTimeout is how long a client gets to take one chunk (about 1 MiB) of a download; the
// server's write timeout is for ordinary answers and would cut a large download short.
const chunkWriteTimeout = 2 * time.Minute

// lookupTimeout bounds each database read of a download (the job row, one chunk).
const lookupTimeout = 10 * time.Second

// Handler serves GET PathPrefix{id}?expires=..&signature=..: the export file of job id, streamed
// chunk by chunk from the database (one chunk in memory at a time). The signed URL is the only
// credential: no Authorization header is needed or read.
type Handler struct {
	Exports *userjobs.Service
	Logger  *slog.Logger
	// Now is the clock (nil: time.Now); tests move it.
	Now func() time.Time
}

// Pattern is the route the handler expects, with {id} the job's UUID.
const Pattern = "GET " + userjobs.PathPrefix + "{id}"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", "private, no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer") // the URL is a credential

	raw := r.PathValue("id")
	id, err := uuid.Parse(raw)
	if err != nil || id.String() != raw {
		refuse(w, http.StatusNotFound, apperr.NotFound, "no such export")
		return
	}
	q := r.URL.Query()
	d, err := func() (*userjobs.Download, error) {
		ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
		defer cancel()
		return h.Exports.OpenDownload(ctx, id, q.Get("expires"), q.Get("signature"), now)
	}()
	if err != nil {
		var app *apperr.Error
		switch {
		case errors.As(err, &app) && app.Code == apperr.Forbidden:
			refuse(w, http.StatusForbidden, apperr.Forbidden, app.Message)
		case apperr.CodeOf(err) == apperr.NotFound:
			refuse(w, http.StatusNotFound, apperr.NotFound, "this export does not exist or its file has been deleted")
		default:
			// The request id (set on the answer by the server's middleware) ties the answer to the log.
			rid := hdr.Get("X-Request-ID")
			h.log().ErrorContext(r.Context(), "export download", "request_id", rid, "job_id", id.String(), "error", err.Error())
			refuse(w, http.StatusInternalServerError, apperr.Internal, "internal error", "requestId", rid)
		}
		return
	}
	res, at := d.Result, d.MadeAt

	ext, ctype := "csv", "text/csv; charset=utf-8"
	if res.Format == userjobs.ExportJSON {
		ext, ctype = "json", "application/json"
	}
	size := int64(res.ByteSize)
	hdr.Set("Content-Type", ctype)
	hdr.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="tasks-%s.%s"`, at.UTC().Format(time.DateOnly), ext))
	// A file never changes once written, so its job id and size name it: an interrupted download
	// resumes with Range (and If-Range) against the same bytes.
	etag := fmt.Sprintf(`"%s-%d"`, id, size)
	hdr.Set("ETag", etag)
	hdr.Set("Accept-Ranges", "bytes")
	span, partial, ok := byteRange(r, etag, size)
	if !ok {
		hdr.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		refuse(w, http.StatusRequestedRangeNotSatisfiable, apperr.BadUserInput, "the requested range is outside the file")
		return
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", span.start, span.end-1, size))
	}
	hdr.Set("Content-Length", strconv.FormatInt(span.end-span.start, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if err := h.stream(r.Context(), w, d, int(res.Chunks), size, span); err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		// The status line is gone: break the connection so the client sees a failed download, never
		// a short file that looks complete.
		h.log().ErrorContext(r.Context(), "export download cut short", "request_id", hdr.Get("X-Request-ID"),
			"job_id", id.String(), "error", err.Error())
		panic(http.ErrAbortHandler)
	}
}

// span is the half-open byte range [start, end) of the file being sent.
type span struct{ start, end int64 }

// byteRange reads a single-range Range header ("bytes=a-b", "bytes=a-", "bytes=-n") against a
// file of size bytes. partial is false when the whole file is sent: no Range, a Range this
// handler does not serve (several ranges, another unit), or an If-Range naming another version.
// ok is false when the range lies outside the file (416).
func byteRange(r *http.Request, etag string, size int64) (s span, partial, ok bool) {
	whole := span{0, size}
	spec, found := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return whole, false, true
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		return whole, false, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return whole, false, true
	}
	switch {
	case first == "": // the last n bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return whole, false, true
		}
		if size == 0 {
			return span{}, false, false
		}
		return span{max(0, size-n), size}, true, true
	default:
		a, err := strconv.ParseInt(first, 10, 64)
		if err != nil || a < 0 {
			return whole, false, true
		}
		end := size
		if last != "" {
			b, err := strconv.ParseInt(last, 10, 64)
			if err != nil || b < a {
				return whole, false, true
			}
			end = min(size, b+1)
		}
		if a >= size {
			return span{}, false, false
		}
		return span{a, end}, true, true
	}
}

// stream writes the bytes of want from chunks 0..chunks-1, reading each chunk it needs into one
// reused buffer. Each chunk gets its own write deadline, and the database connection is released
// before writing to the client, so a slow client holds no connection.
func (h *Handler) stream(ctx context.Context, w http.ResponseWriter, d *userjobs.Download,
	chunks int, size int64, want span) error {
	rc := http.NewResponseController(w)
	first, offset := 0, int64(0) // the chunk holding want.start, and where that chunk starts
	if want.start > 0 {
		sizes, err := func() ([]int, error) {
			rctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			return h.Exports.ChunkSizes(rctx, d)
		}()
		if err != nil {
			return fmt.Errorf("chunk sizes: %w", err)
		}
		for first < len(sizes) && offset+int64(sizes[first]) <= want.start {
			offset += int64(sizes[first])
			first++
		}
	}
	var (
		buf     []byte
		written int64
	)
	for seq := first; seq < chunks && offset < want.end; seq++ {
		var (
			ok  bool
			err error
		)
		func() {
			rctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			buf, ok, err = h.Exports.ReadChunk(rctx, d, seq, buf)
		}()
		switch {
		case err != nil:
			return fmt.Errorf("read chunk %d: %w", seq, err)
		case !ok: // deleted meanwhile (expired and purged)
			return fmt.Errorf("chunk %d of %d is missing", seq, chunks)
		}
		part := buf[max(0, want.start-offset):min(int64(len(buf)), want.end-offset)]
		offset += int64(len(buf))
		_ = rc.SetWriteDeadline(time.Now().Add(chunkWriteTimeout)) // not every writer supports it
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("write chunk %d: %w", seq, err)
		}
		written += int64(len(part))
	}
	if written != want.end-want.start {
		return fmt.Errorf("sent %d bytes of the %d asked for (file of %d)", written, want.end-want.start, size)
	}
	return nil
}

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// refuse answers in the API's error shape, with a stable code and nothing internal; extra are more
// extensions, as key, value pairs.
func refuse(w http.ResponseWriter, status int, code apperr.Code, message string, extra ...string) {
	ext := map[string]any{"code": string(code)}
	for i := 0; i+1 < len(extra); i += 2 {
		ext[extra[i]] = extra[i+1]
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"message": message, "extensions": ext}}})
}
