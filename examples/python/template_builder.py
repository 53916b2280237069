"""A custom template built with E2B's Python Template builder, then a
sandbox started from it with its app already running.

    python examples/python/template_builder.py
"""

from pathlib import Path

from e2b import Sandbox, Template, wait_for_port

template = (
    Template(file_context_path=Path(__file__).parent / "template_app")
    .from_template("base")
    .set_envs({"APP_GREETING": "hello from a template"})
    .run_cmd("mkdir -p /opt/app && chown user:user /opt/app", user="root")
    .copy("app.py", "/opt/app/app.py")
    .pip_install(["numpy"])
    .set_workdir("/opt/app")
    .set_start_cmd("python3 app.py", wait_for_port(8000))
)

build = Template.build(
    template,
    "python-builder-demo",
    cpu_count=1,
    memory_mb=512,
    on_build_logs=lambda entry: print("build:", entry.message),
)
print("built template:", build.name)

with Sandbox.create("python-builder-demo") as sandbox:
    print("workdir:", sandbox.commands.run("pwd").stdout.strip())
    print("app:", sandbox.commands.run("curl -s http://127.0.0.1:8000/").stdout.strip())
