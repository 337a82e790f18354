-- +goose Up
-- Idempotency keys (the IETF Idempotency-Key draft as Stripe applies it): one row per client scope
-- (a user, or an anonymous client's IP) and key. A request claims its row before it runs (so a
-- concurrent duplicate on any instance sees it running); the domain's write transaction marks it
-- committed (so a write never commits without its record); the answer is stored right after.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    -- sha256 of the operation name, document and variables: the same key with another request is refused.
    request_hash bytea       NOT NULL,
    -- the run that holds the claim; a takeover after the lease replaces it, so a stalled run can no
    -- longer commit.
    lease        uuid        NOT NULL,
    locked_until timestamptz NOT NULL,
    committed_at timestamptz,
    -- the stored answer, sealed (AES-GCM, key derived from JWT_SECRET): answers carry tokens and
    -- personal data that must not sit readable in the database.
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
