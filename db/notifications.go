package db

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// NotificationKind is what a notification is about; the GraphQL NotificationKind enum is bound to it.
type NotificationKind string

const (
	NotificationTaskAssigned      NotificationKind = "TASK_ASSIGNED"
	NotificationTaskStatusChanged NotificationKind = "TASK_STATUS_CHANGED"
	NotificationTaskDueSoon       NotificationKind = "TASK_DUE_SOON"
)

// Notification is a row of notifications: one in-app message to one user.
type Notification struct {
	ID        uuid.UUID           `db:"id"`
	UserID    uuid.UUID           `db:"user_id"`
	Kind      NotificationKind    `db:"kind"`
	TaskID    *uuid.UUID          `db:"task_id"` // nil once the task is deleted
	Payload   NotificationPayload `db:"payload"`
	CreatedAt time.Time           `db:"created_at"`
	ReadAt    *time.Time          `db:"read_at"`
}

// IsNode makes a notification a GraphQL Node.
func (Notification) IsNode() {}

// NotificationPayload is what the message is made of, as it was when the notification was written.
type NotificationPayload struct {
	Title     string     `json:"title"`
	ActorName string     `json:"actorName,omitempty"` // who assigned the task or changed its status
	Status    TaskStatus `json:"status,omitempty"`    // TASK_STATUS_CHANGED: the new status
	DueAt     *time.Time `json:"dueAt,omitempty"`     // TASK_DUE_SOON: the due date reminded of
}

const notificationColumns = "id, user_id, kind, task_id, payload, created_at, read_at"

// NotificationStore reads the viewer's notifications and writes them for the background jobs. Every
// read and mark is scoped to one user: another user's notification answers like a missing one.
type NotificationStore struct {
	q       querier
	cursors *cursor.Codec
	changed *changeSet
}

// NotificationEdge is one notification of a connection with its cursor.
type NotificationEdge struct {
	Cursor string
	Node   *Notification
}

// NotificationConnection is a page of notifications, newest first.
type NotificationConnection struct {
	Edges    []NotificationEdge
	PageInfo PageInfo
	filter   where
}

// notificationSort: newest first, ties broken by id (notifications_user_created_at_idx, or the
// partial notifications_user_unread_idx for unreadOnly).
var notificationSort = sortKey[Notification]{
	expr: "created_at", keyOf: func(n Notification) any { return timeKey(n.CreatedAt) }, param: timeParam,
}

// List returns one page of userID's notifications, newest first; unreadOnly keeps the unread ones.
// Cursors are scoped to the user and to unreadOnly.
func (s NotificationStore) List(ctx context.Context, userID uuid.UUID, unreadOnly bool, args PageArgs) (*NotificationConnection, error) {
	scope := scopeOf("notifications", userID.String(), strconv.FormatBool(unreadOnly))
	req, err := parsePage(s.cursors, args, scope)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("user_id = ?", userID)
	if unreadOnly {
		w.add("read_at IS NULL")
	}
	l := keysetList[Notification]{
		table: "notifications", columns: notificationColumns, filter: w,
		sort: notificationSort, desc: true, idOf: func(n Notification) uuid.UUID { return n.ID }, scope: scope,
	}
	p, err := fetchPage(ctx, s.q, s.cursors, l, req)
	if err != nil {
		return nil, mapError(err, "notifications")
	}
	conn := &NotificationConnection{PageInfo: p.info, filter: w, Edges: make([]NotificationEdge, len(p.rows))}
	for i := range p.rows {
		conn.Edges[i] = NotificationEdge{Cursor: p.cursors[i], Node: &p.rows[i]}
	}
	return conn, nil
}

// Count returns how many notifications match the connection's filter (its totalCount).
func (s NotificationStore) Count(ctx context.Context, conn *NotificationConnection) (int, error) {
	n, err := countRows(ctx, s.q, "notifications", conn.filter)
	return n, mapError(err, "notifications")
}

// UnreadCount returns how many of userID's notifications are unread.
func (s NotificationStore) UnreadCount(ctx context.Context, userID uuid.UUID) (int, error) {
	var n int64
	err := s.q.QueryRow(ctx, `SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL`, userID).Scan(&n)
	return int(n), mapError(err, "notifications")
}

// ByID returns the notification id, whoever it is for, or NOT_FOUND.
func (s NotificationStore) ByID(ctx context.Context, id uuid.UUID) (*Notification, error) {
	rows, err := s.q.Query(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id = $1`, id)
	if err != nil {
		return nil, mapError(err, "notification")
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Notification])
	return n, mapError(err, "notification")
}

// MarkRead marks userID's unread notifications among ids as read (all of them with all) and returns
// how many changed. Ids of other users' notifications, missing ones and read ones are ignored.
func (s NotificationStore) MarkRead(ctx context.Context, userID uuid.UUID, ids []uuid.UUID, all bool) (int, error) {
	if !all && len(ids) == 0 {
		return 0, nil
	}
	sql := `UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL`
	args := []any{userID}
	if !all {
		sql += ` AND id = ANY($2)`
		args = append(args, ids)
	}
	tag, err := s.q.Exec(ctx, sql, args...)
	if err != nil {
		return 0, mapError(err, "notifications")
	}
	if tag.RowsAffected() > 0 {
		// Nothing cached changes, but the user's next reads should see it (read-your-writes).
		s.changed.add(ctx, EntityKey{EntityWriter, userID})
	}
	return int(tag.RowsAffected()), nil
}

// versionKey names one change of a task: its version after the change.
func versionKey(version int32) string { return "v" + strconv.FormatInt(int64(version), 10) }

// NotifyAssigned tells assigneeID that the task was assigned to them (at task version version),
// if they are still its assignee. Idempotent: a retry of the same change inserts nothing. It reports
// whether a notification was written.
func (s NotificationStore) NotifyAssigned(ctx context.Context, taskID, assigneeID uuid.UUID, version int32) (bool, error) {
	id, err := s.NotifyAssignedID(ctx, taskID, assigneeID, version)
	return id != nil, err
}

// NotifyAssignedID is NotifyAssigned answering the id of the notification written (nil: none).
func (s NotificationStore) NotifyAssignedID(ctx context.Context, taskID, assigneeID uuid.UUID, version int32) (*uuid.UUID, error) {
	return s.insertReturningID(ctx, `
		INSERT INTO notifications (user_id, kind, task_id, dedupe_key, payload)
		SELECT t.assignee_id, $1, t.id, $2, jsonb_build_object('title', t.title, 'actorName', o.name)
		FROM tasks t JOIN users o ON o.id = t.owner_id
		WHERE t.id = $3 AND t.assignee_id = $4
		ON CONFLICT ON CONSTRAINT notifications_dedupe_key DO NOTHING
		RETURNING id`,
		string(NotificationTaskAssigned), versionKey(version), taskID, assigneeID)
}

// NotifyStatusChanged tells the task's owner that actorID moved it to status (at task version
// version). Idempotent like NotifyAssigned; nothing is written once the task is gone.
func (s NotificationStore) NotifyStatusChanged(ctx context.Context, taskID, ownerID, actorID uuid.UUID, status TaskStatus, version int32) (bool, error) {
	id, err := s.NotifyStatusChangedID(ctx, taskID, ownerID, actorID, status, version)
	return id != nil, err
}

// NotifyStatusChangedID is NotifyStatusChanged answering the id of the notification written (nil: none).
func (s NotificationStore) NotifyStatusChangedID(ctx context.Context, taskID, ownerID, actorID uuid.UUID, status TaskStatus, version int32) (*uuid.UUID, error) {
	return s.insertReturningID(ctx, `
		INSERT INTO notifications (user_id, kind, task_id, dedupe_key, payload)
		SELECT t.owner_id, $1, t.id, $2, jsonb_strip_nulls(jsonb_build_object('title', t.title, 'status', $3::text, 'actorName', a.name))
		FROM tasks t LEFT JOIN users a ON a.id = $4
		WHERE t.id = $5 AND t.owner_id = $6
		ON CONFLICT ON CONSTRAINT notifications_dedupe_key DO NOTHING
		RETURNING id`,
		string(NotificationTaskStatusChanged), versionKey(version), string(status), actorID, taskID, ownerID)
}

func (s NotificationStore) insertReturningID(ctx context.Context, sql string, args ...any) (*uuid.UUID, error) {
	var id uuid.UUID
	err := s.q.QueryRow(ctx, sql, args...).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, mapError(err, "notification")
	}
	return &id, nil
}

// Message renders the notification's one-line summary from what was recorded when it was written
// (so it stays true to that moment, even after the task changed or was deleted).
func (n *Notification) Message() string {
	p := n.Payload
	title := "“" + p.Title + "”"
	switch n.Kind {
	case NotificationTaskAssigned:
		if p.ActorName == "" {
			return "You were assigned " + title
		}
		return p.ActorName + " assigned you " + title
	case NotificationTaskStatusChanged:
		if p.ActorName == "" {
			return title + " moved to " + string(p.Status)
		}
		return p.ActorName + " moved " + title + " to " + string(p.Status)
	case NotificationTaskDueSoon:
		if p.DueAt == nil {
			return title + " is due soon"
		}
		return title + " is due " + p.DueAt.UTC().Format(time.RFC3339)
	}
	return title
}

// NotificationRef names a notification just written and its recipient: what its deliveries
// (webhooks, email, live subscriptions) start from.
type NotificationRef struct {
	ID     uuid.UUID
	UserID uuid.UUID
}

// WebhookDelivery is one notification to send to one webhook.
type WebhookDelivery struct {
	WebhookID      uuid.UUID
	NotificationID uuid.UUID
}

// WebhookDeliveries lists what notifications just written fan out to: one delivery per webhook of
// each one's recipient, in one statement however many there are (webhooks_user_id_idx).
func (s NotificationStore) WebhookDeliveries(ctx context.Context, written []NotificationRef) ([]WebhookDelivery, error) {
	if len(written) == 0 {
		return nil, nil
	}
	ids, users := make([]uuid.UUID, len(written)), make([]uuid.UUID, len(written))
	for i, w := range written {
		ids[i], users[i] = w.ID, w.UserID
	}
	rows, err := s.q.Query(ctx, `
		SELECT w.id, r.id
		FROM unnest($1::uuid[], $2::uuid[]) AS r (id, user_id)
		JOIN webhooks w ON w.user_id = r.user_id
		ORDER BY r.id, w.created_at, w.id`, ids, users)
	if err != nil {
		return nil, mapError(err, "webhooks")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (WebhookDelivery, error) {
		var d WebhookDelivery
		err := row.Scan(&d.WebhookID, &d.NotificationID)
		return d, err
	})
	return out, mapError(err, "webhooks")
}

// DueReminderChunk is how many tasks one step of the due-reminder sweep handles.
const DueReminderChunk = 500

// DueSweep is one run of the due-reminder sweep: its "now", fixed when it starts so that the window
// does not slide while it runs, and the (due_at, id) position after which its next chunk starts.
type DueSweep struct {
	until    time.Time
	afterDue time.Time
	afterID  uuid.UUID // the nil UUID sorts first
	chunk    int
	done     bool
}

// Done reports whether the sweep has been through every task due within its window.
func (w *DueSweep) Done() bool { return w.done }

// StartDueSweep begins a sweep of the tasks due within window from now, chunk at a time
// (DueReminderChunk when 0). Step through it with RemindDueChunk.
func (s NotificationStore) StartDueSweep(ctx context.Context, window time.Duration, chunk int) (*DueSweep, error) {
	if chunk <= 0 {
		chunk = DueReminderChunk
	}
	var now time.Time
	if err := s.q.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return nil, mapError(err, "due reminders")
	}
	return &DueSweep{until: now.Add(window), afterDue: now, chunk: chunk}, nil
}

// RemindDueChunk writes the TASK_DUE_SOON reminders of the sweep's next chunk of tasks and advances
// the sweep: for the owner and the assignee (if any) of every task not DONE, due within the window,
// that has not been reminded of for this due date. Each reminder is written once per task and due
// date, however often sweeps run and even concurrently (the notifications_dedupe_key constraint); a
// new due date earns a new reminder. It answers the reminders it wrote, so that the caller can
// deliver them: inside InTx, in the same transaction as the write.
func (s NotificationStore) RemindDueChunk(ctx context.Context, w *DueSweep) ([]NotificationRef, error) {
	if w.done {
		return nil, nil
	}
	var (
		scanned      int64
		lastDue      *time.Time
		lastID       *uuid.UUID
		ids, userIDs []uuid.UUID
	)
	// tasks_open_due_at_idx serves the range and an index of notifications (by task, or the unique
	// key) the anti-join, so tasks reminded already cost one index probe each per run, no write. A
	// run still reads every open task due within the window: about 0.2 s for 64,000 of them.
	err := s.q.QueryRow(ctx, `
		WITH due AS (
			SELECT t.id, t.owner_id, t.assignee_id, t.title, t.due_at,
			       'due:' || (extract(epoch FROM t.due_at) * 1000000)::bigint AS dedupe_key
			FROM tasks t
			WHERE t.due_at IS NOT NULL AND t.status <> 'DONE'
			  AND (t.due_at, t.id) > ($1, $2) AND t.due_at <= $3
			  AND NOT EXISTS (
			      SELECT 1 FROM notifications n
			      WHERE n.user_id = t.owner_id AND n.kind = $4 AND n.task_id = t.id
			        AND n.dedupe_key = 'due:' || (extract(epoch FROM t.due_at) * 1000000)::bigint)
			ORDER BY t.due_at, t.id
			LIMIT $5
		), ins AS (
			INSERT INTO notifications (user_id, kind, task_id, dedupe_key, payload)
			SELECT r.user_id, $4, d.id, d.dedupe_key, jsonb_build_object('title', d.title, 'dueAt', d.due_at)
			FROM due d CROSS JOIN LATERAL (VALUES (d.owner_id), (d.assignee_id)) AS r (user_id)
			WHERE r.user_id IS NOT NULL
			ON CONFLICT ON CONSTRAINT notifications_dedupe_key DO NOTHING
			RETURNING id, user_id
		)
		SELECT (SELECT count(*) FROM due), last.due_at, last.id,
		       (SELECT array_agg(id ORDER BY id) FROM ins), (SELECT array_agg(user_id ORDER BY id) FROM ins)
		FROM (SELECT 1) AS one
		LEFT JOIN LATERAL (SELECT due_at, id FROM due ORDER BY due_at DESC, id DESC LIMIT 1) AS last ON true`,
		w.afterDue, w.afterID, w.until, string(NotificationTaskDueSoon), w.chunk,
	).Scan(&scanned, &lastDue, &lastID, &ids, &userIDs)
	if err != nil {
		return nil, mapError(err, "due reminders")
	}
	if len(ids) != len(userIDs) {
		return nil, fmt.Errorf("due reminders: %d ids for %d recipients", len(ids), len(userIDs))
	}
	if scanned < int64(w.chunk) || lastDue == nil || lastID == nil {
		w.done = true
	} else {
		w.afterDue, w.afterID = *lastDue, *lastID
	}
	out := make([]NotificationRef, len(ids))
	for i := range ids {
		out[i] = NotificationRef{ID: ids[i], UserID: userIDs[i]}
	}
	return out, nil
}

// RemindDueSoon runs a whole due-reminder sweep (see RemindDueChunk), each chunk its own short
// statement, and answers every reminder it wrote. It does not deliver them: the due_reminders job
// steps through the sweep itself, delivering each chunk's reminders in the chunk's transaction.
func (s NotificationStore) RemindDueSoon(ctx context.Context, window time.Duration, chunk int) ([]NotificationRef, error) {
	w, err := s.StartDueSweep(ctx, window, chunk)
	if err != nil {
		return nil, err
	}
	var all []NotificationRef
	for !w.Done() {
		written, err := s.RemindDueChunk(ctx, w)
		if err != nil {
			return all, err
		}
		all = append(all, written...)
	}
	return all, nil
}

// GlobalID is the notification's opaque Node ID (the GraphQL id field).
func (n Notification) GlobalID() string { return globalid.Encode(globalid.KindNotification, n.ID) }

// Latest returns the position (created_at, id) of userID's newest notification; zero values when
// there is none. Subscriptions start after it.
func (s NotificationStore) Latest(ctx context.Context, userID uuid.UUID) (time.Time, uuid.UUID, error) {
	var (
		at time.Time
		id uuid.UUID
	)
	err := s.q.QueryRow(ctx, `SELECT created_at, id FROM notifications WHERE user_id = $1
		ORDER BY created_at DESC, id DESC LIMIT 1`, userID).Scan(&at, &id)
	if err == pgx.ErrNoRows {
		return time.Time{}, uuid.Nil, nil
	}
	return at, id, mapError(err, "notifications")
}

// After returns userID's notifications positioned after (at, id), oldest first, at most limit.
func (s NotificationStore) After(ctx context.Context, userID uuid.UUID, at time.Time, id uuid.UUID, limit int) ([]Notification, error) {
	rows, err := s.q.Query(ctx, `SELECT `+notificationColumns+` FROM notifications
		WHERE user_id = $1 AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4`, userID, at, id, limit)
	if err != nil {
		return nil, mapError(err, "notifications")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Notification])
	return out, mapError(err, "notifications")
}
