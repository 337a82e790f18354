package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// The statements below are copied from the stores (db/sessions.go Lookup, db/keyset.go fetchPage for
// tasks in the default order as ListWithOwners wraps it, db/tasks.go ByIDWithOwner, CountsByOwners,
// Lock and Update),
// as the server sends them for these requests. If the stores change, change them here too: the
// ceiling only means something while it runs the server's SQL.
const (
	taskColumns = "id, owner_id, assignee_id, title, description, status, priority, due_at, tags, created_at, updated_at, version"

	sqlSessionLookup = `
		SELECT u.id, u.role FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()`
	// The pages come with their owners joined (TaskStore.ListWithOwners), as the server reads them
	// without a row cache.
	ownedTaskColumns = "p.id, p.owner_id, p.assignee_id, p.title, p.description, p.status, p.priority, p.due_at, " +
		"p.tags, p.created_at, p.updated_at, p.version, u.id, u.name, u.email, u.role, u.password_hash, u.created_at, u.updated_at"
	sqlFirstPage = `SELECT ` + ownedTaskColumns + ` FROM (SELECT ` + taskColumns + `, created_at AS sort_key FROM tasks ` +
		`WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT 21) p LEFT JOIN users u ON u.id = p.owner_id ` +
		`ORDER BY p.sort_key DESC, p.id DESC`
	sqlPageAfter = `SELECT ` + ownedTaskColumns + ` FROM (SELECT ` + taskColumns + `, created_at AS sort_key FROM tasks ` +
		`WHERE owner_id = $1 AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT 21) p ` +
		`LEFT JOIN users u ON u.id = p.owner_id ORDER BY p.sort_key DESC, p.id DESC`
	sqlTaskWithOwner = `SELECT ` + ownedTaskColumns + ` FROM tasks p LEFT JOIN users u ON u.id = p.owner_id WHERE p.id = $1`
	sqlRowsBefore    = `SELECT EXISTS (SELECT 1 FROM tasks WHERE owner_id = $1 AND (created_at, id) >= ($2, $3))`
	sqlCountsByUser  = `
		SELECT owner_id,
		       count(*)::int AS total,
		       (count(*) FILTER (WHERE status = 'TODO'))::int AS todo,
		       (count(*) FILTER (WHERE status = 'IN_PROGRESS'))::int AS in_progress,
		       (count(*) FILTER (WHERE status = 'DONE'))::int AS done,
		       (count(*) FILTER (WHERE status <> 'DONE' AND due_at < now()))::int AS overdue
		FROM tasks WHERE owner_id = ANY($1) GROUP BY owner_id`
	sqlLockTask   = `SELECT ` + taskColumns + ` FROM tasks WHERE id = $1 FOR NO KEY UPDATE`
	sqlUpdateTask = `UPDATE tasks SET status = $1, priority = $2, version = version + 1, updated_at = now() ` +
		`WHERE id = $3 RETURNING ` + taskColumns
	// The write is announced to live subscriptions by the tasks table's trigger (migrations/00006), in
	// the same transaction: the ceiling's UPDATE fires it as the server's does.
)

// ceilingOperation runs scenario sc's requests as SQL only: the statements the server runs for the
// same request, one after another as the server does (each on its own pool connection), with rows
// scanned into the same structs. What it leaves out (HTTP, JSON, GraphQL, dataloader waits) is the
// server's own cost.
func ceilingOperation(pool *pgxpool.Pool, users []*benchUser, sc scenario) operation {
	return func(ctx context.Context, w int, rng *rand.Rand) (stepKind, error) {
		u := users[w%len(users)]
		s := sc.next(u, rng)
		return s.kind, s.direct(ctx, pool, u)
	}
}

// direct runs step s for user u as SQL.
func (s step) direct(ctx context.Context, pool *pgxpool.Pool, u *benchUser) error {
	var (
		userID uuid.UUID
		role   policy.Role
	)
	if err := pool.QueryRow(ctx, sqlSessionLookup, u.sessionID).Scan(&userID, &role); err != nil {
		return fmt.Errorf("session lookup: %w", err)
	}
	switch s.kind {
	case stepPage, stepDeep:
		var tasks []ownedTask
		var err error
		if s.kind == stepPage {
			var rows pgx.Rows
			if rows, err = pool.Query(ctx, sqlFirstPage, userID); err == nil {
				tasks, err = collectOwnedTasks(rows)
			}
		} else {
			tasks, err = deepPage(ctx, pool, userID, u)
		}
		if err != nil {
			return err
		}
		if len(tasks) == 0 {
			return errors.New("empty page")
		}
		_, err = queryRows[db.TaskCounts](ctx, pool, sqlCountsByUser, []uuid.UUID{userID})
		return err
	case stepTask:
		rows, err := pool.Query(ctx, sqlTaskWithOwner, u.tasks[s.task])
		if err != nil {
			return err
		}
		tasks, err := collectOwnedTasks(rows)
		if err != nil {
			return err
		}
		if len(tasks) != 1 {
			return fmt.Errorf("task %s: %d rows", u.tasks[s.task], len(tasks))
		}
		return nil
	default:
		return updateTask(ctx, pool, userID, u.tasks[s.task], s)
	}
}

// updateTask changes a task's status and priority as updateTask does: in one transaction, the row
// is read and locked first (the policy decides on it), then updated.
func updateTask(ctx context.Context, pool *pgxpool.Pool, userID, taskID uuid.UUID, s step) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sqlLockTask, taskID)
		if err != nil {
			return fmt.Errorf("lock task %s: %w", taskID, err)
		}
		task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByNameLax[db.Task])
		if err != nil {
			return fmt.Errorf("lock task %s: %w", taskID, err)
		}
		if task.OwnerID != userID {
			return fmt.Errorf("task %s is not bench user %s's", taskID, userID)
		}
		rows, err = tx.Query(ctx, sqlUpdateTask, string(s.status), int16(s.priority), taskID)
		if err != nil {
			return fmt.Errorf("update task %s: %w", taskID, err)
		}
		tasks, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[db.Task])
		if err == nil && len(tasks) != 1 {
			err = fmt.Errorf("update task %s: %d rows", taskID, len(tasks))
		}
		return err
	})
}

// deepPage sends the page and the "rows before it?" check in one batch, as fetchPage does.
func deepPage(ctx context.Context, pool *pgxpool.Pool, userID uuid.UUID, u *benchUser) ([]ownedTask, error) {
	b := &pgx.Batch{}
	b.Queue(sqlPageAfter, userID, u.deepCreatedAt, u.deepID)
	b.Queue(sqlRowsBefore, userID, u.deepCreatedAt, u.deepID)
	br := pool.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("deep page: %w", err)
	}
	tasks, err := collectOwnedTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("deep page: %w", err)
	}
	var before bool
	if err := br.QueryRow().Scan(&before); err != nil {
		return nil, fmt.Errorf("deep page: rows before: %w", err)
	}
	if !before {
		return nil, errors.New("deep page: no rows before the cursor")
	}
	return tasks, br.Close()
}

// ownedTask is a row of a page with its owner joined.
type ownedTask struct {
	task  db.Task
	owner db.User
}

// collectOwnedTasks scans a page read with its owners, by column order (the task's and the user's
// columns share names).
func collectOwnedTasks(rows pgx.Rows) ([]ownedTask, error) {
	var out []ownedTask
	var r ownedTask
	t, o := &r.task, &r.owner
	_, err := pgx.ForEachRow(rows, []any{&t.ID, &t.OwnerID, &t.AssigneeID, &t.Title, &t.Description, &t.Status, &t.Priority,
		&t.DueAt, &t.Tags, &t.CreatedAt, &t.UpdatedAt, &t.Version,
		&o.ID, &o.Name, &o.Email, &o.Role, &o.PasswordHash, &o.CreatedAt, &o.UpdatedAt}, func() error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// queryRows runs one statement and scans every row into a T by column name (leniently, so a column
// the struct lacks, or a field the statement does not select, does not stop the ceiling; the SQL
// check in the report catches statements that drifted from the stores').
func queryRows[T any](ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) ([]T, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[T])
	if err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}
	return out, nil
}
