package auth

import (
	"context"

	"github.com/taskgraph/taskgraph/internal/policy"
)

// actorKey is unexported so no other package can forge or overwrite the actor.
type actorKey struct{}

// WithActor returns ctx carrying a, the signed-in user of the request or operation.
func WithActor(ctx context.Context, a policy.Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the operation's actor. A zero-user Actor counts as absent, so a mistaken
// WithActor(ctx, policy.Actor{}) can never pass as a signed-in user.
func ActorFrom(ctx context.Context) (policy.Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(policy.Actor)
	if !ok || !a.SignedIn() {
		return policy.Actor{}, false
	}
	return a, true
}

// Actor returns the operation's actor, or the anonymous (zero) Actor.
func Actor(ctx context.Context) policy.Actor {
	a, _ := ActorFrom(ctx)
	return a
}

type claimsKey struct{}

// WithClaims returns ctx carrying the verified claims the actor was authenticated from: a
// connection that outlives its request (a websocket, an SSE stream) re-authenticates with them
// and ends when they expire.
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFrom returns the claims WithClaims stored.
func ClaimsFrom(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}
