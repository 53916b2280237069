package sandpit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// These examples need a server (SANDPIT_URL and SANDPIT_API_KEY, or the
// E2B variables), so they have no Output line: go test compiles them but
// does not run them.

// The basic flow: create a sandbox, run a command, close it.
func Example() {
	ctx := context.Background()
	client, err := sandpit.NewClient()
	if err != nil {
		log.Fatal(err)
	}
	sb, err := client.Create(ctx, sandpit.WithTimeout(5*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	res, err := sb.Commands.Run(ctx, "uname -a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(res.Stdout)
}

// Stream a command's output as it is printed, and tell a failed command
// from a failed call.
func ExampleCommands_Run() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	_, err = sb.Commands.Run(ctx, "for i in 1 2 3; do echo $i; sleep 1; done; exit 2",
		sandpit.WithStdout(os.Stdout), sandpit.WithStderr(os.Stderr))
	var exit *sandpit.CommandExitError
	switch {
	case errors.As(err, &exit):
		fmt.Println("exit code", exit.ExitCode)
	case err != nil:
		log.Fatal(err)
	}
}

// Run a server in the background, talk to it, then stop it.
func ExampleCommands_Start() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	srv, err := sb.Commands.Start(ctx, "python3 -m http.server 8000", sandpit.WithTimeout(0))
	if err != nil {
		log.Fatal(err)
	}
	res, _ := sb.Commands.Run(ctx, "sleep 1; curl -s localhost:8000 | head -3")
	fmt.Print(res.Stdout)
	_ = srv.Kill(ctx)
}

// Write, list and read files.
func ExampleFiles() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	if _, err := sb.Files.MakeDir(ctx, "project"); err != nil {
		log.Fatal(err)
	}
	if _, err := sb.Files.Write(ctx, "project/notes.txt", []byte("hello")); err != nil {
		log.Fatal(err)
	}
	entries, err := sb.Files.List(ctx, "project")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.Type, e.Path, e.Size)
	}
	data, err := sb.Files.Read(ctx, "project/notes.txt")
	if errors.Is(err, sandpit.ErrNotFound) {
		fmt.Println("gone")
	}
	fmt.Println(string(data))
}

// Watch a directory for changes.
func ExampleFiles_Watch() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	w, err := sb.Files.Watch(ctx, "/home/user", sandpit.WithRecursive())
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	go sb.Commands.Run(ctx, "touch /home/user/a.txt")
	for ev := range w.Events() {
		fmt.Println(ev.Type, ev.Name)
		break
	}
}

// Run Python with rich results, and read the error it raises.
func ExampleSandbox_RunCode() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	exec, err := sb.RunCode(ctx, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
		sandpit.OnStdout(func(line string) { fmt.Print(line) }))
	if err != nil {
		log.Fatal(err)
	}
	for i, r := range exec.Results {
		if len(r.PNG) > 0 {
			_ = os.WriteFile(fmt.Sprintf("plot-%d.png", i), r.PNG, 0o644)
		}
	}

	exec, _ = sb.RunCode(ctx, "1/0")
	if exec.Error != nil {
		fmt.Println(exec.Error.Name, exec.Error.Value)
	}
}

// An interactive terminal: type into it, read from it.
func ExamplePTY_Create() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	term, err := sb.PTY.Create(ctx, sandpit.PTYSize{Cols: 80, Rows: 24}, sandpit.WithTimeout(0))
	if err != nil {
		log.Fatal(err)
	}
	defer term.Close()
	fmt.Fprintln(term, "ls -la; exit")
	buf := make([]byte, 4096)
	for {
		n, err := term.Read(buf)
		os.Stdout.Write(buf[:n])
		if err != nil {
			break
		}
	}
}

// List running sandboxes with some metadata, and kill them.
func ExampleClient_List() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	for info, err := range client.List(ctx, sandpit.WithMetadata(map[string]string{"owner": "ci"})) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.ID, info.TemplateID, info.EndAt)
		if err := client.Kill(ctx, info.ID); err != nil && !errors.Is(err, sandpit.ErrNotFound) {
			log.Fatal(err)
		}
	}
}

// Let a sandbox reach only some names, then open another one later.
func ExampleWithNetwork() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	sb, err := client.Create(ctx, sandpit.WithNetwork(sandpit.Network{
		AllowOut: []string{"pypi.org", "*.pythonhosted.org"},
		DenyOut:  []string{"0.0.0.0/0"},
	}))
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	if _, err := sb.Commands.Run(ctx, "pip install requests"); err != nil {
		log.Fatal(err)
	}
	err = sb.UpdateNetwork(ctx, sandpit.NetworkUpdate{
		AllowOut: []string{"pypi.org", "*.pythonhosted.org", "api.github.com"},
		DenyOut:  []string{"0.0.0.0/0"},
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Keep a sandbox's ports private and reach one with its traffic token.
func ExampleSandbox_PortRequest() {
	ctx := context.Background()
	client, _ := sandpit.NewClient()
	public := false
	sb, err := client.Create(ctx, sandpit.WithNetwork(sandpit.Network{AllowPublicTraffic: &public}))
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()

	if _, err := sb.Commands.Start(ctx, "python3 -m http.server 8000", sandpit.WithTimeout(0)); err != nil {
		log.Fatal(err)
	}
	req, err := sb.PortRequest(ctx, http.MethodGet, 8000, "/", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req) // carries E2B-Traffic-Access-Token
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}
