package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/taskgraph/taskgraph/internal/policy"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newTestIssuer(t *testing.T) *TokenIssuer {
	t.Helper()
	ti, err := NewTokenIssuer(testSecret, 15*time.Minute)
	if err != nil {
		t.Fatalf("NewTokenIssuer: %v", err)
	}
	return ti
}

func TestNewTokenIssuerRejectsShortSecret(t *testing.T) {
	if _, err := NewTokenIssuer(testSecret[:31], time.Minute); err == nil {
		t.Fatal("31-byte secret accepted")
	}
	if _, err := NewTokenIssuer(testSecret, 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	ti := newTestIssuer(t)
	user, sess := uuid.New(), uuid.New()
	tok, exp, err := ti.Issue(user, policy.RoleAdmin, sess)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if d := time.Until(exp); d < 14*time.Minute || d > 15*time.Minute {
		t.Fatalf("expiresAt %v is not ~15m away", exp)
	}
	c, err := ti.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Claims{UserID: user, Role: policy.RoleAdmin, SessionID: sess, ExpiresAt: exp}
	if c.UserID != want.UserID || c.Role != want.Role || c.SessionID != want.SessionID || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("Verify = %+v, want %+v", c, want)
	}
	// Each token has its own jti.
	tok2, _, _ := ti.Issue(user, policy.RoleAdmin, sess)
	if tok2 == tok {
		t.Fatal("two tokens issued in the same second are identical (missing jti)")
	}
}

func TestVerifyExpired(t *testing.T) {
	ti := newTestIssuer(t)
	tok, _, err := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	// Within leeway still passes; past it fails.
	inLeeway := ti.WithClock(func() time.Time { return time.Now().Add(15*time.Minute + 10*time.Second) })
	if _, err := inLeeway.Verify(tok); err != nil {
		t.Fatalf("token within leeway rejected: %v", err)
	}
	later := ti.WithClock(func() time.Time { return time.Now().Add(16 * time.Minute) })
	if _, err := later.Verify(tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: err = %v, want ErrInvalidToken (expired)", err)
	}
	// WithClock returns a copy: the original still accepts the token.
	if _, err := ti.Verify(tok); err != nil {
		t.Fatalf("WithClock mutated the original issuer: %v", err)
	}
}

// validMapClaims is what Issue would produce; tests delete or alter one field at a time.
func validMapClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub":  uuid.NewString(),
		"iss":  tokenIssuer,
		"aud":  []string{tokenAudience},
		"iat":  now.Unix(),
		"nbf":  now.Unix(),
		"exp":  now.Add(time.Minute).Unix(),
		"jti":  uuid.NewString(),
		"role": string(policy.RoleUser),
		"sid":  uuid.NewString(),
	}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestVerifyRejects(t *testing.T) {
	ti := newTestIssuer(t)
	b64 := base64.RawURLEncoding.EncodeToString
	without := func(k string) string {
		c := validMapClaims()
		delete(c, k)
		return sign(t, jwt.SigningMethodHS256, testSecret, c)
	}
	with := func(k string, v any) string {
		c := validMapClaims()
		c[k] = v
		return sign(t, jwt.SigningMethodHS256, testSecret, c)
	}

	// Sanity: the unmodified helper claims verify, so each rejection below is due to its one change.
	if _, err := ti.Verify(sign(t, jwt.SigningMethodHS256, testSecret, validMapClaims())); err != nil {
		t.Fatalf("baseline token rejected: %v", err)
	}

	good, _, err := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tamperedPayload := func() string {
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(raw), `"role":"USER"`, `"role":"ADMIN"`, 1)
		if changed == string(raw) {
			t.Fatal("payload has no role to tamper with")
		}
		return parts[0] + "." + b64([]byte(changed)) + "." + parts[2]
	}()
	rs256Header := b64([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	noneToken := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validMapClaims())

	cases := map[string]string{
		"empty":            "",
		"garbage":          "not.a.jwt",
		"wrong secret":     sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-32"), validMapClaims()),
		"alg none":         noneToken,
		"alg HS512":        sign(t, jwt.SigningMethodHS512, testSecret, validMapClaims()),
		"RS256 header":     rs256Header,
		"wrong iss":        with("iss", "someone-else"),
		"wrong aud":        with("aud", []string{"other-api"}),
		"missing aud":      without("aud"),
		"missing exp":      without("exp"),
		"missing iat":      without("iat"),
		"future iat":       with("iat", time.Now().Add(time.Hour).Unix()),
		"missing sub":      without("sub"),
		"non-uuid sub":     with("sub", "alice"),
		"missing sid":      without("sid"),
		"nil sid":          with("sid", uuid.Nil.String()),
		"unknown role":     with("role", "ROOT"),
		"tampered payload": tamperedPayload,
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ti.Verify(tok)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %v, want ErrInvalidToken", err)
			}
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Fatalf("error text leaks the token: %v", err)
			}
		})
	}
}

// TestShortTTLExpiresSoon: a token lives its TTL plus a clock leeway of at most a quarter of it, so
// a short ACCESS_TOKEN_TTL (client tests of the refresh flow) expires in seconds, while production
// TTLs keep the 30 s leeway for clock skew between replicas.
func TestShortTTLExpiresSoon(t *testing.T) {
	start := time.Now()
	ti, err := NewTokenIssuer([]byte("test-secret-test-secret-test-secret-0123"), 8*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ti = ti.WithClock(func() time.Time { return start })
	tok, _, err := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ti.WithClock(func() time.Time { return start.Add(9 * time.Second) }).Verify(tok); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	if _, err := ti.WithClock(func() time.Time { return start.Add(11 * time.Second) }).Verify(tok); err == nil {
		t.Fatal("an 8s token still verifies 11s after issue")
	}
}

// TestVerifyMemoRechecksTimes: a token verified once is answered from the issuer's memo afterwards;
// the memo must answer exactly as a full verification would at every later (or earlier) instant:
// the same claims while valid, the same reason once expired or before nbf/iat.
func TestVerifyMemoRechecksTimes(t *testing.T) {
	start := time.Now()
	now := start
	clock := func() time.Time { return now }
	ti, err := NewTokenIssuer(testSecret, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ti = ti.WithClock(clock)
	tok, _, err := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ti.Verify(tok); err != nil { // fills the memo
		t.Fatal(err)
	}
	if ti.verified.Len() != 1 {
		t.Fatalf("memo holds %d tokens after one verification, want 1", ti.verified.Len())
	}
	offsets := []time.Duration{0, time.Second, 14 * time.Minute, 15*time.Minute + 29*time.Second,
		15*time.Minute + 30*time.Second, 15*time.Minute + 31*time.Second, time.Hour,
		-29 * time.Second, -30 * time.Second, -31 * time.Second, -time.Hour}
	for _, off := range offsets {
		now = start.Add(off)
		fresh, err := NewTokenIssuer(testSecret, 15*time.Minute) // no memo of tok
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := fresh.WithClock(clock).Verify(tok)
		got, gotErr := ti.Verify(tok)
		if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("at %v: memo answered (%+v, %v), a full verification (%+v, %v)", off, got, gotErr, want, wantErr)
		}
	}
	// Rejected tokens are never remembered.
	tampered := tok[:len(tok)-2] + "AA"
	if tampered == tok {
		t.Fatal("tampering changed nothing")
	}
	now = start
	for range 2 {
		if _, err := ti.Verify(tampered); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("tampered token: %v", err)
		}
	}
	if ti.verified.Contains(tampered) {
		t.Fatal("a rejected token was remembered")
	}
}
