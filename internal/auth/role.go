package auth

// Role is what a user may do beyond owning tasks. The GraphQL Role enum is bound to it in gqlgen.yml.
type Role string

const (
	RoleUser  Role = "USER"
	RoleAdmin Role = "ADMIN"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleUser || r == RoleAdmin }

// Includes reports whether a user holding r may act as want: ADMIN includes USER.
func (r Role) Includes(want Role) bool {
	return r == want || r == RoleAdmin
}
