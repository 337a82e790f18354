-- +goose Up
-- Delta sync (Query.taskChanges) reads task_changes by the writing transaction: a sync token holds a
-- transaction-id boundary (a snapshot's xmin), and a page reads the changes of the transactions
-- between two boundaries, so a transaction that committed late with an early seq is never passed.
CREATE INDEX task_changes_xid_idx ON task_changes (xid, seq);

-- Retention (TASK_CHANGES_RETENTION) deletes old changes; the highest transaction id deleted so far
-- tells which sync tokens can no longer be served (SYNC_TOKEN_EXPIRED). No row: nothing pruned yet.
CREATE TABLE task_changes_pruned (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_xid  xid8    NOT NULL
);

-- +goose Down
DROP TABLE task_changes_pruned;
DROP INDEX task_changes_xid_idx;
