package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/taskgraph/taskgraph/internal/policy"
)

const (
	tokenIssuer   = "taskgraph"
	tokenAudience = "taskgraph-api"
	// minSecretLen matches the HS256 output size; a shorter key weakens the MAC.
	minSecretLen = 32
	// clockLeeway tolerates small clock skew between API replicas; a token whose TTL is shorter
	// than four times it gets a quarter of its TTL instead (see leeway).
	clockLeeway = 30 * time.Second
)

// ErrInvalidToken is wrapped by every Verify failure, so callers need no knowledge of JWT internals.
var ErrInvalidToken = errors.New("invalid access token")

// Claims is what a verified access token asserts.
type Claims struct {
	UserID    uuid.UUID
	Role      policy.Role
	SessionID uuid.UUID
	ExpiresAt time.Time
}

// accessClaims is the wire shape: registered claims plus role and session id.
type accessClaims struct {
	jwt.RegisteredClaims
	Role policy.Role `json:"role"`
	SID  string      `json:"sid"`
}

// TokenIssuer signs and verifies HS256 access tokens.
type TokenIssuer struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
	// verified remembers tokens that passed Verify, by their exact text (signature included), so a
	// client's next requests skip the JSON decoding and the HMAC: a hit re-checks only the times.
	verified *lru.Cache[string, verifiedToken]
}

// verifiedTokens bounds the memo of verified tokens (a few hundred bytes each).
const verifiedTokens = 8192

// verifiedToken is what Verify concluded about one token, and the times it must re-check.
type verifiedToken struct {
	claims       Claims
	nbf, iat     time.Time
	hasNotBefore bool
}

// NewTokenIssuer copies secret so later changes by the caller cannot alter the signing key.
func NewTokenIssuer(secret []byte, ttl time.Duration) (*TokenIssuer, error) {
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("new token issuer: secret is %d bytes, need at least %d", len(secret), minSecretLen)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("new token issuer: ttl must be positive, got %s", ttl)
	}
	verified, err := lru.New[string, verifiedToken](verifiedTokens)
	if err != nil {
		return nil, fmt.Errorf("new token issuer: %w", err)
	}
	return &TokenIssuer{secret: append([]byte(nil), secret...), ttl: ttl, now: time.Now, verified: verified}, nil
}

// leeway is the clock skew Verify tolerates: clockLeeway, but never more than a quarter of the TTL,
// so a short TTL (seconds, for tests of clients' refresh flows) still expires about when it says.
func (t *TokenIssuer) leeway() time.Duration { return min(clockLeeway, t.ttl/4) }

// WithClock returns a copy that reads time from now; tests use it to move past expiry without sleeping.
func (t *TokenIssuer) WithClock(now func() time.Time) *TokenIssuer {
	c := *t
	if now == nil {
		now = time.Now
	}
	c.now = now
	c.verified, _ = lru.New[string, verifiedToken](verifiedTokens) // its own memo, read with its own clock
	return &c
}

// Issue signs a token for the user's session. expiresAt is exactly the exp claim (whole seconds).
func (t *TokenIssuer) Issue(userID uuid.UUID, role policy.Role, sessionID uuid.UUID) (token string, expiresAt time.Time, err error) {
	if userID == uuid.Nil || sessionID == uuid.Nil {
		return "", time.Time{}, errors.New("issue access token: user and session ids are required")
	}
	if !role.Valid() {
		return "", time.Time{}, fmt.Errorf("issue access token: unknown role %q", role)
	}
	now := t.now()
	exp := jwt.NewNumericDate(now.Add(t.ttl))
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID.String(),
			Issuer:    tokenIssuer,
			Audience:  jwt.ClaimStrings{tokenAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: exp,
			ID:        uuid.NewString(),
		},
		Role: role,
		SID:  sessionID.String(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue access token: sign: %w", err)
	}
	return signed, exp.Time, nil
}

// Verify checks signature, algorithm, issuer, audience and times, then the custom claims.
// Errors wrap ErrInvalidToken with a short reason and never echo the token.
//
// A token verified before is not parsed again: its text (and so its signature) is the same, and only
// the time checks (exp, nbf, iat, with the same leeway as jwt's validator) can change their answer.
func (t *TokenIssuer) Verify(token string) (Claims, error) {
	if v, ok := t.verified.Get(token); ok {
		now, leeway := t.now(), t.leeway()
		switch {
		case !now.Before(v.claims.ExpiresAt.Add(leeway)):
			return Claims{}, invalidToken(jwtReason(jwt.ErrTokenExpired))
		case v.hasNotBefore && now.Before(v.nbf.Add(-leeway)):
			return Claims{}, invalidToken(jwtReason(jwt.ErrTokenNotValidYet))
		case now.Before(v.iat.Add(-leeway)):
			return Claims{}, invalidToken(jwtReason(jwt.ErrTokenUsedBeforeIssued))
		}
		return v.claims, nil
	}
	var c accessClaims
	_, err := jwt.ParseWithClaims(token, &c, t.key,
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(tokenAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(t.leeway()),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		return Claims{}, invalidToken(jwtReason(err))
	}
	// WithIssuedAt only checks iat when present; we require it.
	if c.IssuedAt == nil {
		return Claims{}, invalidToken("missing iat")
	}
	userID, err := parseID(c.Subject)
	if err != nil {
		return Claims{}, invalidToken("bad sub")
	}
	sessionID, err := parseID(c.SID)
	if err != nil {
		return Claims{}, invalidToken("bad sid")
	}
	if !c.Role.Valid() {
		return Claims{}, invalidToken("bad role")
	}
	claims := Claims{UserID: userID, Role: c.Role, SessionID: sessionID, ExpiresAt: c.ExpiresAt.Time}
	v := verifiedToken{claims: claims, iat: c.IssuedAt.Time}
	if c.NotBefore != nil {
		v.nbf, v.hasNotBefore = c.NotBefore.Time, true
	}
	t.verified.Add(token, v)
	return claims, nil
}

// key refuses anything but HS256 a second time, so the HMAC secret can never be used as another alg's key.
func (t *TokenIssuer) key(tok *jwt.Token) (any, error) {
	if tok.Method != jwt.SigningMethodHS256 {
		return nil, errors.New("unexpected signing method")
	}
	return t.secret, nil
}

func parseID(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, errors.New("empty id")
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("parse id: %w", err)
	}
	if id == uuid.Nil {
		return uuid.Nil, errors.New("nil id")
	}
	return id, nil
}

func invalidToken(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// jwtReason maps library errors to fixed reasons: JSON decode errors may quote token bytes.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature or algorithm"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing required claim"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	default:
		return "rejected"
	}
}
