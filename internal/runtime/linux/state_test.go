package linux

import (
	"os"
	"path/filepath"
	"testing"
)

// readState reads an older version's files, lets the state file's lines
// override them (the last line of a key wins), and ignores a line a crash
// cut short.
func TestReadState(t *testing.T) {
	for _, tc := range []struct {
		name   string
		legacy map[string]string
		state  string
		want   boxState
	}{
		{name: "nothing", want: boxState{slot: -1, link: -1}},
		{name: "legacy", legacy: map[string]string{"slot": "3", "pid": "42", "ident": "boot 7\n", "link": "9"},
			want: boxState{slot: 3, pid: 42, ident: "boot 7", link: 9}},
		{name: "appended", state: "slot 5\ninit 100 boot 12\nlink 17\n",
			want: boxState{slot: 5, pid: 100, ident: "boot 12", link: 17}},
		{name: "stopped then started", state: "slot 5\ninit 100 boot 12\nlink 17\ninit -\nlink -\ninit 200 boot 30\n",
			want: boxState{slot: 5, pid: 200, ident: "boot 30", link: -1}},
		{name: "cut short", state: "slot 5\ninit 100 boot 12\nlink 1",
			want: boxState{slot: 5, pid: 100, ident: "boot 12", link: -1}},
		{name: "state over legacy", legacy: map[string]string{"slot": "3", "pid": "42", "ident": "boot 7", "link": "9"},
			state: "init -\nlink -\n", want: boxState{slot: 3, link: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, v := range tc.legacy {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.state != "" {
				if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(tc.state), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readState(dir)
			if err != nil || got != tc.want {
				t.Errorf("readState = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// appendState's lines read back, and a garbled line is an error that
// names the file.
func TestAppendState(t *testing.T) {
	dir := t.TempDir()
	if err := appendState(dir, slotLine(4)); err != nil {
		t.Fatal(err)
	}
	if err := appendState(dir, initLine(77, procIdent{Boot: "b", Start: 5}), linkLine(12)); err != nil {
		t.Fatal(err)
	}
	got, err := readState(dir)
	want := boxState{slot: 4, pid: 77, ident: procIdent{Boot: "b", Start: 5}.String(), link: 12}
	if err != nil || got != want {
		t.Fatalf("readState = %+v, %v; want %+v", got, err, want)
	}
	if err := appendState(dir, "slot x"); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(dir); err == nil {
		t.Error("a garbled slot line read without an error")
	}
}
