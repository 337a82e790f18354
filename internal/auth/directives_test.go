package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/policy"
)

func nextOK(ctx context.Context) (any, error) { return "ok", nil }

func viewerCtx(role policy.Role) context.Context {
	return WithActor(context.Background(), policy.Actor{UserID: uuid.New(), Role: role, SessionID: uuid.New()})
}

func wantCode(t *testing.T, res any, err error, code apperr.Code) {
	t.Helper()
	var ae *apperr.Error
	if res != nil || !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("got (%v, %v), want nil and a %s error", res, err, code)
	}
}

func TestAuthDirective(t *testing.T) {
	res, err := AuthDirective(context.Background(), nil, nextOK)
	wantCode(t, res, err, apperr.Unauthenticated)

	// A zero Actor is not a signed-in user.
	res, err = AuthDirective(WithActor(context.Background(), policy.Actor{}), nil, nextOK)
	wantCode(t, res, err, apperr.Unauthenticated)

	res, err = AuthDirective(viewerCtx(policy.RoleUser), nil, nextOK)
	if err != nil || res != "ok" {
		t.Fatalf("signed-in: got (%v, %v)", res, err)
	}
}

func TestHasRoleDirective(t *testing.T) {
	res, err := HasRoleDirective(context.Background(), nil, nextOK, policy.RoleUser)
	wantCode(t, res, err, apperr.Unauthenticated)

	res, err = HasRoleDirective(viewerCtx(policy.RoleUser), nil, nextOK, policy.RoleAdmin)
	wantCode(t, res, err, apperr.Forbidden)
	if err.Error() != "FORBIDDEN: this field requires the ADMIN role" {
		t.Fatalf("message = %q", err.Error())
	}

	for _, tc := range []struct{ have, want policy.Role }{{policy.RoleAdmin, policy.RoleAdmin}, {policy.RoleAdmin, policy.RoleUser}, {policy.RoleUser, policy.RoleUser}} {
		res, err := HasRoleDirective(viewerCtx(tc.have), nil, nextOK, tc.want)
		if err != nil || res != "ok" {
			t.Fatalf("%s on %s field: got (%v, %v)", tc.have, tc.want, res, err)
		}
	}
}
