// Package templates holds sandpit's ready-made templates, each a
// Dockerfile of builder steps built with `sandpit template build NAME`.
// They start FROM debootstrap:bookworm/PACKAGES: the server makes the
// Debian root with its packages with debootstrap (it needs the Debian
// mirror, not network in build sandboxes).
package templates

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed */Dockerfile
var files embed.FS

// Names lists the ready-made templates.
func Names() []string {
	ents, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Dockerfile returns the definition of the ready-made template name.
func Dockerfile(name string) ([]byte, error) {
	return fs.ReadFile(files, name+"/Dockerfile")
}
