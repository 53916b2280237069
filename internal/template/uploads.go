package template

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// COPY uploads. A client names the archive of a COPY step by a hash of its
// own making (E2B's SDK hashes the step and its files' paths, modes and
// contents, not the archive), which the server cannot check. So the hash
// is only a name, in the namespace of the upload's owner (the team of the
// API key that asked for the upload link): the server hashes what arrives
// and keeps it by that digest (uploads/blobs/DIGEST); the name
// (uploads/names/TEAM/HASH)
// records the digest, is written once and never points elsewhere after.
// Builds copy, and cache, by the digest. A client that knows its archive's
// SHA-256 sends it as Content-Digest (RFC 9530) and a body that does not
// match is refused.

// MaxUploadBytes bounds one COPY upload.
const MaxUploadBytes = 4 << 30

// UploadQuota bounds what one team keeps uploaded.
type UploadQuota struct {
	Bytes int64 // total size of the team's uploads
	Files int   // how many uploads (names) the team has
}

// DefaultUploadQuota is the quota when RegistryConfig has none.
var DefaultUploadQuota = UploadQuota{Bytes: 8 << 30, Files: 1000}

// uploadGrace is how long an upload no build refers to is kept: the life
// of an upload link and then some, for the build that will use it.
const uploadGrace = 2 * time.Hour

// ownerRe is what a team ID (a UUID) or, before teams, an API key's hash
// may look like to name a directory: one path element, no dots.
var ownerRe = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$`)

// localOwner is the directory of the team "" (callers that know no
// teams); no team ID is "local".
const localOwner = "local"

// ownerDir is the directory of the names team uploaded.
func (r *Registry) ownerDir(team string) (string, error) {
	switch {
	case team == "":
		team = localOwner
	case team == localOwner || !ownerRe.MatchString(team):
		return "", errdefs.New(errdefs.ErrInvalidArgument, "invalid upload owner")
	}
	return filepath.Join(r.cfg.Dir, "uploads", "names", team), nil
}

func (r *Registry) blobPath(digest string) string {
	return filepath.Join(r.cfg.Dir, "uploads", "blobs", digest)
}

// uploadDigest returns the digest of what owner uploaded as hash.
func (r *Registry) uploadDigest(owner, hash string) (string, error) {
	if !hexHash.MatchString(hash) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "the files hash must be 64 hex digits")
	}
	dir, err := r.ownerDir(owner)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, hash))
	if errors.Is(err, os.ErrNotExist) {
		return "", errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("files %s were never uploaded", hash))
	}
	if err != nil {
		return "", fmt.Errorf("reading upload %s: %w", hash, err)
	}
	d := strings.TrimSpace(string(b))
	if !hexHash.MatchString(d) {
		return "", fmt.Errorf("reading upload %s: corrupt name record", hash)
	}
	if _, err := os.Stat(r.blobPath(d)); err != nil {
		return "", errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("files %s were never uploaded", hash))
	}
	return d, nil
}

// HasUpload reports whether team uploaded the COPY archive named hash.
// Another team's uploads are not team's.
func (r *Registry) HasUpload(_ context.Context, team, hash string) bool {
	_, err := r.uploadDigest(team, hash)
	return err == nil
}

// Upload is a COPY archive to store.
type Upload struct {
	Hash string // the client's name for it
	Body io.Reader
	// Want, when not nil, is the SHA-256 the client says Body has.
	Want []byte
	// StorageLimitMB, above zero, bounds the team's template storage
	// (StorageUsage): at or over it, nothing more is uploaded, and an
	// upload may take only what is left.
	StorageLimitMB int
}

// PutUpload stores a COPY archive that team names up.Hash. A body that
// does not hash to up.Want is refused. An upload of a name that exists
// must bring the same content: it never replaces the first. The team's
// quota and storage limit bound how much it keeps; uploads no build
// refers to are collected first when the quota is reached.
func (r *Registry) PutUpload(ctx context.Context, team string, up Upload) error {
	hash, body, want := up.Hash, up.Body, up.Want
	if !hexHash.MatchString(hash) {
		return errdefs.New(errdefs.ErrInvalidArgument, "the files hash must be 64 hex digits")
	}
	dir, err := r.ownerDir(team)
	if err != nil {
		return err
	}
	limit, err := r.uploadRoom(ctx, team, hash)
	if err != nil {
		return err
	}
	if up.StorageLimitMB > 0 {
		if limit, err = r.storageRoom(ctx, team, hash, limit, up.StorageLimitMB); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Join(r.cfg.Dir, "uploads"), ".tmp-")
	if err != nil {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, limit+1))
	if err == nil && n > limit {
		err = r.tooLarge(hash, limit, up.StorageLimitMB)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	sum := h.Sum(nil)
	digest := hex.EncodeToString(sum)
	if want != nil && !bytes.Equal(want, sum) {
		return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf(
			"upload %s: the body's SHA-256 is %s, not %s as its Content-Digest says; nothing was stored", hash, digest, hex.EncodeToString(want)))
	}

	r.upMu.Lock()
	defer r.upMu.Unlock()
	name := filepath.Join(dir, hash)
	// A name is made once: a second upload must agree with the first,
	// and one that does not leaves nothing behind.
	if prev, err := os.ReadFile(name); err == nil {
		if p := strings.TrimSpace(string(prev)); p != digest {
			return errdefs.New(errdefs.ErrConflict, fmt.Sprintf(
				"files %s were already uploaded with other content (SHA-256 %s, not %s); an upload never replaces another: name changed files by a new hash",
				hash, p, digest))
		}
		if _, err := os.Stat(r.blobPath(digest)); err == nil {
			now := time.Now()
			_ = os.Chtimes(name, now, now) // asked for again: young again
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	if err := os.Rename(f.Name(), r.blobPath(digest)); err != nil {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(digest + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("storing upload %s: %w", hash, err)
	}
	return nil
}

// storageRoom bounds room, what team's upload quota leaves for an upload
// named hash, by what its storage limit leaves.
func (r *Registry) storageRoom(ctx context.Context, team, hash string, room int64, limitMB int) (int64, error) {
	if room == MaxUploadBytes && r.HasUpload(ctx, team, hash) {
		return room, nil // the same again takes no room
	}
	used, err := r.StorageUsage(ctx, team)
	if err != nil {
		return 0, err
	}
	left := int64(limitMB)<<20 - used
	if left <= 0 {
		return 0, StorageLimitError("this team", used, limitMB)
	}
	return min(room, left), nil
}

// uploadRoom checks owner's quota for an upload named hash and returns
// how many bytes it may have. Near the quota it first collects uploads no
// build refers to.
func (r *Registry) uploadRoom(ctx context.Context, owner, hash string) (int64, error) {
	limit, err := r.room(owner, hash)
	if err == nil && limit == MaxUploadBytes {
		return limit, nil
	}
	if _, cerr := r.CollectUploads(ctx); cerr != nil {
		return 0, cerr
	}
	return r.room(owner, hash)
}

// room is uploadRoom without collecting.
func (r *Registry) room(owner, hash string) (int64, error) {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	q := r.cfg.UploadQuota
	dir, err := r.ownerDir(owner)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(filepath.Join(dir, hash)); err == nil {
		return MaxUploadBytes, nil // the same again takes no room; other content is refused
	}
	files, size, err := r.usage(owner)
	if err != nil {
		return 0, err
	}
	if files >= q.Files || size >= q.Bytes {
		return 0, errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
			"upload %s refused: this team's uploads are at their limit of %d files or %d bytes (uploads no build uses are removed after %s)",
			hash, q.Files, q.Bytes, uploadGrace))
	}
	return min(q.Bytes-size, MaxUploadBytes), nil
}

// tooLarge is the error of an upload over limit bytes.
func (r *Registry) tooLarge(hash string, limit int64, storageLimitMB int) error {
	switch {
	case limit >= MaxUploadBytes:
		return errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf("upload %s is larger than the limit of %d bytes per upload", hash, int64(MaxUploadBytes)))
	case storageLimitMB > 0 && limit < r.cfg.UploadQuota.Bytes:
		// Which limit left so little is not worth a second measure:
		// name both.
		return errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
			"upload %s is larger than the %d bytes left of this team's limits: MaxTemplateStorageMB %d MB of templates and uploads, %d bytes of uploads",
			hash, limit, storageLimitMB, r.cfg.UploadQuota.Bytes))
	}
	return errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
		"upload %s is larger than the %d bytes left of this team's limit of %d bytes of uploads", hash, limit, r.cfg.UploadQuota.Bytes))
}

// usage returns how many uploads owner has and their total size.
// Preconditions: r.upMu is held.
func (r *Registry) usage(owner string) (files int, size int64, err error) {
	dir, err := r.ownerDir(owner)
	if err != nil {
		return 0, 0, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading uploads: %w", err)
	}
	for _, e := range ents {
		if !hexHash.MatchString(e.Name()) {
			continue
		}
		files++
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if fi, err := os.Stat(r.blobPath(strings.TrimSpace(string(b)))); err == nil {
			size += fi.Size()
		}
	}
	return files, size, nil
}

// openBlob opens the upload with digest d, for a build.
func (r *Registry) openBlob(d string) (io.ReadCloser, error) {
	if !hexHash.MatchString(d) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "invalid upload digest")
	}
	f, err := os.Open(r.blobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("the files with digest %s are no longer uploaded", d))
	}
	return f, err
}

// CollectUploads removes uploads no build refers to, once they are older
// than uploadGrace, and returns how many archives it removed. A name a
// build refers to stays, with its archive, as long as the build's record.
func (r *Registry) CollectUploads(ctx context.Context) (int, error) {
	used, err := r.digestsInUse(ctx)
	if err != nil {
		return 0, err
	}
	r.upMu.Lock()
	defer r.upMu.Unlock()
	cutoff := time.Now().Add(-uploadGrace)
	keep := map[string]bool{}
	names := filepath.Join(r.cfg.Dir, "uploads", "names")
	owners, err := os.ReadDir(names)
	if err != nil {
		return 0, fmt.Errorf("collecting uploads: %w", err)
	}
	for _, o := range owners {
		dir := filepath.Join(names, o.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return 0, fmt.Errorf("collecting uploads: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			info, err := e.Info()
			if err != nil {
				continue
			}
			young := info.ModTime().After(cutoff)
			b, _ := os.ReadFile(p)
			d := strings.TrimSpace(string(b))
			if young || used[o.Name()+"/"+e.Name()] {
				keep[d] = true
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return 0, fmt.Errorf("collecting uploads: %w", err)
			}
		}
	}
	blobs := filepath.Join(r.cfg.Dir, "uploads", "blobs")
	ents, err := os.ReadDir(blobs)
	if err != nil {
		return 0, fmt.Errorf("collecting uploads: %w", err)
	}
	n := 0
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		if info, err := e.Info(); err != nil || info.ModTime().After(cutoff) {
			continue // being stored, about to be named
		}
		if err := os.Remove(filepath.Join(blobs, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("collecting uploads: %w", err)
		}
		n++
	}
	// Temporary files an interrupted upload left, and uploads kept by
	// the client's hash alone, as before names and digests: no build can
	// use those any more.
	top, _ := os.ReadDir(filepath.Join(r.cfg.Dir, "uploads"))
	for _, e := range top {
		p := filepath.Join(r.cfg.Dir, "uploads", e.Name())
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if hexHash.MatchString(e.Name()) || strings.HasPrefix(e.Name(), ".tmp-") && info.ModTime().Before(cutoff) {
			_ = os.Remove(p)
		}
	}
	if n > 0 {
		r.log.Info("template uploads collected", "removed", n)
	}
	return n, nil
}

// digestsInUse returns the "OWNER/HASH" names the COPY steps of every
// stored build refer to.
func (r *Registry) digestsInUse(ctx context.Context) (map[string]bool, error) {
	tpls, err := r.cfg.Store.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, t := range tpls {
		builds, err := r.cfg.Store.ListBuilds(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		for _, b := range builds {
			req, err := decodeRequest(b)
			if err != nil {
				return nil, err // never collect on a request we cannot read
			}
			if req.Spec == nil {
				continue
			}
			owner := req.Spec.Owner
			if owner == "" {
				owner = "local"
			}
			for _, s := range req.Spec.Steps {
				if s.Type == StepCopy {
					used[owner+"/"+s.FilesHash] = true
				}
			}
		}
	}
	return used, nil
}
