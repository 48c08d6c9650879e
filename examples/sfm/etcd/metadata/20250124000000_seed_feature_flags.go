//go:build ignore

// BfM registration file. BfM read the leading `/` of Schema as an absolute key prefix; bfm
// reads it relative to the connection's prefix (METADATA_PREFIX, default `/`), so the keys land
// under `<prefix>metadata/operations/`. Puts with "if_absent" seed a flag only where it does not
// exist yet, so operators' changes survive re-runs and new environments still get defaults.
package metadata

import (
	_ "embed"

	"github.com/toolsascode/bfm/api/migrations"
)

//go:embed 20250124000000_seed_feature_flags.up.json
var upJSON string

//go:embed 20250124000000_seed_feature_flags.down.json
var downJSON string

func init() {
	migration := &migrations.MigrationScript{
		Schema:                 "/metadata/operations",
		Version:                "20250124000000",
		Name:                   "seed_feature_flags",
		Connection:             "metadata",
		Backend:                "etcd",
		UpSQL:                  upJSON,
		DownSQL:                downJSON,
		Dependencies:           []string{},
		StructuredDependencies: []migrations.Dependency{},
		Tags:                   []string{"team=platform", "area=feature_flags"},
	}
	migrations.GlobalRegistry.Register(migration)
}
