package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

const (
	// KeyPrefix starts every API key.
	KeyPrefix = "e2b_"
	// keyHexLen is the number of hex digits after KeyPrefix.
	keyHexLen = 40
	// displayHexLen is how many of those digits a key's display prefix
	// shows.
	displayHexLen = 8
)

// newKey returns a fresh key's plaintext.
func newKey() string {
	b := make([]byte, keyHexLen/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return KeyPrefix + hex.EncodeToString(b)
}

// WellFormedKey reports whether s has the shape of an API key: "e2b_" and
// 40 lowercase hex digits.
func WellFormedKey(s string) bool {
	hexPart, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok || len(hexPart) != keyHexLen {
		return false
	}
	for _, c := range []byte(hexPart) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// keyHash is the stored form of a key.
func keyHash(plaintext string) []byte {
	h := sha256.Sum256([]byte(plaintext))
	return h[:]
}

// displayPrefix is the part of a well-formed key that may be shown.
func displayPrefix(plaintext string) string {
	return plaintext[:len(KeyPrefix)+displayHexLen]
}

// newID returns a random id of n hex digits after prefix.
func newID(prefix string, n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)[:n]
}

// newUUID returns a random (version 4) UUID, the shape of E2B's team IDs.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
