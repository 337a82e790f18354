// Package migrations embeds the numbered SQL migrations applied by db.Migrate (goose).
package migrations

import "embed"

// FS holds every *.sql migration, in goose's numbered format.
//
//go:embed *.sql
var FS embed.FS
