// Command filesystem experiments with a sandbox's filesystem: make a
// directory, write files, list them, read one back, let a command change
// another, rename and remove.
package main

import (
	"context"
	"fmt"
	"log"
	"strings"

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
	files := sb.Files

	if _, err := files.MakeDir(ctx, "experiment/data"); err != nil {
		log.Fatal(err)
	}
	for i, name := range []string{"a.txt", "b.txt", "c.txt"} {
		content := strings.Repeat(name[:1], i+1) + "\n"
		if _, err := files.Write(ctx, "experiment/data/"+name, []byte(content)); err != nil {
			log.Fatal(err)
		}
	}
	// Streams work too: any io.Reader.
	if _, err := files.WriteStream(ctx, "experiment/notes.md", strings.NewReader("# notes\n")); err != nil {
		log.Fatal(err)
	}

	entries, err := files.List(ctx, "experiment", sandpit.WithDepth(2))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listing:")
	for _, e := range entries {
		fmt.Printf("  %-4s %-40s %d bytes\n", e.Type, e.Path, e.Size)
	}

	// A command changes a file; read it back.
	if _, err := sb.Commands.Run(ctx, "cd experiment/data && cat a.txt b.txt c.txt | wc -c > count.txt"); err != nil {
		log.Fatal(err)
	}
	count, err := files.Read(ctx, "experiment/data/count.txt")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bytes in a, b and c: %s", count)

	if _, err := files.Rename(ctx, "experiment/notes.md", "experiment/README.md"); err != nil {
		log.Fatal(err)
	}
	if err := files.Remove(ctx, "experiment/data"); err != nil {
		log.Fatal(err)
	}
	left, err := files.List(ctx, "experiment")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range left {
		fmt.Println("left:", e.Name)
	}
	if ok, _ := files.Exists(ctx, "experiment/data/a.txt"); !ok {
		fmt.Println("experiment/data is gone")
	}
}
