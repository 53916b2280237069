def test_template_builder(run_example):
    out = run_example("template_builder.py").stdout
    lines = out.splitlines()
    assert any("pip install numpy" in l for l in lines if l.startswith("build:")), out
    assert lines[-3:] == [
        "built template: python-builder-demo",
        "workdir: /opt/app",
        "app: hello from a template; numpy says 10",
    ], out


def test_dockerfile_template(run_example):
    out = run_example("dockerfile_template.py").stdout
    lines = out.splitlines()
    assert any("pip install numpy pandas" in l for l in lines if l.startswith("build:")), out
    assert lines[-3:] == [
        "built template: pandas-from-dockerfile",
        "mean score: 5.0",
        "MPLBACKEND: Agg",
    ], out
