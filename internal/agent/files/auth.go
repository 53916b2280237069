package files

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// unauthorizedMessage is upstream envd's text, which clients show.
const unauthorizedMessage = "unauthorized access, please provide a valid access token or method signing if supported"

// authorize checks r against the sandbox's token: without a token anything
// goes; an X-Access-Token header must match it (and then any signature is
// ignored); otherwise the URL must carry a valid, unexpired signature for
// op, the raw path and the username.
func (h *Handler) authorize(r *http.Request, token, op, rawPath, username string) error {
	if token == "" {
		return nil
	}
	if got := r.Header.Get("X-Access-Token"); got != "" {
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return errdefs.New(errdefs.ErrUnauthenticated, unauthorizedMessage)
		}
		return nil
	}
	q := r.URL.Query()
	sig := q.Get("signature")
	if sig == "" {
		return errdefs.New(errdefs.ErrUnauthenticated, unauthorizedMessage)
	}
	exp := q.Get("signature_expiration")
	if exp != "" {
		n, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return errdefs.New(errdefs.ErrUnauthenticated, "invalid signature expiration")
		}
		if h.now().Unix() > n {
			return errdefs.New(errdefs.ErrUnauthenticated, "signature is already expired")
		}
	}
	want := Sign(rawPath, op, username, token, exp)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return errdefs.New(errdefs.ErrUnauthenticated, "invalid signature")
	}
	return nil
}

// Sign returns the URL signature of E2B's SDKs for a /files request:
// "v1_" + unpadded standard base64 of SHA-256 over
// path:op:username:token, with ":expiration" appended when expiration (Unix
// seconds, as a string) is not empty. op is "read" or "write"; path is the
// path exactly as in the URL.
func Sign(path, op, username, token, expiration string) string {
	msg := path + ":" + op + ":" + username + ":" + token
	if expiration != "" {
		msg += ":" + expiration
	}
	sum := sha256.Sum256([]byte(msg))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}
