"""The Python Template and AsyncTemplate builders against sandpit: from a
template, run_cmd, copy, pip_install of a local wheel, set_envs, set_workdir,
set_start_cmd with a ready check, build logs, the cache, tags, and
BuildException. No image registry is reachable here, so every build starts
from a sandpit template (from_template)."""

import secrets
import time
import zipfile
from pathlib import Path

import pytest
from e2b import (
    AsyncSandbox,
    AsyncTemplate,
    BuildException,
    Sandbox,
    SandboxException,
    Template,
    TemplateException,
    wait_for_file,
    wait_for_port,
)
from e2b.template.types import TemplateBuildStatus

WHEEL = "sandpit_hello-1.0-py3-none-any.whl"


def make_wheel(path: Path):
    """A minimal pure-Python wheel: PyPI itself is not reached from a build."""
    files = {
        "sandpit_hello/__init__.py": "def hello():\n    return 'hello from a local wheel'\n",
        "sandpit_hello-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sandpit-hello\nVersion: 1.0\n",
        "sandpit_hello-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: sandpit-compat\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "sandpit_hello-1.0.dist-info/RECORD"
    files[record] = "".join(f"{n},,\n" for n in [*files, record])
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    d = tmp_path_factory.mktemp("tpl-ctx")
    (d / "site").mkdir()
    (d / "site" / "index.html").write_text("hello from a template\n")
    make_wheel(d / WHEEL)
    return d


@pytest.fixture(scope="module")
def name():
    return "py-compat-" + secrets.token_hex(4)


def test_build_then_create(server, ctx, name):
    tpl = (
        Template(file_context_path=str(ctx))
        .from_template("base")
        .set_envs({"GREETING": "hi-from-env"})
        .run_cmd("mkdir -p /srv/www && echo built > /srv/www/built.txt", user="root")
        .copy("site", "/srv/www/", user="user")
        .copy(WHEEL, "/opt/wheels/", user="root")
        .pip_install([f"/opt/wheels/{WHEEL}"])
        .set_workdir("/srv/www")
        .set_start_cmd("python3 -m http.server 8000 --bind 127.0.0.1", wait_for_port(8000))
    )
    logs = []
    t0 = time.monotonic()
    built = Template.build(tpl, name, on_build_logs=lambda e: logs.append(e.message), cpu_count=1, memory_mb=512)
    print(f"first build: {time.monotonic() - t0:.1f} s")
    assert built.name == name and built.template_id and built.build_id
    assert any("COPY site" in line for line in logs), logs
    assert Template.exists(name) is True
    assert Template.exists(name + "-nope") is False

    sbx = server.track(Sandbox.create(name))
    r = sbx.commands.run(
        "echo $GREETING; pwd; cat built.txt index.html; "
        "python3 -c 'import sandpit_hello, urllib.request; print(sandpit_hello.hello()); "
        'print(urllib.request.urlopen("http://127.0.0.1:8000/index.html").read().decode(), end="")\''
    )
    assert r.stdout == "hi-from-env\n/srv/www\nbuilt\nhello from a template\nhello from a local wheel\nhello from a template\n"
    assert sbx.get_info().name in (name, f"{name}:default") or sbx.get_info().template_id == built.template_id
    sbx.kill()

    logs2 = []
    Template.build(tpl, name, on_build_logs=lambda e: logs2.append(e.message))
    assert any("served from cache" in line for line in logs2), logs2


def test_tags(server, name):
    tname = f"{name}-tags"

    def writes(word):
        return Template().from_template("base").run_cmd(f"echo {word} > /opt/which", user="root")

    b1 = Template.build(writes("one"), f"{tname}:v1")
    b2 = Template.build(writes("two"), f"{tname}:v2", tags=["extra"])
    assert b1.tags == ["v1"] and sorted(b2.tags) == ["extra", "v2"]
    assert b1.template_id == b2.template_id and b1.build_id != b2.build_id

    def which(ref):
        sbx = server.track(Sandbox.create(ref))
        try:
            return sbx.files.read("/opt/which").strip()
        finally:
            sbx.kill()

    assert which(f"{tname}:v1") == "one"
    assert which(f"{tname}:extra") == "two"
    with pytest.raises(SandboxException) as e:
        Sandbox.create(tname)  # the bare name is :default, which no build has
    assert e.value.status_code == 404 and f'template "{tname}" has no tag "default"' in str(e.value)

    assigned = Template.assign_tags(f"{tname}:v2", ["default", "stable"])
    assert assigned.build_id == b2.build_id and assigned.tags == ["default", "stable"]
    assert which(tname) == "two"
    tags = Template.get_tags(tname)
    assert sorted((t.tag, t.build_id) for t in tags) == sorted(
        [("default", b2.build_id), ("extra", b2.build_id), ("stable", b2.build_id), ("v1", b1.build_id), ("v2", b2.build_id)]
    )
    Template.remove_tags(tname, "v1")
    with pytest.raises(SandboxException):
        Sandbox.create(f"{tname}:v1")
    with pytest.raises(TemplateException) as e:
        Template.remove_tags(tname, ["v1"])
    assert e.value.status_code == 404


def test_builtin_template_tags(server):
    # Builtins have no build of their own; their tags still parse (the SDK
    # reads every buildID as a UUID).
    for ref in ("base", "code-interpreter-v1"):
        tags = Template.get_tags(ref)
        assert [t.tag for t in tags] == ["default"]
        assert str(tags[0].build_id)
    assert Template.exists("code-interpreter-v1") is True


def test_failing_step_raises_build_exception(name):
    tpl = Template().from_template("base").run_cmd("echo the-step-output; exit 4")
    with pytest.raises(BuildException) as e:
        Template.build(tpl, f"{name}-bad")
    assert "the-step-output" in str(e.value) and "exited with code 4" in str(e.value)


@pytest.mark.asyncio
async def test_async_template(server, name):
    aname = f"{name}-async"
    tpl = Template().from_template("base").set_envs({"WHO": "async-built"}).run_cmd("echo async > /opt/how", user="root")
    logs = []
    built = await AsyncTemplate.build(tpl, aname, on_build_logs=lambda e: logs.append(e.message))
    assert built.name == aname and logs
    assert await AsyncTemplate.exists(aname) is True
    s = await AsyncSandbox.create(aname)
    server.track(s)
    assert (await s.commands.run("echo $WHO; cat /opt/how")).stdout == "async-built\nasync\n"
    await s.kill()
    assert [t.tag for t in await AsyncTemplate.get_tags(aname)] == ["default"]


def test_dockerfile_user_ready_checks_and_background_builds(server, name):
    # A Dockerfile whose FROM is a sandpit template (no registry here).
    df = Template().from_dockerfile("FROM base\nUSER root\nRUN echo from-dockerfile > /opt/x\nENV A=b\nWORKDIR /opt\nUSER user")
    Template.build(df, f"{name}-df")
    sbx = server.track(Sandbox.create(f"{name}-df"))
    assert sbx.commands.run("cat x; echo $A; pwd; whoami").stdout == "from-dockerfile\nb\n/opt\nuser\n"
    sbx.kill()

    tpl = (
        Template()
        .from_template("base")
        .set_user("root")
        .make_dir("/opt/d")
        .make_symlink("/opt/d", "/opt/l")
        .run_cmd("echo a > /opt/d/a && echo b > /opt/b")
        .rename("/opt/b", "/opt/c")
        .remove("/opt/d/a")
        .set_user("user")
        .set_start_cmd("sleep 0.5; touch /tmp/ready; sleep 1000", wait_for_file("/tmp/ready"))
    )
    info = Template.build_in_background(tpl, f"{name}-bg")
    deadline = time.monotonic() + 120
    while (st := Template.get_build_status(info)).status in (TemplateBuildStatus.BUILDING, TemplateBuildStatus.WAITING):
        assert time.monotonic() < deadline, "background build did not finish"
        time.sleep(0.2)
    assert st.status == TemplateBuildStatus.READY, st
    assert Template.alias_exists(f"{name}-bg") is True
    sbx = server.track(Sandbox.create(f"{name}-bg"))
    r = sbx.commands.run("ls /opt/d; readlink /opt/l; cat /opt/c; test -e /tmp/ready && echo ready; whoami")
    assert r.stdout == "/opt/d\nb\nready\nuser\n"
    sbx.kill()
