package auth

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

func nextOK(ctx context.Context) (any, error) { return "ok", nil }

func viewerCtx(role Role) context.Context {
	return WithViewer(context.Background(), Viewer{UserID: uuid.New(), Role: role, SessionID: uuid.New()})
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

	// A zero Viewer is not a signed-in user.
	res, err = AuthDirective(WithViewer(context.Background(), Viewer{}), nil, nextOK)
	wantCode(t, res, err, apperr.Unauthenticated)

	res, err = AuthDirective(viewerCtx(RoleUser), nil, nextOK)
	if err != nil || res != "ok" {
		t.Fatalf("signed-in: got (%v, %v)", res, err)
	}
}

func TestHasRoleDirective(t *testing.T) {
	res, err := HasRoleDirective(context.Background(), nil, nextOK, RoleUser)
	wantCode(t, res, err, apperr.Unauthenticated)

	res, err = HasRoleDirective(viewerCtx(RoleUser), nil, nextOK, RoleAdmin)
	wantCode(t, res, err, apperr.Forbidden)
	if err.Error() != "FORBIDDEN: this field requires the ADMIN role" {
		t.Fatalf("message = %q", err.Error())
	}

	for _, tc := range []struct{ have, want Role }{{RoleAdmin, RoleAdmin}, {RoleAdmin, RoleUser}, {RoleUser, RoleUser}} {
		res, err := HasRoleDirective(viewerCtx(tc.have), nil, nextOK, tc.want)
		if err != nil || res != "ok" {
			t.Fatalf("%s on %s field: got (%v, %v)", tc.have, tc.want, res, err)
		}
	}
}
