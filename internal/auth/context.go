package auth

import (
	"context"

	"github.com/google/uuid"
)

// Viewer is the signed-in user of a request, as confirmed against the sessions table.
type Viewer struct {
	UserID    uuid.UUID
	Role      Role
	SessionID uuid.UUID
}

// viewerKey is unexported so no other package can forge or overwrite the viewer.
type viewerKey struct{}

// WithViewer returns ctx carrying v.
func WithViewer(ctx context.Context, v Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, v)
}

// ViewerFrom returns the request's viewer. A zero-user Viewer counts as absent, so a mistaken
// WithViewer(ctx, Viewer{}) can never pass as a signed-in user.
func ViewerFrom(ctx context.Context) (Viewer, bool) {
	v, ok := ctx.Value(viewerKey{}).(Viewer)
	if !ok || v.UserID == uuid.Nil {
		return Viewer{}, false
	}
	return v, true
}
