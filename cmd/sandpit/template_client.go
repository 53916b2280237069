package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/config"
)

// apiClient calls the control-plane REST API for the template verbs.
type apiClient struct {
	base    *string
	key     *string
	dataDir *string
	http    http.Client
}

// clientFlags registers --url, --api-key and --data-dir on fs.
func clientFlags(fs *flag.FlagSet) *apiClient {
	def := os.Getenv("SANDPIT_URL")
	if def == "" {
		def = os.Getenv("E2B_API_URL")
	}
	if def == "" {
		def = "http://" + config.DefaultListen
	}
	key := os.Getenv("SANDPIT_API_KEY")
	if key == "" {
		key = os.Getenv("E2B_API_KEY")
	}
	return &apiClient{
		base:    fs.String("url", def, "the sandpit server"),
		key:     fs.String("api-key", key, "API key (default: $SANDPIT_API_KEY, $E2B_API_KEY, else the data dir's api-key)"),
		dataDir: fs.String("data-dir", config.DefaultDataDir(), "where to find the api-key file of a local server"),
	}
}

type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (c *apiClient) apiKey() string {
	if *c.key != "" {
		return *c.key
	}
	b, err := os.ReadFile(filepath.Join(*c.dataDir, "api-key"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// do sends a JSON request to path and decodes a JSON answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(*c.base, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-API-KEY", c.apiKey())
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the server (is `sandpit serve` running? --url): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &apiError{Status: resp.StatusCode, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// put uploads body to an upload link the server handed out, with its
// SHA-256 as Content-Digest so the server refuses a body that changed on
// the way.
func (c *apiClient) put(ctx context.Context, link string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, link, bytes.NewReader(body))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	req.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("uploading files: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("uploading files: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// esc escapes one path segment (names may hold ':' and '/').
func esc(s string) string { return url.PathEscape(s) }
