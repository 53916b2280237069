def test_hello(run_example):
    out = run_example("hello.py").stdout
    lines = out.splitlines()
    assert lines[0] == "hello world"
    assert lines[1] == "x + 1 = 42"
    assert lines[2].startswith("files in /:") and " home" in lines[2] and " tmp" in lines[2], out
