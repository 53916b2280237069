# Run silently in every Python kernel once it is ready (python.go embeds
# it). It gives results what E2B's code-interpreter template gives them:
#
#   - e2b/data, the columns of a pandas DataFrame (Result.data);
#   - e2b/chart, the data behind a matplotlib figure (Result.chart), from
#     E2B's own extractor, the e2b-charts package that scripts/setup.sh
#     installs beside the kernel;
#   - a PNG result for PIL's Image.show(), which has no screen to open here.
#
# Nothing here imports pandas, matplotlib or PIL: a kernel that never uses
# them does not pay for them.


def _sandpit_setup():
    import sys

    # The launcher blocked these to start faster; user code may want them.
    for name in ("debugpy", "jedi"):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]

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

    def figure_chart(figure):
        try:
            from e2b_charts import chart_figure_to_dict
        except Exception:
            # A template without e2b-charts (or with a Python its compiled
            # dependency was not built for): the figure still has its PNG.
            return None
        import warnings

        # matplotlib 3.8 added Figure.get_suptitle, which the extractor
        # calls for a figure of several axes; Debian 12 has 3.6.
        if not hasattr(type(figure), "get_suptitle"):
            type(figure).get_suptitle = lambda self: "" if self._suptitle is None else self._suptitle.get_text()
        try:
            # The extractor's pydantic models warn about numpy scalars they
            # serialize anyway: nothing the user can act on.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return chart_figure_to_dict(figure)
        except Exception:
            # As upstream: a figure the extractor cannot read gets an empty
            # chart, never an error.
            return {}

    class ChartFormatter(BaseFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")
        _return_type = (dict,)

        # The inline backend removes every printer registered for Figure
        # when it starts, so figures are recognised here rather than
        # through for_type.
        def __call__(self, obj):
            module = sys.modules.get("matplotlib.figure")
            if module is not None and isinstance(obj, module.Figure):
                return figure_chart(obj)
            return super().__call__(obj)

    ip = get_ipython()
    data = DataFormatter(parent=ip.display_formatter)
    data.for_type_by_name("pandas.core.frame", "DataFrame", frame_data)
    ip.display_formatter.formatters["e2b/data"] = data
    ip.display_formatter.formatters["e2b/chart"] = ChartFormatter(parent=ip.display_formatter)

    # Image.show() hands the image to the viewers PIL.ImageShow knows,
    # which start a desktop program; first in line, this one displays it as
    # a result instead (an Image's PNG comes from its _repr_png_).
    class DisplayViewer:
        def show(self, image, **options):
            from IPython.display import display

            display(image)
            return 1

    def patch_image_show(module):
        module.register(DisplayViewer(), order=-1)

    on_import({"PIL.ImageShow": patch_image_show})


def on_import(patches):
    """Calls patches[name](module) once the module name is first imported
    (or now, if it already is)."""
    import importlib.abc
    import importlib.util
    import sys

    for name in list(patches):
        if name in sys.modules:
            patches.pop(name)(sys.modules[name])
    if not patches:
        return

    class PatchOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            patch = patches.pop(name, None)
            if patch is None:
                return None
            if not patches:
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

    sys.meta_path.insert(0, PatchOnImport())


_sandpit_setup()
del _sandpit_setup, on_import
