package files

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchSize is the file moved per iteration; b.SetBytes makes the
// benchmarks report MB/s (the 1 GB target scales from it).
const benchSize = 256 << 20

// unixServer serves x's handler on a Unix socket, as the agent is reached
// by the daemon, and returns a client for it.
func unixServer(b *testing.B, x *harness) (*http.Client, string) {
	b.Helper()
	sock := filepath.Join(b.TempDir(), "envd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(x.h)
	srv.Listener = ln
	srv.Start()
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{
		DisableCompression: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	return client, "http://envd"
}

func BenchmarkUpload(b *testing.B) {
	x := newHarness(b, "")
	client, base := unixServer(b, x)
	b.SetBytes(benchSize)
	for b.Loop() {
		req, _ := http.NewRequest("POST", base+"/files?path=/tmp/big", io.LimitReader(zeros{}, benchSize))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

// BenchmarkUploadMultipart sends pseudo-random bytes: the multipart reader
// scans its buffer backwards for a newline, which all-zero data makes it do
// end to end (about a third slower).
func BenchmarkUploadMultipart(b *testing.B) {
	x := newHarness(b, "")
	noise := repeating{block: randomBlock(1 << 20)}
	client, base := unixServer(b, x)
	b.SetBytes(benchSize)
	for b.Loop() {
		pr, pw := io.Pipe()
		const boundary = "sandpitbenchboundary"
		go func() {
			pw.Write([]byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/big\"\r\n\r\n"))
			io.Copy(pw, io.LimitReader(&noise, benchSize))
			pw.Write([]byte("\r\n--" + boundary + "--\r\n"))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", base+"/files", pr)
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

func benchDownload(b *testing.B, acceptEncoding string) {
	x := newHarness(b, "")
	f, err := os.Create(filepath.Join(x.root, "tmp/big"))
	if err != nil {
		b.Fatal(err)
	}
	// Random-ish but compressible data: a repeated text block.
	block := []byte(strings.Repeat("sandpit moves files quickly; ", 4096))
	for written := 0; written < benchSize; written += len(block) {
		f.Write(block)
	}
	f.Close()
	client, base := unixServer(b, x)
	b.SetBytes(benchSize)
	for b.Loop() {
		req, _ := http.NewRequest("GET", base+"/files?path=/tmp/big", nil)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

func BenchmarkDownload(b *testing.B) { benchDownload(b, "") }

// BenchmarkDownloadGzip measures the compressed path (bytes are the
// uncompressed size).
func BenchmarkDownloadGzip(b *testing.B) { benchDownload(b, "gzip") }

// BenchmarkSmallFileRead is files.read of a small file: one GET round trip
// on a kept-alive connection. It reports the median latency.
func BenchmarkSmallFileRead(b *testing.B) {
	x := newHarness(b, "")
	os.WriteFile(filepath.Join(x.root, "home/user/small.txt"), []byte("hello from sandpit\n"), 0o644)
	client, base := unixServer(b, x)
	u := base + "/files?" + url.Values{"path": {"small.txt"}}.Encode()
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := client.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSmallFileWrite is files.write of a small file (multipart, as
// the SDK sends strings).
func BenchmarkSmallFileWrite(b *testing.B) {
	x := newHarness(b, "")
	client, base := unixServer(b, x)
	ctype, body := multipartBody(b, [2]string{"/home/user/w.txt", "hello from sandpit\n"})
	raw := body.Bytes()
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		req, _ := http.NewRequest("POST", base+"/files", strings.NewReader(string(raw)))
		req.Header.Set("Content-Type", ctype)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}
