// Package accounts owns users and their sessions: registration, sign-in, refresh-token rotation,
// logout, profile and password changes, account deletion, role changes, and the check that turns
// an access token into the Actor of an operation. It validates its inputs, asks internal/policy who
// may see or do what, and combines auth's primitives (hashes, tokens) with db's stores.
//
// Field names in its validation errors are those of the value validated ("email", "newPassword");
// the transport places them under its input path (apperr.Under).
package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/validate"
)

// SignInLimiter throttles the attempts that verify a password or reveal whether an email is
// registered: per client address and per subject (the email tried, or the signed-in user), one
// attempt per call, so every alias of a field in one document counts.
type SignInLimiter interface {
	Allow(ctx context.Context, subject string) error
}

// emailSubject and userSubject are the SignInLimiter subjects: the email as compared for
// uniqueness, or the signed-in user.
func emailSubject(email string) string { return "email:" + validate.EmailKey(email) }
func userSubject(id uuid.UUID) string  { return "user:" + id.String() }

// Service runs the account flows.
type Service struct {
	reads      *reads.Router
	cache      *cache.Cache // nil: sessions and users are read from the database every time
	tokens     *auth.TokenIssuer
	refreshTTL time.Duration
	signIn     SignInLimiter // nil: no limit
	hasher     auth.Hasher
}

// Options are the Service's optional parts.
type Options struct {
	Cache      *cache.Cache
	Tokens     *auth.TokenIssuer // nil: a service that cannot sign anyone in (the CLI's)
	RefreshTTL time.Duration     // how long an unused refresh token lives
	SignIn     SignInLimiter
	Hasher     auth.Hasher // zero: the production parameters
}

// New builds the account service.
func New(r *reads.Router, o Options) *Service {
	return &Service{reads: r, cache: o.Cache, tokens: o.Tokens, refreshTTL: o.RefreshTTL, signIn: o.SignIn, hasher: o.Hasher}
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
func errBadCredentials() error {
	return apperr.New(apperr.Unauthenticated, "email or password is incorrect")
}

// errEmailTaken is the answer to registering (or moving to) an email someone else has.
func errEmailTaken() error {
	return apperr.FieldError(apperr.Conflict, "email", "is already registered")
}

// NewAccount is a registration as the client sent it.
type NewAccount struct {
	Name, Email, Password string
}

// allowAttempt spends one attempt of subject's budget; it runs before any password is checked or
// any email looked up.
func (s *Service) allowAttempt(ctx context.Context, subject string) error {
	if s.signIn == nil {
		return nil
	}
	return s.signIn.Allow(ctx, subject)
}

// Register validates the registration, creates the user and signs them in, in one transaction.
func (s *Service) Register(ctx context.Context, in NewAccount) (*Session, error) {
	var v apperr.Violations
	in.Name = validate.Text(&v, "name", in.Name, 1, validate.MaxNameLen, false)
	in.Email = validate.Email(&v, "email", in.Email)
	validate.Password(&v, "password", in.Password)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := s.allowAttempt(ctx, emailSubject(in.Email)); err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(in.Password)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	var sess *Session
	err = s.reads.DB().InTx(ctx, func(st db.Stores) error {
		user, err := st.Users.Create(ctx, db.NewUser{Name: in.Name, Email: in.Email, PasswordHash: hash})
		if errors.Is(err, db.ErrEmailTaken) {
			return errEmailTaken()
		}
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
	// Over-long inputs cannot be valid credentials; refusing them early bounds the hashing work.
	if len(email) > 4*validate.MaxEmailLen || validate.TooLongForPassword(password) {
		return nil, errBadCredentials()
	}
	email = validate.NormalizeEmail(email)
	if err := s.allowAttempt(ctx, emailSubject(email)); err != nil {
		return nil, err
	}
	st := s.reads.Primary()
	user, err := st.Users.ByEmail(ctx, email)
	if apperr.CodeOf(err) == apperr.NotFound {
		s.hasher.CheckAgainstNothing(password)
		return nil, errBadCredentials()
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	ok, err := auth.CheckPassword(password, user.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("login: check password of user %s: %w", user.ID, err)
	}
	if !ok {
		return nil, errBadCredentials()
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
	if s.tokens == nil {
		return nil, errors.New("issue access token: this service has no token issuer")
	}
	access, exp, err := s.tokens.Issue(user.ID, user.Role, sessionID)
	if err != nil {
		return nil, fmt.Errorf("issue access token: %w", err)
	}
	return &Session{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp, User: user}, nil
}

// maxRefreshTokenLen bounds what can possibly be a refresh token this server issued.
const maxRefreshTokenLen = 256

// Refresh rotates a refresh token: the old one stops working, a new pair is issued. Presenting a token
// a second time revokes its whole session (it may have been stolen).
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	if refreshToken == "" || len(refreshToken) > maxRefreshTokenLen {
		return nil, apperr.Invalid("refreshToken", "is not a refresh token issued by this server")
	}
	newToken, newHash, err := auth.NewRefreshToken()
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	st := s.reads.Primary()
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

// Logout revokes the actor's session; its refresh tokens and access tokens stop working at once.
func (s *Service) Logout(ctx context.Context, a policy.Actor) (bool, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return false, err
	}
	return s.reads.Primary().Sessions.Revoke(ctx, a.SessionID)
}

// ProfilePatch is an updateMe input as the client sent it; nil fields are left alone.
type ProfilePatch struct {
	Name  *string
	Email *string
}

// UpdateProfile changes the actor's own name or email.
func (s *Service) UpdateProfile(ctx context.Context, a policy.Actor, in ProfilePatch) (*db.User, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	var (
		v     apperr.Violations
		patch db.UserPatch
	)
	if in.Name != nil {
		n := validate.Text(&v, "name", *in.Name, 1, validate.MaxNameLen, false)
		patch.Name = &n
	}
	if in.Email != nil {
		e := validate.Email(&v, "email", *in.Email)
		patch.Email = &e
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	// A CONFLICT answer tells whether an email is registered: probing is limited like register.
	if patch.Email != nil {
		if err := s.allowAttempt(ctx, userSubject(a.UserID)); err != nil {
			return nil, err
		}
	}
	u, err := s.reads.Primary().Users.Update(ctx, a.UserID, patch)
	if errors.Is(err, db.ErrEmailTaken) {
		return nil, errEmailTaken()
	}
	return u, err
}

// ChangePassword replaces the password after checking the current one, and signs out every other
// session of the user in the same transaction.
func (s *Service) ChangePassword(ctx context.Context, a policy.Actor, current, next string) (*db.User, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	var v apperr.Violations
	validate.Password(&v, "newPassword", next)
	if next == current {
		v.Add("newPassword", "must differ from the current password")
	}
	if validate.TooLongForPassword(current) {
		v.Add("currentPassword", "is incorrect")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	user, err := s.verifyPassword(ctx, a, "currentPassword", current)
	if err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(next)
	if err != nil {
		return nil, fmt.Errorf("change password: %w", err)
	}
	err = s.reads.DB().InTx(ctx, func(st db.Stores) error {
		if err := st.Users.SetPasswordHash(ctx, user.ID, hash); err != nil {
			return err
		}
		return st.Sessions.RevokeOthers(ctx, user.ID, a.SessionID)
	})
	if err != nil {
		return nil, err
	}
	return user, nil
}

// DeleteAccount removes the actor and, by cascade, their sessions and tasks, after checking the password.
func (s *Service) DeleteAccount(ctx context.Context, a policy.Actor, password string) error {
	if err := policy.RequireSignedIn(a); err != nil {
		return err
	}
	if validate.TooLongForPassword(password) {
		return apperr.Invalid("password", "is incorrect")
	}
	user, err := s.verifyPassword(ctx, a, "password", password)
	if err != nil {
		return err
	}
	return s.reads.Primary().Users.Delete(ctx, user.ID)
}

// verifyPassword checks the actor's password, after spending one attempt of the actor's sign-in
// budget: aliases of changePassword or deleteMe in one document are guesses like logins are.
func (s *Service) verifyPassword(ctx context.Context, a policy.Actor, field, password string) (*db.User, error) {
	if err := s.allowAttempt(ctx, userSubject(a.UserID)); err != nil {
		return nil, err
	}
	user, err := s.reads.Primary().Users.ByID(ctx, a.UserID)
	if err != nil {
		return nil, err
	}
	ok, err := auth.CheckPassword(password, user.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("check password of user %s: %w", user.ID, err)
	}
	if !ok {
		return nil, apperr.Invalid(field, "is incorrect")
	}
	return user, nil
}

// SetRole changes the role of the user with email. It is the operator's command (taskgraph
// set-role), run with shell access to the deployment, so it has no actor.
func (s *Service) SetRole(ctx context.Context, email string, role policy.Role) (*db.User, error) {
	if !role.Valid() {
		return nil, apperr.Invalid("role", "must be USER or ADMIN")
	}
	return s.reads.Primary().Users.SetRole(ctx, validate.NormalizeEmail(email), role)
}

// Authenticate turns a verified access token into the operation's actor: the session must still be
// live and belong to the token's user, and the role is the user's current one (a demotion applies
// before the token expires). It answers an error wrapping auth.ErrSessionInactive when the token
// must not be honoured, any other error for faults. With a cache the session and user rows come
// from it (both invalidated on revocation, rotation, role change and deletion), so a signed-in
// operation costs no SQL for authentication.
func (s *Service) Authenticate(ctx context.Context, c auth.Claims) (policy.Actor, error) {
	return s.authenticate(ctx, c, s.lookupSession)
}

// AuthenticateNow is Authenticate against the primary, past every cache: an operation on a
// long-lived connection must see a logout or role change committed on any instance a moment ago,
// before that instance's invalidation has reached this one.
func (s *Service) AuthenticateNow(ctx context.Context, c auth.Claims) (policy.Actor, error) {
	return s.authenticate(ctx, c, s.LookupSessionUncached)
}

func (s *Service) authenticate(ctx context.Context, c auth.Claims,
	lookup func(context.Context, uuid.UUID) (uuid.UUID, policy.Role, error)) (policy.Actor, error) {
	if !c.ExpiresAt.IsZero() && !time.Now().Before(c.ExpiresAt) {
		return policy.Actor{}, fmt.Errorf("access token expired at %s: %w", c.ExpiresAt.Format(time.RFC3339), auth.ErrSessionInactive)
	}
	userID, role, err := lookup(ctx, c.SessionID)
	if err != nil {
		return policy.Actor{}, err
	}
	if userID != c.UserID {
		// The session belongs to someone else: a forged or mixed-up token, never a valid actor.
		return policy.Actor{}, fmt.Errorf("session %s belongs to another user: %w", c.SessionID, auth.ErrSessionInactive)
	}
	return policy.Actor{UserID: userID, Role: role, SessionID: c.SessionID}, nil
}

// SessionLookup is Authenticate's session check as auth.SessionLookup (for the HTTP middleware).
func (s *Service) SessionLookup(ctx context.Context, sessionID uuid.UUID) (uuid.UUID, policy.Role, error) {
	return s.lookupSession(ctx, sessionID)
}

// LookupSessionUncached checks a session against the primary, bypassing every cache.
func (s *Service) LookupSessionUncached(ctx context.Context, sessionID uuid.UUID) (uuid.UUID, policy.Role, error) {
	userID, role, err := s.reads.Primary().Sessions.Lookup(ctx, sessionID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return uuid.Nil, "", fmt.Errorf("session %s: %w", sessionID, auth.ErrSessionInactive)
	}
	return userID, role, err
}

func (s *Service) lookupSession(ctx context.Context, sessionID uuid.UUID) (uuid.UUID, policy.Role, error) {
	if s.cache == nil {
		return s.LookupSessionUncached(ctx, sessionID)
	}
	stores := s.reads.Primary()
	sessions, err := cache.Many(ctx, s.cache, db.EntitySession, []uuid.UUID{sessionID}, stores.Sessions.LiveByIDs,
		func(s db.Session) uuid.UUID { return s.ID })
	if err != nil {
		return uuid.Nil, "", err
	}
	sess, ok := sessions[sessionID]
	if !ok || !sess.ExpiresAt.After(time.Now()) {
		return uuid.Nil, "", fmt.Errorf("session %s: %w", sessionID, auth.ErrSessionInactive)
	}
	users, err := cache.Many(ctx, s.cache, db.EntityUser, []uuid.UUID{sess.UserID}, stores.Users.ByIDs,
		func(u db.User) uuid.UUID { return u.ID })
	if err != nil {
		return uuid.Nil, "", err
	}
	u, ok := users[sess.UserID]
	if !ok {
		return uuid.Nil, "", fmt.Errorf("session %s: user gone: %w", sessionID, auth.ErrSessionInactive)
	}
	return u.ID, u.Role, nil
}

// UsersByIDs returns the users with these ids that the actor may see, through the cache, by id
// (the users loader batches GraphQL fields with it). Missing ids are absent from the map.
func (s *Service) UsersByIDs(ctx context.Context, a policy.Actor, ids []uuid.UUID) (map[uuid.UUID]*db.User, error) {
	if !policy.CanSeeUser(a) {
		return map[uuid.UUID]*db.User{}, nil
	}
	stores := s.reads.For(ctx, a.UserID)
	if stores.OnReplica {
		ctx = cache.WithStaleSource(ctx)
	}
	return cache.Many(ctx, s.cache, db.EntityUser, ids, stores.Users.ByIDs, func(u db.User) uuid.UUID { return u.ID })
}

// Email is the user's email as the actor may see it: their own, or anyone's for an admin; nil
// otherwise. inAuthPayload: the user is the one who just signed in with this very answer (register,
// login, refreshToken), though the request carries no actor yet.
func Email(a policy.Actor, u *db.User, inAuthPayload bool) *string {
	if inAuthPayload || policy.CanSeePrivateProfile(a, u.ID) {
		return &u.Email
	}
	return nil
}

// List pages through every user (admins only).
func (s *Service) List(ctx context.Context, a policy.Actor, filter *db.UserFilter, order *db.UserOrder, page db.PageArgs) (*db.UserConnection, error) {
	if err := policy.CheckListUsers(a); err != nil {
		return nil, err
	}
	if filter != nil && filter.Search != nil {
		var v apperr.Violations
		q := validate.Text(&v, "search", *filter.Search, 1, validate.MaxSearchLen, false)
		if err := v.Err(); err != nil {
			return nil, apperr.Under("filter", err)
		}
		f := *filter
		f.Search = &q
		filter = &f
	}
	return s.reads.For(ctx, a.UserID).Users.List(ctx, filter, order, page)
}

// Count is a user list's totalCount.
func (s *Service) Count(ctx context.Context, a policy.Actor, conn *db.UserConnection) (int, error) {
	if err := policy.CheckListUsers(a); err != nil {
		return 0, err
	}
	return s.reads.For(ctx, a.UserID).Users.Count(ctx, conn)
}

// LiveSession is what a session check reports of a live session.
type LiveSession struct {
	UserID    uuid.UUID
	Role      policy.Role
	ExpiresAt time.Time
}

// LiveSessions checks sessions against the primary, bypassing every cache, in two statements
// however many: the ones that are live (not revoked, not expired, their user still there) with
// their user's current role. Long-lived connections are swept with it.
func (s *Service) LiveSessions(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]LiveSession, error) {
	st := s.reads.Primary()
	sessions, err := st.Sessions.LiveByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	userIDs := make([]uuid.UUID, 0, len(sessions))
	for _, sess := range sessions {
		userIDs = append(userIDs, sess.UserID)
	}
	users, err := st.Users.ByIDs(ctx, userIDs)
	if err != nil {
		return nil, err
	}
	roles := make(map[uuid.UUID]policy.Role, len(users))
	for _, u := range users {
		roles[u.ID] = u.Role
	}
	out := make(map[uuid.UUID]LiveSession, len(sessions))
	now := time.Now()
	for _, sess := range sessions {
		if role, ok := roles[sess.UserID]; ok && sess.ExpiresAt.After(now) {
			out[sess.ID] = LiveSession{UserID: sess.UserID, Role: role, ExpiresAt: sess.ExpiresAt}
		}
	}
	return out, nil
}
