package interp

import (
	_ "embed"
	"encoding/json"
	"strings"
)

// pythonSpec runs IPython through ipykernel with the matplotlib inline
// backend (so figures come back as PNG) and the formatters of pythonSetup.
func pythonSpec(python string) jupyterSpec {
	return jupyterSpec{
		name: "python3",
		argv: func(connFile string) []string {
			return []string{
				python, "-c", pythonLauncher, "-f", connFile,
				// Keep input history in memory: no sqlite file in $HOME,
				// and a faster start.
				"--HistoryManager.hist_file=:memory:",
				// ipykernel sleeps 0.5 ms before each execute_reply so
				// that clients which stop at the reply see all output; this
				// client reads until the idle status, which iopub orders
				// after every output.
				"--IPythonKernel._execute_sleep=0",
			}
		},
		setup: pythonSetup,
		envCode: func(set map[string]string, unset []string) string {
			var b strings.Builder
			b.WriteString("import os as _sandpit_os\n")
			if len(set) > 0 {
				b.WriteString("_sandpit_os.environ.update(" + jsonLiteral(set) + ")\n")
			}
			for _, k := range unset {
				b.WriteString("_sandpit_os.environ.pop(" + jsonLiteral(k) + ", None)\n")
			}
			b.WriteString("del _sandpit_os\n")
			return b.String()
		},
		chdirCode: func(dir string) string {
			return "import os as _sandpit_os\n_sandpit_os.chdir(" + jsonLiteral(dir) + ")\ndel _sandpit_os\n"
		},
	}
}

// pythonLibDir holds the Python packages the kernel needs beyond Debian's
// (scripts/python-kernel-requirements.txt, installed by scripts/setup.sh).
// Sandboxes of the base template see the host's /usr, so it is there too.
const pythonLibDir = "/usr/local/lib/sandpit/python"

// pythonLauncher is ipykernel_launcher without debugpy and jedi: nothing
// here speaks the Jupyter debug protocol or asks for completions, and not
// importing them saves about 16 MB and 90 ms per kernel (and debugpy's
// start-up warnings). pythonSetup unblocks them for user code.
//
// It also puts pythonLibDir on the path, after the packages the user
// installs (/usr/local) and before Debian's (/usr/lib/python3/): what is
// there (pydantic 2 for e2b-charts) is newer than Debian 12's.
const pythonLauncher = `import os, sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
if os.path.isdir("` + pythonLibDir + `"):
    sys.path.insert(next((i for i, p in enumerate(sys.path) if p.startswith("/usr/lib/python3/")), len(sys.path)), "` + pythonLibDir + `")
del os
sys.modules["debugpy"] = None
sys.modules["jedi"] = None
from ipykernel import kernelapp
kernelapp.launch_new_instance()
`

// pythonSetup gives results what upstream's kernel gives them: e2b/data
// for DataFrames, e2b/chart for matplotlib figures (through E2B's own
// extractor, installed in pythonLibDir), a PNG for PIL's Image.show().
//
//go:embed python_startup.py
var pythonSetup string

// jsonLiteral encodes v as JSON, which is also a valid Python, JavaScript
// and R literal for strings, and for maps and lists of strings in Python
// and JavaScript.
func jsonLiteral(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Strings and maps of strings always encode.
		panic(err)
	}
	return string(b)
}
