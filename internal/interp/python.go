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

// pythonLauncher is ipykernel_launcher without debugpy and jedi: nothing
// here speaks the Jupyter debug protocol or asks for completions, and not
// importing them saves about 16 MB and 90 ms per kernel (and debugpy's
// start-up warnings). pythonSetup unblocks them for user code.
const pythonLauncher = `import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.modules["debugpy"] = None
sys.modules["jedi"] = None
from ipykernel import kernelapp
kernelapp.launch_new_instance()
`

// pythonSetup registers two formatters, as upstream's kernel does: e2b/data
// (a DataFrame's columns) and e2b/chart (the data behind a matplotlib
// figure: line, scatter, bar and pie charts; several axes make a
// superchart). Types are named by module path, so pandas and matplotlib are
// imported only by user code that needs them. A figure the extractor does
// not understand gets no chart, never an error.
const pythonSetup = `
def _sandpit_setup():
    import json
    import sys

    for name in ("debugpy", "jedi"):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class DataFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict,)

    class ChartFormatter(BaseFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")
        _return_type = (dict,)

    def frame_data(df):
        out = {}
        for i, name in enumerate(df.columns):
            out[str(name)] = json.loads(df.iloc[:, i].to_json(orient="values", date_format="iso"))
        return out

    def num(v):
        try:
            return v.item()
        except AttributeError:
            pass
        if isinstance(v, (int, float, str, bool)) or v is None:
            return v
        return str(v)

    def label(artist):
        text = artist.get_label()
        return "" if text is None or text.startswith("_") else text

    def axis(ax, name):
        a = getattr(ax, name + "axis")
        ticks = [num(t) for t in a.get_ticklocs()]
        return {
            name + "_label": a.get_label().get_text() or None,
            name + "_unit": None,
            name + "_ticks": ticks,
            name + "_tick_labels": [t.get_text() for t in a.get_ticklabels()],
            name + "_scale": getattr(ax, "get_" + name + "scale")(),
        }

    def axes_chart(ax):
        from matplotlib.collections import PathCollection
        from matplotlib.container import BarContainer
        from matplotlib.patches import Wedge

        chart = {"title": ax.get_title() or None}
        wedges = [p for p in ax.patches if isinstance(p, Wedge)]
        if wedges:
            chart["type"] = "pie"
            chart["elements"] = [
                {"label": label(w), "angle": num(w.theta2 - w.theta1), "radius": num(w.r)} for w in wedges
            ]
            return chart
        chart.update(axis(ax, "x"))
        chart.update(axis(ax, "y"))
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        if bars:
            chart["type"] = "bar"
            ticks = {round(float(t), 6): l.get_text() for t, l in zip(ax.get_xticks(), ax.get_xticklabels())}
            elements = []
            for c in bars:
                for r in c.patches:
                    x = r.get_x() + r.get_width() / 2
                    elements.append({
                        "label": ticks.get(round(float(x), 6), str(num(x))),
                        "value": num(r.get_height()),
                        "group": label(c),
                    })
            chart["elements"] = elements
            return chart
        lines = [l for l in ax.get_lines() if len(l.get_xdata()) > 0]
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        if lines:
            chart["type"] = "line"
            chart["elements"] = [
                {"label": label(l), "points": [[num(x), num(y)] for x, y in zip(l.get_xdata(), l.get_ydata())]}
                for l in lines
            ]
            return chart
        if scatters:
            chart["type"] = "scatter"
            chart["elements"] = [
                {"label": label(c), "points": [[num(x), num(y)] for x, y in c.get_offsets()]} for c in scatters
            ]
            return chart
        return None

    def figure_chart(fig):
        try:
            charts = [c for c in (axes_chart(ax) for ax in fig.get_axes() if ax.has_data()) if c]
        except Exception:
            return None
        if not charts:
            return None
        if len(charts) == 1:
            return charts[0]
        title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else None
        return {"type": "superchart", "title": title, "elements": charts}

    ip = get_ipython()
    data = DataFormatter(parent=ip.display_formatter)
    data.for_type_by_name("pandas.core.frame", "DataFrame", frame_data)
    ip.display_formatter.formatters["e2b/data"] = data
    ip.display_formatter.formatters["e2b/chart"] = ChartFormatter(parent=ip.display_formatter)

    # The inline backend drops every formatter registered for Figure when
    # it starts, so figures get the chart through a method instead, added
    # when matplotlib.figure is first imported.
    import importlib.abc
    import importlib.util

    def patch(module):
        module.Figure._repr_e2b_chart_ = figure_chart

    class PatchOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "matplotlib.figure":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec

    if "matplotlib.figure" in sys.modules:
        patch(sys.modules["matplotlib.figure"])
    else:
        sys.meta_path.insert(0, PatchOnImport())

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
