package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// A job requested through instance B and worked by a separate worker is followed live on
// instance A, up to its result; another user can neither subscribe to it nor hear of it.
func TestJobUpdatedAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances and a worker")
	}
	a := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	b := testsupport.NewEnvOn(t, a.DB, map[string]string{"JOBS_IN_PROCESS": "false"})
	waitForReady(t, a, b)
	alice, bob := a.Register(t, "Alice"), a.Register(t, "Bob")

	var req struct{ RequestTaskReport struct{ ID, Status string } }
	(&testsupport.Client{Env: b, Token: alice.Token}).Do(t, `mutation { requestTaskReport { id status } }`, nil).Decode(t, &req)
	gid := req.RequestTaskReport.ID
	_, jobID, err := globalid.Decode("id", gid)
	if err != nil {
		t.Fatal(err)
	}

	// Bob may not follow Alice's job; his all-jobs subscription must stay silent.
	cb := dialWS(t, a, map[string]any{"Authorization": "Bearer " + bob.Token})
	cb.mustAck()
	cb.subscribe("x", `subscription($id: ID) { jobUpdated(id: $id) { id } }`, map[string]any{"id": gid})
	if m, ok := cb.next(5 * time.Second); !ok || !strings.Contains(string(m.Payload), `"code":"NOT_FOUND"`) || strings.Contains(string(m.Payload), `"jobUpdated":{`) {
		t.Fatalf("Bob subscribing to Alice's job: %s %s, want a NOT_FOUND error", m.Type, m.Payload)
	}
	if m, ok := cb.next(5 * time.Second); !ok || m.Type != "complete" {
		t.Fatalf("after the error: %s %s, want complete", m.Type, m.Payload)
	}
	cb.subscribe("all", `subscription { jobUpdated { id } }`, nil)

	c := dialWS(t, a, map[string]any{"Authorization": "Bearer " + alice.Token})
	c.mustAck()
	c.subscribe("j", `subscription($id: ID) { jobUpdated(id: $id) { id status progress
		result { ... on TaskReport { totalCount } } } }`, map[string]any{"id": gid})
	type event struct {
		JobUpdated struct {
			ID, Status string
			Progress   float64
			Result     *struct{ TotalCount int }
		}
	}
	read := func(d time.Duration) (event, bool) {
		m, ok := c.next(d)
		if !ok {
			return event{}, false
		}
		if m.Type != "next" {
			t.Fatalf("unexpected %s %s", m.Type, m.Payload)
		}
		var p struct{ Data event }
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatal(err)
		}
		return p.Data, true
	}
	// Until the subscription is live, nudge it through B (as a worker on any process would).
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.App.Events.Publish(context.Background(), events.Event{Kind: events.KindJob, ID: jobID, UserIDs: []uuid.UUID{alice.ID}})
		if ev, ok := read(500 * time.Millisecond); ok {
			if ev.JobUpdated.ID != gid || ev.JobUpdated.Status != "QUEUED" {
				t.Fatalf("first event = %+v, want the QUEUED job", ev)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscription never delivered")
		}
	}

	// A separate worker works the job; the database announces each change to every instance.
	q, err := jobs.New(a.DB.Pool, jobs.Options{Work: true, Workers: 2, JobTimeout: time.Minute, RescueAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for {
		ev, ok := read(10 * time.Second)
		if !ok {
			t.Fatalf("no SUCCEEDED event; saw %v", statuses)
		}
		statuses = append(statuses, ev.JobUpdated.Status)
		if ev.JobUpdated.Status == "SUCCEEDED" {
			if ev.JobUpdated.Progress != 1 || ev.JobUpdated.Result == nil || ev.JobUpdated.Result.TotalCount != 0 {
				t.Fatalf("SUCCEEDED event = %+v", ev)
			}
			break
		}
	}
	// A job of Bob's own, requested after: the first thing his subscription hears, since anything
	// about Alice's would have arrived before it.
	var own struct{ RequestTaskReport struct{ ID string } }
	(&testsupport.Client{Env: b, Token: bob.Token}).Do(t, `mutation { requestTaskReport { id } }`, nil).Decode(t, &own)
	if m, ok := cb.next(10 * time.Second); !ok || !strings.Contains(string(m.Payload), own.RequestTaskReport.ID) {
		t.Fatalf("Bob's first event: %s %s, want his own job's", m.Type, m.Payload)
	}
}
