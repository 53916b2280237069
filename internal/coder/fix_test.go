package coder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEditsStayInProject: file names the model gives are relative paths
// inside the project; with one file named, only that file.
func TestEditsStayInProject(t *testing.T) {
	dir := &project{files: map[string][]byte{"pkg/a.py": nil, "b.py": nil}}
	for _, bad := range []string{"../x.py", "/etc/passwd", "pkg/../../x.py", ""} {
		if _, err := dir.editable(bad); err == nil {
			t.Errorf("editable(%q) = ok, want an error", bad)
		}
	}
	if got, err := dir.editable("./pkg//a.py"); err != nil || got != "pkg/a.py" {
		t.Errorf("editable(./pkg//a.py) = %q, %v", got, err)
	}
	if got, err := dir.editable(workDir + "/b.py"); err != nil || got != "b.py" {
		t.Errorf("editable(the sandbox path) = %q, %v", got, err)
	}
	one := &project{files: map[string][]byte{"calc.py": nil}, single: "calc.py"}
	if _, err := one.editable("other.py"); err == nil || !strings.Contains(err.Error(), "only calc.py") {
		t.Errorf("editable(other.py) with one file: %v", err)
	}
}

// TestEditsFromAnswers: write_file calls, blocks naming files, and a lone
// block for a one-file project.
func TestEditsFromAnswers(t *testing.T) {
	dir := &project{files: map[string][]byte{"pkg/a.py": nil, "b.py": nil}}
	edits, problems := dir.edits(Message{ToolCalls: []ToolCall{
		{ID: "1", Function: FunctionCall{Name: "write_file", Arguments: `{"path":"pkg/a.py","content":"A\n"}`}},
		{ID: "2", Function: FunctionCall{Name: "write_file", Arguments: `{"path":"../evil.py","content":"x"}`}},
		{ID: "3", Function: FunctionCall{Name: "write_file", Arguments: `{"path":`}},
		{ID: "4", Function: FunctionCall{Name: "delete_file", Arguments: `{}`}},
	}})
	if len(edits) != 1 || edits[0] != (edit{"pkg/a.py", "A\n"}) {
		t.Errorf("edits = %+v", edits)
	}
	for id, want := range map[string]string{"1": "written pkg/a.py", "2": "not a file of the project", "3": "not a valid JSON object", "4": `no tool "delete_file"`} {
		if !strings.Contains(problems[id], want) {
			t.Errorf("call %s: %q, want %q", id, problems[id], want)
		}
	}

	edits, _ = dir.edits(Message{Content: "Fixed:\n```python b.py\nB\n```\nand\n```python title=\"pkg/a.py\"\nA\n```\n```text\nnot a file\n```"})
	if len(edits) != 2 || edits[0] != (edit{"b.py", "B\n"}) || edits[1] != (edit{"pkg/a.py", "A\n"}) {
		t.Errorf("edits from blocks = %+v", edits)
	}
	one := &project{files: map[string][]byte{"calc.py": nil}, single: "calc.py"}
	if edits, _ := one.edits(Message{Content: "```python\nX\n```"}); len(edits) != 1 || edits[0].path != "calc.py" {
		t.Errorf("a lone block for one file: %+v", edits)
	}
	if edits, problems := dir.edits(Message{Content: "```python\nX\n```"}); len(edits) != 0 || problems[""] == "" {
		t.Errorf("an unnamed block in a directory: %+v %q", edits, problems[""])
	}
}

// TestWriteBackStaysInRoot: a new file under a symlink that leads out of
// the project is refused; files keep their mode.
func TestWriteBackStaysInRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "m.py"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &project{root: root, modes: map[string]os.FileMode{"m.py": 0o600}}
	if err := p.writeBack("out/x.py", []byte("escaped")); err == nil {
		t.Error("writing through a symlink out of the project worked")
	}
	if _, err := os.Stat(filepath.Join(outside, "x.py")); err == nil {
		t.Error("a file was written outside the project")
	}
	if err := p.writeBack("m.py", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "m.py")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("m.py: %v %v, want mode 0600", fi, err)
	}
	if err := p.writeBack("new/dir/n.py", []byte("n")); err != nil {
		t.Errorf("a new file in new directories: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(root, ".*sandpit*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
