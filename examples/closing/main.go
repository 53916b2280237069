// Command closing shows the ways a sandbox ends: Close (deferred, kills),
// Kill by ID, and its timeout; and finding leftover sandboxes by metadata to
// clean them up.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func main() {
	ctx := context.Background()
	client, err := sandpit.NewClient()
	if err != nil {
		log.Fatal(err)
	}
	tag := map[string]string{"example": "closing", "run": fmt.Sprint(time.Now().UnixNano())}

	// 1. Close: the usual way, deferred right after Create.
	func() {
		sb, err := client.Create(ctx, sandpit.WithMetadata(tag))
		if err != nil {
			log.Fatal(err)
		}
		defer sb.Close()
		fmt.Println("created", sb.ID, "and closed it with defer")
	}()

	// 2. Kill by ID, e.g. from another process.
	sb2, err := client.Create(ctx, sandpit.WithMetadata(tag))
	if err != nil {
		log.Fatal(err)
	}
	// 3. A timeout: this one ends by itself.
	sb3, err := client.Create(ctx, sandpit.WithMetadata(tag), sandpit.WithTimeout(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	// And one left behind, to be found by its metadata.
	if _, err := client.Create(ctx, sandpit.WithMetadata(tag)); err != nil {
		log.Fatal(err)
	}

	if err := client.Kill(ctx, sb2.ID); err != nil {
		log.Fatal(err)
	}
	fmt.Println("killed", sb2.ID)
	if err := client.Kill(ctx, sb2.ID); errors.Is(err, sandpit.ErrNotFound) {
		fmt.Println("killing it again: not found")
	}

	if err := sb3.SetTimeout(ctx, time.Second); err != nil {
		log.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sb3.Info(ctx)
		if errors.Is(err, sandpit.ErrNotFound) {
			fmt.Println(sb3.ID, "timed out")
			break
		}
		if time.Now().After(deadline) {
			log.Fatal("the sandbox outlived its timeout")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Clean up whatever is left with this run's metadata.
	n := 0
	for info, err := range client.List(ctx, sandpit.WithMetadata(tag)) {
		if err != nil {
			log.Fatal(err)
		}
		if err := client.Kill(ctx, info.ID); err != nil && !errors.Is(err, sandpit.ErrNotFound) {
			log.Fatal(err)
		}
		n++
	}
	fmt.Println("cleaned up", n, "leftover sandbox(es)")
	left, err := client.ListAll(ctx, sandpit.WithMetadata(tag))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sandboxes left:", len(left))
}
