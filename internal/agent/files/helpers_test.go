package files

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// plainClient does not ask for gzip on its own (Go's transport would, and
// would then hide the encoding).
var plainClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// watchHeap samples the heap until the returned function is called, which
// returns the peak in-use heap.
func watchHeap(t testing.TB) func() uint64 {
	t.Helper()
	runtime.GC()
	stop := make(chan struct{})
	var peak uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(stop)
		wg.Wait()
		return peak
	}
}

// repeating reads its block over and over.
type repeating struct {
	block []byte
	off   int
}

func (r *repeating) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.block[r.off:])
		n += c
		r.off = (r.off + c) % len(r.block)
	}
	return n, nil
}

// randomBlock returns n pseudo-random bytes (a fixed seed).
func randomBlock(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
