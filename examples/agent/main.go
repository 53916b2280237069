// Command agent is the reason-execute-reflect loop of an AI coding agent:
// a model writes Python for a task, the code runs in a sandbox, and what it
// printed (or the error it raised) goes back to the model, which fixes the
// code, until it runs cleanly or the attempts run out.
//
// The loop is sandpit's own coding agent (the package behind `sandpit
// agent`); this program shows how little it takes to drive it. The model is
// any OpenAI-compatible chat completions endpoint:
//
//	OPENAI_BASE_URL  (default https://api.openai.com/v1)
//	OPENAI_API_KEY
//	MODEL            (default gpt-4o-mini)
//
// The task is the command line's arguments, or a default one.
package main

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/sandpit-dev/sandpit/internal/coder"
	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func main() {
	task := strings.Join(os.Args[1:], " ")
	if task == "" {
		task = "Print the first 15 Fibonacci numbers, comma-separated, on one line."
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, task); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, task string) error {
	client, err := sandpit.NewClient()
	if err != nil {
		return err
	}
	agent, err := coder.New(coder.Config{
		Chat: &coder.Chat{
			BaseURL: cmp.Or(os.Getenv("OPENAI_BASE_URL"), "https://api.openai.com/v1"),
			APIKey:  os.Getenv("OPENAI_API_KEY"),
			Model:   cmp.Or(os.Getenv("MODEL"), "gpt-4o-mini"),
		},
		Client:      client,
		MaxAttempts: 5,
		// The transcript (each attempt's code, output and error) goes to
		// stdout here; `sandpit agent` sends it to stderr.
		Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	sol, err := agent.Solve(ctx, task)
	if err != nil {
		return err
	}
	fmt.Print(sol.Output)
	return nil
}
