-- +goose Up
-- Live updates come from the writes themselves. Triggers record what each committed write did and
-- announce it with pg_notify, which PostgreSQL delivers at COMMIT (never for a rolled-back write, and
-- in commit order), so no code path can forget to publish, publish a write that did not happen, or
-- lose the event by dying between its commit and a later publish.

-- Every change of a task, in the order the changes were made: what happened (kind), the version it
-- made, everyone it concerns (owner and assignee, before and after), and the row as the change left
-- it. Live subscribers receive exactly this sequence per task: one load of the changes per event on
-- each instance, shared by all its subscribers. xid is the writing transaction (for readers that
-- must not skip a change committed late with an earlier seq).
CREATE TABLE task_changes (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    task_id         uuid        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('CREATED', 'UPDATED', 'DELETED')),
    version         integer     NOT NULL,
    owner_id        uuid        NOT NULL,
    assignee_id     uuid,
    old_owner_id    uuid,
    old_assignee_id uuid,
    task            jsonb,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
-- Retention sweeps by time; a task's history by task.
CREATE INDEX task_changes_changed_at_idx ON task_changes (changed_at);
CREATE INDEX task_changes_task_idx ON task_changes (task_id, seq);

-- +goose StatementBegin
CREATE FUNCTION tasks_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c task_changes;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_changes (task_id, kind, version, owner_id, assignee_id, task)
        VALUES (NEW.id, 'CREATED', NEW.version, NEW.owner_id, NEW.assignee_id, to_jsonb(NEW))
        RETURNING * INTO c;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO task_changes (task_id, kind, version, owner_id, assignee_id, old_owner_id, old_assignee_id, task)
        VALUES (NEW.id, 'UPDATED', NEW.version, NEW.owner_id, NEW.assignee_id, OLD.owner_id, OLD.assignee_id, to_jsonb(NEW))
        RETURNING * INTO c;
    ELSE
        INSERT INTO task_changes (task_id, kind, version, owner_id, assignee_id, old_owner_id, old_assignee_id)
        VALUES (OLD.id, 'DELETED', OLD.version, OLD.owner_id, OLD.assignee_id, OLD.owner_id, OLD.assignee_id)
        RETURNING * INTO c;
    END IF;
    PERFORM pg_notify('taskgraph_events', json_build_object(
        'kind', 'task', 'id', c.task_id, 'seq', c.seq, 'change', c.kind, 'version', c.version,
        'userIds', array_remove(ARRAY[c.owner_id, c.assignee_id, c.old_owner_id, c.old_assignee_id], NULL)
    )::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tasks_record_insert_delete AFTER INSERT OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_record_change();
CREATE TRIGGER tasks_record_update AFTER UPDATE ON tasks
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION tasks_record_change();

-- Sessions that end (logout, password change, refresh-token reuse) and users whose role changes or
-- who are deleted: open websockets and SSE streams of those sessions end on every instance.
-- +goose StatementBegin
CREATE FUNCTION sessions_announce_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskgraph_events', json_build_object(
        'kind', 'session', 'id', NEW.id, 'userIds', ARRAY[NEW.user_id])::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER sessions_announce_revocation AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION sessions_announce_revocation();

-- +goose StatementBegin
CREATE FUNCTION users_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('taskgraph_events', json_build_object(
            'kind', 'user', 'id', OLD.id, 'change', 'DELETED', 'userIds', ARRAY[OLD.id])::text);
    ELSE
        PERFORM pg_notify('taskgraph_events', json_build_object(
            'kind', 'user', 'id', NEW.id, 'change', 'ROLE', 'userIds', ARRAY[NEW.id])::text);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER users_announce_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_announce_change();
CREATE TRIGGER users_announce_role AFTER UPDATE OF role ON users
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role) EXECUTE FUNCTION users_announce_change();

-- A user-visible job changed (created, started, progressed, finished): its jobUpdated subscribers.
-- +goose StatementBegin
CREATE FUNCTION jobs_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskgraph_events', json_build_object(
        'kind', 'job', 'id', NEW.id, 'userIds', ARRAY[NEW.user_id])::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_announce_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_announce_change();
CREATE TRIGGER jobs_announce_update AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.processed IS DISTINCT FROM NEW.processed
        OR OLD.total IS DISTINCT FROM NEW.total OR OLD.attempt IS DISTINCT FROM NEW.attempt)
    EXECUTE FUNCTION jobs_announce_change();

-- New notifications: one event per recipient per statement (a reminder sweep writes hundreds).
-- +goose StatementBegin
CREATE FUNCTION notifications_announce() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    recipient uuid;
BEGIN
    FOR recipient IN SELECT DISTINCT user_id FROM written LOOP
        PERFORM pg_notify('taskgraph_events', json_build_object(
            'kind', 'notification', 'userIds', ARRAY[recipient])::text);
    END LOOP;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER notifications_announce AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION notifications_announce();

-- +goose Down
DROP TRIGGER notifications_announce ON notifications;
DROP FUNCTION notifications_announce();
DROP TRIGGER jobs_announce_update ON jobs;
DROP TRIGGER jobs_announce_insert ON jobs;
DROP FUNCTION jobs_announce_change();
DROP TRIGGER users_announce_role ON users;
DROP TRIGGER users_announce_delete ON users;
DROP FUNCTION users_announce_change();
DROP TRIGGER sessions_announce_revocation ON sessions;
DROP FUNCTION sessions_announce_revocation();
DROP TRIGGER tasks_record_update ON tasks;
DROP TRIGGER tasks_record_insert_delete ON tasks;
DROP FUNCTION tasks_record_change();
DROP TABLE task_changes;
