"""A template from a Dockerfile, built with E2B's Python Template builder.

    python examples/python/dockerfile_template.py
"""

from pathlib import Path

from e2b import Sandbox, Template

context = Path(__file__).parent / "dockerfile_app"
template = Template(file_context_path=context).from_dockerfile(str(context / "Dockerfile"))

build = Template.build(template, "pandas-from-dockerfile", on_build_logs=lambda e: print("build:", e.message))
print("built template:", build.name)

with Sandbox.create("pandas-from-dockerfile") as sandbox:
    result = sandbox.commands.run("python3 analyze.py")
    print(result.stdout.strip())
    print("MPLBACKEND:", sandbox.commands.run("echo $MPLBACKEND").stdout.strip())
