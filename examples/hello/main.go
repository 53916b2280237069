// Command hello creates a sandbox, runs a command and some Python in it,
// and closes it: the first thing to try.
package main

import (
	"context"
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
	sb, err := client.Create(ctx, sandpit.WithTimeout(2*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close() // kills the sandbox
	fmt.Println("sandbox", sb.ID)

	res, err := sb.Commands.Run(ctx, "echo \"hello from $(hostname), running as $(whoami)\"")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)

	exec, err := sb.RunCode(ctx, "sum(i * i for i in range(10))")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("python says:", exec.Text())
}
