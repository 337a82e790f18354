package jobs_test

// The export worker in process against the real PostgreSQL with River working the job: CSV cells
// of user text are spreadsheet-safe while JSON keeps the exact text; the heap stays flat whatever
// the number of tasks (a 100,000-task export against a 10,000-task one); and a benchmark of rows
// per second.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

// exportHarness works jobs in this process on a test database of its own.
type exportHarness struct {
	database *testsupport.Database
	store    *db.DB
	queue    *jobs.Queue
}

func newExportHarness(tb testing.TB, o jobs.Options) *exportHarness {
	tb.Helper()
	database := testsupport.NewDatabase(tb)
	o.Work, o.Workers, o.JobTimeout, o.RescueAfter = true, 2, time.Minute, time.Hour
	q, err := jobs.New(database.Pool, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(q.Close)
	if err := q.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return &exportHarness{database: database, store: db.New(database.Pool, nil, db.WithEnqueuer(q)), queue: q}
}

// user creates a user with n tasks of about 400 bytes each in an export (one INSERT ... SELECT).
func (h *exportHarness) user(tb testing.TB, name string, n int) uuid.UUID {
	tb.Helper()
	ctx := context.Background()
	u, err := h.store.Stores().Users.Create(ctx, db.NewUser{Name: name, Email: name + "@example.com", PasswordHash: "x"})
	if err != nil {
		tb.Fatal(err)
	}
	h.database.SeedTasks(tb, `
		INSERT INTO tasks (id, owner_id, title, description, status, priority, due_at, tags, created_at)
		SELECT gen_random_uuid(), $1, 'Task number ' || g || ', with "quotes"',
		       'A description of task ' || g || E',\nover two lines: ' || repeat('lorem ipsum ', 4 + g % 8),
		       (ARRAY['TODO', 'IN_PROGRESS', 'DONE'])[1 + g % 3], g % 4,
		       CASE WHEN g % 2 = 0 THEN now() + g * interval '1 minute' END,
		       ARRAY['tag' || g % 7, 'project-' || g % 13],
		       now() - interval '1 day' + g * interval '1 microsecond'
		FROM generate_series(1, $2::int) g`, u.ID, n)
	return u.ID
}

// export requests an export for userID and waits until it finished; it returns the finished job.
func (h *exportHarness) export(tb testing.TB, userID uuid.UUID, format userjobs.ExportFormat) *db.BackgroundJob {
	tb.Helper()
	ctx := context.Background()
	var j *db.BackgroundJob
	err := h.store.InTx(ctx, func(s db.Stores) error {
		var err error
		if j, err = s.BackgroundJobs.Create(ctx, userID, db.JobTaskExport, userjobs.ExportParams{Format: format}, 0); err != nil {
			return err
		}
		return s.Jobs.Enqueue(ctx, userjobs.QueueEntry(j))
	})
	if err != nil {
		tb.Fatal(err)
	}
	// A tight 5 ms poll rather than testenv.WaitFor (which backs off to 50 ms): BenchmarkExportTasks
	// times this wait.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := h.store.Stores().BackgroundJobs.ByID(ctx, j.ID)
		if err != nil {
			tb.Fatal(err)
		}
		if got.Status.Finished() {
			if got.Status != db.JobSucceeded {
				tb.Fatalf("export job %s: %s (%v)", j.ID, got.Status, exportErrMessage(got.ErrorMessage))
			}
			return got
		}
		if time.Now().After(deadline) {
			tb.Fatalf("export job %s still %s", j.ID, got.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// file reads a finished export's file: its chunks in order.
func (h *exportHarness) file(tb testing.TB, jobID uuid.UUID) []byte {
	tb.Helper()
	rows, err := h.database.Pool.Query(context.Background(), `SELECT data FROM export_chunks WHERE job_id = $1 ORDER BY seq`, jobID)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var file []byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			tb.Fatal(err)
		}
		file = append(file, b...)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return file
}

func exportErrMessage(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// A task whose title, description or tags start like a formula (=, +, -, @, tab, CR) comes out of
// a CSV export with a single quote in front of that cell, so a spreadsheet reads it as text, and
// every other cell as in the JSON export; the JSON export of the same tasks keeps the exact text.
func TestExportCSVIsSpreadsheetSafeJSONKeepsTheText(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	h := newExportHarness(t, jobs.Options{})
	ctx := context.Background()
	u, err := h.store.Stores().Users.Create(ctx, db.NewUser{Name: "mallory", Email: "mallory@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	type text struct {
		title       string
		description *string
		tags        []string
	}
	str := func(s string) *string { return &s }
	// In file order: what is stored, then the title, description and tags cells the CSV must hold.
	cases := []struct{ stored, csv text }{
		{text{"=1+1", str("@SUM(A1)"), []string{"@x", "work"}}, text{"'=1+1", str("'@SUM(A1)"), []string{"'@x", "work"}}},
		{text{`=HYPERLINK("http://evil","x")`, str("\t-2+3"), nil}, text{`'=HYPERLINK("http://evil","x")`, str("'\t-2+3"), nil}},
		{text{"+ plus", nil, []string{"-neg"}}, text{"'+ plus", str(""), []string{"'-neg"}}},
		{text{"\r=1+1", str(""), []string{"a", "@b"}}, text{"'\r=1+1", str(""), []string{"a", "@b"}}},
		{text{"Harmless: 1+1=2, a@b, x-y ü 日本語", str("line one\n=line two"), []string{"q1"}},
			text{"Harmless: 1+1=2, a@b, x-y ü 日本語", str("line one\n=line two"), []string{"q1"}}},
	}
	for i, c := range cases {
		tags := c.stored.tags
		if tags == nil {
			tags = []string{}
		}
		_, err := h.database.Pool.Exec(ctx, `
			INSERT INTO tasks (id, owner_id, title, description, priority, tags, created_at)
			VALUES (gen_random_uuid(), $1, $2, $3, 1, $4, now() - interval '1 hour' + $5 * interval '1 second')`,
			u.ID, c.stored.title, c.stored.description, tags, i)
		if err != nil {
			t.Fatal(err)
		}
	}

	csvFile := h.file(t, h.export(t, u.ID, userjobs.ExportCSV).ID)
	jsonFile := h.file(t, h.export(t, u.ID, userjobs.ExportJSON).ID)
	t.Logf("CSV:\n%s\nJSON:\n%s", csvFile, jsonFile)

	// The quote comes before RFC 4180 quoting, which still applies; records still end in CRLF.
	if want := `,"'=HYPERLINK(""http://evil"",""x"")",`; !bytes.Contains(csvFile, []byte(want)) {
		t.Errorf("the CSV file does not hold %s", want)
	}
	if n := bytes.Count(csvFile, []byte("\r\n")); n != 1+len(cases) || !bytes.HasSuffix(csvFile, []byte("\r\n")) {
		t.Errorf("the CSV file holds %d CRLFs, want one at the end of each of its %d records", n, 1+len(cases))
	}
	r := csv.NewReader(bytes.NewReader(csvFile))
	r.FieldsPerRecord = 13
	records, err := r.ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v", err)
	}
	var objects []map[string]any
	dec := json.NewDecoder(bytes.NewReader(jsonFile))
	dec.UseNumber()
	if err := dec.Decode(&objects); err != nil {
		t.Fatalf("parse JSON: %v", err)
	}
	if len(records) != 1+len(cases) || len(objects) != len(cases) {
		t.Fatalf("%d CSV records and %d JSON objects, want %d and %d", len(records), len(objects), 1+len(cases), len(cases))
	}
	header := records[0]
	for i, c := range cases {
		rec, obj := records[i+1], objects[i]
		// JSON: the exact text.
		var tags []string
		for _, x := range obj["tags"].([]any) {
			tags = append(tags, x.(string))
		}
		desc, _ := obj["description"].(string)
		if obj["title"] != c.stored.title || (obj["description"] == nil) != (c.stored.description == nil) ||
			(c.stored.description != nil && desc != *c.stored.description) || !slices.Equal(tags, c.stored.tags) {
			t.Errorf("JSON task %d = title %q, description %v, tags %q; want %q, %q, %q", i, obj["title"], obj["description"],
				tags, c.stored.title, orEmpty(c.stored.description), c.stored.tags)
		}
		// CSV: the three text cells made safe, every other cell as the JSON value (null is "").
		want := map[string]string{"title": c.csv.title, "description": *c.csv.description, "tags": strings.Join(c.csv.tags, ";")}
		for j, col := range header {
			w, ok := want[col]
			if !ok {
				switch v := obj[col].(type) {
				case nil:
				case string:
					w = v
				case json.Number:
					w = v.String()
				default:
					t.Fatalf("JSON %s is a %T", col, v)
				}
			}
			if rec[j] != w {
				t.Errorf("CSV task %d: %s = %q, want %q", i, col, rec[j], w)
			}
		}
	}
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// heapSampler records the peak of the Go heap while it runs.
type heapSampler struct {
	samples  []metrics.Sample
	stop     chan struct{}
	done     sync.WaitGroup
	base     uint64 // heap objects after a GC, before the work
	baseLive uint64
	baseAllc uint64
	peak     uint64 // heap objects (live and not yet collected)
	peakLive uint64 // live heap as marked by the last GC
	n        int
}

const (
	mHeapObjects = "/memory/classes/heap/objects:bytes"
	mHeapLive    = "/gc/heap/live:bytes"
	mHeapAllocs  = "/gc/heap/allocs:bytes"
)

func startHeapSampler() *heapSampler {
	s := &heapSampler{stop: make(chan struct{}),
		samples: []metrics.Sample{{Name: mHeapObjects}, {Name: mHeapLive}, {Name: mHeapAllocs}}}
	runtime.GC()
	runtime.GC() // twice: the live-heap figure is the previous cycle's
	metrics.Read(s.samples)
	s.base, s.baseLive, s.baseAllc = s.samples[0].Value.Uint64(), s.samples[1].Value.Uint64(), s.samples[2].Value.Uint64()
	s.peak, s.peakLive = s.base, s.baseLive
	s.done.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			metrics.Read(s.samples)
			s.peak = max(s.peak, s.samples[0].Value.Uint64())
			s.peakLive = max(s.peakLive, s.samples[1].Value.Uint64())
			s.n++
		}
	})
	return s
}

type heapFigures struct {
	growth, liveGrowth, allocated uint64
	samples                       int
}

func (s *heapSampler) finish() heapFigures {
	close(s.stop)
	s.done.Wait()
	metrics.Read(s.samples)
	return heapFigures{
		growth: s.peak - s.base, liveGrowth: s.peakLive - s.baseLive,
		allocated: s.samples[2].Value.Uint64() - s.baseAllc, samples: s.n,
	}
}

func exportMiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// An export of 100,000 tasks (a file of tens of MB) grows the worker's heap by about one chunk
// buffer and one page of rows, not by the file: far less than the file, and no more than a
// 10,000-task export does.
func TestExportOf100000TasksKeepsTheWorkersMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 110,000 tasks")
	}
	h := newExportHarness(t, jobs.Options{})
	start := time.Now()
	small, large := h.user(t, "small", 10_000), h.user(t, "large", 100_000)
	t.Logf("seeded 110,000 tasks in %s", time.Since(start).Round(time.Millisecond))

	measure := func(userID uuid.UUID, format userjobs.ExportFormat) (heapFigures, userjobs.ExportResult) {
		s := startHeapSampler()
		begin := time.Now()
		j := h.export(t, userID, format)
		took := time.Since(begin)
		fig := s.finish()
		var res userjobs.ExportResult
		if err := json.Unmarshal(j.Result, &res); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s export of %d tasks: %s in %d chunks, %s (%.0f tasks/s); heap peak growth %s, live heap peak growth %s, "+
			"allocated %s in all (%d samples)", format, res.TaskCount, exportMiB(uint64(res.ByteSize)), res.Chunks,
			took.Round(time.Millisecond), float64(res.TaskCount)/took.Seconds(), exportMiB(fig.growth), exportMiB(fig.liveGrowth),
			exportMiB(fig.allocated), fig.samples)
		return fig, res
	}
	for _, format := range []userjobs.ExportFormat{userjobs.ExportCSV, userjobs.ExportJSON} {
		smallFig, smallRes := measure(small, format)
		largeFig, largeRes := measure(large, format)
		if smallRes.TaskCount != 10_000 || largeRes.TaskCount != 100_000 {
			t.Fatalf("exported %d and %d tasks, want 10,000 and 100,000", smallRes.TaskCount, largeRes.TaskCount)
		}
		size := uint64(largeRes.ByteSize)
		if size < 15<<20 {
			t.Fatalf("the %s file is only %s: too small to tell streaming from buffering", format, exportMiB(size))
		}
		// The bound is half the file: buffering it would grow the heap by at least all of it, while
		// streaming needs a few MiB (a chunk, a page, and the garbage between two collections, which
		// under -race on a busy machine reached 13.4 MiB for a 37.9 MiB file, over the third this
		// bound used to be).
		if largeFig.growth > size/2 {
			t.Errorf("%s: the heap grew by %s during a %s export: more than half the file", format, exportMiB(largeFig.growth), exportMiB(size))
		}
		// Ten times the tasks must not mean ten times the memory: allow the small export's growth
		// twice over, plus noise.
		if largeFig.growth > 2*smallFig.growth+8<<20 {
			t.Errorf("%s: heap growth scales with the tasks: %s for 10,000, %s for 100,000", format, exportMiB(smallFig.growth), exportMiB(largeFig.growth))
		}
		if largeFig.liveGrowth > 16<<20 {
			t.Errorf("%s: the live heap grew by %s: the worker holds on to what it wrote", format, exportMiB(largeFig.liveGrowth))
		}
	}
}

// BenchmarkExportTasks measures export throughput (tasks per second, end to end: the job's queue
// pickup, reading, encoding and writing chunks) for 20,000 tasks.
func BenchmarkExportTasks(b *testing.B) {
	const n = 20_000
	h := newExportHarness(b, jobs.Options{})
	userID := h.user(b, "bench", n)
	for _, format := range []userjobs.ExportFormat{userjobs.ExportCSV, userjobs.ExportJSON} {
		b.Run(string(format), func(b *testing.B) {
			var bytes int64
			for b.Loop() {
				j := h.export(b, userID, format)
				var res userjobs.ExportResult
				if err := json.Unmarshal(j.Result, &res); err != nil {
					b.Fatal(err)
				}
				bytes = int64(res.ByteSize)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
			b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
		})
	}
}
