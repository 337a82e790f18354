package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/tasks"
)

// responseCache serves repeated read-only queries from cache.Responses without executing them.
// Two shapes qualify, each with every field it selects on an allow-list below, so that its answer
// can change only through writes that invalidate the entities it is stored under:
//   - the viewer's own data (me, tasks): the viewer's user row and task counts (every write to a
//     user's tasks invalidates the counts, whoever makes it);
//   - one task by id with its owner's profile (task(id:) alone): the viewer's user row (their
//     role), the task's row (its fields and who may see it: owner and assignee) and its owner's
//     user row.
//
// Anything else (another user's row through an assignee, notifications, jobs, assignedToMe lists,
// admin lists) is executed as usual.
//
// It is the innermost interceptor: the outer ones (metrics, apiVersion) see a cached answer like
// any other, and the cost budget was charged before it runs.
type responseCache struct {
	responses *cache.Responses
	// tasks finds the owner of a task asked for by id (nil: task(id:) answers are not stored).
	tasks *tasks.Service
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = responseCache{}

func (responseCache) ExtensionName() string                   { return "ResponseCache" }
func (responseCache) Validate(graphql.ExecutableSchema) error { return nil }

// cacheableKey marks, in the context of an operation that qualifies, the answer's key.
type cacheableKey struct{}

type cacheable struct {
	key  string
	deps []db.EntityKey
	// called is set by the first InterceptResponse of the operation. Transports that stream (the
	// websocket and SSE ones) call the response handler again until it answers nil: after a cached
	// answer there is nothing more, and after an executed one the executor says so itself.
	called *atomic.Bool
	served *atomic.Bool // the first call answered from the cache
}

// InterceptOperation implements graphql.OperationInterceptor. It only runs for operations that
// were admitted (parsed, validated, within cost and budget): a refused request never reaches it,
// so its errors can never be replaced by a cached answer.
func (rc responseCache) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	v, ok := auth.ActorFrom(ctx)
	if !ok || oc.Operation == nil || oc.Operation.Operation != ast.Query {
		return next(ctx)
	}
	deps, ok := rc.dependencies(ctx, v, oc)
	if !ok {
		return next(ctx)
	}
	key, err := responseKey(v, oc)
	if err != nil {
		return next(ctx)
	}
	return next(context.WithValue(ctx, cacheableKey{}, cacheable{key: key, deps: deps, called: new(atomic.Bool), served: new(atomic.Bool)}))
}

// InterceptResponse implements graphql.ResponseInterceptor: for an operation marked cacheable, a
// current stored answer replaces execution; otherwise the answer is computed and stored.
func (rc responseCache) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	c, ok := ctx.Value(cacheableKey{}).(cacheable)
	if !ok {
		return next(ctx)
	}
	if c.called.Swap(true) {
		if c.served.Load() {
			return nil
		}
		return next(ctx)
	}
	data, tokens, hit := rc.responses.Lookup(ctx, c.key, c.deps)
	if hit {
		c.served.Store(true)
		noteEscaped(ctx, data)
		return &graphql.Response{Data: data, Extensions: graphql.GetExtensions(ctx)}
	}
	resp := next(ctx)
	if resp != nil && len(resp.Errors) == 0 && len(resp.Data) > 0 {
		// Stored escaped as the JSON transport writes it, so a hit is copied rather than escaped
		// again on every request (other transports marshal it with encoding/json, which leaves
		// escaped data as it is).
		if escaped, ok := appendEscapedCompact(make([]byte, 0, len(resp.Data)+len(resp.Data)/16), resp.Data); ok {
			rc.responses.Store(ctx, c.key, tokens, escaped)
		}
	}
	return resp
}

// dependencies returns the entities the operation's answer is stored under, when it qualifies.
func (rc responseCache) dependencies(ctx context.Context, v policy.Actor, oc *graphql.OperationContext) ([]db.EntityKey, bool) {
	if ownDataOnly(oc, oc.Operation.SelectionSet, "Query", ownDataFields) {
		return []db.EntityKey{{Kind: db.EntityUser, ID: v.UserID}, {Kind: db.EntityTaskCounts, ID: v.UserID}}, true
	}
	f, ok := soleRootField(oc.Operation.SelectionSet)
	if !ok || f.Name != "task" || rc.tasks == nil || !ownDataOnly(oc, f.SelectionSet, "Task", taskByIDFields) {
		return nil, false
	}
	gid, _ := f.ArgumentMap(oc.Variables)["id"].(string)
	id, err := globalid.DecodeAs("id", globalid.KindTask, gid)
	if err != nil {
		return nil, false
	}
	// Read before the answer is computed, as the tokens are: a write that changes the owner
	// changes the task's row too, whose token the answer is stored under.
	task, err := rc.tasks.Get(ctx, v, id)
	if err != nil {
		return nil, false // not visible, missing or a fault: executed, and its error answered, as usual
	}
	return []db.EntityKey{{Kind: db.EntityUser, ID: v.UserID}, {Kind: db.EntityTask, ID: id}, {Kind: db.EntityUser, ID: task.OwnerID}}, true
}

// soleRootField returns the operation's only root field (__typename aside), when there is one
// and no fragment.
func soleRootField(set ast.SelectionSet) (*ast.Field, bool) {
	var only *ast.Field
	for _, sel := range set {
		f, ok := sel.(*ast.Field)
		switch {
		case !ok || only != nil && f.Name != "__typename":
			return nil, false
		case f.Name != "__typename":
			only = f
		}
	}
	return only, only != nil
}

// storedFormat names how stored answers are written (escaped) in their keys, so an answer an older
// version stored unescaped, in a Redis it shares, is never served as escaped.
const storedFormat = "escaped-1"

// responseKey names one answer: the viewer (and role), the document, the operation and the
// variables (json.Marshal sorts map keys, so equal variables give equal keys).
func responseKey(v policy.Actor, oc *graphql.OperationContext) (string, error) {
	vars, err := json.Marshal(oc.Variables)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, part := range []string{storedFormat, v.UserID.String(), string(v.Role), oc.RawQuery, oc.OperationName, string(vars)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ownDataFields are the fields, by type, whose values come only from the viewer's user row, the
// viewer's own tasks and the viewer's task counts (when reached from Query.me or Query.tasks).
var ownDataFields = map[string]map[string]bool{
	"Query":          {"me": true, "tasks": true, "apiVersion": true},
	"TaskConnection": {"edges": true, "pageInfo": true, "totalCount": true},
	"TaskEdge":       {"cursor": true, "node": true},
	"PageInfo":       {"hasNextPage": true, "hasPreviousPage": true, "startCursor": true, "endCursor": true},
	"Task": {"id": true, "title": true, "description": true, "status": true, "priority": true, "dueAt": true,
		"tags": true, "owner": true, "createdAt": true, "updatedAt": true, "version": true},
	"User":       {"id": true, "name": true, "email": true, "role": true, "createdAt": true, "taskCounts": true, "tasks": true},
	"TaskCounts": {"total": true, "todo": true, "inProgress": true, "done": true, "overdue": true},
}

// taskByIDFields are the fields, by type, of an answer to task(id:) that come only from the task's
// row and its owner's user row (their private fields go by the viewer's identity, in the key).
var taskByIDFields = map[string]map[string]bool{
	"Task": ownDataFields["Task"],
	"User": {"id": true, "name": true, "email": true, "role": true, "createdAt": true},
}

// ownDataOnly reports whether every field the selection set (of a value of type typeName) selects
// is on the allow-list, fragments included, and no task list asks for assignedToMe.
func ownDataOnly(oc *graphql.OperationContext, set ast.SelectionSet, typeName string, allowed map[string]map[string]bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__typename" {
				continue
			}
			if !allowed[typeName][s.Name] || s.Definition == nil {
				return false
			}
			if s.Name == "tasks" && assignedToMe(oc, s) {
				return false
			}
			if len(s.SelectionSet) > 0 && !ownDataOnly(oc, s.SelectionSet, s.Definition.Type.Name(), allowed) {
				return false
			}
		case *ast.InlineFragment:
			// A deferred fragment's data arrives in later payloads, which are never stored.
			if s.Directives.ForName("defer") != nil || (s.TypeCondition != "" && s.TypeCondition != typeName) {
				return false
			}
			if !ownDataOnly(oc, s.SelectionSet, typeName, allowed) {
				return false
			}
		case *ast.FragmentSpread:
			if s.Directives.ForName("defer") != nil || s.Definition == nil || (s.Definition.TypeCondition != "" && s.Definition.TypeCondition != typeName) {
				return false
			}
			if !ownDataOnly(oc, s.Definition.SelectionSet, typeName, allowed) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// assignedToMe reports whether a tasks field's filter asks for the tasks assigned to the viewer
// (their owners' rows are other users').
func assignedToMe(oc *graphql.OperationContext, f *ast.Field) bool {
	filter, _ := f.ArgumentMap(oc.Variables)["filter"].(map[string]any)
	b, _ := filter["assignedToMe"].(bool)
	return b
}
