package userjobs

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

func TestSpreadsheetSafe(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		// Each trigger character in first place gets one quote.
		{"equals", "=1+1", "'=1+1"},
		{"formula", `=HYPERLINK("http://evil","x")`, `'=HYPERLINK("http://evil","x")`},
		{"plus", "+1", "'+1"},
		{"minus", "-1", "'-1"},
		{"at", "@SUM(A1)", "'@SUM(A1)"},
		{"tab", "\t=1+1", "'\t=1+1"},
		{"carriage return", "\r=1+1", "'\r=1+1"},
		{"trigger alone", "=", "'="},
		{"non-ASCII after a trigger", "=日本語 🚀", "'=日本語 🚀"},
		// Anything else is unchanged.
		{"empty", "", ""},
		{"harmless", "Buy milk", "Buy milk"},
		{"trigger in the middle", "1+1=2, a@b, x-y", "1+1=2, a@b, x-y"},
		{"trigger at the end", "total=", "total="},
		{"non-ASCII", "Привет, мир; 你好 ünïcødé", "Привет, мир; 你好 ünïcødé"},
		{"leading space", " =1+1", " =1+1"},
		{"leading newline", "\n=1+1", "\n=1+1"},
		{"already quoted", "'=1+1", "'=1+1"},
		{"ordinary punctuation", `"quoted", (parens) #1 %`, `"quoted", (parens) #1 %`},
	} {
		if got := spreadsheetSafe(c.in); got != c.want {
			t.Errorf("%s: spreadsheetSafe(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

// The encoder quotes the title, description and tags cells of a CSV row, RFC 4180 quoting applies
// on top and the record still ends in CRLF; the JSON row of the same task keeps the exact text.
func TestExportEncoderCSVIsSpreadsheetSafeJSONExact(t *testing.T) {
	created := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	desc := "\tindented,\n=second line"
	task := &db.ExportTask{
		ID: uuid.MustParse("00000000-0000-0000-0000-000000000001"), OwnerID: uuid.MustParse("00000000-0000-0000-0000-000000000002"),
		Title: `=HYPERLINK("http://evil","x")`, Description: &desc, Status: db.StatusTodo, Priority: db.PriorityLow,
		Tags: []string{"@x", "work"}, CreatedAt: created, UpdatedAt: created, Version: 1,
	}
	id, owner := globalid.Encode(globalid.KindTask, task.ID), globalid.Encode(globalid.KindUser, task.OwnerID)
	at := "2030-01-02T03:04:05.123456Z"

	var buf bytes.Buffer
	if err := newExportEncoder(ExportCSV, &buf).row(task, true); err != nil {
		t.Fatal(err)
	}
	want := id + `,"'=HYPERLINK(""http://evil"",""x"")","'` + "\tindented,\n=second line" + `",TODO,LOW,,'@x;work,` +
		owner + ",," + at + "," + at + ",,1\r\n"
	if got := buf.String(); got != want {
		t.Errorf("CSV row:\n got %q\nwant %q", got, want)
	}

	buf.Reset()
	if err := newExportEncoder(ExportJSON, &buf).row(task, true); err != nil {
		t.Fatal(err)
	}
	want = "\n" + `{"id":"` + id + `","title":"=HYPERLINK(\"http://evil\",\"x\")","description":"\tindented,\n=second line",` +
		`"status":"TODO","priority":"LOW","dueAt":null,"tags":["@x","work"],"ownerId":"` + owner + `","assigneeId":null,` +
		`"createdAt":"` + at + `","updatedAt":"` + at + `","completedAt":null,"version":1}`
	if got := buf.String(); got != want {
		t.Errorf("JSON row:\n got %q\nwant %q", got, want)
	}
}
