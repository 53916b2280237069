package store

import "encoding/hex"

// The cluster (internal/cluster) keeps keys in the Kubernetes API rather
// than SQLite; these give it the same key shape and stored form.

// GenerateKey returns a fresh key's plaintext, its stored hash (hex) and
// the prefix that may be shown.
func GenerateKey() (plaintext, hashHex, prefix string) {
	k := newKey()
	return k, KeyHashHex(k), displayPrefix(k)
}

// KeyHashHex is the stored form of a key, in lowercase hex.
func KeyHashHex(plaintext string) string { return hex.EncodeToString(keyHash(plaintext)) }

// NewTeamID returns a fresh team ID (a UUID, E2B's shape).
func NewTeamID() string { return newUUID() }

// NewKeyID returns a fresh key ID of the SQLite store's shape.
func NewKeyID() string { return newID("key_", 12) }
