def test_files_commands_streaming(run_example):
    out = run_example("sandbox_basics.py").stdout
    assert out.splitlines() == [
        "read: hello from a file",
        "listed: data.csv, greeting.txt, script.py",
        "exists: True",
        "script printed: 45 exit code: 0",
        "lines in data.csv: 3",
        "env: hi from envs",
        "stdout> step 1",
        "stdout> step 2",
        "stdout> step 3",
        "stderr> oops",
        "background: hello sandpit",
        "background stdout> hello",
        "listed: True",
        "killed: True",
        "year file has 4 digits",
        "killed",
    ], out
