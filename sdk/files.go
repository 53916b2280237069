package sandpit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/sandpit-dev/sandpit/gen/proto/filesystem"
	"github.com/sandpit-dev/sandpit/gen/proto/filesystem/filesystemconnect"
)

// Files reads and writes a sandbox's filesystem. Relative paths are
// resolved against the user's home directory; "~" expands to it. Calls act
// as the sandbox's default user unless WithUser says otherwise.
type Files struct {
	sb   *Sandbox
	rpc  filesystemconnect.FilesystemClient
	base string
}

// FileType is the type of a filesystem entry.
type FileType string

// File types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
)

// EntryInfo describes a file, directory or symlink in the sandbox.
type EntryInfo struct {
	// Name is the base name; Path the absolute path.
	Name string `json:"name"`
	Path string `json:"path"`
	// Type is file, dir or symlink (for a symlink, the type of its target,
	// with SymlinkTarget set).
	Type FileType `json:"type"`
	// Size is in bytes.
	Size int64 `json:"size"`
	// Mode holds the permission bits; Permissions renders the type and
	// bits as ls does ("-rw-r--r--").
	Mode        fs.FileMode `json:"mode"`
	Permissions string      `json:"permissions"`
	// Owner and Group are names.
	Owner string `json:"owner"`
	Group string `json:"group"`
	// ModifiedTime is the last modification time.
	ModifiedTime time.Time `json:"modifiedTime"`
	// SymlinkTarget is set for symlinks.
	SymlinkTarget string `json:"symlinkTarget,omitempty"`
	// Metadata is the file's metadata (see WithMetadata on Write).
	Metadata map[string]string `json:"metadata,omitempty"`
}

func entryFromProto(e *filesystem.EntryInfo) EntryInfo {
	out := EntryInfo{
		Name: e.GetName(), Path: e.GetPath(), Size: e.GetSize(),
		Mode: fs.FileMode(e.GetMode()) & fs.ModePerm, Permissions: e.GetPermissions(),
		Owner: e.GetOwner(), Group: e.GetGroup(),
		SymlinkTarget: e.GetSymlinkTarget(), Metadata: e.GetMetadata(),
	}
	if t := e.GetModifiedTime(); t != nil {
		out.ModifiedTime = t.AsTime()
	}
	switch e.GetType() {
	case filesystem.FileType_FILE_TYPE_FILE:
		out.Type = TypeFile
	case filesystem.FileType_FILE_TYPE_DIRECTORY:
		out.Type = TypeDir
	case filesystem.FileType_FILE_TYPE_SYMLINK:
		out.Type = TypeSymlink
	}
	return out
}

func fileOpts(opts []FileOption) fileConfig {
	cfg := fileConfig{depth: 1}
	for _, o := range opts {
		o.applyFile(&cfg)
	}
	return cfg
}

// fileURL is GET/POST /files for a path.
func (f *Files) fileURL(path, user string) string {
	q := url.Values{}
	q.Set("path", path)
	if user != "" {
		q.Set("username", user)
	}
	return f.base + "/files?" + q.Encode()
}

// ReadStream opens a file for reading. Close the reader when done;
// cancelling ctx also ends it. A missing file gives ErrNotFound.
func (f *Files) ReadStream(ctx context.Context, path string, opts ...FileOption) (io.ReadCloser, error) {
	cfg := fileOpts(opts)
	op := "read " + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.fileURL(path, cfg.user), nil)
	if err != nil {
		return nil, &Error{Op: op, cause: err}
	}
	f.sb.setHeaders(req.Header, EnvdPort)
	resp, err := f.sb.client.hc.Do(req)
	if err != nil {
		return nil, f.sb.client.transportError(op, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, envdHTTPError(op, resp)
	}
	return resp.Body, nil
}

// envdHTTPError decodes envd's {"code","message"} error body.
func envdHTTPError(op string, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil && body.Message != "" {
		msg = body.Message
	}
	return sandboxHTTPError(op, resp.StatusCode, msg)
}

// Read returns a file's contents.
func (f *Files) Read(ctx context.Context, path string, opts ...FileOption) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := f.ReadTo(ctx, path, &buf, opts...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadTo copies a file's contents to w and returns the number of bytes
// copied.
func (f *Files) ReadTo(ctx context.Context, path string, w io.Writer, opts ...FileOption) (int64, error) {
	r, err := f.ReadStream(ctx, path, opts...)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := io.Copy(w, r)
	if err != nil {
		return n, f.sb.client.transportError("read "+path, err)
	}
	return n, nil
}

// Write writes data to a file, replacing it, creating missing parent
// directories. It returns the entry with Name, Path and Type set.
func (f *Files) Write(ctx context.Context, path string, data []byte, opts ...FileOption) (EntryInfo, error) {
	return f.WriteStream(ctx, path, bytes.NewReader(data), opts...)
}

// WriteStream writes everything r yields to a file, streaming it (the size
// need not be known). It returns the entry with Name, Path and Type set.
func (f *Files) WriteStream(ctx context.Context, path string, r io.Reader, opts ...FileOption) (EntryInfo, error) {
	cfg := fileOpts(opts)
	op := "write " + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.fileURL(path, cfg.user), r)
	if err != nil {
		return EntryInfo{}, &Error{Op: op, cause: err}
	}
	f.sb.setHeaders(req.Header, EnvdPort)
	req.Header.Set("Content-Type", "application/octet-stream")
	for k, v := range cfg.metadata {
		req.Header.Set("X-Metadata-"+k, v)
	}
	resp, err := f.sb.client.hc.Do(req)
	if err != nil {
		return EntryInfo{}, f.sb.client.transportError(op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return EntryInfo{}, envdHTTPError(op, resp)
	}
	var out []EntryInfo
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out) == 0 {
		return EntryInfo{}, &Error{Op: op, StatusCode: resp.StatusCode, Message: "the server's answer names no file", cause: err}
	}
	return out[0], nil
}

// rpcCtx bounds a unary filesystem call and names its user.
func (f *Files) unary(ctx context.Context, h http.Header, user string) (context.Context, context.CancelFunc) {
	setUser(h, user)
	return f.sb.client.withRequestTimeout(ctx)
}

// List returns a directory's entries, descending WithDepth levels (default
// 1). The directory itself is not included. ErrNotFound when it does not
// exist, ErrInvalidArgument when it is not a directory.
func (f *Files) List(ctx context.Context, path string, opts ...FileOption) ([]EntryInfo, error) {
	cfg := fileOpts(opts)
	if cfg.depth < 1 {
		return nil, &Error{Op: "list " + path, Message: "depth must be at least 1", kind: ErrInvalidArgument}
	}
	req := connect.NewRequest(&filesystem.ListDirRequest{Path: path, Depth: uint32(cfg.depth)})
	ctx, cancel := f.unary(ctx, req.Header(), cfg.user)
	defer cancel()
	resp, err := f.rpc.ListDir(ctx, req)
	if err != nil {
		return nil, rpcError("list "+path, err)
	}
	var out []EntryInfo
	for _, e := range resp.Msg.GetEntries() {
		if e.GetType() == filesystem.FileType_FILE_TYPE_UNSPECIFIED {
			continue
		}
		out = append(out, entryFromProto(e))
	}
	return out, nil
}

// Stat describes one entry; ErrNotFound when it does not exist.
func (f *Files) Stat(ctx context.Context, path string, opts ...FileOption) (EntryInfo, error) {
	cfg := fileOpts(opts)
	req := connect.NewRequest(&filesystem.StatRequest{Path: path})
	ctx, cancel := f.unary(ctx, req.Header(), cfg.user)
	defer cancel()
	resp, err := f.rpc.Stat(ctx, req)
	if err != nil {
		return EntryInfo{}, rpcError("stat "+path, err)
	}
	return entryFromProto(resp.Msg.GetEntry()), nil
}

// Exists reports whether path exists.
func (f *Files) Exists(ctx context.Context, path string, opts ...FileOption) (bool, error) {
	_, err := f.Stat(ctx, path, opts...)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// MakeDir creates a directory and any missing parents. It reports false
// (and no error) when the directory already exists.
func (f *Files) MakeDir(ctx context.Context, path string, opts ...FileOption) (bool, error) {
	cfg := fileOpts(opts)
	req := connect.NewRequest(&filesystem.MakeDirRequest{Path: path})
	ctx, cancel := f.unary(ctx, req.Header(), cfg.user)
	defer cancel()
	_, err := f.rpc.MakeDir(ctx, req)
	if connect.CodeOf(err) == connect.CodeAlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, rpcError("make directory "+path, err)
	}
	return true, nil
}

// Rename moves oldPath to newPath and describes the result.
func (f *Files) Rename(ctx context.Context, oldPath, newPath string, opts ...FileOption) (EntryInfo, error) {
	cfg := fileOpts(opts)
	req := connect.NewRequest(&filesystem.MoveRequest{Source: oldPath, Destination: newPath})
	ctx, cancel := f.unary(ctx, req.Header(), cfg.user)
	defer cancel()
	resp, err := f.rpc.Move(ctx, req)
	if err != nil {
		return EntryInfo{}, rpcError("rename "+oldPath, err)
	}
	return entryFromProto(resp.Msg.GetEntry()), nil
}

// Remove removes a file, or a directory with everything in it. Removing a
// path that does not exist is not an error.
func (f *Files) Remove(ctx context.Context, path string, opts ...FileOption) error {
	cfg := fileOpts(opts)
	req := connect.NewRequest(&filesystem.RemoveRequest{Path: path})
	ctx, cancel := f.unary(ctx, req.Header(), cfg.user)
	defer cancel()
	_, err := f.rpc.Remove(ctx, req)
	return rpcError("remove "+path, err)
}

// FileWriter is an io.WriteCloser that streams into a file in the sandbox
// (see Files.OpenWriter). The upload completes at Close.
type FileWriter struct {
	pw    *io.PipeWriter
	done  chan struct{}
	entry EntryInfo
	err   error
}

// OpenWriter returns a writer whose bytes stream into path (replacing it)
// as they are written; nothing is buffered beyond a write. Close it to
// finish the upload and learn whether it succeeded; cancelling ctx aborts
// it.
func (f *Files) OpenWriter(ctx context.Context, path string, opts ...FileOption) *FileWriter {
	pr, pw := io.Pipe()
	w := &FileWriter{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.entry, w.err = f.WriteStream(ctx, path, pr, opts...)
		// A failed upload stops the writer's next Write.
		pr.CloseWithError(errOr(w.err, io.ErrClosedPipe))
	}()
	return w
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// Write sends p to the file. It fails once the upload has failed.
func (w *FileWriter) Write(p []byte) (int, error) {
	return w.pw.Write(p)
}

// Close ends the file and waits for the upload's result. Safe to call
// twice.
func (w *FileWriter) Close() error {
	_ = w.pw.Close()
	<-w.done
	return w.err
}

// Entry describes the written file, once Close returned nil.
func (w *FileWriter) Entry() EntryInfo { return w.entry }
