package interp

import (
	"context"
	"errors"
)

func startNode(ctx context.Context, node, typescript string, o kernelOpts) (kernel, error) {
	return nil, errors.New("todo")
}
