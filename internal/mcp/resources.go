package mcp

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// resourceScheme names sandbox files as resources:
// sandbox://SANDBOX_ID/ABSOLUTE/PATH.
const resourceScheme = "sandbox"

func (s *Server) addResources() {
	s.srv.AddResourceTemplate(&mcp.ResourceTemplate{
		Name:        "sandbox-file",
		Title:       "A file in a sandbox",
		Description: "The content of a file in a sandbox, by the sandbox's ID and the file's absolute path, e.g. sandbox://SANDBOX_ID/home/user/data.csv.",
		URITemplate: resourceScheme + "://{sandbox_id}/{+path}",
	}, s.readResource)
}

// resourceURI is the URI of a file in a sandbox.
func resourceURI(id, p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/home/user/" + p
	}
	return (&url.URL{Scheme: resourceScheme, Host: id, Path: path.Clean(p)}).String()
}

func (s *Server) readResource(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	uri := req.Params.URI
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != resourceScheme || u.Host == "" || u.Path == "" || u.Path == "/" {
		return nil, fmt.Errorf("resource URIs look like sandbox://SANDBOX_ID/PATH/TO/FILE, not %q", uri)
	}
	sb, err := s.sandbox(ctx, req.Session, u.Host)
	if err != nil {
		return nil, err
	}
	data, err := sb.Files.Read(ctx, u.Path)
	if errors.Is(err, sandpit.ErrNotFound) {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", uri, err)
	}
	c := &mcp.ResourceContents{URI: uri, MIMEType: mimeType(u.Path, data)}
	if utf8.Valid(data) && !strings.HasPrefix(c.MIMEType, "image/") {
		c.Text = string(data)
	} else {
		c.Blob = data
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{c}}, nil
}

// mimeType guesses a file's type from its name, else its content.
func mimeType(name string, data []byte) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return http.DetectContentType(data)
}
