// Package account owns the sign-in flows: register, login, refresh-token rotation, logout, password
// change and account deletion. It combines auth's primitives (hashes, tokens) with db's stores.
// Inputs arrive validated (the resolvers check them); this package enforces the security rules.
package account

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// Service runs the account flows.
type Service struct {
	db         *db.DB
	tokens     *auth.TokenIssuer
	refreshTTL time.Duration
}

// NewService builds the account service; refreshTTL is how long an unused refresh token lives.
func NewService(database *db.DB, tokens *auth.TokenIssuer, refreshTTL time.Duration) *Service {
	return &Service{db: database, tokens: tokens, refreshTTL: refreshTTL}
}

// Session is what a client receives after signing in or refreshing.
type Session struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	User         *db.User
}

// errBadCredentials is the single answer to a wrong email or a wrong password, so login cannot be
// used to learn which emails are registered.
var errBadCredentials = apperr.New(apperr.Unauthenticated, "email or password is incorrect")

// NewAccount is a validated registration.
type NewAccount struct {
	Name, Email, Password string
}

// Register creates a user and signs them in, in one transaction.
func (s *Service) Register(ctx context.Context, in NewAccount) (*Session, error) {
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	var sess *Session
	err = s.db.InTx(ctx, func(st db.Stores) error {
		user, err := st.Users.Create(ctx, db.NewUser{Name: in.Name, Email: in.Email, PasswordHash: hash})
		if err != nil {
			return err
		}
		sess, err = s.start(ctx, st, user)
		return err
	})
	if err != nil {
		return nil, err
	}
	return sess, nil
}

// Login checks the password and opens a new session. Both failure paths cost one argon2id run.
func (s *Service) Login(ctx context.Context, email, password string) (*Session, error) {
	st := s.db.Stores()
	user, err := st.Users.ByEmail(ctx, email)
	if apperr.CodeOf(err) == apperr.NotFound {
		auth.CheckPasswordAgainstNothing(password)
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	ok, err := auth.CheckPassword(password, user.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("login: check password of user %s: %w", user.ID, err)
	}
	if !ok {
		return nil, errBadCredentials
	}
	return s.start(ctx, st, user)
}

// start opens a session for user and issues its first token pair.
func (s *Service) start(ctx context.Context, st db.Stores, user *db.User) (*Session, error) {
	refresh, hash, err := auth.NewRefreshToken()
	if err != nil {
		return nil, fmt.Errorf("start session: %w", err)
	}
	sessionID, err := st.Sessions.Create(ctx, user.ID, hash, time.Now().Add(s.refreshTTL))
	if err != nil {
		return nil, fmt.Errorf("start session: %w", err)
	}
	return s.issue(user, sessionID, refresh)
}

func (s *Service) issue(user *db.User, sessionID uuid.UUID, refresh string) (*Session, error) {
	access, exp, err := s.tokens.Issue(user.ID, user.Role, sessionID)
	if err != nil {
		return nil, fmt.Errorf("issue access token: %w", err)
	}
	return &Session{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp, User: user}, nil
}

// Refresh rotates a refresh token: the old one stops working, a new pair is issued. Presenting a token
// a second time revokes its whole session (it may have been stolen).
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	newToken, newHash, err := auth.NewRefreshToken()
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	st := s.db.Stores()
	rot, err := st.Sessions.Rotate(ctx, auth.HashRefreshToken(refreshToken), newHash, time.Now().Add(s.refreshTTL))
	if err != nil {
		return nil, err
	}
	user, err := st.Users.ByID(ctx, rot.UserID)
	if err != nil {
		return nil, fmt.Errorf("refresh: load user: %w", err)
	}
	return s.issue(user, rot.SessionID, newToken)
}

// Logout revokes the viewer's session; its refresh tokens and access tokens stop working at once.
func (s *Service) Logout(ctx context.Context, v policy.Actor) (bool, error) {
	return s.db.Stores().Sessions.Revoke(ctx, v.SessionID)
}

// ChangePassword replaces the password after checking the current one, and signs out every other
// session of the user in the same transaction.
func (s *Service) ChangePassword(ctx context.Context, v policy.Actor, current, next string) (*db.User, error) {
	user, err := s.verifyPassword(ctx, v, "currentPassword", current)
	if err != nil {
		return nil, err
	}
	hash, err := auth.HashPassword(next)
	if err != nil {
		return nil, fmt.Errorf("change password: %w", err)
	}
	err = s.db.InTx(ctx, func(st db.Stores) error {
		if err := st.Users.SetPasswordHash(ctx, user.ID, hash); err != nil {
			return err
		}
		return st.Sessions.RevokeOthers(ctx, user.ID, v.SessionID)
	})
	if err != nil {
		return nil, err
	}
	return user, nil
}

// DeleteAccount removes the viewer and, by cascade, their sessions and tasks, after checking the password.
func (s *Service) DeleteAccount(ctx context.Context, v policy.Actor, password string) error {
	user, err := s.verifyPassword(ctx, v, "password", password)
	if err != nil {
		return err
	}
	return s.db.Stores().Users.Delete(ctx, user.ID)
}

func (s *Service) verifyPassword(ctx context.Context, v policy.Actor, field, password string) (*db.User, error) {
	user, err := s.db.Stores().Users.ByID(ctx, v.UserID)
	if err != nil {
		return nil, err
	}
	ok, err := auth.CheckPassword(password, user.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("check password of user %s: %w", user.ID, err)
	}
	if !ok {
		return nil, apperr.Invalid("input."+field, "is incorrect")
	}
	return user, nil
}
