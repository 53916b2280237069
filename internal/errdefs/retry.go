package errdefs

import (
	"errors"
	"time"
)

// retryError tells a client whether trying again can help, and when:
// E2B's Python SDK retries a 429 unless the answer says Should-Retry:
// false, and waits Retry-After seconds when given. A rate limit clears
// with time; a full quota does not.
type retryError struct {
	err   error
	retry bool
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// RetryAfter marks err as one that clears by itself: the same request may
// succeed after d.
func RetryAfter(err error, d time.Duration) error {
	return &retryError{err: err, retry: true, after: d}
}

// NoRetry marks err as one that repeating the same request will not clear
// (a quota is full until something is freed).
func NoRetry(err error) error {
	return &retryError{err: err}
}

// Retry reports what err says about trying again: ok is false when it says
// nothing; otherwise retry tells whether to, and after how long (zero: no
// advice).
func Retry(err error) (retry bool, after time.Duration, ok bool) {
	var re *retryError
	if !errors.As(err, &re) {
		return false, 0, false
	}
	return re.retry, re.after, true
}
