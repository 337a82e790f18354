package resolvers

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/account"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// addError reports err for the list element at index i without failing the whole list.
func addError(ctx context.Context, err error, i int) {
	path := append(graphql.GetPath(ctx), ast.PathIndex(i))
	graphql.AddError(ctx, &gqlerror.Error{Err: err, Message: err.Error(), Path: path})
}

func version(field string, n int) (*int32, error) {
	if n < 1 || n > math.MaxInt32 {
		return nil, apperr.Invalid(field, fmt.Sprintf("must be a positive version number, got %d", n))
	}
	v := int32(n)
	return &v, nil
}

// taskPatch validates an updateTask input into a patch. A field that is omitted is left alone; a field
// set to null is cleared, where clearing makes sense.
func taskPatch(in model.UpdateTaskInput) (db.TaskPatch, *int32, error) {
	var (
		v     apperr.Violations
		patch db.TaskPatch
	)
	if title, set := in.Title.ValueOK(); set {
		if title == nil {
			v.Add("input.title", "cannot be null: every task has a title")
		} else {
			patch.Title = db.Optional[string]{Set: true, Value: text(&v, "input.title", *title, 1, maxTitleLen, false)}
		}
	}
	if d, set := in.Description.ValueOK(); set {
		if d != nil {
			s := text(&v, "input.description", *d, 0, maxDescriptionLen, true)
			d = &s
		}
		patch.Description = db.Optional[*string]{Set: true, Value: d}
	}
	if s, set := in.Status.ValueOK(); set {
		if s == nil {
			v.Add("input.status", "cannot be null")
		} else {
			patch.Status = db.Optional[db.TaskStatus]{Set: true, Value: *s}
		}
	}
	if p, set := in.Priority.ValueOK(); set {
		if p == nil {
			v.Add("input.priority", "cannot be null")
		} else {
			patch.Priority = db.Optional[db.Priority]{Set: true, Value: *p}
		}
	}
	if d, set := in.DueAt.ValueOK(); set {
		dueAt(&v, "input.dueAt", d)
		patch.DueAt = db.Optional[*time.Time]{Set: true, Value: d}
	}
	if t, set := in.Tags.ValueOK(); set {
		patch.Tags = db.Optional[[]string]{Set: true, Value: tags(&v, "input.tags", t)}
	}
	var unknownAssignee error
	if a, set := in.AssigneeID.ValueOK(); set {
		var id *uuid.UUID
		id, unknownAssignee = assignee(&v, a)
		patch.AssigneeID = db.Optional[*uuid.UUID]{Set: true, Value: id}
	}
	var expected *int32
	if in.ExpectedVersion != nil {
		var err error
		if expected, err = version("input.expectedVersion", *in.ExpectedVersion); err != nil {
			v.Add("input.expectedVersion", "must be a positive version number")
		}
	}
	if err := v.Err(); err != nil {
		return patch, expected, err
	}
	return patch, expected, unknownAssignee
}

// assignee decodes input.assigneeId: nil stays nil (unassigned). A malformed id is a violation; the
// id of something other than a user is NOT_FOUND like a user that does not exist (which the store
// reports, since only the write itself can tell without a race).
func assignee(v *apperr.Violations, gid *string) (*uuid.UUID, error) {
	if gid == nil {
		return nil, nil
	}
	kind, id, err := globalid.Decode("input.assigneeId", *gid)
	if err != nil {
		v.Add("input.assigneeId", "is not a valid ID: pass back an id exactly as this server returned it")
		return nil, nil
	}
	if kind != globalid.KindUser {
		return nil, apperr.FieldError(apperr.NotFound, "input.assigneeId", "no user has this id")
	}
	return &id, nil
}

// authPayload maps a signed-in session to the GraphQL payload.
func authPayload(s *account.Session, err error) (*model.AuthPayload, error) {
	if err != nil {
		return nil, err
	}
	return &model.AuthPayload{AccessToken: s.AccessToken, RefreshToken: s.RefreshToken, ExpiresAt: s.ExpiresAt, User: s.User}, nil
}
