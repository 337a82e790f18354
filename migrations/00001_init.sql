-- +goose Up
-- pg_trgm backs the case-insensitive substring search over tasks and users.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    name          text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    email         text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254 AND position('@' IN email) > 1),
    role          text        NOT NULL DEFAULT 'USER' CHECK (role IN ('USER', 'ADMIN')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case; login looks them up through this index.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
-- Admin listing: users(orderBy: CREATED_AT | NAME), both directions, keyset on (key, id).
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
CREATE INDEX users_name_id_idx ON users (name, id);
CREATE INDEX users_search_trgm_idx ON users USING gin ((name || ' ' || email) gin_trgm_ops);

-- A session is one sign-in; its refresh tokens form one rotation family. Access tokens name their session,
-- so revoking the session (logout, reuse detection, password change) ends them too.
CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens are stored as SHA-256 hashes; used_at marks a rotated token, whose reuse revokes the family.
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE tasks (
    id          uuid PRIMARY KEY,
    owner_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description text                 CHECK (char_length(description) <= 10000),
    status      text        NOT NULL DEFAULT 'TODO' CHECK (status IN ('TODO', 'IN_PROGRESS', 'DONE')),
    -- 0 LOW, 1 MEDIUM, 2 HIGH, 3 URGENT: ordering by priority is ordering by number.
    priority    smallint    NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
    due_at      timestamptz,
    tags        text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20 AND array_position(tags, NULL) IS NULL),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer     NOT NULL DEFAULT 1 CHECK (version >= 1)
);
-- One index per orderBy the API offers, led by the owner, ending in id for the keyset tie-break.
CREATE INDEX tasks_owner_created_at_idx ON tasks (owner_id, created_at, id);
CREATE INDEX tasks_owner_updated_at_idx ON tasks (owner_id, updated_at, id);
-- Tasks without a due date sort as if due at infinity, which keeps the keyset on one non-null expression.
CREATE INDEX tasks_owner_due_at_idx ON tasks (owner_id, (coalesce(due_at, 'infinity'::timestamptz)), id);
CREATE INDEX tasks_owner_priority_idx ON tasks (owner_id, priority, id);
-- taskCounts groups by owner and status; this index answers it without touching the heap.
CREATE INDEX tasks_owner_status_idx ON tasks (owner_id, status) INCLUDE (due_at);
-- Filters: due-date ranges, tag containment and substring search.
CREATE INDEX tasks_owner_due_at_range_idx ON tasks (owner_id, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX tasks_tags_idx ON tasks USING gin (tags);
CREATE INDEX tasks_search_trgm_idx ON tasks USING gin ((title || ' ' || coalesce(description, '')) gin_trgm_ops);

-- +goose Down
DROP TABLE tasks;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
