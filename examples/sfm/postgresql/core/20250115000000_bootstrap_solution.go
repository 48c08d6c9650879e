//go:build ignore

// BfM registration file: bfm reads Schema, Dependencies, StructuredDependencies and Tags from
// it (it is never compiled or executed). Header directives in the .up.sql file are the
// alternative for new migrations.
package core

import (
	_ "embed"

	"github.com/toolsascode/bfm/api/migrations"
)

//go:embed 20250115000000_bootstrap_solution.up.sql
var upSQL string

//go:embed 20250115000000_bootstrap_solution.down.sql
var downSQL string

func init() {
	migration := &migrations.MigrationScript{
		Schema:                 "core",
		Version:                "20250115000000",
		Name:                   "bootstrap_solution",
		Connection:             "core",
		Backend:                "postgresql",
		UpSQL:                  upSQL,
		DownSQL:                downSQL,
		Dependencies:           []string{},
		StructuredDependencies: []migrations.Dependency{},
		Tags:                   []string{"tier=core", "team=platform"},
	}
	migrations.GlobalRegistry.Register(migration)
}
