package interp

import (
	"context"
	"errors"
)

func startBash(ctx context.Context, bash string, o kernelOpts) (kernel, error) {
	return nil, errors.New("todo")
}
