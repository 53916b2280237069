package interp

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRunCode1Plus1 is runCode("1+1") through the handler over HTTP:
// request, execution in the default Python kernel, streamed response.
func BenchmarkRunCode1Plus1(b *testing.B) {
	benchRoundTrip(b, pyCode("1+1"), "2")
}

func BenchmarkRunCodeJavaScript1Plus1(b *testing.B) {
	benchRoundTrip(b, code("1+1", `"language":"javascript"`), "2")
}

func BenchmarkRunCodeBashTrue(b *testing.B) {
	benchRoundTrip(b, code("true", `"language":"bash"`), "")
}

func benchRoundTrip(b *testing.B, body, want string) {
	e := newTestEnv(b, nil)
	if x := e.exec(body); x.status != 200 || x.mainText() != want {
		b.Fatalf("warm-up: %v %s", x.lines, x.body)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/execute", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkKernelMemory reports the memory of one idle kernel of each
// language: RSS, and PSS (shared pages split among the processes sharing
// them, the better measure of what one more context costs).
func BenchmarkKernelMemory(b *testing.B) {
	for _, lang := range []string{langPython, langJavaScript, langBash} {
		b.Run(lang, func(b *testing.B) {
			e := newTestEnv(b, func(c *Config) { c.Spares = map[string]int{} })
			id := e.createContext(`{"language":"` + lang + `"}`)
			if x := e.exec(code("1", `"context_id":"`+id+`"`)); x.status != 200 {
				b.Fatal(x.body)
			}
			c, _ := e.srv.lookup(id)
			var pid int
			switch k := c.h.kernel.(type) {
			case *jupyterKernel:
				pid = k.proc.cmd.Process.Pid
			case *nodeKernel:
				pid = k.proc.cmd.Process.Pid
			case *bashKernel:
				pid = k.proc.cmd.Process.Pid
			}
			for b.Loop() {
			}
			b.ReportMetric(procKB(b, pid, "status", "VmRSS:")/1024, "RSS-MiB")
			b.ReportMetric(procKB(b, pid, "smaps_rollup", "Pss:")/1024, "PSS-MiB")
		})
	}
}

func procKB(b *testing.B, pid int, file, key string) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l)
			n, _ := strconv.ParseFloat(f[1], 64)
			return n
		}
	}
	b.Fatalf("no %s in %s", key, file)
	return 0
}
