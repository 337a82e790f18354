package db

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// UserStore reads and writes users.
type UserStore struct {
	q       querier
	cursors *cursor.Codec
	changed *changeSet
}

const userColumns = "id, name, email, role, password_hash, created_at, updated_at"

// scanUser reads a row of userColumns, in their order (see scanTask for why not RowToStructByName).
func scanUser(row pgx.CollectableRow) (User, error) {
	var u User
	err := row.Scan((*[16]byte)(&u.ID), &u.Name, &u.Email, &u.Role, &u.PasswordHash, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

// NewUser is a validated registration.
type NewUser struct {
	Name         string
	Email        string
	PasswordHash string
}

// Create inserts a user with role USER; a taken email (in any case) is CONFLICT on field email.
func (s UserStore) Create(ctx context.Context, u NewUser) (*User, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("new user id: %w", err)
	}
	rows, err := s.q.Query(ctx, `
		INSERT INTO users (id, name, email, password_hash) VALUES ($1, $2, $3, $4)
		RETURNING `+userColumns, id, u.Name, u.Email, u.PasswordHash)
	created, err := collectUser(rows, err)
	if err == nil {
		// Nothing cached yet, but the new user's first reads must find their row (read-your-writes).
		s.changed.add(ctx, EntityKey{EntityWriter, id})
	}
	return created, err
}

func collectUser(rows pgx.Rows, err error) (*User, error) {
	if err != nil {
		return nil, mapError(err, "user")
	}
	u, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[User])
	return u, mapError(err, "user")
}

// ByID returns one user or NOT_FOUND.
func (s UserStore) ByID(ctx context.Context, id uuid.UUID) (*User, error) {
	rows, err := s.q.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
	return collectUser(rows, err)
}

// ByEmail finds a user by email, ignoring case (through users_email_lower_key).
func (s UserStore) ByEmail(ctx context.Context, email string) (*User, error) {
	rows, err := s.q.Query(ctx, `SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email)
	return collectUser(rows, err)
}

// ByIDs returns the users with these ids, in no particular order (for the users loader).
func (s UserStore) ByIDs(ctx context.Context, ids []uuid.UUID) ([]User, error) {
	rows, err := s.q.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, mapError(err, "users")
	}
	users, err := pgx.CollectRows(rows, scanUser)
	return users, mapError(err, "users")
}

// UserPatch is a validated updateMe input; nil fields are left alone.
type UserPatch struct {
	Name  *string
	Email *string
}

// Update changes a user's profile.
func (s UserStore) Update(ctx context.Context, id uuid.UUID, p UserPatch) (*User, error) {
	rows, err := s.q.Query(ctx, `
		UPDATE users SET name = coalesce($2, name), email = coalesce($3, email), updated_at = now()
		WHERE id = $1 RETURNING `+userColumns, id, p.Name, p.Email)
	u, err := collectUser(rows, err)
	if err == nil {
		s.changed.add(ctx, EntityKey{EntityUser, id})
	}
	return u, err
}

// SetPasswordHash replaces a user's password hash.
func (s UserStore) SetPasswordHash(ctx context.Context, id uuid.UUID, hash string) error {
	tag, err := s.q.Exec(ctx, `UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1`, id, hash)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	if err == nil {
		s.changed.add(ctx, EntityKey{EntityUser, id})
	}
	return mapError(err, "user")
}

// SetRole changes a user's role (operators use `taskgraph set-role`).
func (s UserStore) SetRole(ctx context.Context, email string, role policy.Role) (*User, error) {
	rows, err := s.q.Query(ctx, `UPDATE users SET role = $2, updated_at = now() WHERE lower(email) = lower($1)
		RETURNING `+userColumns, email, string(role))
	u, err := collectUser(rows, err)
	if err == nil {
		s.changed.add(ctx, EntityKey{EntityUser, u.ID})
	}
	return u, err
}

// Delete removes a user; their sessions and tasks go with them (ON DELETE CASCADE).
func (s UserStore) Delete(ctx context.Context, id uuid.UUID) error {
	// The user's own tasks go with the row (ON DELETE CASCADE); tasks they were assigned are
	// unassigned first, as a change (new version) that caches and their owners hear about.
	var changed []EntityKey
	err := pgx.BeginFunc(ctx, s.q, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE tasks SET assignee_id = NULL, version = version + 1, updated_at = now()
			WHERE assignee_id = $1 AND owner_id <> $1 RETURNING id, owner_id`, id)
		if err != nil {
			return err
		}
		var taskID, ownerID uuid.UUID
		_, err = pgx.ForEachRow(rows, []any{&taskID, &ownerID}, func() error {
			changed = append(changed, EntityKey{EntityTask, taskID}, EntityKey{EntityTaskCounts, ownerID})
			return nil
		})
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = pgx.ErrNoRows
		}
		return err
	})
	if err == nil {
		// The deleted user's own tasks are reachable only by their owner, whose sessions went with
		// them, so those cached copies expire unread.
		s.changed.add(ctx, append(changed, EntityKey{EntityUser, id}, EntityKey{EntityTaskCounts, id})...)
	}
	return mapError(err, "user")
}

// UserFilter narrows the admin user list.
type UserFilter struct {
	Search *string
	Role   *policy.Role
}

// UserOrderField is what the user list is sorted by; the GraphQL UserOrderField enum is bound to it.
type UserOrderField string

const (
	UserOrderCreatedAt UserOrderField = "CREATED_AT"
	UserOrderName      UserOrderField = "NAME"
)

// UserOrder is a sort field and direction; the default is newest first.
type UserOrder struct {
	Field     UserOrderField
	Direction Direction
}

var userSortKeys = map[UserOrderField]sortKey[User]{
	UserOrderCreatedAt: {expr: "created_at", keyOf: func(u User) any { return timeKey(u.CreatedAt) }, param: timeParam},
	UserOrderName:      {expr: "name", keyOf: func(u User) any { return u.Name }, param: stringParam},
}

// UserEdge is one user of a connection with its cursor.
type UserEdge struct {
	Cursor string
	Node   *User
}

// UserConnection is a page of users; totalCount runs only when asked for.
type UserConnection struct {
	Edges    []UserEdge
	PageInfo PageInfo
	filter   where
}

func (f *UserFilter) where() where {
	var w where
	if f == nil {
		return w
	}
	if f.Search != nil {
		// The joined expression lets users_search_trgm_idx find candidates; the recheck keeps a match
		// from spanning name and email.
		pattern := "%" + escapeLike(*f.Search) + "%"
		w.add(`(name || ' ' || email) ILIKE ?`, pattern)
		w.add(`(name ILIKE ? OR email ILIKE ?)`, pattern, pattern)
	}
	if f.Role != nil {
		w.add("role = ?", string(*f.Role))
	}
	return w
}

// List returns one page of all users (admin only; the resolver's directive enforces it).
func (s UserStore) List(ctx context.Context, filter *UserFilter, order *UserOrder, args PageArgs) (*UserConnection, error) {
	o := UserOrder{Field: UserOrderCreatedAt, Direction: Desc}
	if order != nil {
		o = *order
	}
	key, ok := userSortKeys[o.Field]
	if !ok {
		return nil, fmt.Errorf("unknown user order field %q", o.Field)
	}
	canon := ""
	if filter != nil {
		if filter.Search != nil {
			canon += "s:" + *filter.Search
		}
		if filter.Role != nil {
			canon += "\x00r:" + string(*filter.Role)
		}
	}
	scope := scopeOf("users", string(o.Field), string(o.Direction), canon)
	req, err := parsePage(s.cursors, args, scope)
	if err != nil {
		return nil, err
	}
	l := keysetList[User]{
		table: "users", columns: userColumns, filter: filter.where(),
		sort: key, desc: o.Direction == Desc, idOf: func(u User) uuid.UUID { return u.ID }, scope: scope,
		scan: scanUser,
	}
	p, err := fetchPage(ctx, s.q, s.cursors, l, req)
	if err != nil {
		return nil, mapError(err, "users")
	}
	conn := &UserConnection{PageInfo: p.info, filter: l.filter, Edges: make([]UserEdge, len(p.rows))}
	for i := range p.rows {
		conn.Edges[i] = UserEdge{Cursor: p.cursors[i], Node: &p.rows[i]}
	}
	return conn, nil
}

// Count returns how many users match the connection's filter.
func (s UserStore) Count(ctx context.Context, conn *UserConnection) (int, error) {
	return countRows(ctx, s.q, "users", conn.filter)
}
