// Command streaming shows output as it is produced: a command's lines
// through a callback, another's straight into os.Stdout, and Python's
// prints, each arriving before the program that prints them ends.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func main() {
	ctx := context.Background()
	client, err := sandpit.NewClient()
	if err != nil {
		log.Fatal(err)
	}
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	start := time.Now()
	stamp := func(s string) { fmt.Printf("[%4dms] %s", time.Since(start).Milliseconds(), s) }

	fmt.Println("a command, line by line:")
	_, err = sb.Commands.Run(ctx, "for i in 1 2 3; do echo tick $i; sleep 0.3; done",
		sandpit.OnStdout(stamp), sandpit.OnStderr(stamp))
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println("a command into io.Writers:")
	if _, err := sb.Commands.Run(ctx, "echo to stdout; echo to stderr >&2",
		sandpit.WithStdout(os.Stdout), sandpit.WithStderr(os.Stdout)); err != nil {
		log.Fatal(err)
	}

	fmt.Println("python, print by print:")
	start = time.Now()
	_, err = sb.RunCode(ctx, "import time\nfor i in range(3):\n    print('step', i, flush=True)\n    time.sleep(0.3)",
		sandpit.OnStdout(stamp))
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println("a background command, stopped early:")
	h, err := sb.Commands.Start(ctx, "while true; do echo working; sleep 0.2; done", sandpit.OnStdout(stamp))
	if err != nil {
		log.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := h.Kill(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := h.Wait(ctx); err != nil {
		fmt.Println("stopped:", err)
	}
}
