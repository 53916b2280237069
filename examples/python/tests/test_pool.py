def test_sandbox_pool(run_example):
    out = run_example("pool.py").stdout
    expected = [f"task {i}: {sum(k * k for k in range(i + 1))}" for i in range(8)]
    lines = out.splitlines()
    assert lines[:8] == expected, out
    assert lines[8].startswith("8 tasks ran on ") and lines[8].endswith(" pooled sandboxes"), out
    assert 1 <= int(lines[8].split()[4]) <= 3, out
    assert lines[9:] == ["state left over from earlier tasks: False", "pool closed"], out
