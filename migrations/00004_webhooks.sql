-- +goose Up
-- User-registered webhook endpoints: every notification of the user is POSTed to each, signed with
-- its secret (HMAC-SHA256). The secret is kept as-is because signing needs it; it is shown to the
-- user once, when registered, and never returned or logged again.
CREATE TABLE webhooks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         text        NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2048),
    secret      bytea       NOT NULL CHECK (octet_length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Query.webhooks, the per-user limit, the fan-out of a notification and the user's cascade delete.
CREATE INDEX webhooks_user_id_idx ON webhooks (user_id, created_at, id);

-- +goose Down
DROP TABLE webhooks;
