package interp

import (
	"encoding/json"
	"strings"
)

// pythonSpec runs IPython through ipykernel with the matplotlib inline
// backend (so figures come back as PNG) and an e2b/data formatter for pandas
// DataFrames, the structured form the SDKs expose as Result.data.
func pythonSpec(python string) jupyterSpec {
	return jupyterSpec{
		name: "python3",
		argv: func(connFile string) []string {
			return []string{
				python, "-m", "ipykernel_launcher", "-f", connFile,
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

// pythonSetup registers the e2b/data formatter. It names pandas' DataFrame
// by module path, so pandas is imported only by user code that needs it.
const pythonSetup = `
def _sandpit_setup():
    import json
    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class DataFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict,)

    def frame_data(df):
        out = {}
        for i, name in enumerate(df.columns):
            out[str(name)] = json.loads(df.iloc[:, i].to_json(orient="values", date_format="iso"))
        return out

    ip = get_ipython()
    f = DataFormatter(parent=ip.display_formatter)
    f.for_type_by_name("pandas.core.frame", "DataFrame", frame_data)
    ip.display_formatter.formatters["e2b/data"] = f

_sandpit_setup()
del _sandpit_setup
`

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
