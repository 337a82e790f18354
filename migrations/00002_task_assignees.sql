-- +goose Up
-- A task may be assigned to another user (or its owner). The assignee can read the task and change its
-- status; deleting the assignee's account unassigns their tasks.
ALTER TABLE tasks ADD COLUMN assignee_id uuid NULL REFERENCES users (id) ON DELETE SET NULL;

-- tasks(filter: {assignedToMe: true}): one index per orderBy, led by the assignee, ending in id for the
-- keyset tie-break, as for the owner's list. Partial: most tasks have no assignee. The same indexes serve
-- ON DELETE SET NULL when a user is deleted (a lookup by assignee_id).
CREATE INDEX tasks_assignee_created_at_idx ON tasks (assignee_id, created_at, id) WHERE assignee_id IS NOT NULL;
CREATE INDEX tasks_assignee_updated_at_idx ON tasks (assignee_id, updated_at, id) WHERE assignee_id IS NOT NULL;
CREATE INDEX tasks_assignee_due_at_idx ON tasks (assignee_id, (coalesce(due_at, 'infinity'::timestamptz)), id)
    WHERE assignee_id IS NOT NULL;
CREATE INDEX tasks_assignee_priority_idx ON tasks (assignee_id, priority, id) WHERE assignee_id IS NOT NULL;

-- +goose Down
DROP INDEX tasks_assignee_priority_idx;
DROP INDEX tasks_assignee_due_at_idx;
DROP INDEX tasks_assignee_updated_at_idx;
DROP INDEX tasks_assignee_created_at_idx;
ALTER TABLE tasks DROP COLUMN assignee_id;
