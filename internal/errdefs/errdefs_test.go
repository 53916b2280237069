package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestNewKeepsCategoryAndMessage(t *testing.T) {
	err := fmt.Errorf("creating sandbox: %w", New(ErrNotFound, `template "x" not found`))
	if !errors.Is(err, ErrNotFound) {
		t.Fatal("category lost through wrapping")
	}
	if errors.Is(err, ErrInvalidArgument) {
		t.Fatal("matches another category")
	}
	var ue *userError
	if !errors.As(err, &ue) || ue.Error() != `template "x" not found` {
		t.Fatalf("client message: %v", ue)
	}
}
