package server_test

// Hostile requests that guess: passwords through aliased mutations, registered emails through
// updateMe. Every field that verifies a password or tells whether an email is registered spends the
// sign-in budget (per user or email, and per client address) once per alias, before its work.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// guessLimit is AUTH_RATE_LIMIT_PER_MINUTE in these tests; the per-account budget is half of it.
const (
	guessLimit      = 10
	guessPerAccount = guessLimit / 2
)

// aliased repeats one mutation field n times under aliases g0..g(n-1); field gets the alias index.
func aliased(n int, field func(i int) string) string {
	var b strings.Builder
	b.WriteString("mutation { ")
	for i := range n {
		fmt.Fprintf(&b, "g%d: %s ", i, field(i))
	}
	b.WriteString("}")
	return b.String()
}

// codesOf counts the answer's errors by extensions.code.
func codesOf(r hresp) map[string]int {
	out := map[string]int{}
	for _, e := range r.Errors {
		out[e.Code()]++
	}
	return out
}

func passwordHash(t *testing.T, env *testsupport.Env, u *testsupport.User) string {
	t.Helper()
	var h string
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT password_hash FROM users WHERE id = $1`, u.ID).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHostilePasswordGuessingByAliases(t *testing.T) {
	t.Parallel()
	limited := map[string]string{"AUTH_RATE_LIMIT_PER_MINUTE": fmt.Sprint(guessLimit)}

	t.Run("changePassword", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, limited)
		u := env.Register(t, "Victim")
		hash := passwordHash(t, env, u)
		guesses := aliased(20, func(i int) string {
			return fmt.Sprintf(`changePassword(input: {currentPassword: "guess-%d-wrong", newPassword: "taken-over-%d"}) { user { id } }`, i, i)
		})
		r := gqlPost(t, env, u.Token, guesses, nil)
		codes := codesOf(r)
		if codes["BAD_USER_INPUT"] > guessPerAccount || codes["RATE_LIMITED"] < 20-guessPerAccount {
			t.Fatalf("20 aliased guesses: %v, want at most %d checked and the rest RATE_LIMITED (%.300s)", codes, guessPerAccount, r.Body)
		}
		// The right password, now, is refused too: the budget is spent.
		right := gqlPost(t, env, u.Token, aliased(1, func(int) string {
			return fmt.Sprintf(`changePassword(input: {currentPassword: %q, newPassword: "taken-over-for-good"}) { user { id } }`, u.Password)
		}), nil)
		if right.code() != "RATE_LIMITED" {
			t.Errorf("the right password after the guesses: %.300s, want RATE_LIMITED", right.Body)
		}
		if passwordHash(t, env, u) != hash {
			t.Errorf("the password was changed")
		}
	})

	t.Run("deleteMe", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, limited)
		u := env.Register(t, "Victim")
		r := gqlPost(t, env, u.Token, aliased(20, func(i int) string {
			return fmt.Sprintf(`deleteMe(input: {password: "guess-%d-wrong"}) { deletedUserId }`, i)
		}), nil)
		codes := codesOf(r)
		if codes["BAD_USER_INPUT"] > guessPerAccount || codes["RATE_LIMITED"] < 20-guessPerAccount {
			t.Fatalf("20 aliased guesses: %v, want at most %d checked and the rest RATE_LIMITED (%.300s)", codes, guessPerAccount, r.Body)
		}
		right := gqlPost(t, env, u.Token, fmt.Sprintf(`mutation { deleteMe(input: {password: %q}) { deletedUserId } }`, u.Password), nil)
		if right.code() != "RATE_LIMITED" {
			t.Errorf("the right password after the guesses: %.300s, want RATE_LIMITED", right.Body)
		}
		if n := env.CountRows(t, "users"); n != 1 {
			t.Errorf("users = %d, want the victim still there", n)
		}
	})

	t.Run("login", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, limited)
		u := env.Register(t, "Victim")
		r := gqlPost(t, env, "", aliased(20, func(i int) string {
			return fmt.Sprintf(`login(input: {email: %q, password: "guess-%d-wrong"}) { accessToken }`, u.Email, i)
		}), nil)
		codes := codesOf(r)
		if codes["UNAUTHENTICATED"] > guessPerAccount || codes["RATE_LIMITED"] < 20-guessPerAccount {
			t.Fatalf("20 aliased guesses: %v, want at most %d checked and the rest RATE_LIMITED (%.300s)", codes, guessPerAccount, r.Body)
		}
	})

	t.Run("per client address across accounts", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, limited)
		// Registering spends the address' budget too: make the users on an unlimited instance.
		setup := testsupport.NewEnvOn(t, env.DB, nil)
		var users []*testsupport.User
		for i := range 4 {
			users = append(users, setup.Register(t, fmt.Sprintf("Victim%d", i)))
		}
		checked := 0
		for _, u := range users {
			r := gqlPost(t, env, u.Token, aliased(4, func(i int) string {
				return fmt.Sprintf(`deleteMe(input: {password: "guess-%d-wrong"}) { deletedUserId }`, i)
			}), nil)
			checked += codesOf(r)["BAD_USER_INPUT"]
		}
		if checked > guessLimit {
			t.Errorf("%d passwords checked from one address in a minute, want at most %d", checked, guessLimit)
		}
	})
}

// TestHostileEmailOracle: updateMe(email) answers CONFLICT for a registered email, so probing it
// is limited like register.
func TestHostileEmailOracle(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"AUTH_RATE_LIMIT_PER_MINUTE": fmt.Sprint(guessLimit)})
	setup := testsupport.NewEnvOn(t, env.DB, nil)
	prober := setup.Register(t, "Prober")
	var probes []string
	for i := range 20 {
		probes = append(probes, setup.Register(t, fmt.Sprintf("Known%d", i)).Email)
	}
	r := gqlPost(t, env, prober.Token, aliased(20, func(i int) string {
		return fmt.Sprintf(`updateMe(input: {email: %q}) { user { id } }`, probes[i])
	}), nil)
	codes := codesOf(r)
	if codes["CONFLICT"] > guessPerAccount || codes["RATE_LIMITED"] < 20-guessPerAccount {
		t.Fatalf("20 aliased probes: %v, want at most %d answered and the rest RATE_LIMITED (%.300s)", codes, guessPerAccount, r.Body)
	}
	// A name change is no probe and is not limited.
	if r := gqlPost(t, env, prober.Token, `mutation { updateMe(input: {name: "Still Me"}) { user { name } } }`, nil); len(r.Errors) != 0 || r.Status != http.StatusOK {
		t.Errorf("name change after the probes: %d %.300s", r.Status, r.Body)
	}
}
