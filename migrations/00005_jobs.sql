-- +goose Up
-- The user-visible side of background work (GraphQL type Job): exports, reports and bulk operations.
-- River's river_job row is the queue entry that gets a worker to it; this row is what the user follows
-- (status, progress, result) and where an interrupted job resumes (checkpoint, written in the same
-- transaction as each chunk of work, so a retry never redoes a committed chunk).
CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          text        NOT NULL CHECK (kind IN ('TASK_EXPORT', 'TASK_REPORT', 'BULK_UPDATE_TASKS', 'BULK_DELETE_TASKS')),
    status        text        NOT NULL DEFAULT 'QUEUED' CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    -- What was asked (format, filter, patch) and when: fixed at request time.
    params        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    processed     integer     NOT NULL DEFAULT 0 CHECK (processed >= 0),
    total         integer     CHECK (total >= 0),
    -- Where the next attempt resumes (the last key done, bytes written, ...), kind-specific.
    checkpoint    jsonb,
    result        jsonb,
    error_code    text,
    error_message text,
    attempt       integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    -- When the job's output (an export file) is deleted; the row itself goes after JOB_RETENTION.
    expires_at    timestamptz
);
-- Query.jobs: newest first, keyset on (created_at, id); also the user's cascade delete.
CREATE INDEX jobs_user_created_at_idx ON jobs (user_id, created_at, id);
-- The per-user limit on active jobs counts only these.
CREATE INDEX jobs_user_active_idx ON jobs (user_id) WHERE status IN ('QUEUED', 'RUNNING');
-- The retention sweep finds finished jobs and expired exports by time.
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_expires_at_idx ON jobs (expires_at) WHERE expires_at IS NOT NULL;

-- An export file, in order, in chunks of about 1 MiB: every instance can serve the download, and
-- neither writing nor reading it ever holds more than one chunk in memory.
CREATE TABLE export_chunks (
    job_id  uuid    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea   NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- When a task was moved to DONE (the report counts completions per week). A trigger keeps it, so
-- every write path (updateTask, bulk updates, anything later) agrees.
ALTER TABLE tasks ADD COLUMN completed_at timestamptz;
UPDATE tasks SET completed_at = updated_at WHERE status = 'DONE';

-- +goose StatementBegin
CREATE FUNCTION tasks_track_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'DONE' THEN
        NEW.completed_at := NULL;
    ELSIF TG_OP = 'INSERT' OR OLD.status <> 'DONE' THEN
        NEW.completed_at := now();
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tasks_track_completion BEFORE INSERT OR UPDATE OF status ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_track_completion();
-- The report's completions per week, per owner.
CREATE INDEX tasks_owner_completed_at_idx ON tasks (owner_id, completed_at) WHERE completed_at IS NOT NULL;

-- +goose Down
DROP INDEX tasks_owner_completed_at_idx;
DROP TRIGGER tasks_track_completion ON tasks;
DROP FUNCTION tasks_track_completion();
ALTER TABLE tasks DROP COLUMN completed_at;
DROP TABLE export_chunks;
DROP TABLE jobs;
