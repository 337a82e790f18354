package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/taskgraph/taskgraph/db"
)

// GraphQL documents the clients send. The page and the deep page select the same fields, so their
// latencies compare the cost of the position in the list and nothing else.
const (
	taskFields = `id title status priority dueAt tags owner { id name taskCounts { total todo inProgress done overdue } }`
	pageQuery  = `query Page { tasks(first: 20) { edges { cursor node { ` + taskFields + ` } } ` +
		`pageInfo { hasNextPage hasPreviousPage endCursor } } }`
	deepQuery = `query DeepPage($after: String!) { tasks(first: 20, after: $after) { edges { cursor node { ` + taskFields + ` } } ` +
		`pageInfo { hasNextPage hasPreviousPage endCursor } } }`
	taskQuery = `query Task($id: ID!) { task(id: $id) { id title description status priority dueAt tags createdAt updatedAt version ` +
		`owner { id name } } }`
	updateMutation = `mutation Update($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) { ` +
		`task { id status priority version updatedAt } } }`
	loginMutation = `mutation Login($input: LoginInput!) { login(input: $input) { accessToken } }`
	cursorQuery   = `query Walk($first: Int!, $after: String) { tasks(first: $first, after: $after) { edges { cursor node { id } } } }`
)

// stepKind is one kind of request.
type stepKind int

const (
	stepPage   stepKind = iota // first page of 20 tasks with owners and their task counts
	stepDeep                   // the page after DeepOffset rows
	stepTask                   // one task by id, with its owner
	stepUpdate                 // updateTask: new status and priority
)

// String names the kind as the schema does, for the report.
func (k stepKind) String() string {
	switch k {
	case stepPage:
		return "first page"
	case stepDeep:
		return "deep page"
	case stepTask:
		return "task by id"
	case stepUpdate:
		return "updateTask"
	}
	return fmt.Sprintf("stepKind(%d)", int(k))
}

// step is one request a client makes, decided before it is sent so that the GraphQL run and the
// direct-SQL ceiling make exactly the same choices from the same random sequence.
type step struct {
	kind     stepKind
	task     int // index into the user's task sample (stepTask, stepUpdate)
	status   db.TaskStatus
	priority db.Priority
}

// scenario is one workload: what each client sends next.
type scenario struct {
	name  string
	title string
	next  func(u *benchUser, rng *rand.Rand) step
}

// scenarioByName returns the scenario with this name (names are validated with the Config);
// deepOffset is the number of rows before the deep page.
func scenarioByName(name string, deepOffset int) scenario {
	switch name {
	case ScenarioPage:
		return scenario{name: name, title: "first page of 20 tasks with owners and task counts",
			next: func(*benchUser, *rand.Rand) step { return step{kind: stepPage} }}
	case ScenarioTask:
		return scenario{name: name, title: "one task by id, with its owner",
			next: func(u *benchUser, rng *rand.Rand) step { return step{kind: stepTask, task: rng.IntN(len(u.tasks))} }}
	case ScenarioDeep:
		return scenario{name: name, title: fmt.Sprintf("page of 20 after a cursor %s rows into the list (same fields)", thousands(deepOffset)),
			next: func(*benchUser, *rand.Rand) step { return step{kind: stepDeep} }}
	case ScenarioMix:
		return scenario{name: name, title: "90% reads (45% first page, 45% task by id), 10% updateTask", next: nextMixed}
	}
	panic("bench: unknown scenario " + name)
}

// nextMixed is the 90/10 mix: reads split evenly between the first page and a task by id; writes
// change a random task's status and priority without expectedVersion (concurrent writers never
// conflict, they queue on the row lock).
func nextMixed(u *benchUser, rng *rand.Rand) step {
	switch r := rng.IntN(100); {
	case r < 45:
		return step{kind: stepPage}
	case r < 90:
		return step{kind: stepTask, task: rng.IntN(len(u.tasks))}
	default:
		statuses := [...]db.TaskStatus{db.StatusTodo, db.StatusInProgress, db.StatusDone}
		return step{kind: stepUpdate, task: rng.IntN(len(u.tasks)),
			status: statuses[rng.IntN(len(statuses))], priority: db.Priority(rng.IntN(int(db.PriorityUrgent) + 1))}
	}
}

// body is the GraphQL request of s for user u.
func (s step) body(u *benchUser) []byte {
	switch s.kind {
	case stepPage:
		return u.pageBody
	case stepDeep:
		return u.deepBody
	case stepTask:
		return u.taskBodies[s.task]
	default:
		return gqlBody(updateMutation, map[string]any{
			"id":    u.taskGIDs[s.task],
			"input": map[string]any{"status": string(s.status), "priority": priorityName(s.priority)},
		})
	}
}

// priorityName is the GraphQL enum value of a priority.
func priorityName(p db.Priority) string {
	switch p {
	case db.PriorityLow:
		return "LOW"
	case db.PriorityHigh:
		return "HIGH"
	case db.PriorityUrgent:
		return "URGENT"
	}
	return "MEDIUM"
}
