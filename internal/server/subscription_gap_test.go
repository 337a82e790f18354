package server_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// When the instance's event listener loses its connection, events published meanwhile are lost.
// Subscribers are told: taskChanged sends RESYNC (the client re-queries), jobUpdated resends the
// jobs that may have changed, without any new event.
func TestSubscriptionsRecoverFromLostEvents(t *testing.T) {
	a := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	waitForReady(t, a)
	alice := a.Register(t, "Alice")
	task := a.CreateTask(t, alice.ID, db.NewTask{Title: "first"})
	taskGID := globalid.Encode(globalid.KindTask, task.ID)
	var req struct{ RequestTaskReport struct{ ID string } }
	(&testsupport.Client{Env: a, Token: alice.Token}).Do(t, `mutation { requestTaskReport { id } }`, nil).Decode(t, &req)
	jobGID := req.RequestTaskReport.ID
	_, jobID, err := globalid.Decode("id", jobGID)
	if err != nil {
		t.Fatal(err)
	}

	// Both subscriptions live (each on its own socket, so their messages do not interleave).
	tasks := dialWS(t, a, map[string]any{"Authorization": "Bearer " + alice.Token})
	tasks.mustAck()
	tasks.subscribe("t", taskChangedSub, nil)
	untilEvent(t, tasks, "t", renameThrough(t, a, alice.Token, taskGID), func(e taskEvent) bool {
		return e.TaskChanged.Task != nil && e.TaskChanged.Task.ID == taskGID
	})
	jobsWS := dialWS(t, a, map[string]any{"Authorization": "Bearer " + alice.Token})
	jobsWS.mustAck()
	jobsWS.subscribe("j", `subscription { jobUpdated { id status } }`, nil)
	readJob := func(d time.Duration) (id, status string, ok bool) {
		m, got := jobsWS.next(d)
		if !got {
			return "", "", false
		}
		var p struct {
			Data struct{ JobUpdated struct{ ID, Status string } }
		}
		if m.Type != "next" || m.ID != "j" || json.Unmarshal(m.Payload, &p) != nil {
			t.Fatalf("job subscription: %s %s", m.Type, m.Payload)
		}
		return p.Data.JobUpdated.ID, p.Data.JobUpdated.Status, true
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		a.App.Events.Publish(context.Background(), events.Event{Kind: events.KindJob, ID: jobID, UserIDs: []uuid.UUID{alice.ID}})
		if _, _, ok := readJob(500 * time.Millisecond); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job subscription never delivered")
		}
	}
	// Drain any duplicate nudges before the cut.
	for {
		if _, _, ok := readJob(300 * time.Millisecond); !ok {
			break
		}
	}

	a.DB.CutEventListeners(t, 1)

	ev := untilEvent(t, tasks, "t", func(int) {}, func(e taskEvent) bool { return e.TaskChanged.Kind == "RESYNC" })
	if ev.TaskChanged.Task != nil || ev.TaskChanged.DeletedTaskID != nil {
		t.Errorf("RESYNC event carries data: %+v", ev)
	}
	id, status, ok := readJob(10 * time.Second)
	if !ok || id != jobGID || status != "QUEUED" {
		t.Fatalf("after the gap the job subscription sent %q %q (ok=%v), want the QUEUED job %s", id, status, ok, jobGID)
	}
}
