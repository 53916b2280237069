package interp

import (
	"context"
	"errors"
	"sync"
)

// handle is a started kernel with the global environment it was started
// with (later changes to it are applied before each execution).
type handle struct {
	kernel
	lang string
	env  map[string]string
}

// startFunc starts a fresh kernel for a language.
type startFunc func(lang string) (*handle, error)

// pool keeps warm spare kernels so that a new context, a restart or a
// recovery from a dead kernel does not wait for a kernel to start.
type pool struct {
	start startFunc
	want  map[string]int // spares to keep per language

	wg sync.WaitGroup // starting and returning goroutines

	mu     sync.Mutex
	closed bool
	spares map[string][]*future
}

// future is a kernel being started.
type future struct {
	done chan struct{}
	h    *handle
	err  error
}

var errPoolClosed = errors.New("interpreter is shutting down")

func newPool(start startFunc, want map[string]int) *pool {
	return &pool{start: start, want: want, spares: map[string][]*future{}}
}

// fill starts spare kernels until each language has its wanted number.
func (p *pool) fill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for lang := range p.want {
		p.refillLocked(lang)
	}
}

// refillLocked starts spares for lang up to the wanted number.
// Preconditions: p.mu is held.
func (p *pool) refillLocked(lang string) {
	for !p.closed && len(p.spares[lang]) < p.want[lang] {
		f := &future{done: make(chan struct{})}
		p.spares[lang] = append(p.spares[lang], f)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(f.done)
			f.h, f.err = p.start(lang)
		}()
	}
}

// get returns a ready kernel for lang: a spare if one is (being) started,
// else a freshly started one. The caller owns the returned kernel.
func (p *pool) get(ctx context.Context, lang string) (*handle, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	var f *future
	if s := p.spares[lang]; len(s) > 0 {
		f, p.spares[lang] = s[0], s[1:]
	}
	if f == nil {
		p.mu.Unlock()
		h, err := p.start(lang)
		p.refill(lang)
		return h, err
	}
	p.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		p.giveBack(lang, f)
		return nil, ctx.Err()
	}
	p.refill(lang)
	if f.err == nil && !exitedNow(f.h) {
		return f.h, nil
	}
	if f.h != nil {
		_ = f.h.close()
	}
	return p.start(lang)
}

func (p *pool) refill(lang string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refillLocked(lang)
}

// giveBack returns a spare that a canceled get no longer waits for.
func (p *pool) giveBack(lang string, f *future) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed && len(p.spares[lang]) < p.want[lang] {
		p.spares[lang] = append(p.spares[lang], f)
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-f.done
		if f.h != nil {
			_ = f.h.close()
		}
	}()
}

// close stops every spare kernel. The starts in progress must have been
// told to end (the Server closes its closing channel first).
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	all := p.spares
	p.spares = nil
	p.mu.Unlock()
	for _, fs := range all {
		for _, f := range fs {
			<-f.done
			if f.h != nil {
				_ = f.h.close()
			}
		}
	}
	p.wg.Wait()
}

func exitedNow(k kernel) bool {
	select {
	case <-k.exited():
		return true
	default:
		return false
	}
}
