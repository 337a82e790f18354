package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// The comparison is only honest if both servers answer the same question with the same rows. Before a
// Taskgraph server is measured against PostGraphile, every bench user's first page, deep page and a few
// of its tasks are fetched from both and compared field by field, after mapping each server's
// spelling to one form (global ids to row ids, Taskgraph's priority enum to PostGraphile's number,
// timestamps to instants).

// peerCheckTasks is how many of each user's sampled tasks the check compares.
const peerCheckTasks = 5

// sameTask is a task as both servers describe it. Fields a document does not ask for stay zero.
type sameTask struct {
	ID          uuid.UUID
	Title       string
	Description *string
	Status      string
	Priority    string
	DueAt       *time.Time
	Tags        []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int
	OwnerID     uuid.UUID
	OwnerName   string
}

// samePage is a page as both servers describe it. hasPreviousPage is left out on purpose: after a
// cursor Taskgraph answers it truthfully (a batched EXISTS), PostGraphile answers false when paging
// forward, as the Relay specification allows; the report says so.
type samePage struct {
	Tasks       []sameTask
	HasNextPage bool
	Cursors     int // edges with a non-empty cursor
}

// peerAnswers are one user's answers to the checked requests.
type peerAnswers struct {
	page, deep samePage
	tasks      []sameTask
}

// rawOwner and rawTask decode either server's JSON.
type rawOwner struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type rawTask struct {
	ID            string          `json:"id"`
	Title         string          `json:"title"`
	Description   *string         `json:"description"`
	Status        string          `json:"status"`
	Priority      json.RawMessage `json:"priority"`
	DueAt         *string         `json:"dueAt"`
	Tags          []string        `json:"tags"`
	CreatedAt     *string         `json:"createdAt"`
	UpdatedAt     *string         `json:"updatedAt"`
	Version       int             `json:"version"`
	Owner         *rawOwner       `json:"owner"`         // Taskgraph
	UserByOwnerID *rawOwner       `json:"userByOwnerId"` // PostGraphile
}

type rawConnection struct {
	Edges []struct {
		Cursor string  `json:"cursor"`
		Node   rawTask `json:"node"`
	} `json:"edges"`
	PageInfo struct {
		HasNextPage bool `json:"hasNextPage"`
	} `json:"pageInfo"`
}

// normalize maps one server's task to the common form; pg says whose spelling it is.
func (r rawTask) normalize(pg bool) (sameTask, error) {
	t := sameTask{Title: r.Title, Description: r.Description, Status: r.Status, Tags: r.Tags, Version: r.Version}
	owner := r.Owner
	var err error
	if pg {
		owner = r.UserByOwnerID
		t.ID, err = decodePGNodeID("Task", r.ID)
	} else {
		t.ID, err = globalid.DecodeAs("id", globalid.KindTask, r.ID)
	}
	if err != nil {
		return t, fmt.Errorf("task id %q: %w", r.ID, err)
	}
	if owner == nil {
		return t, fmt.Errorf("task %s: no owner in the answer", t.ID)
	}
	t.OwnerName = owner.Name
	if pg {
		t.OwnerID, err = decodePGNodeID("User", owner.ID)
	} else {
		t.OwnerID, err = globalid.DecodeAs("id", globalid.KindUser, owner.ID)
	}
	if err != nil {
		return t, fmt.Errorf("owner id %q: %w", owner.ID, err)
	}
	if pg {
		var n int
		if err := json.Unmarshal(r.Priority, &n); err != nil {
			return t, fmt.Errorf("PostGraphile priority %s: %w", r.Priority, err)
		}
		t.Priority = priorityName(db.Priority(n))
	} else if err := json.Unmarshal(r.Priority, &t.Priority); err != nil {
		return t, fmt.Errorf("priority %s from Taskgraph: %w", r.Priority, err)
	}
	parse := func(s *string) (*time.Time, error) {
		if s == nil {
			return nil, nil
		}
		v, err := time.Parse(time.RFC3339Nano, *s)
		if err != nil {
			return nil, err
		}
		v = v.UTC()
		return &v, nil
	}
	if t.DueAt, err = parse(r.DueAt); err != nil {
		return t, fmt.Errorf("dueAt: %w", err)
	}
	for _, f := range []struct {
		in  *string
		out *time.Time
	}{{r.CreatedAt, &t.CreatedAt}, {r.UpdatedAt, &t.UpdatedAt}} {
		v, err := parse(f.in)
		if err != nil {
			return t, fmt.Errorf("timestamp: %w", err)
		}
		if v != nil {
			*f.out = *v
		}
	}
	return t, nil
}

func (c rawConnection) normalize(pg bool) (samePage, error) {
	p := samePage{HasNextPage: c.PageInfo.HasNextPage}
	for _, e := range c.Edges {
		t, err := e.Node.normalize(pg)
		if err != nil {
			return p, err
		}
		p.Tasks = append(p.Tasks, t)
		if e.Cursor != "" {
			p.Cursors++
		}
	}
	return p, nil
}

// fetchPeerAnswers asks one server (pg: PostGraphile, else Taskgraph as the user) for the user's
// checked requests.
func fetchPeerAnswers(ctx context.Context, client *http.Client, url string, u *benchUser, pg bool) (peerAnswers, error) {
	var (
		out   peerAnswers
		buf   bytes.Buffer
		token string
		body  requestBody = tgPeerBody
	)
	if pg {
		body = pgPeerBody
	} else {
		token = u.token
	}
	page := func(kind stepKind) (samePage, error) {
		var ans struct {
			Data struct {
				Tasks    *rawConnection `json:"tasks"`
				AllTasks *rawConnection `json:"allTasks"`
			} `json:"data"`
		}
		if err := postJSONAs(ctx, client, url, token, body(step{kind: kind}, u), &buf, &ans); err != nil {
			return samePage{}, err
		}
		conn := ans.Data.Tasks
		if pg {
			conn = ans.Data.AllTasks
		}
		if conn == nil {
			return samePage{}, fmt.Errorf("no connection in %.200s", buf.String())
		}
		return conn.normalize(pg)
	}
	var err error
	if out.page, err = page(stepPage); err != nil {
		return out, fmt.Errorf("first page: %w", err)
	}
	if out.deep, err = page(stepDeep); err != nil {
		return out, fmt.Errorf("deep page: %w", err)
	}
	for i := range min(peerCheckTasks, len(u.tasks)) {
		var ans struct {
			Data struct {
				Task *rawTask `json:"task"`
			} `json:"data"`
		}
		if err := postJSONAs(ctx, client, url, token, body(step{kind: stepTask, task: i}, u), &buf, &ans); err != nil {
			return out, fmt.Errorf("task %s: %w", u.tasks[i], err)
		}
		if ans.Data.Task == nil {
			return out, fmt.Errorf("task %s: null", u.tasks[i])
		}
		t, err := ans.Data.Task.normalize(pg)
		if err != nil {
			return out, fmt.Errorf("task %s: %w", u.tasks[i], err)
		}
		out.tasks = append(out.tasks, t)
	}
	return out, nil
}

// checkSameAnswers compares Taskgraph's answers (server at tgURL) with PostGraphile's (ref, by user)
// and returns the first difference.
func checkSameAnswers(ctx context.Context, client *http.Client, tgURL string, users []*benchUser, ref map[*benchUser]peerAnswers) error {
	for _, u := range users {
		got, err := fetchPeerAnswers(ctx, client, tgURL, u, false)
		if err != nil {
			return fmt.Errorf("bench user %d, from Taskgraph: %w", u.n, err)
		}
		want := ref[u]
		for _, p := range []struct {
			name   string
			tg, pg samePage
		}{{"first page", got.page, want.page}, {"deep page", got.deep, want.deep}} {
			if len(p.tg.Tasks) != 20 || p.tg.Cursors != 20 {
				return fmt.Errorf("bench user %d, %s: Taskgraph returned %d rows with %d cursors, want 20", u.n, p.name, len(p.tg.Tasks), p.tg.Cursors)
			}
			if !reflect.DeepEqual(p.tg, p.pg) {
				return fmt.Errorf("bench user %d, %s: the servers differ: %s", u.n, p.name, firstDifference(p.tg, p.pg))
			}
		}
		if !reflect.DeepEqual(got.tasks, want.tasks) {
			for i := range got.tasks {
				if i < len(want.tasks) && !reflect.DeepEqual(got.tasks[i], want.tasks[i]) {
					return fmt.Errorf("bench user %d, task %s: Taskgraph says %+v, PostGraphile %+v", u.n, u.tasks[i], got.tasks[i], want.tasks[i])
				}
			}
			return fmt.Errorf("bench user %d: %d tasks from Taskgraph, %d from PostGraphile", u.n, len(got.tasks), len(want.tasks))
		}
	}
	return nil
}

// firstDifference describes where two pages part.
func firstDifference(tg, pg samePage) string {
	if tg.HasNextPage != pg.HasNextPage {
		return fmt.Sprintf("hasNextPage %v (Taskgraph) vs %v (PostGraphile)", tg.HasNextPage, pg.HasNextPage)
	}
	if tg.Cursors != pg.Cursors {
		return fmt.Sprintf("%d vs %d cursors", tg.Cursors, pg.Cursors)
	}
	for i := range min(len(tg.Tasks), len(pg.Tasks)) {
		if !reflect.DeepEqual(tg.Tasks[i], pg.Tasks[i]) {
			return fmt.Sprintf("row %d: Taskgraph %+v, PostGraphile %+v", i+1, tg.Tasks[i], pg.Tasks[i])
		}
	}
	return fmt.Sprintf("%d rows (Taskgraph) vs %d (PostGraphile)", len(tg.Tasks), len(pg.Tasks))
}
