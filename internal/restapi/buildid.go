package restapi

import (
	"context"
	"crypto/sha256"
	"fmt"
)

// builtinBuildID is the build ID clients see for builtin template id
// (base, code-interpreter-v1). A builtin has no build: the registry gives
// its template ID where a build ID goes, and the Python SDK parses every
// buildID as a UUID (Template.get_tags("base") raised ValueError). This is
// a UUID derived from the ID, the same on every call and every server.
func builtinBuildID(id string) string {
	sum := sha256.Sum256([]byte("sandpit builtin build " + id))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8: vendor-defined
	b[8] = b[8]&0x3f | 0x80 // the RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// builtinIDs is the set of tr's builtin template IDs; empty when listing
// fails (their build IDs then go out as they are).
func builtinIDs(ctx context.Context, tr Templates) map[string]bool {
	infos, err := tr.List(ctx)
	if err != nil {
		return nil
	}
	ids := map[string]bool{}
	for _, in := range infos {
		if in.Builtin {
			ids[in.ID] = true
		}
	}
	return ids
}
