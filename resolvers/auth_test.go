package resolvers_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// auTestSecret is the JWT secret testsupport.NewEnv configures.
const auTestSecret = "test-secret-test-secret-test-secret-0123"

const (
	auRegisterMutation = `mutation($input: RegisterInput!) {
  register(input: $input) { accessToken refreshToken expiresAt user { id name email role } }
}`
	auLoginMutation = `mutation($input: LoginInput!) {
  login(input: $input) { accessToken refreshToken expiresAt user { id email } }
}`
	auRefreshMutation = `mutation($input: RefreshTokenInput!) {
  refreshToken(input: $input) { accessToken refreshToken expiresAt user { id email } }
}`
	auMeQuery = `{ me { id } }`
)

// auPayload is the decoded AuthPayload of register, login and refreshToken.
type auPayload struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	User         struct {
		ID, Name, Role string
		Email          *string
	}
}

// auOneError asserts res failed with exactly one error of code and returns it.
func auOneError(t *testing.T, res testsupport.Response, code string) testsupport.Error {
	t.Helper()
	if len(res.Errors) != 1 || res.Errors[0].Code() != code {
		t.Fatalf("want exactly one %s error, got status %d errors %+v data %s", code, res.Status, res.Errors, res.Data)
	}
	return res.Errors[0]
}

// auNoData asserts the response carries no data: data absent or null, or every root field null.
func auNoData(t *testing.T, res testsupport.Response) {
	t.Helper()
	if len(res.Data) == 0 || string(res.Data) == "null" {
		return
	}
	var fields map[string]any
	if err := json.Unmarshal(res.Data, &fields); err != nil {
		t.Fatalf("data is not an object: %s", res.Data)
	}
	for k, v := range fields {
		if v != nil {
			t.Fatalf("data.%s leaked: %s", k, res.Data)
		}
	}
}

// auRefused asserts a request was refused by the auth middleware: HTTP 401, one UNAUTHENTICATED
// error, no data.
func auRefused(t *testing.T, res testsupport.Response) {
	t.Helper()
	if res.Status != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401 (errors %+v, data %s)", res.Status, res.Errors, res.Data)
	}
	auOneError(t, res, "UNAUTHENTICATED")
	if len(res.Data) != 0 && string(res.Data) != "null" {
		t.Fatalf("401 carried data: %s", res.Data)
	}
}

// auViolationFields lists the fields of extensions.violations.
func auViolationFields(t *testing.T, e testsupport.Error) []string {
	t.Helper()
	raw, ok := e.Extensions["violations"].([]any)
	if !ok {
		t.Fatalf("error has no violations list: %+v", e)
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		m, _ := v.(map[string]any)
		out[i], _ = m["field"].(string)
	}
	return out
}

// auAs returns a client that sends token as its Bearer token.
func auAs(env *testsupport.Env, token string) *testsupport.Client {
	return &testsupport.Client{Env: env, Token: token}
}

func auLogin(t *testing.T, env *testsupport.Env, email, password string) testsupport.Response {
	t.Helper()
	return env.Anonymous().Do(t, auLoginMutation, map[string]any{"input": map[string]any{"email": email, "password": password}})
}

// auLoginOK signs in and returns the new session's tokens.
func auLoginOK(t *testing.T, env *testsupport.Env, email, password string) auPayload {
	t.Helper()
	var data struct{ Login auPayload }
	auLogin(t, env, email, password).Decode(t, &data)
	if data.Login.AccessToken == "" || data.Login.RefreshToken == "" {
		t.Fatalf("login returned empty tokens: %+v", data.Login)
	}
	return data.Login
}

func auRefresh(t *testing.T, env *testsupport.Env, refresh string) testsupport.Response {
	t.Helper()
	return env.Anonymous().Do(t, auRefreshMutation, map[string]any{"input": map[string]any{"refreshToken": refresh}})
}

// auMeWorks asserts token is accepted and belongs to the user with global id wantID.
func auMeWorks(t *testing.T, env *testsupport.Env, token, wantID string) {
	t.Helper()
	res := auAs(env, token).Do(t, auMeQuery, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("me: status %d, errors %+v", res.Status, res.Errors)
	}
	var data struct{ Me struct{ ID string } }
	res.Decode(t, &data)
	if data.Me.ID != wantID {
		t.Fatalf("me.id = %q, want %q", data.Me.ID, wantID)
	}
}

// auCount runs a count(*) query with arguments on the test database.
func auCount(t *testing.T, env *testsupport.Env, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := env.DB.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestRegisterReturnsSessionAndUser(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	email := "grace-" + uuid.NewString()[:8] + "@example.com"

	before := time.Now()
	res := env.Anonymous().Do(t, auRegisterMutation, map[string]any{
		"input": map[string]any{"name": "Grace", "email": email, "password": "correct horse"},
	})
	after := time.Now()
	var data struct{ Register auPayload }
	res.Decode(t, &data)
	p := data.Register
	if p.AccessToken == "" || p.RefreshToken == "" || p.AccessToken == p.RefreshToken {
		t.Fatalf("tokens = %q / %q, want two distinct non-empty tokens", p.AccessToken, p.RefreshToken)
	}
	// expiresAt is the exp claim in whole seconds, ACCESS_TOKEN_TTL (15m by default) ahead.
	lo, hi := before.Add(15*time.Minute-time.Second), after.Add(15*time.Minute+time.Second)
	if p.ExpiresAt.Before(lo) || p.ExpiresAt.After(hi) {
		t.Fatalf("expiresAt = %s, want between %s and %s", p.ExpiresAt, lo, hi)
	}
	if p.User.Name != "Grace" || p.User.Email == nil || *p.User.Email != email || p.User.Role != "USER" || p.User.ID == "" {
		t.Fatalf("user = %+v, want Grace <%s> USER", p.User, email)
	}
	if env.CountRows(t, "users") != 1 {
		t.Fatalf("users rows = %d, want 1", env.CountRows(t, "users"))
	}
	auMeWorks(t, env, p.AccessToken, p.User.ID)

	// Password length bounds are inclusive: 8 and 128 characters are accepted.
	for _, pw := range []string{strings.Repeat("p", 8), strings.Repeat("p", 128)} {
		res := env.Anonymous().Do(t, auRegisterMutation, map[string]any{
			"input": map[string]any{"name": "Edge", "email": "edge-" + uuid.NewString()[:8] + "@example.com", "password": pw},
		})
		if len(res.Errors) != 0 {
			t.Fatalf("password of %d characters refused: %+v", len(pw), res.Errors)
		}
	}
}

func TestRegisterDuplicateEmailIgnoringCase(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	rows := env.CountRows(t, "users")

	for _, dup := range []string{u.Email, strings.ToUpper(u.Email), "  " + strings.ToUpper(u.Email[:1]) + u.Email[1:] + " "} {
		res := env.Anonymous().Do(t, auRegisterMutation, map[string]any{
			"input": map[string]any{"name": "Impostor", "email": dup, "password": "another-password"},
		})
		e := auOneError(t, res, "CONFLICT")
		if e.Field() != "input.email" {
			t.Errorf("register %q: field = %q, want email", dup, e.Field())
		}
		auNoData(t, res)
	}
	if got := env.CountRows(t, "users"); got != rows {
		t.Fatalf("users rows = %d, want %d (no row written)", got, rows)
	}
}

func TestRegisterRejectsInvalidInput(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	env.Register(t, "Existing")
	rows := env.CountRows(t, "users")

	const (
		goodName  = "Ada"
		goodEmail = "ada@example.com"
		goodPass  = "long-enough-password"
	)
	cases := []struct {
		name                  string
		in                    map[string]any
		wantField             string
		wantViolationFields   []string
		passwordMustNotAppear bool
	}{
		{"empty name", map[string]any{"name": "", "email": goodEmail, "password": goodPass}, "input.name", []string{"input.name"}, false},
		{"blank name", map[string]any{"name": "   ", "email": goodEmail, "password": goodPass}, "input.name", []string{"input.name"}, false},
		{"name too long", map[string]any{"name": strings.Repeat("n", 101), "email": goodEmail, "password": goodPass}, "input.name", []string{"input.name"}, false},
		{"name with bell", map[string]any{"name": "Ada\x07", "email": goodEmail, "password": goodPass}, "input.name", []string{"input.name"}, false},
		{"name with newline", map[string]any{"name": "Ada\nLovelace", "email": goodEmail, "password": goodPass}, "input.name", []string{"input.name"}, false},
		{"name with NUL", map[string]any{"name": "Ada\x00", "email": goodEmail, "password": goodPass}, "input.name", []string{"input.name"}, false},
		{"bad email", map[string]any{"name": goodName, "email": "not-an-email", "password": goodPass}, "input.email", []string{"input.email"}, false},
		{"email without dot in domain", map[string]any{"name": goodName, "email": "ada@localhost", "password": goodPass}, "input.email", []string{"input.email"}, false},
		{"email with display name", map[string]any{"name": goodName, "email": "Ada <ada@example.com>", "password": goodPass}, "input.email", []string{"input.email"}, false},
		{"empty email", map[string]any{"name": goodName, "email": "", "password": goodPass}, "input.email", []string{"input.email"}, false},
		{"short password", map[string]any{"name": goodName, "email": goodEmail, "password": "seven77"}, "input.password", []string{"input.password"}, true},
		{"129-char password", map[string]any{"name": goodName, "email": goodEmail, "password": strings.Repeat("x", 129)}, "input.password", []string{"input.password"}, true},
		{
			"every field wrong",
			map[string]any{"name": "", "email": "nope", "password": "short"},
			"input.name", []string{"input.name", "input.email", "input.password"}, true,
		},
		{
			"email and password wrong",
			map[string]any{"name": goodName, "email": "ada@", "password": strings.Repeat("y", 200)},
			"input.email", []string{"input.email", "input.password"}, true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := env.Anonymous().Do(t, auRegisterMutation, map[string]any{"input": tc.in})
			e := auOneError(t, res, "BAD_USER_INPUT")
			auNoData(t, res)
			if e.Field() != tc.wantField {
				t.Errorf("field = %q, want %q", e.Field(), tc.wantField)
			}
			if got := auViolationFields(t, e); !reflect.DeepEqual(got, tc.wantViolationFields) {
				t.Errorf("violations = %v, want %v", got, tc.wantViolationFields)
			}
			if pw, _ := tc.in["password"].(string); tc.passwordMustNotAppear && strings.Contains(e.Message, pw) {
				t.Errorf("message echoes the password: %q", e.Message)
			}
			if got := env.CountRows(t, "users"); got != rows {
				t.Errorf("users rows = %d, want %d", got, rows)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Lin")

	t.Run("correct credentials open a new session", func(t *testing.T) {
		p := auLoginOK(t, env, u.Email, u.Password)
		if p.User.ID != u.GlobalID || p.User.Email == nil || *p.User.Email != u.Email {
			t.Fatalf("login user = %+v, want %s", p.User, u.GlobalID)
		}
		if p.AccessToken == u.Token || p.RefreshToken == u.RefreshToken {
			t.Fatal("login reused the registration's tokens")
		}
		auMeWorks(t, env, p.AccessToken, u.GlobalID)
	})

	t.Run("email is case-insensitive", func(t *testing.T) {
		p := auLoginOK(t, env, strings.ToUpper(u.Email), u.Password)
		auMeWorks(t, env, p.AccessToken, u.GlobalID)
	})

	t.Run("wrong password and unknown email answer identically", func(t *testing.T) {
		failures := map[string]testsupport.Response{
			"wrong password":         auLogin(t, env, u.Email, u.Password+"x"),
			"password in other case": auLogin(t, env, u.Email, strings.ToUpper(u.Password)),
			"unknown email":          auLogin(t, env, "nobody-"+uuid.NewString()[:8]+"@example.com", u.Password),
			"empty password":         auLogin(t, env, u.Email, ""),
		}
		ref := failures["unknown email"]
		refErr := auOneError(t, ref, "UNAUTHENTICATED")
		for name, res := range failures {
			e := auOneError(t, res, "UNAUTHENTICATED")
			auNoData(t, res)
			if e.Message != refErr.Message || !reflect.DeepEqual(e.Extensions, refErr.Extensions) {
				t.Errorf("%s: error %+v differs from unknown email's %+v", name, e, refErr)
			}
			if res.Status != ref.Status {
				t.Errorf("%s: status %d, unknown email got %d", name, res.Status, ref.Status)
			}
			if strings.Contains(e.Message, u.Email) || strings.Contains(e.Message, u.Password) {
				t.Errorf("%s: message leaks credentials: %q", name, e.Message)
			}
		}
	})
}

func TestRefreshTokenRotationAndReuse(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Rita")
	other := auLoginOK(t, env, u.Email, u.Password) // an independent session of the same user
	access1, refresh1 := u.Token, u.RefreshToken

	var data struct{ RefreshToken auPayload }
	auRefresh(t, env, refresh1).Decode(t, &data)
	r2 := data.RefreshToken
	if r2.RefreshToken == "" || r2.RefreshToken == refresh1 || r2.AccessToken == "" || r2.AccessToken == access1 {
		t.Fatalf("refresh did not rotate: %+v", r2)
	}
	if r2.User.ID != u.GlobalID || r2.User.Email == nil || *r2.User.Email != u.Email {
		t.Fatalf("refresh user = %+v, want %s <%s>", r2.User, u.GlobalID, u.Email)
	}
	auMeWorks(t, env, r2.AccessToken, u.GlobalID)
	auMeWorks(t, env, access1, u.GlobalID) // same session, still live before the reuse

	// Presenting R1 a second time is a reuse: refused, and the whole session is revoked.
	res := auRefresh(t, env, refresh1)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)
	if strings.Contains(res.Errors[0].Message, refresh1) {
		t.Fatalf("message echoes the refresh token: %q", res.Errors[0].Message)
	}

	res = auRefresh(t, env, r2.RefreshToken)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)
	auRefused(t, auAs(env, r2.AccessToken).Do(t, auMeQuery, nil))
	auRefused(t, auAs(env, access1).Do(t, auMeQuery, nil))

	// The other session is untouched, and can itself rotate.
	auMeWorks(t, env, other.AccessToken, u.GlobalID)
	var od struct{ RefreshToken auPayload }
	auRefresh(t, env, other.RefreshToken).Decode(t, &od)
	auMeWorks(t, env, od.RefreshToken.AccessToken, u.GlobalID)

	for _, garbage := range []string{"garbage", base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), u.GlobalID} {
		res := auRefresh(t, env, garbage)
		auOneError(t, res, "UNAUTHENTICATED")
		auNoData(t, res)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Leo")
	other := auLoginOK(t, env, u.Email, u.Password)
	const logout = `mutation { logout { ok } }`

	var data struct{ Logout struct{ Ok bool } }
	u.Do(t, logout, nil).Decode(t, &data)
	if !data.Logout.Ok {
		t.Fatal("logout ok = false, want true")
	}
	auRefused(t, u.Do(t, auMeQuery, nil))
	auRefused(t, u.Do(t, logout, nil)) // the ended session cannot log out again
	res := auRefresh(t, env, u.RefreshToken)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)

	// Only the current session ended.
	auMeWorks(t, env, other.AccessToken, u.GlobalID)

	res = env.Anonymous().Do(t, logout, nil)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)
}

// auPostAuthorization posts a GraphQL operation with exactly the given Authorization header value.
func auPostAuthorization(t *testing.T, env *testsupport.Env, authorization, query string, vars map[string]any) testsupport.Response {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", authorization)
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := testsupport.Response{Status: res.StatusCode, Header: res.Header}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not JSON (%d): %s", res.StatusCode, raw)
	}
	return out
}

// auSign signs claims (a copy of base changed by edit) with method and key.
func auSign(t *testing.T, method jwt.SigningMethod, key any, base jwt.MapClaims, edit func(jwt.MapClaims)) string {
	t.Helper()
	c := jwt.MapClaims{}
	for k, v := range base {
		c[k] = v
	}
	if edit != nil {
		edit(c)
	}
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadAccessTokensAreRefused(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Tess")
	stranger := env.Register(t, "Sam")

	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(u.Token, claims); err != nil {
		t.Fatalf("parse real token: %v", err)
	}
	for _, k := range []string{"sub", "sid", "iss", "aud", "exp", "iat"} {
		if claims[k] == nil {
			t.Fatalf("real token lacks %q: %v", k, claims)
		}
	}
	secret := []byte(auTestSecret)
	now := time.Now()

	// Control: the real token and a re-signed copy of its claims work, so every refusal below is
	// caused by the one thing each case changes.
	auMeWorks(t, env, u.Token, u.GlobalID)
	auMeWorks(t, env, auSign(t, jwt.SigningMethodHS256, secret, claims, nil), u.GlobalID)

	parts := strings.Split(u.Token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	tamperedPayload := bytes.Replace(payload, []byte(`"role":"USER"`), []byte(`"role":"ADMIN"`), 1)
	if bytes.Equal(tamperedPayload, payload) {
		t.Fatalf("token payload has no role claim to tamper with: %s", payload)
	}
	sig := []byte(parts[2])
	sig[len(sig)/2] ^= 1 // flips a bit but stays in the base64url alphabet

	noneToken, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, header string }{
		{"tampered payload", "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedPayload) + "." + parts[2]},
		{"tampered signature", "Bearer " + parts[0] + "." + parts[1] + "." + string(sig)},
		{"signature stripped", "Bearer " + parts[0] + "." + parts[1] + "."},
		{"expired", "Bearer " + auSign(t, jwt.SigningMethodHS256, secret, claims, func(c jwt.MapClaims) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-20*time.Minute).Unix(), now.Add(-20*time.Minute).Unix(), now.Add(-5*time.Minute).Unix()
		})},
		{"no exp", "Bearer " + auSign(t, jwt.SigningMethodHS256, secret, claims, func(c jwt.MapClaims) { delete(c, "exp") })},
		{"wrong secret", "Bearer " + auSign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another-01"), claims, nil)},
		{"alg none", "Bearer " + noneToken},
		{"alg HS512 with the real secret", "Bearer " + auSign(t, jwt.SigningMethodHS512, secret, claims, nil)},
		{"wrong issuer", "Bearer " + auSign(t, jwt.SigningMethodHS256, secret, claims, func(c jwt.MapClaims) { c["iss"] = "someone-else" })},
		{"wrong audience", "Bearer " + auSign(t, jwt.SigningMethodHS256, secret, claims, func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} })},
		{"unknown session", "Bearer " + auSign(t, jwt.SigningMethodHS256, secret, claims, func(c jwt.MapClaims) { c["sid"] = uuid.NewString() })},
		{"session of another user", "Bearer " + auSign(t, jwt.SigningMethodHS256, secret, claims, func(c jwt.MapClaims) { c["sub"] = stranger.ID.String() })},
		{"not a JWT", "Bearer not-a-jwt"},
		// "Bearer " with no token is anonymous, like no header (what signed-out auth links send).
		{"basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte(u.Email+":"+u.Password))},
		{"token without scheme", u.Token},
	}
	loginVars := map[string]any{"input": map[string]any{"email": u.Email, "password": u.Password}}
	sessions := env.CountRows(t, "sessions")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := auPostAuthorization(t, env, tc.header, auMeQuery, nil)
			auRefused(t, res)
			if !strings.Contains(res.Header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("WWW-Authenticate = %q, want invalid_token", res.Header.Get("WWW-Authenticate"))
			}
			// A bad header is never downgraded to anonymous, even for a field anonymous callers may use.
			auRefused(t, auPostAuthorization(t, env, tc.header, auLoginMutation, loginVars))
		})
	}
	if got := env.CountRows(t, "sessions"); got != sessions {
		t.Fatalf("sessions rows = %d, want %d: a login behind a bad token ran", got, sessions)
	}
	auMeWorks(t, env, u.Token, u.GlobalID) // none of the attempts harmed the real session
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Cole")
	other := auLoginOK(t, env, u.Email, u.Password)
	const change = `mutation($input: ChangePasswordInput!) { changePassword(input: $input) { user { id email } } }`
	newPassword := "a-brand-new-password"

	refusals := []struct {
		name, current, next, wantField string
	}{
		{"wrong current password", u.Password + "!", newPassword, "input.currentPassword"},
		{"new password too short", u.Password, "short", "input.newPassword"},
		{"new password too long", u.Password, strings.Repeat("z", 129), "input.newPassword"},
		{"new password equals current", u.Password, u.Password, "input.newPassword"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			res := u.Do(t, change, map[string]any{"input": map[string]any{"currentPassword": tc.current, "newPassword": tc.next}})
			e := auOneError(t, res, "BAD_USER_INPUT")
			auNoData(t, res)
			if e.Field() != tc.wantField {
				t.Errorf("field = %q, want %q", e.Field(), tc.wantField)
			}
			if strings.Contains(e.Message, tc.current) || strings.Contains(e.Message, tc.next) {
				t.Errorf("message echoes a password: %q", e.Message)
			}
			auMeWorks(t, env, other.AccessToken, u.GlobalID) // a refused change signs nobody out
		})
	}

	var data struct {
		ChangePassword struct{ User struct{ ID string } }
	}
	u.Do(t, change, map[string]any{"input": map[string]any{"currentPassword": u.Password, "newPassword": newPassword}}).Decode(t, &data)
	if data.ChangePassword.User.ID != u.GlobalID {
		t.Fatalf("changePassword user = %q, want %q", data.ChangePassword.User.ID, u.GlobalID)
	}

	auMeWorks(t, env, u.Token, u.GlobalID) // the current session keeps working
	auRefused(t, auAs(env, other.AccessToken).Do(t, auMeQuery, nil))
	res := auRefresh(t, env, other.RefreshToken)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)
	var rd struct{ RefreshToken auPayload }
	auRefresh(t, env, u.RefreshToken).Decode(t, &rd) // and so does its refresh token

	res = auLogin(t, env, u.Email, u.Password)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)
	auMeWorks(t, env, auLoginOK(t, env, u.Email, newPassword).AccessToken, u.GlobalID)
}

func TestDeleteMe(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Dana")
	keep := env.Register(t, "Kim")
	for _, title := range []string{"one", "two"} {
		env.CreateTask(t, u.ID, db.NewTask{Title: title})
	}
	env.CreateTask(t, keep.ID, db.NewTask{Title: "kept"})
	const del = `mutation($input: DeleteMeInput!) { deleteMe(input: $input) { deletedUserId } }`

	for _, wrong := range []string{u.Password + "x", "", strings.Repeat("w", 1000)} {
		res := u.Do(t, del, map[string]any{"input": map[string]any{"password": wrong}})
		e := auOneError(t, res, "BAD_USER_INPUT")
		auNoData(t, res)
		if e.Field() != "input.password" {
			t.Errorf("field = %q, want input.password", e.Field())
		}
		if users, tasks := env.CountRows(t, "users"), env.CountRows(t, "tasks"); users != 2 || tasks != 3 {
			t.Fatalf("after refused deleteMe: users %d tasks %d, want 2 and 3", users, tasks)
		}
		auMeWorks(t, env, u.Token, u.GlobalID)
	}

	var data struct {
		DeleteMe struct{ DeletedUserID string }
	}
	u.Do(t, del, map[string]any{"input": map[string]any{"password": u.Password}}).Decode(t, &data)
	if data.DeleteMe.DeletedUserID != u.GlobalID {
		t.Fatalf("deletedUserId = %q, want %q", data.DeleteMe.DeletedUserID, u.GlobalID)
	}
	if n := auCount(t, env, `SELECT count(*) FROM users WHERE id = $1`, u.ID); n != 0 {
		t.Fatalf("user row still present")
	}
	if n := auCount(t, env, `SELECT count(*) FROM tasks WHERE owner_id = $1`, u.ID); n != 0 {
		t.Fatalf("%d tasks of the deleted user remain", n)
	}
	if n := auCount(t, env, `SELECT count(*) FROM sessions WHERE user_id = $1`, u.ID); n != 0 {
		t.Fatalf("%d sessions of the deleted user remain", n)
	}
	if users, tasks := env.CountRows(t, "users"), env.CountRows(t, "tasks"); users != 1 || tasks != 1 {
		t.Fatalf("after deleteMe: users %d tasks %d, want 1 and 1 (the other user's)", users, tasks)
	}
	auRefused(t, u.Do(t, auMeQuery, nil))
	res := auLogin(t, env, u.Email, u.Password)
	auOneError(t, res, "UNAUTHENTICATED")
	auMeWorks(t, env, keep.Token, keep.GlobalID)
}

func TestUpdateMe(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Uma")
	other := env.Register(t, "Otto")
	const update = `mutation($input: UpdateMeInput!) { updateMe(input: $input) { user { id name email } } }`
	type me struct {
		Name  string
		Email *string
	}
	readMe := func(t *testing.T) me {
		t.Helper()
		var data struct{ Me me }
		u.Do(t, `{ me { name email } }`, nil).Decode(t, &data)
		return data.Me
	}

	newEmail := "uma-renamed-" + uuid.NewString()[:8] + "@example.com"
	var data struct {
		UpdateMe struct {
			User struct {
				ID, Name string
				Email    *string
			}
		}
	}
	u.Do(t, update, map[string]any{"input": map[string]any{"name": "  Uma Thurman ", "email": newEmail}}).Decode(t, &data)
	got := data.UpdateMe.User
	if got.ID != u.GlobalID || got.Name != "Uma Thurman" || got.Email == nil || *got.Email != newEmail {
		t.Fatalf("updateMe user = %+v, want Uma Thurman <%s>", got, newEmail)
	}
	if m := readMe(t); m.Name != "Uma Thurman" || m.Email == nil || *m.Email != newEmail {
		t.Fatalf("me after update = %+v", m)
	}
	// Changing only the name keeps the email.
	u.Do(t, update, map[string]any{"input": map[string]any{"name": "Uma"}}).Decode(t, &data)
	if m := readMe(t); m.Name != "Uma" || m.Email == nil || *m.Email != newEmail {
		t.Fatalf("me after name-only update = %+v", m)
	}

	refusals := []struct {
		name      string
		in        map[string]any
		code      string
		wantField string
	}{
		{"email of another user", map[string]any{"email": other.Email}, "CONFLICT", "input.email"},
		{"email of another user in other case", map[string]any{"email": strings.ToUpper(other.Email)}, "CONFLICT", "input.email"},
		{"invalid email", map[string]any{"email": "not-an-email"}, "BAD_USER_INPUT", "input.email"},
		{"empty name", map[string]any{"name": ""}, "BAD_USER_INPUT", "input.name"},
		{"name with control char", map[string]any{"name": "Uma\x1b[31m"}, "BAD_USER_INPUT", "input.name"},
		{"valid name with invalid email", map[string]any{"name": "Mallory", "email": "x@"}, "BAD_USER_INPUT", "input.email"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			res := u.Do(t, update, map[string]any{"input": tc.in})
			e := auOneError(t, res, tc.code)
			auNoData(t, res)
			if e.Field() != tc.wantField {
				t.Errorf("field = %q, want %q", e.Field(), tc.wantField)
			}
			if m := readMe(t); m.Name != "Uma" || m.Email == nil || *m.Email != newEmail {
				t.Errorf("profile changed by a refused update: %+v", m)
			}
		})
	}

	res := u.Do(t, update, map[string]any{"input": map[string]any{"name": "", "email": "bad"}})
	e := auOneError(t, res, "BAD_USER_INPUT")
	if got := auViolationFields(t, e); !reflect.DeepEqual(got, []string{"input.name", "input.email"}) {
		t.Fatalf("violations = %v, want input.name and input.email", got)
	}
	// The other user's email is untouched by the conflicting attempts.
	var od struct{ Me struct{ Email *string } }
	other.Do(t, `{ me { email } }`, nil).Decode(t, &od)
	if od.Me.Email == nil || *od.Me.Email != other.Email {
		t.Fatalf("other user's email = %v, want %s", od.Me.Email, other.Email)
	}
}
