// Package policy is Taskgraph's one authorization policy: who may see, change and list what. Every
// path that answers with data or changes it — queries, mutations, node/nodes, subscription events,
// the response cache, exports, reports and bulk jobs, the download route — asks these functions, so
// a rule lives here exactly once.
//
// The functions take an Actor (who asks, as confirmed for this very operation) and the facts of the
// object (its owner, its assignee), never a context or a store: they decide, they do not load. An
// object the actor may not see is answered exactly like a missing one (NOT_FOUND), so its existence
// does not leak.
package policy

import (
	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Role is what a user may do beyond their own data. The GraphQL Role enum is bound to it.
type Role string

const (
	RoleUser  Role = "USER"
	RoleAdmin Role = "ADMIN"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleUser || r == RoleAdmin }

// Includes reports whether a user holding r may act as want: ADMIN includes USER.
func (r Role) Includes(want Role) bool { return r == want || r == RoleAdmin }

// Actor is who performs an operation: a signed-in user with the role and session that were current
// when the operation started, or the zero Actor (anonymous).
type Actor struct {
	UserID    uuid.UUID
	Role      Role
	SessionID uuid.UUID
}

// SignedIn reports whether the actor is a user (the zero Actor is anonymous).
func (a Actor) SignedIn() bool { return a.UserID != uuid.Nil }

// Is reports whether the actor is the user id.
func (a Actor) Is(id uuid.UUID) bool { return a.SignedIn() && a.UserID == id }

// RequireSignedIn is the @auth rule: anonymous actors get UNAUTHENTICATED.
func RequireSignedIn(a Actor) error {
	if !a.SignedIn() {
		return apperr.New(apperr.Unauthenticated, "sign in first: this field needs a valid access token")
	}
	return nil
}

// RequireRole is the @hasRole rule: the actor must hold role or one that includes it.
func RequireRole(a Actor, role Role) error {
	if err := RequireSignedIn(a); err != nil {
		return err
	}
	if !a.Role.Includes(role) {
		return apperr.New(apperr.Forbidden, "this field requires the %s role", role)
	}
	return nil
}

// TaskFacts are what the task rules look at.
type TaskFacts struct {
	OwnerID    uuid.UUID
	AssigneeID *uuid.UUID
}

// isAssignee reports whether the actor is the task's assignee.
func (f TaskFacts) isAssignee(a Actor) bool {
	return f.AssigneeID != nil && a.Is(*f.AssigneeID)
}

// CanSeeTask: a task is visible to its owner and to its assignee, to nobody else (admins included).
func CanSeeTask(a Actor, f TaskFacts) bool { return a.Is(f.OwnerID) || f.isAssignee(a) }

// taskNotFound is the answer for a task the actor may not see, identical to a missing one.
func taskNotFound() error { return apperr.New(apperr.NotFound, "task not found") }

// CheckSeeTask is CanSeeTask as an error: NOT_FOUND for a task the actor may not see.
func CheckSeeTask(a Actor, f TaskFacts) error {
	if !CanSeeTask(a, f) {
		return taskNotFound()
	}
	return nil
}

// CheckEditTask decides an update that changes the named fields: the owner may change every field,
// the assignee only the status (ownerOnly lists the other fields the update sets, by their input
// names; the assignee gets FORBIDDEN naming each), anyone else NOT_FOUND.
func CheckEditTask(a Actor, f TaskFacts, ownerOnly []string) error {
	switch {
	case a.Is(f.OwnerID):
		return nil
	case !f.isAssignee(a):
		return taskNotFound()
	case len(ownerOnly) == 0:
		return nil
	}
	e := apperr.New(apperr.Forbidden, "only the task's owner can change %s", joinFields(ownerOnly))
	for _, name := range ownerOnly {
		e.Violations = append(e.Violations, apperr.Violation{Field: name, Message: "only the task's owner can change " + name})
	}
	return e
}

// CheckDeleteTask: the owner may delete a task; the assignee gets FORBIDDEN, anyone else NOT_FOUND.
func CheckDeleteTask(a Actor, f TaskFacts) error {
	switch {
	case a.Is(f.OwnerID):
		return nil
	case f.isAssignee(a):
		return apperr.New(apperr.Forbidden, "only the task's owner can delete it")
	}
	return taskNotFound()
}

// TaskList names the lists of tasks an actor may read.
type TaskList int

const (
	// OwnTasks are the tasks the actor owns.
	OwnTasks TaskList = iota
	// AssignedTasks are the tasks assigned to the actor, whoever owns them.
	AssignedTasks
)

// CheckListTasksOf decides User.tasks: a user's task list is private to that user, admins included.
func CheckListTasksOf(a Actor, userID uuid.UUID) error {
	if err := RequireSignedIn(a); err != nil {
		return err
	}
	if !a.Is(userID) {
		return apperr.New(apperr.Forbidden, "only the user themself can list their tasks")
	}
	return nil
}

// CanSeePrivateProfile decides a user's email and task counts: the user themself and admins.
func CanSeePrivateProfile(a Actor, userID uuid.UUID) bool {
	return a.Is(userID) || (a.SignedIn() && a.Role.Includes(RoleAdmin))
}

// CheckSeeTaskCounts is CanSeePrivateProfile for User.taskCounts, as an error.
func CheckSeeTaskCounts(a Actor, userID uuid.UUID) error {
	if err := RequireSignedIn(a); err != nil {
		return err
	}
	if !CanSeePrivateProfile(a, userID) {
		return apperr.New(apperr.Forbidden, "task counts are visible to the user themself and to admins")
	}
	return nil
}

// CheckSeeUnreadCount decides User.unreadNotificationCount: the user themself only.
func CheckSeeUnreadCount(a Actor, userID uuid.UUID) error {
	if err := RequireSignedIn(a); err != nil {
		return err
	}
	if !a.Is(userID) {
		return apperr.New(apperr.Forbidden, "the unread notification count is visible to the user themself only")
	}
	return nil
}

// CheckListUsers decides Query.users: admins only.
func CheckListUsers(a Actor) error { return RequireRole(a, RoleAdmin) }

// CanSeeUser: any signed-in user may see another's public profile (id, name, role, createdAt), as
// the owner or assignee of a shared task; private fields have their own rules.
func CanSeeUser(a Actor) bool { return a.SignedIn() }

// Owned objects — jobs, notifications, webhooks and the export files of jobs — belong to exactly one
// user and are visible to that user only, admins included.

// CanSeeOwned reports whether the actor owns the object.
func CanSeeOwned(a Actor, ownerID uuid.UUID) bool { return a.Is(ownerID) }

// CheckSeeOwned is CanSeeOwned as an error: NOT_FOUND (named what) for anyone but the owner.
func CheckSeeOwned(a Actor, ownerID uuid.UUID, what string) error {
	if !CanSeeOwned(a, ownerID) {
		return apperr.New(apperr.NotFound, "%s not found", what)
	}
	return nil
}

func joinFields(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// CheckBulkEdit decides a bulk update or delete: it acts on the actor's own tasks only (an assignee
// may change one task's status, not a whole list of other people's tasks).
func CheckBulkEdit(a Actor, assignedTasks bool) error {
	if err := RequireSignedIn(a); err != nil {
		return err
	}
	if assignedTasks {
		return apperr.Invalid("assignedToMe", "bulk operations act on your own tasks only: leave assignedToMe out or false")
	}
	return nil
}
