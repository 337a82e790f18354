-- +goose Up
-- In-app notifications, written by background jobs (internal/jobs). River's own tables (river_job and
-- friends) are created by River's migrations, which db.Migrate applies after these.
CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('TASK_ASSIGNED', 'TASK_STATUS_CHANGED', 'TASK_DUE_SOON')),
    -- The task it is about; kept (task_id NULL) when the task is deleted.
    task_id     uuid        NULL REFERENCES tasks (id) ON DELETE SET NULL,
    -- What the message needs, as it was when the notification was made (title, who, status, due date).
    payload     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    -- Names the event within (user, kind, task): the task version for changes, the due date for
    -- reminders. With the unique key below a retried job inserts nothing twice, and a task is
    -- reminded once per due date.
    dedupe_key  text        NOT NULL CHECK (char_length(dedupe_key) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz NULL,
    CONSTRAINT notifications_dedupe_key UNIQUE (user_id, kind, task_id, dedupe_key)
);
-- Query.notifications: newest first, keyset on (created_at, id); also serves unreadOnly (a filter on
-- the same range) and the user's cascade delete.
CREATE INDEX notifications_user_created_at_idx ON notifications (user_id, created_at, id);
-- User.unreadNotificationCount and markNotificationsRead(all: true): only the unread rows.
CREATE INDEX notifications_user_unread_idx ON notifications (user_id, created_at, id) WHERE read_at IS NULL;
-- ON DELETE SET NULL from tasks looks notifications up by task.
CREATE INDEX notifications_task_id_idx ON notifications (task_id) WHERE task_id IS NOT NULL;

-- The due-reminder job scans open tasks by due date, across all owners.
CREATE INDEX tasks_open_due_at_idx ON tasks (due_at, id) WHERE due_at IS NOT NULL AND status <> 'DONE';

-- +goose Down
DROP INDEX tasks_open_due_at_idx;
DROP TABLE notifications;
