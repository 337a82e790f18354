-- +goose Up
-- Emails are stored in Unicode NFC (internal/validate.NormalizeEmail): the same address typed as
-- NFC and as NFD made two accounts. Rows written before are normalised here, except those whose
-- normalised form another account already holds (or would hold): merging accounts is an operator's
-- decision, not a migration's, so such rows are left for the operator (find them with
-- SELECT email FROM users WHERE email IS NOT NFC NORMALIZED). The constraint keeps every new or
-- changed row in NFC.
UPDATE users u SET email = normalize(u.email, NFC)
WHERE u.email IS NOT NFC NORMALIZED
  AND NOT EXISTS (
    SELECT 1 FROM users o
    WHERE o.id <> u.id AND lower(normalize(o.email, NFC)) = lower(normalize(u.email, NFC)));
ALTER TABLE users ADD CONSTRAINT users_email_nfc CHECK (email IS NFC NORMALIZED) NOT VALID;

-- +goose Down
ALTER TABLE users DROP CONSTRAINT users_email_nfc;
