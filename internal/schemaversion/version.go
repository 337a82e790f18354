// Package schemaversion governs the GraphQL API's contract: the API's semantic version, the printed
// schema that is committed as schema/schema.snapshot.graphql, the deprecation policy, and the
// CHANGELOG.md convention that acknowledges breaking changes (see docs/schema-versioning.md).
package schemaversion

// Version is the semantic version (MAJOR.MINOR.PATCH) of the GraphQL API this build serves. Clients
// read it from Query.apiVersion and from every response's extensions.apiVersion.
//
//   - MAJOR: a breaking change (a removed or renamed type, field, argument or enum value, a changed
//     type, a new required argument or input field), each one recorded in CHANGELOG.md as
//     "BREAKING:". Deprecated fields are only removed in a major version.
//   - MINOR: additions that existing clients can ignore (new types, fields, optional arguments,
//     enum values, deprecations).
//   - PATCH: no schema change (descriptions, behaviour fixes).
//
// schema/released/<Version>.graphql holds the schema of every released version. Once a version is
// released its schema is frozen: the first schema change after a release bumps Version (the tests
// insist), and releasing copies the snapshot to schema/released/<Version>.graphql.
const Version = "1.3.0"
