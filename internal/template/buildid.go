package template

import (
	"crypto/sha256"
	"fmt"
)

// BuiltinBuildID is the build ID of builtin template id (base,
// code-interpreter-v1). A builtin has no build, but clients read every
// build ID as a UUID (the Python SDK's Template.get_tags("base") raised
// ValueError on "base"): this one is derived from the ID, the same on every
// call and every server.
func BuiltinBuildID(id string) string {
	sum := sha256.Sum256([]byte("sandpit builtin build " + id))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8: vendor-defined
	b[8] = b[8]&0x3f | 0x80 // the RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
