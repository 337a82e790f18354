package userjobs

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/tasks"
)

const (
	// DefaultExportChunkSize is about how many bytes of an export file one export_chunks row holds
	// (and one chunk of work commits).
	DefaultExportChunkSize = 1 << 20
	// DefaultExportMaxBytes is the largest export file: TaskExport.byteSize is a GraphQL Int (32 bits).
	DefaultExportMaxBytes = math.MaxInt32
	// exportPageRows is the most tasks one keyset query reads; fewer when rows are large, so a
	// page stays about one chunk.
	exportPageRows    = 1000
	exportMinPageRows = 16
	// exportMaxBuffered (× chunk size) bounds what a page may add to the buffer when its rows are far
	// larger than the ones before: the page is cut short there and the next one resumes after it.
	exportMaxBuffered = 4
	// defaultExportRetention applies when RunOptions.ExportRetention is unset.
	defaultExportRetention = 24 * time.Hour
)

// exportCheckpoint is where an export resumes: everything up to and including task After is in
// chunks 0..NextSeq-1, which hold Bytes bytes and Count tasks. Done: the file is complete.
type exportCheckpoint struct {
	After   *db.ExportKey `json:"after,omitempty"`
	NextSeq int           `json:"nextSeq"`
	Bytes   int64         `json:"bytes"`
	Count   int           `json:"count"`
	Done    bool          `json:"done,omitempty"`
}

// Export is the body of a TASK_EXPORT attempt (Run): it writes the file — the user's tasks in
// (created_at, id) order, read by keyset pages and encoded as CSV or JSON into chunks of about the
// chunk size. Each chunk commits with the job's checkpoint, so a retry resumes after the last
// committed chunk; memory holds about one chunk and one page whatever the number of tasks.
func (w *Runner) Export(ctx context.Context, a *Attempt) (any, *time.Time, error) {
	var p ExportParams
	if err := a.Job.DecodeParams(&p); err != nil || (p.Format != ExportCSV && p.Format != ExportJSON) {
		w.logger.ErrorContext(ctx, "export params unusable", "job_id", a.Job.ID.String(), "format", string(p.Format), "error", fmt.Sprint(err))
		return nil, nil, Permanent("the export's parameters cannot be used; request the export again")
	}
	var cp exportCheckpoint
	if _, err := a.Job.DecodeCheckpoint(&cp); err != nil {
		return nil, nil, err
	}
	if cp.Done { // an earlier attempt wrote the whole file but died before recording success
		return w.result(p.Format, cp)
	}
	r := &exportRun{w: w, a: a, cp: cp, q: tasks.ExportScope(policy.Actor{UserID: a.Job.UserID}, p.Filter, a.Job.CreatedAt)}
	r.enc = newExportEncoder(p.Format, &r.buf)
	err := r.write(ctx)
	if errors.Is(err, db.ErrJobNotRunning) {
		w.dropIfCancelled(ctx, a)
	}
	if err != nil {
		return nil, nil, err
	}
	w.logger.InfoContext(ctx, "export written", "job_id", a.Job.ID.String(), "format", string(p.Format),
		"tasks", r.cp.Count, "bytes", r.cp.Bytes, "chunks", r.cp.NextSeq, "attempt", a.Job.Attempt)
	return w.result(p.Format, r.cp)
}

func (w *Runner) result(format ExportFormat, cp exportCheckpoint) (any, *time.Time, error) {
	retention := w.exportRetention
	if retention <= 0 {
		retention = defaultExportRetention
	}
	expires := time.Now().Add(retention).UTC().Truncate(time.Microsecond)
	return ExportResult{Format: format, TaskCount: int32(cp.Count), ByteSize: int32(cp.Bytes),
		Chunks: int32(cp.NextSeq), ExpiresAt: expires}, &expires, nil
}

// dropIfCancelled deletes the partial file of a job cancelled while it ran (nobody can download
// it). Only a CANCELLED job: ErrJobNotRunning may also mean another attempt finished the file.
func (w *Runner) dropIfCancelled(ctx context.Context, a *Attempt) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s := w.store.Stores().BackgroundJobs
	j, err := s.ByID(ctx, a.Job.ID)
	if err != nil || j.Status != db.JobCancelled {
		return
	}
	if err := s.DeleteChunksFrom(ctx, a.Job.ID, 0); err != nil {
		w.logger.WarnContext(ctx, "deleting a cancelled export's chunks", "job_id", a.Job.ID.String(), "error", err.Error())
	}
}

// exportRun is one attempt's pass over the file.
type exportRun struct {
	w     *Runner
	a     *Attempt
	q     db.ExportQuery
	total int
	enc   *exportEncoder
	// cp is what committed chunks hold; buf holds the bytes after them, cuts where in buf the next
	// chunks end (each at the end of a task).
	cp   exportCheckpoint
	buf  bytes.Buffer
	cuts []exportCut
}

type exportCut struct {
	end   int
	after db.ExportKey
	count int
}

func (r *exportRun) write(ctx context.Context) error {
	s := r.w.store.Stores()
	// A dead attempt cannot have committed chunks past its checkpoint (each commits with it), but a
	// partial chunk of anything that ran alongside must not end up in the file.
	if err := s.BackgroundJobs.DeleteChunksFrom(ctx, r.a.Job.ID, r.cp.NextSeq); err != nil {
		return fmt.Errorf("export %s: drop chunks past the checkpoint: %w", r.a.Job.ID, err)
	}
	if r.a.Job.Total != nil {
		r.total = int(*r.a.Job.Total)
	} else {
		n, err := s.Tasks.CountForExport(ctx, r.q)
		if err != nil {
			return fmt.Errorf("export %s: count tasks: %w", r.a.Job.ID, err)
		}
		r.total = n
	}
	chunkSize := r.w.exportChunkSize
	if chunkSize <= 0 {
		chunkSize = DefaultExportChunkSize
	}
	maxBytes := r.w.exportMaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultExportMaxBytes
	}
	r.buf.Grow(chunkSize + chunkSize/4)
	if r.cp.NextSeq == 0 {
		if err := r.enc.header(); err != nil {
			return err
		}
	}

	var (
		count     = r.cp.Count // tasks in the committed chunks and buf
		after     = r.cp.After
		last      db.ExportKey
		start     = 0 // where in buf the chunk being filled starts
		limit     = exportPageRows
		rowBytes  int64 // encoded this attempt, to size the pages
		rowsSeen  int64
		oversized = func() bool { return r.cp.Bytes+int64(r.buf.Len()) > maxBytes }
	)
	for {
		n, cutShort := 0, false
		for t, err := range s.Tasks.ExportRows(ctx, r.q, after, limit) {
			if err != nil {
				return fmt.Errorf("export %s: read tasks: %w", r.a.Job.ID, err)
			}
			before := r.buf.Len()
			if err := r.enc.row(t, count == 0); err != nil {
				return err
			}
			count, n = count+1, n+1
			rowBytes, rowsSeen = rowBytes+int64(r.buf.Len()-before), rowsSeen+1
			last = db.ExportKey{CreatedAt: t.CreatedAt, ID: t.ID}
			if oversized() {
				return r.tooLarge(ctx, maxBytes)
			}
			if r.buf.Len()-start >= chunkSize {
				r.cuts = append(r.cuts, exportCut{end: r.buf.Len(), after: last, count: count})
				start = r.buf.Len()
			}
			if r.buf.Len() >= exportMaxBuffered*chunkSize {
				cutShort = true
				break
			}
		}
		if n > 0 {
			k := last
			after = &k
		}
		if err := r.commitCuts(ctx); err != nil {
			return err
		}
		start = 0 // what is left in buf begins the next chunk
		if n < limit && !cutShort {
			break
		}
		// About one chunk per page: small rows read 1000 at a time, large ones fewer.
		limit = int(min(max(int64(chunkSize)*rowsSeen/max(rowBytes, 1)+1, exportMinPageRows), exportPageRows))
	}

	r.enc.footer()
	if oversized() {
		return r.tooLarge(ctx, maxBytes)
	}
	final := exportCheckpoint{After: after, NextSeq: r.cp.NextSeq, Bytes: r.cp.Bytes + int64(r.buf.Len()), Count: count, Done: true}
	data := r.buf.Bytes()
	if len(data) > 0 {
		final.NextSeq++
	}
	err := r.a.Chunk(ctx, func(s db.Stores) (Progress, error) {
		if len(data) > 0 {
			if err := s.BackgroundJobs.WriteChunk(ctx, r.a.Job.ID, r.cp.NextSeq, data); err != nil {
				return Progress{}, err
			}
		}
		return Progress{Processed: count, Total: &r.total, Checkpoint: final}, nil
	})
	if err != nil {
		return fmt.Errorf("export %s: last chunk: %w", r.a.Job.ID, err)
	}
	r.cp = final
	r.buf.Reset()
	return nil
}

// commitCuts commits every complete chunk in buf, each with its checkpoint, and keeps the rest.
func (r *exportRun) commitCuts(ctx context.Context) error {
	from := 0
	for _, c := range r.cuts {
		data := r.buf.Bytes()[from:c.end]
		after := c.after
		next := exportCheckpoint{After: &after, NextSeq: r.cp.NextSeq + 1, Bytes: r.cp.Bytes + int64(len(data)), Count: c.count}
		err := r.a.Chunk(ctx, func(s db.Stores) (Progress, error) {
			if err := s.BackgroundJobs.WriteChunk(ctx, r.a.Job.ID, r.cp.NextSeq, data); err != nil {
				return Progress{}, err
			}
			return Progress{Processed: c.count, Total: &r.total, Checkpoint: next}, nil
		})
		if err != nil {
			return fmt.Errorf("export %s: chunk %d: %w", r.a.Job.ID, r.cp.NextSeq, err)
		}
		r.cp = next
		from = c.end
	}
	r.cuts = r.cuts[:0]
	if from > 0 { // keep the bytes after the last chunk, at the start of the same memory
		r.buf.Truncate(copy(r.buf.Bytes(), r.buf.Bytes()[from:]))
	}
	return nil
}

// tooLarge fails the job for good and deletes what it wrote.
func (r *exportRun) tooLarge(ctx context.Context, maxBytes int64) error {
	if err := r.w.store.Stores().BackgroundJobs.DeleteChunksFrom(ctx, r.a.Job.ID, 0); err != nil {
		r.w.logger.WarnContext(ctx, "deleting an oversized export's chunks", "job_id", r.a.Job.ID.String(), "error", err.Error())
	}
	return Permanent(fmt.Sprintf("the export would be larger than %s, the most one file may hold: narrow it with a filter", byteSize(maxBytes)))
}

func byteSize(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// exportEncoder appends an export file's parts in one format to buf. It reuses its buffers across
// rows. CSV text columns go through spreadsheetSafe; JSON keeps the exact text.
type exportEncoder struct {
	format  ExportFormat
	buf     *bytes.Buffer
	csv     *csv.Writer // over buf
	record  []string
	json    *json.Encoder // writes into scratch
	scratch bytes.Buffer
	obj     exportJSONTask
}

// exportColumns are the CSV header (and the JSON field names).
var exportColumns = []string{"id", "title", "description", "status", "priority", "dueAt", "tags",
	"ownerId", "assigneeId", "createdAt", "updatedAt", "completedAt", "version"}

// exportJSONTask is one JSON object of a JSON export; field order follows the CSV columns.
type exportJSONTask struct {
	ID          string        `json:"id"`
	Title       string        `json:"title"`
	Description *string       `json:"description"`
	Status      db.TaskStatus `json:"status"`
	Priority    string        `json:"priority"`
	DueAt       *string       `json:"dueAt"`
	Tags        []string      `json:"tags"`
	OwnerID     string        `json:"ownerId"`
	AssigneeID  *string       `json:"assigneeId"`
	CreatedAt   string        `json:"createdAt"`
	UpdatedAt   string        `json:"updatedAt"`
	CompletedAt *string       `json:"completedAt"`
	Version     int32         `json:"version"`
}

func newExportEncoder(format ExportFormat, buf *bytes.Buffer) *exportEncoder {
	e := &exportEncoder{format: format, buf: buf, record: make([]string, len(exportColumns))}
	e.csv = csv.NewWriter(buf)
	e.json = json.NewEncoder(&e.scratch)
	e.json.SetEscapeHTML(false) // a file, not HTML: keep <, > and & as they are
	return e
}

func (e *exportEncoder) header() error {
	if e.format == ExportJSON {
		e.buf.WriteByte('[')
		return nil
	}
	return e.csvRecord(exportColumns)
}

func (e *exportEncoder) footer() {
	if e.format == ExportJSON {
		e.buf.WriteString("\n]\n")
	}
}

// row appends one task; first says whether it is the file's first (JSON separators).
func (e *exportEncoder) row(t *db.ExportTask, first bool) error {
	if e.format == ExportJSON {
		o := &e.obj
		*o = exportJSONTask{
			ID: globalid.Encode(globalid.KindTask, t.ID), Title: t.Title, Description: t.Description,
			Status: t.Status, Priority: priorityName(t.Priority), DueAt: optTime(t.DueAt), Tags: t.Tags,
			OwnerID: globalid.Encode(globalid.KindUser, t.OwnerID), CreatedAt: exportTime(t.CreatedAt),
			UpdatedAt: exportTime(t.UpdatedAt), CompletedAt: optTime(t.CompletedAt), Version: t.Version,
		}
		if o.Tags == nil {
			o.Tags = []string{}
		}
		if t.AssigneeID != nil {
			id := globalid.Encode(globalid.KindUser, *t.AssigneeID)
			o.AssigneeID = &id
		}
		e.scratch.Reset()
		if err := e.json.Encode(o); err != nil {
			return fmt.Errorf("encode task %s as JSON: %w", t.ID, err)
		}
		if first {
			e.buf.WriteByte('\n')
		} else {
			e.buf.WriteString(",\n")
		}
		e.buf.Write(bytes.TrimSuffix(e.scratch.Bytes(), []byte{'\n'}))
		return nil
	}
	r := e.record
	r[0] = globalid.Encode(globalid.KindTask, t.ID)
	r[1] = spreadsheetSafe(t.Title)
	r[2] = spreadsheetSafe(deref(t.Description))
	r[3] = string(t.Status)
	r[4] = priorityName(t.Priority)
	r[5] = deref(optTime(t.DueAt))
	r[6] = spreadsheetSafe(strings.Join(t.Tags, ";"))
	r[7] = globalid.Encode(globalid.KindUser, t.OwnerID)
	r[8] = ""
	if t.AssigneeID != nil {
		r[8] = globalid.Encode(globalid.KindUser, *t.AssigneeID)
	}
	r[9] = exportTime(t.CreatedAt)
	r[10] = exportTime(t.UpdatedAt)
	r[11] = deref(optTime(t.CompletedAt))
	r[12] = strconv.FormatInt(int64(t.Version), 10)
	return e.csvRecord(r)
}

// spreadsheetSafe is s as a CSV cell of user text (title, description, tags), with a single quote
// prepended when s starts with =, +, -, @, tab or carriage return (OWASP, "CSV Injection"):
// spreadsheets run such a cell as a formula (=HYPERLINK(...) can send data away); the quote makes it
// text. Only the first character counts, as in OWASP's rule. Ids, enums and times are the server's
// and stay as they are; JSON exports keep the exact text (the lossless format).
func spreadsheetSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// csvRecord writes one CSV record ending in CRLF (RFC 4180). csv.Writer's UseCRLF is not used: it
// would also rewrite newlines inside fields (\n → \r\n, a lone \r dropped), changing the data.
func (e *exportEncoder) csvRecord(record []string) error {
	if err := e.csv.Write(record); err != nil {
		return fmt.Errorf("encode CSV record: %w", err)
	}
	e.csv.Flush()
	if err := e.csv.Error(); err != nil {
		return fmt.Errorf("encode CSV record: %w", err)
	}
	e.buf.Truncate(e.buf.Len() - 1) // the record's terminating \n
	e.buf.WriteString("\r\n")
	return nil
}

// exportTime formats like the GraphQL DateTime scalar: RFC 3339 in UTC, microseconds at most.
func exportTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func optTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := exportTime(*t)
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// priorityName is the GraphQL TaskPriority value of p.
func priorityName(p db.Priority) string {
	switch p {
	case db.PriorityLow:
		return "LOW"
	case db.PriorityMedium:
		return "MEDIUM"
	case db.PriorityHigh:
		return "HIGH"
	case db.PriorityUrgent:
		return "URGENT"
	}
	return strconv.Itoa(int(p))
}
