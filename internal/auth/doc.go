// Package auth owns passwords, access tokens, refresh-token material, the viewer in the request context,
// the HTTP middleware that parses tokens and the @auth/@hasRole schema directives.
package auth
