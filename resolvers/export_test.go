package resolvers_test

// requestTaskExport end to end: the mutation, River working the job, node(id) polling, and the file
// fetched from its signed downloadUrl without Authorization, parsed and compared field by field with
// the database. Also: filters, privacy, refused and expired URLs, a crashed attempt resuming to a
// byte-identical file, the size guard and cancellation.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

const exRequest = `mutation($format: ExportFormat!, $filter: TaskFilter) {
  requestTaskExport(format: $format, filter: $filter) { ` + jbJobFields + ` } }`

type exResult struct {
	Typename             string `json:"__typename"`
	Format               string
	TaskCount, ByteSize  int
	DownloadURL          *string
	DownloadURLExpiresAt *time.Time
	ExpiresAt            time.Time
}

func (j jbJob) exportResult(t *testing.T) exResult {
	t.Helper()
	var r exResult
	if err := json.Unmarshal(j.Result, &r); err != nil {
		t.Fatalf("job result %s: %v", j.Result, err)
	}
	if r.Typename != "TaskExport" {
		t.Fatalf("job result is a %s, want TaskExport", r.Typename)
	}
	return r
}

func exRequestExport(t *testing.T, u *testsupport.User, format string, filter map[string]any) jbJob {
	t.Helper()
	vars := map[string]any{"format": format}
	if filter != nil {
		vars["filter"] = filter
	}
	var out struct{ RequestTaskExport jbJob }
	u.Do(t, exRequest, vars).Decode(t, &out)
	if j := out.RequestTaskExport; j.Kind != "TASK_EXPORT" || j.Status != "QUEUED" {
		t.Fatalf("requested job = %+v", j)
	}
	return out.RequestTaskExport
}

// exExport requests an export and waits for it to succeed.
func exExport(t *testing.T, u *testsupport.User, format string, filter map[string]any) (jbJob, exResult) {
	t.Helper()
	done := jbWaitFinished(t, u, exRequestExport(t, u, format, filter).ID)
	if done.Status != "SUCCEEDED" || done.Progress != 1 || done.Error != nil {
		t.Fatalf("export job = %+v", done)
	}
	return done, done.exportResult(t)
}

// exGet fetches path (a downloadUrl, relative to the server) with no Authorization header.
func exGet(t *testing.T, env *testsupport.Env, method, path string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, env.Server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity") // Content-Length is checked as sent
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res, body
}

// exDownload fetches an export's file and checks the download's headers.
func exDownload(t *testing.T, env *testsupport.Env, r exResult) []byte {
	t.Helper()
	if r.DownloadURL == nil || r.DownloadURLExpiresAt == nil {
		t.Fatalf("no downloadUrl: %+v", r)
	}
	res, body := exGet(t, env, http.MethodGet, *r.DownloadURL, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", *r.DownloadURL, res.StatusCode, body)
	}
	ext, ctype := "csv", "text/csv; charset=utf-8"
	if r.Format == "JSON" {
		ext, ctype = "json", "application/json"
	}
	want := map[string]string{
		"Content-Type":           ctype,
		"Content-Disposition":    fmt.Sprintf(`attachment; filename="tasks-%s.%s"`, time.Now().UTC().Format(time.DateOnly), ext),
		"Content-Length":         strconv.Itoa(r.ByteSize),
		"Cache-Control":          "private, no-store",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if res.Header.Get("X-Request-ID") == "" {
		t.Error("the download has no X-Request-ID: it bypassed the middleware chain")
	}
	if len(body) != r.ByteSize {
		t.Fatalf("downloaded %d bytes, byteSize says %d", len(body), r.ByteSize)
	}
	return body
}

// exDBTasks reads the tasks an export should hold, straight from the database, in file order.
func exDBTasks(t *testing.T, env *testsupport.Env, where string, args ...any) []db.ExportTask {
	t.Helper()
	rows, err := env.DB.Pool.Query(context.Background(), `
		SELECT id, owner_id, assignee_id, title, description, status, priority, due_at, tags,
		       created_at, updated_at, completed_at, version
		FROM tasks WHERE `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []db.ExportTask
	for rows.Next() {
		var x db.ExportTask
		if err := rows.Scan(&x.ID, &x.OwnerID, &x.AssigneeID, &x.Title, &x.Description, &x.Status, &x.Priority,
			&x.DueAt, &x.Tags, &x.CreatedAt, &x.UpdatedAt, &x.CompletedAt, &x.Version); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// exRow is one exported task as text, whatever the format (CSV: null is ""; tags joined by ";").
type exRow struct {
	ID, Title, Description, Status, Priority, DueAt, Tags, OwnerID, AssigneeID, CreatedAt, UpdatedAt, CompletedAt, Version string
}

var exHeader = []string{"id", "title", "description", "status", "priority", "dueAt", "tags", "ownerId", "assigneeId",
	"createdAt", "updatedAt", "completedAt", "version"}

func exParseCSV(t *testing.T, file []byte) []exRow {
	t.Helper()
	if !bytes.HasSuffix(file, []byte("\r\n")) {
		t.Errorf("the CSV file does not end with CRLF: %q", file[max(0, len(file)-20):])
	}
	r := csv.NewReader(bytes.NewReader(file))
	r.FieldsPerRecord = len(exHeader)
	records, err := r.ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v\n%s", err, file)
	}
	if len(records) == 0 || !slices.Equal(records[0], exHeader) {
		t.Fatalf("CSV header = %q, want %q", records[:min(1, len(records))], exHeader)
	}
	out := make([]exRow, 0, len(records)-1)
	for _, f := range records[1:] {
		out = append(out, exRow{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12]})
	}
	return out
}

func exParseJSON(t *testing.T, file []byte) []exRow {
	t.Helper()
	var objs []map[string]any
	dec := json.NewDecoder(bytes.NewReader(file))
	dec.UseNumber()
	if err := dec.Decode(&objs); err != nil {
		t.Fatalf("parse JSON: %v\n%s", err, file)
	}
	if dec.More() {
		t.Fatal("the JSON file holds more than one array")
	}
	str := func(o map[string]any, k string) string {
		v, ok := o[k]
		if !ok {
			t.Fatalf("JSON object without %q: %v", k, o)
		}
		switch v := v.(type) {
		case nil:
			return ""
		case string:
			if v == "" && k != "description" {
				t.Errorf("%s is an empty string, want null or a value", k)
			}
			return v
		case json.Number:
			return v.String()
		}
		t.Fatalf("%s has type %T", k, v)
		return ""
	}
	out := make([]exRow, 0, len(objs))
	for _, o := range objs {
		if len(o) != len(exHeader) {
			t.Errorf("JSON object has %d fields, want %d: %v", len(o), len(exHeader), o)
		}
		tags, ok := o["tags"].([]any)
		if !ok {
			t.Fatalf("tags is %T, want an array", o["tags"])
		}
		ts := make([]string, len(tags))
		for i, x := range tags {
			ts[i] = x.(string)
		}
		out = append(out, exRow{str(o, "id"), str(o, "title"), str(o, "description"), str(o, "status"), str(o, "priority"),
			str(o, "dueAt"), strings.Join(ts, ";"), str(o, "ownerId"), str(o, "assigneeId"), str(o, "createdAt"),
			str(o, "updatedAt"), str(o, "completedAt"), str(o, "version")})
	}
	return out
}

// exCompare checks every field of every exported row against the database's rows, in order (a
// null description, or time, reads "": CSV cannot tell it from empty).
// exCSVSafe is the CSV export's spreadsheet rule, written out independently of internal/jobs: a text
// cell starting with a formula character gets a leading quote.
func exCSVSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func exCompare(t *testing.T, format string, got []exRow, want []db.ExportTask) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tasks exported, want %d", format, len(got), len(want))
	}
	tm := func(field, s string, want *time.Time) {
		t.Helper()
		if want == nil {
			if s != "" {
				t.Errorf("%s: %s = %q, want none", format, field, s)
			}
			return
		}
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !strings.HasSuffix(s, "Z") || !at.Equal(*want) {
			t.Errorf("%s: %s = %q, want %s in UTC (%v)", format, field, s, want.UTC().Format(time.RFC3339Nano), err)
		}
	}
	prio := map[db.Priority]string{db.PriorityLow: "LOW", db.PriorityMedium: "MEDIUM", db.PriorityHigh: "HIGH", db.PriorityUrgent: "URGENT"}
	for i, w := range want {
		g := got[i]
		desc := ""
		if w.Description != nil {
			desc = *w.Description
		}
		title, tags := w.Title, strings.Join(w.Tags, ";")
		if format == "CSV" {
			// Spreadsheet-safe text cells; then encoding/csv reads a CRLF inside a quoted field as LF.
			title, desc, tags = exCSVSafe(title), exCSVSafe(desc), exCSVSafe(tags)
			desc = strings.ReplaceAll(desc, "\r\n", "\n")
		}
		assignee := ""
		if w.AssigneeID != nil {
			assignee = globalid.Encode(globalid.KindUser, *w.AssigneeID)
		}
		checks := []struct{ field, got, want string }{
			{"id", g.ID, globalid.Encode(globalid.KindTask, w.ID)},
			{"title", g.Title, title},
			{"description", g.Description, desc},
			{"status", g.Status, string(w.Status)},
			{"priority", g.Priority, prio[w.Priority]},
			{"tags", g.Tags, tags},
			{"ownerId", g.OwnerID, globalid.Encode(globalid.KindUser, w.OwnerID)},
			{"assigneeId", g.AssigneeID, assignee},
			{"version", g.Version, strconv.Itoa(int(w.Version))},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s row %d: %s = %q, want %q", format, i, c.field, c.got, c.want)
			}
		}
		tm("dueAt", g.DueAt, w.DueAt)
		tm("createdAt", g.CreatedAt, &w.CreatedAt)
		tm("updatedAt", g.UpdatedAt, &w.UpdatedAt)
		tm("completedAt", g.CompletedAt, w.CompletedAt)
	}
}

func exIDs(rows []exRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

func exJobUUID(t *testing.T, gid string) uuid.UUID {
	t.Helper()
	id, err := globalid.DecodeAs("id", globalid.KindJob, gid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTaskExportEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works exports in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOB_MAX_ACTIVE": "20"})
	ada, bob, cy := env.Register(t, "Ada"), env.Register(t, "Bob"), env.Register(t, "Cy")
	create := func(u *testsupport.User, in map[string]any) string {
		t.Helper()
		var out struct {
			CreateTask struct{ Task struct{ ID string } }
		}
		u.Do(t, `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }`,
			map[string]any{"input": in}).Decode(t, &out)
		return out.CreateTask.Task.ID
	}
	create(ada, map[string]any{
		"title": `Comma, "quoted" and 'single' title`, "description": "line one\nline two\r\nline three, \"quoted\" — ünïcødé 日本語 🚀",
		"priority": "HIGH", "dueAt": "2030-01-02T03:04:05.123456Z", "tags": []string{"work", "q1:plan", "a.b_c-d"},
		"assigneeId": cy.GlobalID,
	})
	create(ada, map[string]any{"title": "=SUM(A1:A2)", "priority": "LOW"})
	create(ada, map[string]any{"title": "Привет, мир; 你好", "description": "", "priority": "URGENT", "tags": []string{"home"}})
	done := create(ada, map[string]any{"title": "  \"only quotes\"  ", "description": "tab\there\ttoo", "status": "IN_PROGRESS"})
	ada.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {status: DONE}) { task { id } } }`, map[string]any{"id": done}).Decode(t, &struct{}{})
	create(ada, map[string]any{"title": "self-assigned", "assigneeId": ada.GlobalID, "dueAt": "2029-06-30T22:00:00+02:00"})
	// Not Ada's: Bob's own, and Bob's assigned to Ada.
	create(bob, map[string]any{"title": "Bob's secret", "description": "not for Ada"})
	create(bob, map[string]any{"title": "for Ada, from Bob", "assigneeId": ada.GlobalID, "status": "DONE", "tags": []string{"bob"}})

	adaOwn := exDBTasks(t, env, `owner_id = $1`, ada.ID)
	if len(adaOwn) != 5 {
		t.Fatalf("seeded %d tasks for Ada, want 5", len(adaOwn))
	}
	files := map[string][]byte{}
	for _, format := range []string{"CSV", "JSON"} {
		job, res := exExport(t, ada, format, nil)
		if res.Format != format || res.TaskCount != 5 || job.ProcessedCount != 5 || job.TotalCount == nil || *job.TotalCount != 5 {
			t.Fatalf("%s export = %+v, job %+v", format, res, job)
		}
		if d := time.Until(res.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour {
			t.Errorf("%s export expires in %s, want EXPORT_RETENTION (24h)", format, d)
		}
		if d := time.Until(*res.DownloadURLExpiresAt); d < 14*time.Minute || d > 15*time.Minute {
			t.Errorf("%s downloadUrl expires in %s, want EXPORT_URL_TTL (15m)", format, d)
		}
		file := exDownload(t, env, res)
		files[format] = file
		var rows []exRow
		if format == "CSV" {
			rows = exParseCSV(t, file)
		} else {
			rows = exParseJSON(t, file)
		}
		exCompare(t, format, rows, adaOwn)
		t.Logf("%s export of %d tasks, %d bytes:\n%s", format, res.TaskCount, res.ByteSize, file)
	}

	// The same file compressed, for clients that accept gzip (the server's gzip middleware).
	_, res := exExport(t, ada, "CSV", nil)
	gz, body := exGet(t, env, http.MethodGet, *res.DownloadURL, map[string]string{"Accept-Encoding": "gzip"})
	if gz.StatusCode != http.StatusOK || gz.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip download: %d, Content-Encoding %q", gz.StatusCode, gz.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, files["CSV"]) {
		t.Fatalf("gunzipped download differs from the plain one (%v)", err)
	}
	// HEAD: the headers only.
	head, body := exGet(t, env, http.MethodHead, *res.DownloadURL, nil)
	if head.StatusCode != http.StatusOK || head.Header.Get("Content-Length") != strconv.Itoa(res.ByteSize) || len(body) != 0 {
		t.Errorf("HEAD: %d, Content-Length %q, %d body bytes", head.StatusCode, head.Header.Get("Content-Length"), len(body))
	}

	t.Run("filters", func(t *testing.T) {
		_, res := exExport(t, ada, "JSON", map[string]any{"status": []string{"DONE"}})
		exCompare(t, "JSON", exParseJSON(t, exDownload(t, env, res)), exDBTasks(t, env, `owner_id = $1 AND status = 'DONE'`, ada.ID))
		_, res = exExport(t, ada, "CSV", map[string]any{"tag": "work", "search": "quoted"})
		exCompare(t, "CSV", exParseCSV(t, exDownload(t, env, res)), exDBTasks(t, env, `owner_id = $1 AND 'work' = ANY(tags)`, ada.ID))
		// assignedToMe: the tasks assigned to Ada, whoever owns them (her self-assigned one too).
		_, res = exExport(t, ada, "CSV", map[string]any{"assignedToMe": true})
		assigned := exDBTasks(t, env, `assignee_id = $1`, ada.ID)
		if len(assigned) != 2 {
			t.Fatalf("%d tasks assigned to Ada, want 2", len(assigned))
		}
		exCompare(t, "CSV", exParseCSV(t, exDownload(t, env, res)), assigned)
		// Nothing matches: a header (CSV) or an empty array (JSON).
		_, res = exExport(t, ada, "CSV", map[string]any{"tag": "nope"})
		if f := exDownload(t, env, res); res.TaskCount != 0 || string(f) != strings.Join(exHeader, ",")+"\r\n" {
			t.Errorf("empty CSV export (%d tasks) = %q", res.TaskCount, f)
		}
		_, res = exExport(t, ada, "JSON", map[string]any{"tag": "nope"})
		if f := exDownload(t, env, res); res.TaskCount != 0 || string(f) != "[\n]\n" || len(exParseJSON(t, f)) != 0 {
			t.Errorf("empty JSON export = %q", f)
		}
	})

	t.Run("privacy", func(t *testing.T) {
		_, res := exExport(t, bob, "JSON", nil)
		rows := exParseJSON(t, exDownload(t, env, res))
		exCompare(t, "JSON", rows, exDBTasks(t, env, `owner_id = $1`, bob.ID))
		for _, tk := range adaOwn {
			if slices.Contains(exIDs(rows), globalid.Encode(globalid.KindTask, tk.ID)) {
				t.Errorf("Bob's export holds Ada's task %q", tk.Title)
			}
		}
		// Cy is assigned one of Ada's tasks but owns none: an empty own export.
		_, res = exExport(t, cy, "CSV", nil)
		if res.TaskCount != 0 || len(exParseCSV(t, exDownload(t, env, res))) != 0 {
			t.Errorf("Cy's export has %d tasks, want 0", res.TaskCount)
		}
		// Bob cannot follow Ada's export job.
		job := exRequestExport(t, ada, "CSV", nil)
		if _, code := jbNode(t, bob, job.ID); code != "NOT_FOUND" {
			t.Errorf("Bob reading Ada's export job: %q, want NOT_FOUND", code)
		}
	})

	t.Run("refused URLs", func(t *testing.T) {
		adaJob, adaRes := exExport(t, ada, "CSV", nil)
		bobJob, _ := exExport(t, bob, "CSV", nil)
		u, err := url.Parse(*adaRes.DownloadURL)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		sig, exp := q.Get("signature"), q.Get("expires")
		flip := "0"
		if sig[len(sig)-1] == '0' {
			flip = "1"
		}
		adaPath, bobPath := "/exports/"+exJobUUID(t, adaJob.ID).String(), "/exports/"+exJobUUID(t, bobJob.ID).String()
		expInt, _ := strconv.ParseInt(exp, 10, 64)
		cases := []struct {
			name, path string
			status     int
			code       string
		}{
			{"tampered signature", adaPath + "?expires=" + exp + "&signature=" + sig[:len(sig)-1] + flip, 403, "FORBIDDEN"},
			{"another job's id", bobPath + "?expires=" + exp + "&signature=" + sig, 403, "FORBIDDEN"},
			{"a later expiry", adaPath + "?expires=" + strconv.FormatInt(expInt+3600, 10) + "&signature=" + sig, 403, "FORBIDDEN"},
			{"no signature", adaPath + "?expires=" + exp, 403, "FORBIDDEN"},
			{"no query", adaPath, 403, "FORBIDDEN"},
			{"not a uuid", "/exports/" + adaJob.ID + "?expires=" + exp + "&signature=" + sig, 404, "NOT_FOUND"},
			{"POST", "", 405, ""},
		}
		for _, c := range cases {
			method, path := http.MethodGet, c.path
			if c.name == "POST" {
				method, path = http.MethodPost, *adaRes.DownloadURL
			}
			res, body := exGet(t, env, method, path, nil)
			if res.StatusCode != c.status {
				t.Errorf("%s: %d %s, want %d", c.name, res.StatusCode, body, c.status)
				continue
			}
			if c.code == "" {
				continue
			}
			var e testsupport.Response
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code() != c.code {
				t.Errorf("%s: body %s, want one %s error", c.name, body, c.code)
			}
			if bytes.Contains(body, []byte("Task:")) || bytes.Contains(body, []byte("\"id\"")) {
				t.Errorf("%s: the refusal leaks file content: %s", c.name, body)
			}
		}

		// A validly signed URL for a job that is not a succeeded export: 404.
		signer := userjobs.NewSigner([]byte(env.Config.JWTSecret), env.Config.PublicURL, env.Config.ExportURLTTL)
		report := jbRequestReport(t, ada)
		jbWaitFinished(t, ada, report.ID)
		// A running export (a row only: no queue entry, so no worker finishes it).
		running := uuid.New()
		env.Exec(t, `INSERT INTO jobs (id, user_id, kind, status) VALUES ($1, $2, 'TASK_EXPORT', 'RUNNING')`, running, ada.ID)
		env.Exec(t, `INSERT INTO export_chunks (job_id, seq, data) VALUES ($1, 0, 'partial')`, running)
		for name, gid := range map[string]string{
			"a report": report.ID, "a running export": globalid.Encode(globalid.KindJob, running),
			"no job": globalid.Encode(globalid.KindJob, uuid.New()),
		} {
			signed, _ := signer.URL(exJobUUID(t, gid), time.Now(), time.Time{})
			if res, body := exGet(t, env, http.MethodGet, signed, nil); res.StatusCode != http.StatusNotFound {
				t.Errorf("%s: %d %s, want 404", name, res.StatusCode, body)
			}
		}
		// The file expired (the sweep may not have deleted it yet): 404, and no downloadUrl any more.
		env.Exec(t, `UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = $1`, exJobUUID(t, adaJob.ID))
		if res, body := exGet(t, env, http.MethodGet, *adaRes.DownloadURL, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("expired file: %d %s, want 404", res.StatusCode, body)
		}
	})
}

// A URL that was valid stops working at its expiry (EXPORT_URL_TTL=1s), with 403; querying the job
// again gives a fresh one that works.
func TestTaskExportURLExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works exports in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"EXPORT_URL_TTL": "1s"})
	u := env.Register(t, "Eve")
	env.CreateTask(t, u.ID, db.NewTask{Title: "one"})
	job, res := exExport(t, u, "CSV", nil)
	time.Sleep(time.Until(*res.DownloadURLExpiresAt) + 10*time.Millisecond)
	r, body := exGet(t, env, http.MethodGet, *res.DownloadURL, nil)
	if r.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("expired")) {
		t.Fatalf("expired URL: %d %s, want 403 saying it expired", r.StatusCode, body)
	}
	again, _ := jbNode(t, u, job.ID)
	fresh := again.exportResult(t)
	if *fresh.DownloadURL == *res.DownloadURL {
		t.Fatal("querying the job again gave the same URL")
	}
	exParseCSV(t, exDownload(t, env, fresh))
}

// exSeed inserts n tasks for owner with awkward text (commas, quotes, newlines, unicode), varied
// tags, due dates and assignees, created one millisecond apart in the past.
func exSeed(t *testing.T, env *testsupport.Env, owner, assignee uuid.UUID, n int) {
	t.Helper()
	env.DB.SeedTasks(t, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, description, status, priority, due_at, tags, created_at)
		SELECT gen_random_uuid(), $1, CASE WHEN g % 5 = 0 THEN $2::uuid END,
		       'Task ' || g || ', "quoted" ü ' || repeat('x', g % 50),
		       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE E'line ' || g || E'\nsecond, line "q" 日本 🚀\r\nthird' END,
		       (ARRAY['TODO', 'IN_PROGRESS', 'DONE'])[1 + g % 3], g % 4,
		       CASE WHEN g % 3 = 0 THEN timestamptz '2030-01-01 00:00:00.123456+00' + g * interval '1 hour' END,
		       CASE WHEN g % 2 = 0 THEN ARRAY['work', 'q' || g % 4] ELSE ARRAY[]::text[] END,
		       now() - interval '1 day' + g * interval '1 millisecond'
		FROM generate_series(1, $3::int) g`, owner, assignee, n)
}

// A job whose attempt dies after its second chunk (as a crash would, with a stray chunk left past
// its checkpoint) is retried, resumes at its third chunk, and ends with a file byte-identical to an
// uninterrupted export: no task missing, none twice.
func TestTaskExportResumesAfterACrashByteIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works exports in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false", "JOB_MAX_ACTIVE": "10"})
	owner, other := env.Register(t, "Gus"), env.Register(t, "Hal")
	const n = 400
	exSeed(t, env, owner.ID, other.ID, n)
	exSeed(t, env, other.ID, owner.ID, 30)

	type pair struct{ crashed, clean jbJob }
	jobsByFormat := map[string]*pair{}
	crash := map[uuid.UUID]bool{}
	for _, f := range []string{"CSV", "JSON"} {
		p := &pair{crashed: exRequestExport(t, owner, f, nil), clean: exRequestExport(t, owner, f, nil)}
		jobsByFormat[f] = p
		crash[exJobUUID(t, p.crashed.ID)] = true
	}
	var (
		mu     sync.Mutex
		chunks = map[uuid.UUID][]string{} // per job: attempt/chunk:processed
	)
	jbStartWorkers(t, env, jobs.Options{
		ExportChunkSize: 4 << 10,
		AfterChunk: func(ctx context.Context, j *db.BackgroundJob, n int) error {
			mu.Lock()
			chunks[j.ID] = append(chunks[j.ID], fmt.Sprintf("a%d/c%d:%d", j.Attempt, n, j.Processed))
			mu.Unlock()
			if crash[j.ID] && j.Attempt == 1 && n == 2 {
				// What a writer running alongside could leave: the next chunk, and one far beyond.
				env.Exec(t, `INSERT INTO export_chunks (job_id, seq, data) VALUES ($1, 2, 'junk'), ($1, 999, 'junk')`, j.ID)
				return fmt.Errorf("injected crash after chunk %d", n)
			}
			return nil
		},
	})
	want := exDBTasks(t, env, `owner_id = $1`, owner.ID)
	for f, p := range jobsByFormat {
		crashed, clean := jbWaitFinished(t, owner, p.crashed.ID), jbWaitFinished(t, owner, p.clean.ID)
		if crashed.Status != "SUCCEEDED" || crashed.Attempt != 2 || clean.Status != "SUCCEEDED" || clean.Attempt != 1 {
			t.Fatalf("%s: crashed job %+v, clean job %+v", f, crashed, clean)
		}
		cr, cl := crashed.exportResult(t), clean.exportResult(t)
		a, b := exDownload(t, env, cr), exDownload(t, env, cl)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: the resumed file (%d bytes) differs from the uninterrupted one (%d bytes)", f, len(a), len(b))
		}
		var rows []exRow
		if f == "CSV" {
			rows = exParseCSV(t, a)
		} else {
			rows = exParseJSON(t, a)
		}
		exCompare(t, f, rows, want)

		var nChunks, maxSeq int
		if err := env.DB.Pool.QueryRow(context.Background(), `SELECT count(*), max(seq) FROM export_chunks WHERE job_id = $1`,
			exJobUUID(t, crashed.ID)).Scan(&nChunks, &maxSeq); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		log, cleanLog := chunks[exJobUUID(t, crashed.ID)], chunks[exJobUUID(t, clean.ID)]
		mu.Unlock()
		t.Logf("%s: %d tasks, %d bytes in %d chunks; crashed job's chunks %v", f, cr.TaskCount, cr.ByteSize, nChunks, log)
		if nChunks < 10 || maxSeq != nChunks-1 {
			t.Errorf("%s: %d chunks up to seq %d, want ≥ 10 numbered from 0 without gaps (the stray one deleted)", f, nChunks, maxSeq)
		}
		// The retry resumed after chunk 2: it committed only the chunks after it, and its first one
		// continued from the second's progress.
		if len(log) != len(cleanLog) || log[0] != "a1/c1:"+strings.Split(cleanLog[0], ":")[1] ||
			!strings.HasPrefix(log[2], "a2/c1:") || log[1][strings.Index(log[1], ":"):] != cleanLog[1][strings.Index(cleanLog[1], ":"):] {
			t.Errorf("%s: chunk commits %v, want those of the clean run %v, the third one by attempt 2", f, log, cleanLog)
		}
		for i := range log {
			if p, q := log[i][strings.Index(log[i], ":"):], cleanLog[i][strings.Index(cleanLog[i], ":"):]; p != q {
				t.Errorf("%s: chunk %d progress %s, the clean run's %s", f, i, p, q)
			}
		}
	}
}

// An export larger than the size limit fails for good with BAD_USER_INPUT and leaves no chunks; an
// export cancelled while it runs stops at its next chunk and leaves no chunks either.
func TestTaskExportSizeLimitAndCancellation(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works exports in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false", "JOB_MAX_ACTIVE": "10"})
	u := env.Register(t, "Ivy")
	exSeed(t, env, u.ID, u.ID, 300)
	big := exRequestExport(t, u, "JSON", nil)
	cancelled := exRequestExport(t, u, "CSV", nil)
	cancelID := exJobUUID(t, cancelled.ID)
	jbStartWorkers(t, env, jobs.Options{
		ExportChunkSize: 4 << 10, ExportMaxBytes: 20 << 10,
		AfterChunk: func(ctx context.Context, j *db.BackgroundJob, n int) error {
			if j.ID == cancelID && n == 1 {
				u.Do(t, `mutation($id: ID!) { cancelJob(id: $id) { status } }`, map[string]any{"id": cancelled.ID}).Decode(t, &struct{}{})
			}
			return nil
		},
	})
	failed := jbWaitFinished(t, u, big.ID)
	if failed.Status != "FAILED" || failed.Error == nil || failed.Error.Code != "BAD_USER_INPUT" ||
		!strings.Contains(failed.Error.Message, "narrow it with a filter") || failed.Attempt != 1 || failed.Result != nil && string(failed.Result) != "null" {
		t.Fatalf("oversized export = %+v", failed)
	}
	stopped := jbWaitFinished(t, u, cancelled.ID)
	if stopped.Status != "CANCELLED" {
		t.Fatalf("cancelled export = %+v", stopped)
	}
	// The worker notices at its next chunk and deletes what it wrote.
	testenv.WaitForState(t, 10*time.Second, "no export chunks left after a failed and a cancelled export", func() (bool, string) {
		n := env.CountRows(t, "export_chunks")
		return n == 0, fmt.Sprintf("%d chunks", n)
	})
}

// Through the whole middleware chain (request id, access log, metrics, CORS, gzip), a download
// slower than HTTP_WRITE_TIMEOUT still completes: the handler reaches the connection's write
// deadline through every wrapper.
func TestTaskExportSlowDownloadOutlastsTheWriteTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works exports in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Jo")
	const chunks, chunkSize = 8, 1 << 20
	id := uuid.New()
	res, err := json.Marshal(userjobs.ExportResult{Format: userjobs.ExportCSV, ByteSize: chunks * chunkSize, Chunks: chunks, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	env.Exec(t, `INSERT INTO jobs (id, user_id, kind, status, result, expires_at, finished_at)
		VALUES ($1, $2, 'TASK_EXPORT', 'SUCCEEDED', $3, now() + interval '1 hour', now())`, id, u.ID, res)
	env.Exec(t, `INSERT INTO export_chunks (job_id, seq, data)
		SELECT $1, g, convert_to(repeat('x', $2), 'UTF8') FROM generate_series(0, $3 - 1) g`, id, chunkSize, chunks)
	srv := httptest.NewUnstartedServer(env.App.Handler)
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	signed, _ := userjobs.NewSigner([]byte(env.Config.JWTSecret), "", time.Minute).URL(id, time.Now(), time.Time{})
	req, err := http.NewRequest(http.MethodGet, srv.URL+signed, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start, n, buf := time.Now(), 0, make([]byte, 256<<10)
	for {
		k, err := resp.Body.Read(buf)
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes in %s: %v", n, time.Since(start), err)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if resp.StatusCode != http.StatusOK || n != chunks*chunkSize || time.Since(start) < time.Second {
		t.Fatalf("%d: read %d bytes in %s, want %d over more than a second", resp.StatusCode, n, time.Since(start), chunks*chunkSize)
	}
}

// Rows far larger than the ones before them (pages are sized from the rows seen so far) end a page
// early instead of piling up in memory; the next page resumes right after the last row written.
func TestTaskExportLargeRowsAfterSmallOnes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works exports in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	u := env.Register(t, "Kim")
	env.Exec(t, `
		INSERT INTO tasks (id, owner_id, title, description, created_at)
		SELECT gen_random_uuid(), $1, 't' || g, CASE WHEN g > 60 THEN repeat('é"', 5000) END,
		       now() - interval '1 hour' + g * interval '1 millisecond'
		FROM generate_series(1, 100) g`, u.ID)
	csvJob, jsonJob := exRequestExport(t, u, "CSV", nil), exRequestExport(t, u, "JSON", nil)
	jbStartWorkers(t, env, jobs.Options{ExportChunkSize: 4 << 10})
	want := exDBTasks(t, env, `owner_id = $1`, u.ID)
	for _, j := range []jbJob{csvJob, jsonJob} {
		done := jbWaitFinished(t, u, j.ID)
		if done.Status != "SUCCEEDED" {
			t.Fatalf("export = %+v", done)
		}
		res := done.exportResult(t)
		file := exDownload(t, env, res)
		if res.Format == "CSV" {
			exCompare(t, "CSV", exParseCSV(t, file), want)
		} else {
			exCompare(t, "JSON", exParseJSON(t, file), want)
		}
		// No chunk holds more than the chunk size plus one large row (5000 × `é"`, quotes escaped:
		// 20,000 bytes and a few).
		var biggest int
		if err := env.DB.Pool.QueryRow(context.Background(), `SELECT max(length(data)) FROM export_chunks WHERE job_id = $1`,
			exJobUUID(t, j.ID)).Scan(&biggest); err != nil {
			t.Fatal(err)
		}
		if biggest > 4<<10+20_200 {
			t.Errorf("%s: a chunk of %d bytes", res.Format, biggest)
		}
	}
}
