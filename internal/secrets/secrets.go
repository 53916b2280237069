// Package secrets keeps teams' secrets (E2B's secrets API): values are
// write-only, sealed with a per-daemon key before they reach the store,
// and opened only to be resolved into a sandbox's outgoing requests (the
// ${e2b.secrets.NAME} placeholders of network rules), never into an API
// response or a sandbox.
package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// Limits E2B documents for a secret's metadata, and sandpit's for a value.
const (
	MaxMetadataPairs    = 32
	MaxMetadataKeyLen   = 128
	MaxMetadataValueLen = 1024
	MaxMetadataBytes    = 8192
	MaxNameLen          = 256
	MaxValueLen         = 64 << 10
)

// Secret is a secret's metadata: never its value.
type Secret struct {
	ID        string
	Name      string
	Version   int64
	Metadata  map[string]string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Service creates, lists and resolves secrets. It is safe for concurrent
// use.
type Service struct {
	store store.Secrets
	aead  cipher.AEAD
	now   func() time.Time
}

// KeyFile is the name of the sealing key in the data dir.
const KeyFile = "secrets.key"

// New returns a Service over st whose values are sealed with the key in
// dataDir/secrets.key, made (0600) on first use. Losing the key loses the
// values: the records stay, and resolving them fails.
func New(st store.Secrets, dataDir string) (*Service, error) {
	key, err := loadKey(filepath.Join(dataDir, KeyFile))
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("making the secrets cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("making the secrets cipher: %w", err)
	}
	return &Service{store: st, aead: aead, now: time.Now}, nil
}

// loadKey reads the 32-byte key at path, or writes a fresh one there.
// The write goes through a temporary file and a hard link, so two
// daemons starting at once agree on one key and a crash leaves no half
// key behind.
func loadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != 32 {
			return nil, fmt.Errorf("secrets key %s has %d bytes, want 32", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the secrets key: %w", err)
	}
	key = make([]byte, 32)
	_, _ = rand.Read(key)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets-key-*")
	if err != nil {
		return nil, fmt.Errorf("writing the secrets key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing the secrets key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing the secrets key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing the secrets key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path) // another process made it first
		}
		return nil, fmt.Errorf("writing the secrets key: %w", err)
	}
	return key, nil
}

// seal encrypts v for secret id: the id is bound in as additional data,
// so a value moved to another row does not open.
func (s *Service) seal(id string, v []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, v, []byte(id))
}

func (s *Service) open(id string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, fmt.Errorf("opening secret %s: sealed value too short", id)
	}
	v, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("opening secret %s (was the data dir's %s replaced?): %w", id, KeyFile, err)
	}
	return v, nil
}

// Create stores a new secret of team, version 1.
func (s *Service) Create(ctx context.Context, team, name, value string, metadata map[string]string) (Secret, error) {
	name = strings.ToLower(name)
	if err := checkName(name); err != nil {
		return Secret{}, err
	}
	if err := checkValue(value); err != nil {
		return Secret{}, err
	}
	if err := checkMetadata(metadata); err != nil {
		return Secret{}, err
	}
	now := s.now().UTC()
	id := newID()
	rec := store.SecretRecord{ID: id, TeamID: team, Name: name, Version: 1, Metadata: metadata,
		Value: s.seal(id, []byte(value)), CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateSecret(ctx, rec); err != nil {
		return Secret{}, fmt.Errorf("creating secret %s: %w", name, err)
	}
	return toSecret(rec), nil
}

// Get returns team's secret whose ID or name is ref.
func (s *Service) Get(ctx context.Context, team, ref string) (Secret, error) {
	rec, err := s.store.GetSecret(ctx, team, canonical(ref))
	if err != nil {
		return Secret{}, err
	}
	return toSecret(rec), nil
}

// List returns a page of team's secrets and the next page's cursor.
func (s *Service) List(ctx context.Context, team string, limit int, next string) ([]Secret, string, error) {
	recs, cursor, err := s.store.ListSecrets(ctx, team, limit, next)
	if err != nil {
		return nil, "", err
	}
	out := make([]Secret, 0, len(recs))
	for _, r := range recs {
		out = append(out, toSecret(r))
	}
	return out, cursor, nil
}

// Update stores value as the next version of team's secret ref; metadata,
// when not nil, replaces the secret's.
func (s *Service) Update(ctx context.Context, team, ref, value string, metadata map[string]string) (Secret, error) {
	if err := checkValue(value); err != nil {
		return Secret{}, err
	}
	if err := checkMetadata(metadata); err != nil {
		return Secret{}, err
	}
	rec, err := s.store.GetSecret(ctx, team, canonical(ref))
	if err != nil {
		return Secret{}, err
	}
	rec, err = s.store.UpdateSecret(ctx, team, rec.ID, s.seal(rec.ID, []byte(value)), metadata, s.now().UTC())
	if err != nil {
		return Secret{}, err
	}
	return toSecret(rec), nil
}

// Delete removes team's secret ref.
func (s *Service) Delete(ctx context.Context, team, ref string) error {
	return s.store.DeleteSecret(ctx, team, canonical(ref))
}

// Resolve returns the value of team's secret called name.
func (s *Service) Resolve(ctx context.Context, team, name string) (string, error) {
	rec, err := s.store.GetSecret(ctx, team, canonical(name))
	if err != nil {
		return "", err
	}
	v, err := s.open(rec.ID, rec.Value)
	if err != nil {
		return "", err
	}
	return string(v), nil
}

// placeholder is how network rules name a secret: ${e2b.secrets.NAME}.
var placeholder = regexp.MustCompile(`\$\{e2b\.secrets\.([^{}]+)\}`)

// Names returns the secrets s refers to, in order.
func Names(s string) []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// Expand replaces every ${e2b.secrets.NAME} in s by the value of team's
// secret NAME. A secret that does not exist is an error
// (errdefs.ErrNotFound), never an empty string sent on.
func (s *Service) Expand(ctx context.Context, team, text string) (string, error) {
	var firstErr error
	out := placeholder.ReplaceAllStringFunc(text, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		v, err := s.Resolve(ctx, team, name)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("resolving secret %s: %w", name, err)
		}
		return v
	})
	if firstErr != nil {
		return "", firstErr
	}
	return out, nil
}

func toSecret(r store.SecretRecord) Secret {
	md := r.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return Secret{ID: r.ID, Name: r.Name, Version: r.Version, Metadata: md, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// canonical is ref as stored: names are lower case, IDs are too.
func canonical(ref string) string { return strings.ToLower(ref) }

// newID returns "sec_" and 20 random lowercase alphanumerics.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	for i := 0; i < len(b); {
		var c [1]byte
		_, _ = rand.Read(c[:])
		if int(c[0]) < 256-256%len(alphabet) { // no modulo bias
			b[i] = alphabet[int(c[0])%len(alphabet)]
			i++
		}
	}
	return "sec_" + string(b)
}

func checkName(name string) error {
	switch {
	case name == "":
		return errdefs.New(errdefs.ErrInvalidArgument, "secret name must not be empty")
	case len(name) > MaxNameLen:
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("secret name is longer than %d bytes", MaxNameLen))
	case strings.HasPrefix(name, "sec_"):
		return errdefs.New(errdefs.ErrInvalidArgument, "secret names must not start with sec_ (the prefix of secret IDs)")
	case strings.ContainsAny(name, "{}") || strings.ContainsFunc(name, unicode.IsControl):
		return errdefs.New(errdefs.ErrInvalidArgument, "secret name must not contain '{', '}' or control characters")
	}
	return nil
}

func checkValue(v string) error {
	if len(v) > MaxValueLen {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("secret value is longer than %d bytes", MaxValueLen))
	}
	// A value goes into HTTP headers: CR and LF there would split them.
	if strings.ContainsAny(v, "\r\n\x00") {
		return errdefs.New(errdefs.ErrInvalidArgument, "secret value must not contain CR, LF or NUL")
	}
	return nil
}

func checkMetadata(md map[string]string) error {
	if len(md) > MaxMetadataPairs {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("metadata has %d entries; at most %d are allowed", len(md), MaxMetadataPairs))
	}
	total := 0
	for k, v := range md {
		if len(k) > MaxMetadataKeyLen || len(v) > MaxMetadataValueLen {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("metadata keys are limited to %d bytes and values to %d", MaxMetadataKeyLen, MaxMetadataValueLen))
		}
		total += len(k) + len(v)
	}
	if total > MaxMetadataBytes {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("metadata is larger than %d bytes", MaxMetadataBytes))
	}
	return nil
}
