package resolvers_test

import (
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

func TestRegisterThenMe(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	var data struct {
		Me struct {
			ID, Name string
			Email    *string
		}
	}
	u.Do(t, `{ me { id name email } }`, nil).Decode(t, &data)
	if data.Me.ID != u.GlobalID || data.Me.Name != "Ada" || data.Me.Email == nil || *data.Me.Email != u.Email {
		t.Fatalf("me = %+v, want %s Ada %s", data.Me, u.GlobalID, u.Email)
	}
}
