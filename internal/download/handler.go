package download

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/jobs"
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
	Signer *Signer
	DB     *db.DB
	Logger *slog.Logger
	// Now is the clock (nil: time.Now); tests move it.
	Now func() time.Time
}

// Pattern is the route the handler expects, with {id} the job's UUID.
const Pattern = "GET " + PathPrefix + "{id}"

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
	if err := h.Signer.Verify(id, q.Get("expires"), q.Get("signature"), now); err != nil {
		msg := "this download link is not valid: query the job again for a fresh downloadUrl"
		if errors.Is(err, ErrExpired) {
			msg = "this download link has expired: query the job again for a fresh downloadUrl"
		}
		refuse(w, http.StatusForbidden, apperr.Forbidden, msg)
		return
	}

	store := h.DB.Stores().BackgroundJobs
	res, at, err := h.file(r.Context(), store, id, now)
	if err != nil {
		if apperr.CodeOf(err) == apperr.NotFound {
			refuse(w, http.StatusNotFound, apperr.NotFound, "this export does not exist or its file has been deleted")
			return
		}
		// The request id (set on the answer by the server's middleware) ties the answer to the log.
		rid := hdr.Get("X-Request-ID")
		h.log().ErrorContext(r.Context(), "export download", "request_id", rid, "job_id", id.String(), "error", err.Error())
		refuse(w, http.StatusInternalServerError, apperr.Internal, "internal error", "requestId", rid)
		return
	}

	ext, ctype := "csv", "text/csv; charset=utf-8"
	if res.Format == jobs.ExportJSON {
		ext, ctype = "json", "application/json"
	}
	hdr.Set("Content-Type", ctype)
	hdr.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="tasks-%s.%s"`, at.UTC().Format(time.DateOnly), ext))
	hdr.Set("Content-Length", strconv.FormatInt(int64(res.ByteSize), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := h.stream(r.Context(), w, store, id, int(res.Chunks), int64(res.ByteSize)); err != nil {
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

// file returns the result of job id if it is a succeeded export whose file still exists, and when
// it was made; NOT_FOUND otherwise.
func (h *Handler) file(ctx context.Context, store db.BackgroundJobStore, id uuid.UUID, now time.Time) (*jobs.ExportResult, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	j, err := store.ByID(ctx, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	gone := apperr.New(apperr.NotFound, "export not found")
	if j.Kind != db.JobTaskExport || j.Status != db.JobSucceeded || j.ExpiresAt == nil || !now.Before(*j.ExpiresAt) {
		return nil, time.Time{}, gone
	}
	var res jobs.ExportResult
	if err := json.Unmarshal(j.Result, &res); err != nil {
		return nil, time.Time{}, fmt.Errorf("job %s result: %w", id, err)
	}
	at := j.CreatedAt
	if j.FinishedAt != nil {
		at = *j.FinishedAt
	}
	return &res, at, nil
}

// stream writes chunks 0..chunks-1 in order, reading each into one reused buffer. Each chunk gets
// its own write deadline, and the database connection is released before writing to the client,
// so a slow client holds no connection.
func (h *Handler) stream(ctx context.Context, w http.ResponseWriter, store db.BackgroundJobStore, id uuid.UUID, chunks int, size int64) error {
	rc := http.NewResponseController(w)
	var (
		buf     []byte
		written int64
	)
	for seq := range chunks {
		var (
			ok  bool
			err error
		)
		func() {
			rctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			buf, ok, err = store.ReadChunkInto(rctx, id, seq, buf)
		}()
		switch {
		case err != nil:
			return fmt.Errorf("read chunk %d: %w", seq, err)
		case !ok: // deleted meanwhile (expired and purged)
			return fmt.Errorf("chunk %d of %d is missing", seq, chunks)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(chunkWriteTimeout)) // not every writer supports it
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write chunk %d: %w", seq, err)
		}
		written += int64(len(buf))
	}
	if written != size {
		return fmt.Errorf("chunks hold %d bytes, the result says %d", written, size)
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
